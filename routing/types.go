package routing

import (
	"context"
	"time"
)

// Operation is the PIN operation a request asks for.
type Operation string

// Operations.
const (
	OpChange  Operation = "change"  // cardholder knows the current PIN and sets a new one
	OpReset   Operation = "reset"   // forgotten PIN replaced at a branch after an identity check
	OpUnblock Operation = "unblock" // wrong-PIN counter cleared at a branch
)

// Channel is where a request came from.
type Channel string

// Channels.
const (
	ChannelATM    Channel = "atm"
	ChannelBranch Channel = "branch"
	ChannelKiosk  Channel = "kiosk"
)

// Outcome classes, as events and metrics name them.
const (
	OutcomeApproved = "approved"
	OutcomeDeclined = "declined"
	OutcomeReversed = "reversed" // timed out at the issuer; a 0420 reversal advice was queued
	OutcomeLimited  = "limited"  // refused by a rate limit
	OutcomeRejected = "rejected" // refused by pingate before reaching an issuer (format, key, route)
	OutcomeFailed   = "failed"   // pingate or issuer malfunction
)

// Request is one PIN operation as routing sees it, whatever the channel. PAN and
// the PIN blocks are secret: never log, print or put them in an event; use
// MaskedPAN.
type Request struct {
	ID        string    // operation id, unique per request (UUID); the event id derives from it
	Operation Operation // change, reset or unblock
	Channel   Channel
	Acquirer  string // configured acquirer (institution) id, DE 32
	Terminal  string // DE 41
	Merchant  string // card acceptor id, DE 42
	STAN      string // DE 11
	Transmit  string // DE 7, MMDDhhmmss
	RRN       string // DE 37
	PAN       string
	CardToken string // keyed HMAC of the PAN: the only card identity limits and events may use
	// PIN blocks as enciphered by the acquirer under its zone key. OldBlock is
	// the current PIN (change only), NewBlock the new PIN (change and reset).
	OldBlock, NewBlock []byte
	Format             int    // ISO 9564-1 format of both blocks (DE 53 positions 1–2)
	KeyIndex           int    // acquirer key index (DE 53 positions 3–4)
	AcquirerKey        string // key label in the security module, resolved from the acquirer and KeyIndex
	Teller             string // branch teller id (reset, unblock)
	Supervisor         string // approving supervisor under dual control, if any
	IdentityRef        string // reference to the branch's identity check, never an ID number
	// Generate, on a reset only, asks for a system-generated PIN instead of a
	// NewBlock from a PIN pad: the security module draws the PIN under the
	// issuer's key and, once the issuer has approved, prints its mailer.
	Generate *GenerateSpec
	Received time.Time

	// approved is what the flow sent the issuer, once the issuer approved
	// it: what a reversal must undo.
	approved *IssuerRequest
	// unanswered is what the flow sent the issuer when no readable answer
	// came (a timeout, an unreadable answer): its reversal advice is held
	// until the flow has recorded the outcome (RecordedReleaser).
	unanswered *IssuerRequest
	// claimed is set once a SharedWindow holds the request for this
	// instance: its outcome is owed to the window (SharedWindow.Finish).
	claimed bool
	// reversedFirst is set when its acquirer's 0420 came before it
	// (dedupe.forbid): it is refused and never sent to the issuer.
	reversedFirst bool
}

// GenerateSpec asks for a system-generated PIN and its PIN mailer.
type GenerateSpec struct {
	// Length of the PIN in digits; 0 means the security module's default.
	Length int
	// MailerAddress are the lines printed on the mailer above the PIN: the
	// branch where the cardholder collects it.
	MailerAddress []string
}

// Outcome is the final answer to a request.
type Outcome struct {
	Code     string // ISO 8583 DE 39 response code
	Outcome  string // one of the Outcome* classes
	Reason   string // stable machine-readable reason, e.g. "incorrect_pin"
	Issuer   string // issuer id the request was routed to, if any
	EventID  string // id of the outcome event
	Duration time.Duration

	// undo is kept with an outcome the issuer approved and the journal
	// recorded, for the duplicate window: what an acquirer's reversal
	// advice needs to undo it (Flow.Reverse).
	undo *Approval
}

// Limiter decides whether a request may proceed. Implementations must make
// one decision per request, shared by every gateway instance (or, for an
// in-process limiter, by every request of this one). An error means the
// limiter could not decide: the flow refuses the request as
// ErrLimiterUnavailable (fail closed).
type Limiter interface {
	Allow(ctx context.Context, req *Request) (Decision, error)
	// Record reports a result that feeds a limit, e.g. a wrong PIN (code 55).
	Record(ctx context.Context, req *Request, code string) error
}

// Decision is a limiter's answer. A refusal says why in Refusal, one of
// ErrCardDailyLimit, ErrCardWrongPINLimit, ErrTerminalLimit,
// ErrAcquirerLimit or ErrLimiterUnavailable (or an error wrapping one):
// ResponseFor chooses the response code and reason from it, so a limiter
// never picks a code.
type Decision struct {
	Allowed bool
	Refusal error  // why a refused request was refused
	Limit   string // which limit refused, e.g. "card_daily"
}

// OutcomeSink receives one event per final outcome. Publish must make the event
// durable (journal append) before it returns nil: the acquirer is answered
// only after that. An error means the outcome could not be recorded, and the
// request is answered 91 instead of risking a lost record.
type OutcomeSink interface {
	Publish(ctx context.Context, ev Event) error
}

// Event is the outcome of one request, free of secrets: it carries only the
// masked PAN and a keyed card token, never a PIN, a PIN block or a full PAN.
type Event struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"` // e.g. "pingate.pin.changed.v1"
	Time        time.Time `json:"time"`
	Operation   Operation `json:"operation"`
	Outcome     string    `json:"outcome"`
	Code        string    `json:"response_code"`
	Reason      string    `json:"reason,omitempty"`
	Channel     Channel   `json:"channel"`
	Acquirer    string    `json:"acquirer"`
	Terminal    string    `json:"terminal"`
	Issuer      string    `json:"issuer,omitempty"`
	MaskedPAN   string    `json:"masked_pan"`
	CardToken   string    `json:"card_token"`
	Teller      string    `json:"teller,omitempty"`
	Supervisor  string    `json:"supervisor,omitempty"`
	Received    time.Time `json:"received"`
	Completed   time.Time `json:"completed"`
	TraceID     string    `json:"trace_id,omitempty"`
	TraceParent string    `json:"-"` // W3C traceparent, carried as a Kafka header
	// Reverses is, on the event of an acquirer's reversal (outcome
	// reversed, reason acquirer_reversal), the id of the approved outcome's
	// event it undoes; carried as the ce_reverses extension header.
	Reverses string `json:"-"`
}

// EventType is the versioned CloudEvents type of an outcome: approved
// operations are "pingate.pin.changed.v1", "pingate.pin.reset.v1" and
// "pingate.pin.unblocked.v1"; every other outcome is
// "pingate.pin.<operation>.<outcome>.v1", e.g. "pingate.pin.change.declined.v1"
// or "pingate.pin.reset.limited.v1".
func EventType(op Operation, outcome string) string {
	if outcome == OutcomeApproved {
		switch op {
		case OpChange:
			return "pingate.pin.changed.v1"
		case OpReset:
			return "pingate.pin.reset.v1"
		case OpUnblock:
			return "pingate.pin.unblocked.v1"
		}
	}
	return "pingate.pin." + string(op) + "." + outcome + ".v1"
}
