package routing

import (
	"context"
	"errors"

	"pingate/iso8583"
	"pingate/pinblock"
)

// Errors of the flow that callers and the response-code mapping branch on.
var (
	ErrFormat            = errors.New("message format error")
	ErrUnknownAcquirer   = errors.New("unknown acquirer")
	ErrAcquirerMismatch  = errors.New("acquirer differs from the one the connection is bound to")
	ErrNotBound          = errors.New("no DE 32 and the connection is bound to no acquirer")
	ErrNotSignedOn       = errors.New("acquirer not signed on")
	ErrKeyBlockRequired  = errors.New("key change must carry a TR-31 key block")
	ErrTerminalRefused   = errors.New("terminal not permitted for acquirer")
	ErrOperationRefused  = errors.New("operation not permitted for acquirer")
	ErrFormatRefused     = errors.New("PIN block format not permitted for acquirer")
	ErrUnknownKeyIndex   = errors.New("unknown acquirer key index")
	ErrIssuerUnavailable = errors.New("issuer unavailable")      // not sent: no signed-on link
	ErrIssuerTimeout     = errors.New("issuer did not answer")   // sent, no answer in time: reversed
	ErrIssuerMalformed   = errors.New("issuer answer malformed") // the issuer's answer could not be read
	ErrSinkFull          = errors.New("outcome journal full")
	// ErrSinkUnavailable: the outcome journal cannot be written now (a
	// stalled or failed disk); an Admitter refuses work with it.
	ErrSinkUnavailable = errors.New("outcome journal unavailable")
	// ErrReversalStore: the reversal owed ahead of the issuer call could not
	// be persisted in time; the request was not sent.
	ErrReversalStore = errors.New("reversal store unavailable")
	ErrShuttingDown  = errors.New("gateway shutting down")
)

