package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// Sealer enciphers and authenticates the approval a shared duplicate
// window keeps (it carries the PAN) under a data key every gateway
// instance's security module derives alike (pinblock.DataSealer), so that
// any instance opens what another sealed; aad is bound to the value but not
// enciphered.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// WindowReversals is implemented by a SharedWindow whose records any
// instance can read back and claim the reversal of (redislimit.Limiter): it
// is what lets an acquirer's 0420 that reaches any instance undo an approval
// another gave (Flow.Reverse). Errors mean the window could not be read.
type WindowReversals interface {
	// Lookup returns id's record without waiting; found is false when the
	// window holds none.
	Lookup(ctx context.Context, id WindowID) (rec WindowRecord, found bool, err error)
	// ClaimReversal marks id's finished record reversed: true for exactly
	// one caller across every instance.
	ClaimReversal(ctx context.Context, id WindowID) (bool, error)
	// ReleaseReversal undoes ClaimReversal after a reversal that failed.
	ReleaseReversal(ctx context.Context, id WindowID) error
}

// ErrOriginalInFlight: an acquirer's 0420 names a request still in flight
// on another instance. The advice is answered 96, so that the acquirer sends
// it again once the original has its outcome.
var ErrOriginalInFlight = errors.New("routing: the reversed request is still in flight on another instance")

// approvalAAD binds a sealed approval to the window record it is stored in.
func approvalAAD(id WindowID) []byte {
	return []byte("pingate approval|" + id.CardToken + "|" + id.Acquirer + "|" + id.Terminal + "|" + id.STAN + "|" + id.Transmit)
}

// sealApproval is what WindowEntry.Reversal carries for a: its JSON sealed
// by s. The clear JSON is cleared after use (best-effort: the PAN also
// lives in a's strings).
func sealApproval(s Sealer, id WindowID, a *Approval) ([]byte, error) {
	plain, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	return s.Seal(plain, approvalAAD(id))
}

// openApproval reverses sealApproval.
func openApproval(s Sealer, id WindowID, sealed []byte) (*Approval, error) {
	plain, err := s.Open(sealed, approvalAAD(id))
	if err != nil {
		return nil, fmt.Errorf("open the shared approval (do all instances have the same reversals.data_key?): %w", err)
	}
	defer clear(plain)
	var a Approval
	if err := json.Unmarshal(plain, &a); err != nil {
		return nil, errors.New("the shared approval does not decode")
	}
	return &a, nil
}

// approvalOf keeps what undoes the approval sent recorded by ev.
func approvalOf(sent *Reversal, ev Event) *Approval {
	return &Approval{
		Sent: *sent, EventID: ev.ID, Operation: ev.Operation, Channel: ev.Channel,
		Acquirer: ev.Acquirer, Terminal: ev.Terminal, Issuer: ev.Issuer, MaskedPAN: ev.MaskedPAN,
		CardToken: ev.CardToken, Teller: ev.Teller, Supervisor: ev.Supervisor,
	}
}
