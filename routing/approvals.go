package routing

import (
	"context"
	"time"
)

// Approval is what reverses an approval an issuer gave: the message the
// issuer approved (Sent, with the PAN, which DE 2 of the reversal advice
// needs) and, from the event that recorded the approval, what the event of
// its reversal repeats. It is kept for every approved request for the
// duplicate window, so it holds only that (about 0.5 KB). It is secret as a
// whole because of the PAN: an Approvals that keeps it outside the process
// must encipher it (PCI DSS 3.5).
type Approval struct {
	Sent       Reversal  `json:"sent"`
	EventID    string    `json:"event_id"`
	Operation  Operation `json:"operation"`
	Channel    Channel   `json:"channel"`
	Acquirer   string    `json:"acquirer"`
	Terminal   string    `json:"terminal"`
	Issuer     string    `json:"issuer"`
	MaskedPAN  string    `json:"masked_pan"`
	CardToken  string    `json:"card_token"`
	Teller     string    `json:"teller,omitempty"`
	Supervisor string    `json:"supervisor,omitempty"`
}

// Approvals shares the approvals of every gateway instance for the duplicate
// window, so that an acquirer's reversal advice (0420) that reaches any
// instance undoes an approval another one gave (Flow.Reverse). Keys are the
// request's identifying fields (acquirer, terminal, STAN, DE 7), never a
// PAN. Every method's error means the shared store could not be reached or
// read; the flow then answers the 0420 96 so the acquirer sends it again.
type Approvals interface {
	// Keep stores a under key for ttl.
	Keep(ctx context.Context, key string, a Approval, ttl time.Duration) error
	// Recall returns the approval kept under key; found is false when there
	// is none (the request was not approved, or is older than ttl).
	Recall(ctx context.Context, key string) (a Approval, found bool, err error)
	// Claim marks key's approval as reversed, once across every instance,
	// for ttl: false when it already was.
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Release undoes Claim after a reversal that failed, so that the
	// acquirer's next advice tries again.
	Release(ctx context.Context, key string) error
}

// approvalOf keeps what undoes the approval sent recorded by ev.
func approvalOf(sent *Reversal, ev Event) *Approval {
	return &Approval{
		Sent: *sent, EventID: ev.ID, Operation: ev.Operation, Channel: ev.Channel,
		Acquirer: ev.Acquirer, Terminal: ev.Terminal, Issuer: ev.Issuer, MaskedPAN: ev.MaskedPAN,
		CardToken: ev.CardToken, Teller: ev.Teller, Supervisor: ev.Supervisor,
	}
}