// ResponseFor maps an error of the flow to the DE 39 response code, the
// outcome class and a stable machine-readable reason. It is the one place where
// errors become response codes; a nil error is an approval.
//
// An issuer complaining about our own message (its code 30) is not relayed:
// that is our malfunction, answered 96 (see IssuerCode).
func ResponseFor(err error) (code, outcome, reason string) {
	switch {
	case err == nil:
		return iso8583.RCApproved, OutcomeApproved, "approved"
	case errors.Is(err, ErrFormat):
		return iso8583.RCFormatError, OutcomeRejected, "format_error"
	case errors.Is(err, ErrUnknownAcquirer):
		return iso8583.RCNotPermittedTerm, OutcomeRejected, "unknown_acquirer"
	case errors.Is(err, ErrAcquirerMismatch):
		return iso8583.RCNotPermittedTerm, OutcomeRejected, "acquirer_mismatch"
	case errors.Is(err, ErrNotBound):
		return iso8583.RCNotPermittedTerm, OutcomeRejected, "not_bound"
	case errors.Is(err, ErrNotSignedOn):
		return iso8583.RCIssuerUnavailable, OutcomeRejected, "not_signed_on"
	case errors.Is(err, ErrTerminalRefused):
		return iso8583.RCNotPermittedTerm, OutcomeRejected, "terminal_not_permitted"
	case errors.Is(err, ErrOperationRefused):
		return iso8583.RCNotPermittedTerm, OutcomeRejected, "operation_not_permitted"
	case errors.Is(err, ErrFormatRefused):
		return iso8583.RCFormatError, OutcomeRejected, "pin_block_format_not_permitted"
	case errors.Is(err, ErrKeyBlockRequired):
		return iso8583.RCFormatError, OutcomeRejected, "key_block_required"
	case errors.Is(err, ErrUnknownKeyIndex):
		return iso8583.RCFormatError, OutcomeRejected, "unknown_key_index"
	case errors.Is(err, ErrNoRoute):
		return iso8583.RCNoSuchCard, OutcomeRejected, "no_route"
	case errors.Is(err, pinblock.ErrNewPINRejected):
		return iso8583.RCNewPINRejected, OutcomeDeclined, "new_pin_rejected"
	case errors.Is(err, pinblock.ErrInvalidPINBlock),
		errors.Is(err, pinblock.ErrInvalidPIN),
		errors.Is(err, pinblock.ErrUnsupportedFormat):
		return iso8583.RCFormatError, OutcomeRejected, "invalid_pin_block"
	case errors.Is(err, pinblock.ErrInvalidPAN):
		return iso8583.RCNoSuchCard, OutcomeRejected, "invalid_pan"
	case errors.Is(err, pinblock.ErrForbiddenTranslation),
		errors.Is(err, pinblock.ErrKeyAlgorithmMismatch),
		errors.Is(err, pinblock.ErrUnknownKey),
		errors.Is(err, pinblock.ErrKeyUsage):
		// Our configuration pairs keys or formats that may not meet.
		return iso8583.RCSystemMalfunction, OutcomeFailed, "security_configuration"
	case errors.Is(err, pinblock.ErrMailerUnavailable):
		// The issuer took the generated PIN but its mailer did not print.
		return iso8583.RCSystemMalfunction, OutcomeFailed, "pin_mailer_failed"
	case errors.Is(err, pinblock.ErrModuleUnavailable):
		return iso8583.RCIssuerUnavailable, OutcomeFailed, "security_module_unavailable"
	case errors.Is(err, ErrIssuerTimeout):
		return iso8583.RCIssuerUnavailable, OutcomeReversed, "issuer_timeout"
	case errors.Is(err, ErrIssuerUnavailable):
		return iso8583.RCIssuerUnavailable, OutcomeFailed, "issuer_unavailable"
	case errors.Is(err, ErrIssuerMalformed):
		return iso8583.RCSystemMalfunction, OutcomeFailed, "issuer_message_error"
	case errors.Is(err, ErrSinkUnavailable):
		return iso8583.RCIssuerUnavailable, OutcomeFailed, "journal_unavailable"
	case errors.Is(err, ErrSinkFull):
		return iso8583.RCIssuerUnavailable, OutcomeFailed, "journal_full"
	case errors.Is(err, ErrReversalStore):
		return iso8583.RCIssuerUnavailable, OutcomeFailed, "reversal_store_unavailable"
	case errors.Is(err, ErrShuttingDown):
		return iso8583.RCIssuerUnavailable, OutcomeFailed, "shutting_down"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return iso8583.RCIssuerUnavailable, OutcomeFailed, "deadline"
	}
	var ie *IssuerDecline
	if errors.As(err, &ie) {
		return IssuerCode(ie.Code)
	}
	return iso8583.RCSystemMalfunction, OutcomeFailed, "system_malfunction"
}

// IssuerDecline is an issuer's answer other than approval.
type IssuerDecline struct{ Code string }

func (e *IssuerDecline) Error() string { return "issuer declined with " + e.Code }

// IssuerCode maps an issuer's DE 39 to what the acquirer gets. Known
// cardholder outcomes pass through; the issuer's complaint about our format
// (30) and anything unknown become 96.
func IssuerCode(code string) (rc, outcome, reason string) {
	switch code {
	case iso8583.RCApproved:
		return code, OutcomeApproved, "approved"
	case iso8583.RCIncorrectPIN:
		return code, OutcomeDeclined, "incorrect_pin"
	case iso8583.RCPINTriesExceeded:
		return code, OutcomeDeclined, "pin_tries_exceeded"
	case iso8583.RCNoSuchCard:
		return code, OutcomeDeclined, "no_such_card"
	case iso8583.RCNotPermittedCard:
		return code, OutcomeDeclined, "not_permitted_to_cardholder"
	case iso8583.RCNewPINRejected:
		return code, OutcomeDeclined, "new_pin_rejected"
	case iso8583.RCExceedsFrequency:
		return code, OutcomeDeclined, "issuer_frequency_limit"
	case iso8583.RCIssuerUnavailable:
		return code, OutcomeFailed, "issuer_unavailable"
	case iso8583.RCSystemMalfunction:
		return code, OutcomeFailed, "issuer_malfunction"
	case iso8583.RCFormatError:
		return iso8583.RCSystemMalfunction, OutcomeFailed, "issuer_rejected_format"
	}
	return iso8583.RCSystemMalfunction, OutcomeFailed, "issuer_unknown_code"
}
