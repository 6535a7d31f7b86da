package routing

import (
	"context"
	"errors"
	"time"
)

// ErrDuplicateInFlight: a duplicate arrived while the first request was in
// flight on another gateway instance, and the first did not finish within the
// duplicate's own deadline (or its instance's deadline passed without an
// outcome: it stopped, or lost its store). The duplicate is answered 94
// duplicate_in_flight and never sent to the issuer.
var ErrDuplicateInFlight = errors.New("duplicate of a request in flight on another instance")

// WindowID identifies a request in a shared duplicate window: the card's
// keyed token (never the PAN) and the fields an acquirer repeats in a
// retransmission and names in a reversal advice's DE 90.
type WindowID struct {
	CardToken, Acquirer, Terminal, STAN, Transmit string
}

// WindowIDOf is req's WindowID. Its CardToken is set by the flow before the
// limits are asked.
func WindowIDOf(req *Request) WindowID {
	return WindowID{CardToken: req.CardToken, Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: req.STAN, Transmit: req.Transmit}
}

// SharedWindow is a Limiter that also keeps the duplicate window for every
// gateway instance (redislimit.Limiter on Redis). The flow uses it for every
// request that carries a STAN and a transmission time, instead of Allow and
// Record; its own in-memory window stays in front of it as a per-instance
// cache.
type SharedWindow interface {
	Limiter
	// Claim looks req up in the window and, in the same step, decides its
	// limits. When req is new, the window holds it as in flight for this
	// instance, First is true and Decision is the limits' (a refusal is
	// claimed too); the caller must then Finish it, whatever its outcome.
	// When another request with the same WindowID came first, First is false
	// and Previous is its outcome; the limits are not charged. While that
	// request is still in flight, Claim waits for its outcome, up to ctx's
	// deadline, and returns an error wrapping ErrDuplicateInFlight when it
	// does not come. Any other error means the window could not be read: the
	// request is refused as ErrLimiterUnavailable (fail closed).
	Claim(ctx context.Context, req *Request, window time.Duration) (Claim, error)
	// Finish stores entry as the outcome of the claimed req for window, and
	// feeds entry.LimitCode to the limits as Record does.
	Finish(ctx context.Context, req *Request, entry WindowEntry, window time.Duration) error
}

// Claim is a SharedWindow's answer to a request.
type Claim struct {
	First    bool     // req is new: run it, then Finish it
	Decision Decision // the limits' decision, when First
	Previous Outcome  // the first request's outcome, when not First
}

// WindowEntry is what Finish stores: the outcome the acquirer was answered
// with; LimitCode, the result that feeds the limits (the issuer's code, even
// when the journal failure replaced the answer; empty when none, e.g. for a
// refusal by a limit); and Reversal, opaque bytes an instance taking the
// acquirer's reversal advice needs (never a clear PAN or PIN block), nil
// when none.
type WindowEntry struct {
	Outcome   Outcome
	LimitCode string
	Reversal  []byte
}

// WindowRecord is a request's entry in a shared window, as read back.
type WindowRecord struct {
	Done     bool    // an outcome is stored; false while the first request is in flight
	Outcome  Outcome // when Done; its undo is never shared
	Reversal []byte  // WindowEntry.Reversal
	Reversed bool    // a reversal of it was claimed
}

// duplicateError carries the first request's outcome out of process when the
// shared window finds a request to be a duplicate.
type duplicateError struct{ first Outcome }

func (e *duplicateError) Error() string { return "duplicate of a request another instance answered" }
