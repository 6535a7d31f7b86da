package routing

import (
	"context"
	"errors"
	"net/http"

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
	// ErrReversedBeforeReceived: the acquirer's reversal advice for the
	// request was taken before the request itself arrived (it overtook it,
	// on another connection); the request is refused, never sent.
	ErrReversedBeforeReceived = errors.New("reversed by the acquirer before it was received")
)

// Refusals of a Limiter (Decision.Refusal), and its failure to decide.
var (
	ErrCardDailyLimit    = errors.New("card operations per day exceeded")
	ErrCardWrongPINLimit = errors.New("card wrong PINs per hour exceeded")
	ErrTerminalLimit     = errors.New("terminal throughput exceeded")
	ErrAcquirerLimit     = errors.New("acquirer throughput exceeded")
	// ErrLimiterUnavailable: the limiter could not decide (its store is
	// down, or the request has no card token); the request is refused.
	ErrLimiterUnavailable = errors.New("rate limiter unavailable")
)

// Errors of the answers that are not PIN operations.
var (
	// ErrNotRecorded: the outcome event could not be made durable; the
	// operation's own outcome is replaced by this failure (Flow.Handle).
	ErrNotRecorded = errors.New("outcome not recorded")
	// ErrReversalFailed: an acquirer's reversal advice could not be owed to
	// the issuer or recorded; the acquirer is to send it again.
	ErrReversalFailed = errors.New("reversal advice not taken")
	// ErrReversedNotRecorded is the cause recorded for an operation the
	// issuer reversed because its outcome was not recorded (Flow.RecordReversal).
	ErrReversedNotRecorded = errors.New("reversed: the outcome was not recorded")
)

// LimitError is a limiter's refusal: Err is the Decision's Refusal (one of
// ErrCardDailyLimit, ErrCardWrongPINLimit, ErrTerminalLimit,
// ErrAcquirerLimit, ErrLimiterUnavailable), Limit the limit that refused.
type LimitError struct {
	Limit string
	Err   error
}

func (e *LimitError) Error() string {
	if e.Err == nil {
		return "refused by limit " + e.Limit
	}
	return "refused by limit " + e.Limit + ": " + e.Err.Error()
}

func (e *LimitError) Unwrap() error { return e.Err }

// KeyChangeError is the security module's refusal of an acquirer's new zone
// PIN key (0800/161): Err is the import's error.
type KeyChangeError struct{ Err error }

func (e *KeyChangeError) Error() string { return "key change: " + e.Err.Error() }

func (e *KeyChangeError) Unwrap() error { return e.Err }

// AcquirerReversal is the cause recorded for an approval its acquirer
// reversed (0420): Code is the acquirer's DE 39, if it gave one.
type AcquirerReversal struct{ Code string }

func (e *AcquirerReversal) Error() string { return "reversed by the acquirer" }

// defaultReversalCode is the code recorded for an acquirer's reversal that
// gives no reason of its own: 68, response received too late, the usual
// reason a terminal reverses.
const defaultReversalCode = "68"

// Reasons that callers outside routing branch on.
const (
	// ReasonJournalUnavailable: the outcome could not be recorded (ErrNotRecorded).
	ReasonJournalUnavailable = "journal_unavailable"
	// ReasonAcquirerReversal is the reason of the event that records an
	// acquirer's reversal of an approved operation.
	ReasonAcquirerReversal = "acquirer_reversal"
	// ReasonOutcomeNotRecorded is the reason of the event that records the
	// reversal of an operation whose outcome the journal did not take in
	// time (or that was in flight when the process died): the issuer
	// acknowledged a reversal advice owed ahead of the request.
	ReasonOutcomeNotRecorded = "outcome_not_recorded"
)

// Response is what the gateway answers for the result of a request: the
// DE 39 response code of the acquirer channel (0110, 0810 and 0430) and the
// branch API's response_code, the outcome class and the stable reason of the
// outcome event, and the HTTP status of the branch API's answer.
type Response struct {
	Code    string // ISO 8583 DE 39
	Outcome string // one of the Outcome* classes
	Reason  string // stable machine-readable reason, e.g. "incorrect_pin"
	// HTTPStatus is the status of the branch API's answer: 200 for an
	// operation the flow ran to its outcome, whatever its code (the code is
	// in the body); 422 for the refusals the branch API finds before it
	// takes the operation (ErrFormatRefused, ErrUnknownKeyIndex: the
	// reason, with '-' for '_', is the problem type's slug).
	HTTPStatus int
}

