package routing

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"pingate/pinblock"
)

// TestResponseFor is the table of every answer the gateway gives: one row
// per error (bare and wrapped the way its producer wraps it) with the code,
// outcome, reason and branch API status it becomes.
func TestResponseFor(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("issuer ssbank: %w", err) }
	tests := []struct {
		give error
		want Response
	}{
		{nil, Response{"00", OutcomeApproved, "approved", 200}},

		// Refusals before the issuer.
		{ErrFormat, Response{"30", OutcomeRejected, "format_error", 200}},
		{fmt.Errorf("%w: PAN must be 13–19 digits", ErrFormat), Response{"30", OutcomeRejected, "format_error", 200}},
		{ErrUnknownAcquirer, Response{"58", OutcomeRejected, "unknown_acquirer", 200}},
		{ErrAcquirerMismatch, Response{"58", OutcomeRejected, "acquirer_mismatch", 200}},
		{ErrNotBound, Response{"58", OutcomeRejected, "not_bound", 200}},
		{ErrNotSignedOn, Response{"91", OutcomeRejected, "not_signed_on", 200}},
		{ErrTerminalRefused, Response{"58", OutcomeRejected, "terminal_not_permitted", 200}},
		{ErrOperationRefused, Response{"58", OutcomeRejected, "operation_not_permitted", 200}},
		{ErrFormatRefused, Response{"30", OutcomeRejected, "pin_block_format_not_permitted", 422}},
		{ErrUnknownKeyIndex, Response{"30", OutcomeRejected, "unknown_key_index", 422}},
		{ErrKeyBlockRequired, Response{"30", OutcomeRejected, "key_block_required", 200}},
		{ErrNoRoute, Response{"14", OutcomeRejected, "no_route", 200}},
		{pinblock.ErrInvalidPINBlock, Response{"30", OutcomeRejected, "invalid_pin_block", 200}},
		{fmt.Errorf("translate for issuer ssbank: %w", pinblock.ErrInvalidPIN), Response{"30", OutcomeRejected, "invalid_pin_block", 200}},
		{pinblock.ErrUnsupportedFormat, Response{"30", OutcomeRejected, "invalid_pin_block", 200}},
		{pinblock.ErrInvalidPAN, Response{"14", OutcomeRejected, "invalid_pan", 200}},
		{pinblock.ErrNewPINRejected, Response{"P6", OutcomeDeclined, "new_pin_rejected", 200}},

		// Our configuration or the security module.
		{pinblock.ErrForbiddenTranslation, Response{"96", OutcomeFailed, "security_configuration", 200}},
		{pinblock.ErrKeyAlgorithmMismatch, Response{"96", OutcomeFailed, "security_configuration", 200}},
		{pinblock.ErrUnknownKey, Response{"96", OutcomeFailed, "security_configuration", 200}},
		{pinblock.ErrKeyUsage, Response{"96", OutcomeFailed, "security_configuration", 200}},
		{fmt.Errorf("pin mailer: %w", pinblock.ErrMailerUnavailable), Response{"96", OutcomeFailed, "pin_mailer_failed", 200}},
		{pinblock.ErrModuleUnavailable, Response{"91", OutcomeFailed, "security_module_unavailable", 200}},

		// Limits: the limiter says which, ResponseFor the code.
		{&LimitError{Limit: "card_daily", Err: ErrCardDailyLimit}, Response{"65", OutcomeLimited, "card_daily_limit", 200}},
		{&LimitError{Limit: "card_wrong_pin", Err: ErrCardWrongPINLimit}, Response{"75", OutcomeLimited, "card_wrong_pin_limit", 200}},
		{&LimitError{Limit: "terminal", Err: ErrTerminalLimit}, Response{"61", OutcomeLimited, "terminal_rate_limit", 200}},
		{&LimitError{Limit: "acquirer", Err: fmt.Errorf("local bucket: %w", ErrAcquirerLimit)}, Response{"61", OutcomeLimited, "acquirer_rate_limit", 200}},
		{&LimitError{Limit: "card", Err: ErrLimiterUnavailable}, Response{"91", OutcomeLimited, "limiter_unavailable", 200}},
		{&LimitError{Limit: "limiter", Err: fmt.Errorf("%w: %w", ErrLimiterUnavailable, context.DeadlineExceeded)}, Response{"91", OutcomeLimited, "limiter_unavailable", 200}},
		{&LimitError{Limit: "odd"}, Response{"91", OutcomeLimited, "limiter_unavailable", 200}},
		{fmt.Errorf("card limits: %w", ErrLimiterUnavailable), Response{"91", OutcomeLimited, "limiter_unavailable", 200}},
		{fmt.Errorf("window: %w", ErrDuplicateInFlight), Response{"94", OutcomeRejected, "duplicate_in_flight", 200}},
		{ErrReversedBeforeReceived, Response{"94", OutcomeRejected, "reversed_before_received", 200}},

		// The issuer.
		{wrap(ErrIssuerTimeout), Response{"91", OutcomeReversed, "issuer_timeout", 200}},
		{wrap(ErrIssuerUnavailable), Response{"91", OutcomeFailed, "issuer_unavailable", 200}},
		{wrap(ErrIssuerMalformed), Response{"96", OutcomeFailed, "issuer_message_error", 200}},
		{&IssuerDecline{Code: "00"}, Response{"00", OutcomeApproved, "approved", 200}},
		{&IssuerDecline{Code: "55"}, Response{"55", OutcomeDeclined, "incorrect_pin", 200}},
		{&IssuerDecline{Code: "75"}, Response{"75", OutcomeDeclined, "pin_tries_exceeded", 200}},
		{&IssuerDecline{Code: "14"}, Response{"14", OutcomeDeclined, "no_such_card", 200}},
		{&IssuerDecline{Code: "57"}, Response{"57", OutcomeDeclined, "not_permitted_to_cardholder", 200}},
		{&IssuerDecline{Code: "P6"}, Response{"P6", OutcomeDeclined, "new_pin_rejected", 200}},
		{&IssuerDecline{Code: "65"}, Response{"65", OutcomeDeclined, "issuer_frequency_limit", 200}},
		{&IssuerDecline{Code: "91"}, Response{"91", OutcomeFailed, "issuer_unavailable", 200}},
		{&IssuerDecline{Code: "96"}, Response{"96", OutcomeFailed, "issuer_malfunction", 200}},
		{&IssuerDecline{Code: "30"}, Response{"96", OutcomeFailed, "issuer_rejected_format", 200}},
		{&IssuerDecline{Code: "Z9"}, Response{"96", OutcomeFailed, "issuer_unknown_code", 200}},

		// The journal, the reversal store, shutdown, deadlines.
		{fmt.Errorf("admit: %w", ErrSinkFull), Response{"91", OutcomeFailed, "journal_full", 200}},
		{fmt.Errorf("admit: %w", ErrSinkUnavailable), Response{"91", OutcomeFailed, "journal_unavailable", 200}},
		{fmt.Errorf("%w: %w", ErrNotRecorded, errors.New("disk full")), Response{"91", OutcomeFailed, "journal_unavailable", 200}},
		{fmt.Errorf("%w: %w", ErrNotRecorded, ErrSinkFull), Response{"91", OutcomeFailed, "journal_unavailable", 200}},
		{fmt.Errorf("%w: %w", ErrNotRecorded, context.DeadlineExceeded), Response{"91", OutcomeFailed, "journal_unavailable", 200}},
		{wrap(ErrReversalStore), Response{"91", OutcomeFailed, "reversal_store_unavailable", 200}},
		{ErrShuttingDown, Response{"91", OutcomeFailed, "shutting_down", 200}},
		{context.DeadlineExceeded, Response{"91", OutcomeFailed, "deadline", 200}},
		{wrap(context.Canceled), Response{"91", OutcomeFailed, "deadline", 200}},

		// Key change (0800/161): the module's refusals of the key are 30,
		// its other failures 96; the message's own faults as above.
		{&KeyChangeError{Err: pinblock.ErrKCVMismatch}, Response{"30", OutcomeRejected, "key_rejected", 200}},
		{&KeyChangeError{Err: fmt.Errorf("unwrap: %w", pinblock.ErrInvalidKey)}, Response{"30", OutcomeRejected, "key_rejected", 200}},
		{&KeyChangeError{Err: pinblock.ErrKeyAlgorithmMismatch}, Response{"30", OutcomeRejected, "key_rejected", 200}},
		{&KeyChangeError{Err: pinblock.ErrKeyBlock}, Response{"30", OutcomeRejected, "key_rejected", 200}},
		{&KeyChangeError{Err: pinblock.ErrKeyUsage}, Response{"30", OutcomeRejected, "key_rejected", 200}},
		{&KeyChangeError{Err: pinblock.ErrWeakKEK}, Response{"30", OutcomeRejected, "key_rejected", 200}},
		{&KeyChangeError{Err: pinblock.ErrUnknownKey}, Response{"96", OutcomeFailed, "key_change_failed", 200}},
		{&KeyChangeError{Err: errors.New("custody log: disk full")}, Response{"96", OutcomeFailed, "key_change_failed", 200}},

		// Reversals: an acquirer's advice not taken, and the codes the
		// events of reversals record.
		{fmt.Errorf("%w: %w", ErrReversalFailed, errors.New("reversal store down")), Response{"96", OutcomeFailed, "reversal_failed", 200}},
		{fmt.Errorf("%w: %w", ErrReversalFailed, context.DeadlineExceeded), Response{"96", OutcomeFailed, "reversal_failed", 200}},
		{&AcquirerReversal{Code: "17"}, Response{"17", OutcomeReversed, "acquirer_reversal", 200}},
		{&AcquirerReversal{}, Response{"68", OutcomeReversed, "acquirer_reversal", 200}},
		{&AcquirerReversal{Code: "00"}, Response{"68", OutcomeReversed, "acquirer_reversal", 200}},
		{&AcquirerReversal{Code: "x!"}, Response{"68", OutcomeReversed, "acquirer_reversal", 200}},
		{ErrReversedNotRecorded, Response{"91", OutcomeReversed, "outcome_not_recorded", 200}},

		{errors.New("anything else"), Response{"96", OutcomeFailed, "system_malfunction", 200}},
	}
	for _, tt := range tests {
		if got := ResponseFor(tt.give); got != tt.want {
			t.Errorf("ResponseFor(%v) = %+v, want %+v", tt.give, got, tt.want)
		}
	}
}
