package routing

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
	// Forbid marks id, which the window does not hold, reversed by its
	// acquirer before its request came, for window: the request's Claim,
	// on any instance, is then First with a Decision refused by
	// ErrReversedBeforeReceived. It reports false, doing nothing, when the
	// window holds id.
	Forbid(ctx context.Context, id WindowID, window time.Duration) (bool, error)
}

// ErrOriginalInFlight: an acquirer's 0420 names a request still in flight
// on another instance. The advice is answered 96, so that the acquirer sends
// it again once the original has its outcome.
var ErrOriginalInFlight = errors.New("routing: the reversed request is still in flight on another instance")

// approvalAAD binds a sealed approval to the window record it is stored in.
func approvalAAD(id WindowID) []byte {
	return []byte("pingate approval|" + id.CardToken + "|" + id.Acquirer + "|" + id.Terminal + "|" + id.STAN + "|" + id.Transmit)
}

// sealApproval is what WindowEntry.Reversal carries for a: its binary form
// (appendApproval) sealed by s. The clear form is cleared after use
// (best-effort: the PAN also lives in a's strings).
func sealApproval(s Sealer, id WindowID, a *Approval) ([]byte, error) {
	plain := appendApproval(make([]byte, 0, 512), a)
	defer clear(plain)
	return s.Seal(plain, approvalAAD(id))
}

// openApproval reverses sealApproval. It also opens the JSON form that
// instances before the binary one sealed, so that instances of both
// versions share one window during a rolling upgrade.
func openApproval(s Sealer, id WindowID, sealed []byte) (*Approval, error) {
	plain, err := s.Open(sealed, approvalAAD(id))
	if err != nil {
		return nil, fmt.Errorf("open the shared approval (do all instances have the same reversals.data_key?): %w", err)
	}
	defer clear(plain)
	var a Approval
	if len(plain) > 0 && plain[0] == '{' {
		err = json.Unmarshal(plain, &a)
	} else {
		err = parseApproval(plain, &a)
	}
	if err != nil {
		return nil, errors.New("the shared approval does not decode")
	}
	return &a, nil
}

// approvalV1 is the first byte of an approval's binary form. After it, in
// this order: every string field of Sent and of the Approval as a uvarint
// length and its bytes, Sent.Created as time.Time's binary form behind its
// length, Sent.Attempts as a uvarint, Sent.Record as one byte (0 or 1).
// Encoding it by hand instead of with encoding/json took ~3 % of the
// gateway's CPU off the request path (docs/optimisation-log.md).
const approvalV1 = 0x01

// approvalStrings are the string fields of a, in the order of the form (an
// array, so that no slice is allocated per seal or open).
func approvalStrings(a *Approval) [24]*string {
	r := &a.Sent
	return [...]*string{&r.ID, &r.Issuer, (*string)(&r.Operation), &r.PAN, &r.STAN, &r.Transmit, &r.Terminal,
		&r.Merchant, &r.RRN, &r.EventID, (*string)(&r.Channel), &r.Acquirer, &r.Teller, &r.Supervisor,
		&a.EventID, (*string)(&a.Operation), (*string)(&a.Channel), &a.Acquirer, &a.Terminal, &a.Issuer,
		&a.MaskedPAN, &a.CardToken, &a.Teller, &a.Supervisor}
}

// appendApproval appends a's binary form to dst.
func appendApproval(dst []byte, a *Approval) []byte {
	dst = append(dst, approvalV1)
	for _, f := range approvalStrings(a) {
		dst = binary.AppendUvarint(dst, uint64(len(*f)))
		dst = append(dst, *f...)
	}
	at := len(dst)
	dst = append(dst, 0)                      // the time's length, set below
	dst, _ = a.Sent.Created.AppendBinary(dst) // fails only for a zone offset outside ±32767 min
	dst[at] = byte(len(dst) - at - 1)
	dst = binary.AppendUvarint(dst, uint64(max(a.Sent.Attempts, 0)))
	if a.Sent.Record {
		return append(dst, 1)
	}
	return append(dst, 0)
}

var errApprovalForm = errors.New("routing: truncated or unknown approval form")

// parseApproval reads appendApproval's form into a.
func parseApproval(b []byte, a *Approval) error {
	if len(b) == 0 || b[0] != approvalV1 {
		return errApprovalForm
	}
	b = b[1:]
	for _, f := range approvalStrings(a) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return errApprovalForm
		}
		*f, b = string(b[k:k+int(n)]), b[k+int(n):]
	}
	if len(b) == 0 || int(b[0]) > len(b)-1 {
		return errApprovalForm
	}
	if err := a.Sent.Created.UnmarshalBinary(b[1 : 1+int(b[0])]); err != nil {
		return errApprovalForm
	}
	b = b[1+int(b[0]):]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > math.MaxInt32 || len(b) != k+1 || b[k] > 1 {
		return errApprovalForm
	}
	a.Sent.Attempts, a.Sent.Record = int(n), b[k] == 1
	return nil
}

// approvalOf keeps what undoes the approval sent recorded by ev.
func approvalOf(sent *Reversal, ev Event) *Approval {
	return &Approval{
		Sent: *sent, EventID: ev.ID, Operation: ev.Operation, Channel: ev.Channel,
		Acquirer: ev.Acquirer, Terminal: ev.Terminal, Issuer: ev.Issuer, MaskedPAN: ev.MaskedPAN,
		CardToken: ev.CardToken, Teller: ev.Teller, Supervisor: ev.Supervisor,
	}
}

// AppendBinary appends r's binary form to b: the form of an Approval (see
// approvalV1) with only Sent set, which is r. ReversalStores keep advices in
// it (integration/reversalstore): encoding/json took ~3 % of the gateway's
// CPU there (docs/optimisation-log.md, change 25). It never fails; the error
// is encoding.BinaryAppender's.
func (r *Reversal) AppendBinary(b []byte) ([]byte, error) {
	return appendApproval(b, &Approval{Sent: *r}), nil
}

// UnmarshalBinary reads AppendBinary's form into r. A form that does not
// parse, or that carries an Approval's own fields, is an error.
func (r *Reversal) UnmarshalBinary(b []byte) error {
	var a Approval
	if err := parseApproval(b, &a); err != nil {
		return err
	}
	if (Approval{Sent: a.Sent}) != a {
		return errApprovalForm
	}
	*r = a.Sent
	return nil
}