// ResponseFor maps the result of a request to what the gateway answers. It
// is the one place where errors become response codes, for every message
// the gateway answers: PIN operations on both channels, network management
// (sign-on, key change), reversal advices, and the codes recorded in
// outcome events. A nil error is an approval (and a network message or
// reversal advice taken).
//
// An issuer complaining about our own message (its code 30) is not relayed:
// that is our malfunction, answered 96 (see IssuerCode).
func ResponseFor(err error) Response {
	code, outcome, reason := responseFor(err)
	r := Response{Code: code, Outcome: outcome, Reason: reason, HTTPStatus: http.StatusOK}
	if errors.Is(err, ErrFormatRefused) || errors.Is(err, ErrUnknownKeyIndex) {
		r.HTTPStatus = http.StatusUnprocessableEntity
	}
	return r
}

func responseFor(err error) (code, outcome, reason string) {
	if err == nil {
		return iso8583.RCApproved, OutcomeApproved, "approved"
	}
	// Declared after the approval's return: errors.As moves them to the
	// heap, and most calls are approvals.
	var (
		le *LimitError
		kc *KeyChangeError
		ar *AcquirerReversal
	)
	// Causes that wrap others come first: what they wrap does not decide.
	switch {
	case errors.Is(err, ErrNotRecorded):
		// The acquirer must not believe in an outcome the back office will
		// never see.
		return iso8583.RCIssuerUnavailable, OutcomeFailed, ReasonJournalUnavailable
	case errors.As(err, &le):
		switch {
		case errors.Is(le, ErrCardWrongPINLimit):
			return iso8583.RCPINTriesExceeded, OutcomeLimited, "card_wrong_pin_limit"
		case errors.Is(le, ErrCardDailyLimit):
			return iso8583.RCExceedsFrequency, OutcomeLimited, "card_daily_limit"
		case errors.Is(le, ErrTerminalLimit):
			return iso8583.RCExceedsLimit, OutcomeLimited, "terminal_rate_limit"
		case errors.Is(le, ErrAcquirerLimit):
			return iso8583.RCExceedsLimit, OutcomeLimited, "acquirer_rate_limit"
		}
		// ErrLimiterUnavailable, or a refusal that names no known limit:
		// fail closed.
		return iso8583.RCIssuerUnavailable, OutcomeLimited, "limiter_unavailable"
	case errors.Is(err, ErrLimiterUnavailable):
		return iso8583.RCIssuerUnavailable, OutcomeLimited, "limiter_unavailable"
	case errors.Is(err, ErrDuplicateInFlight):
		// Never sent again: the first request's instance answers for it.
		return iso8583.RCDuplicate, OutcomeRejected, "duplicate_in_flight"
	case errors.Is(err, ErrReversedBeforeReceived):
		// The acquirer gave up on it already: it must not stand at the issuer.
		return iso8583.RCDuplicate, OutcomeRejected, "reversed_before_received"
	case errors.As(err, &kc):
		switch {
		case errors.Is(kc.Err, pinblock.ErrKCVMismatch), errors.Is(kc.Err, pinblock.ErrInvalidKey),
			errors.Is(kc.Err, pinblock.ErrKeyAlgorithmMismatch), errors.Is(kc.Err, pinblock.ErrKeyBlock),
			errors.Is(kc.Err, pinblock.ErrKeyUsage), errors.Is(kc.Err, pinblock.ErrWeakKEK):
			// What the acquirer sent is not a key we may take.
			return iso8583.RCFormatError, OutcomeRejected, "key_rejected"
		}
		return iso8583.RCSystemMalfunction, OutcomeFailed, "key_change_failed"
	case errors.Is(err, ErrReversalFailed):
		return iso8583.RCSystemMalfunction, OutcomeFailed, "reversal_failed"
	case errors.As(err, &ar):
		code := ar.Code
		if !validCode(code) || code == iso8583.RCApproved {
			code = defaultReversalCode
		}
		return code, OutcomeReversed, ReasonAcquirerReversal
	case errors.Is(err, ErrReversedNotRecorded):
		// What the acquirer was answered, if it was answered at all.
		return iso8583.RCIssuerUnavailable, OutcomeReversed, ReasonOutcomeNotRecorded
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
		return iso8583.RCIssuerUnavailable, OutcomeFailed, ReasonJournalUnavailable
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

// validCode reports whether c has the shape of a response code in an event:
// two digits or upper-case letters.
func validCode(c string) bool {
	if len(c) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		if (c[i] < '0' || c[i] > '9') && (c[i] < 'A' || c[i] > 'Z') {
			return false
		}
	}
	return true
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
