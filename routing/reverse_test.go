package routing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"pingate/iso8583"
)

// reversingIssuer approves every request, marks it sent, and records the
// reversals it is owed.
type reversingIssuer struct {
	mu       sync.Mutex
	code     string
	reversed []Reversal
	fail     error
}

func (r *reversingIssuer) Send(_ context.Context, issuer string, req *IssuerRequest) (string, error) {
	req.sent = &Reversal{Issuer: issuer, PAN: req.PAN, STAN: "000777", Transmit: "1125120000", Terminal: req.Terminal}
	return r.code, nil
}

func (r *reversingIssuer) Reverse(_ context.Context, req *IssuerRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.reversed = append(r.reversed, *req.sent)
	return nil
}

func TestFlowReverseUndoesAnApprovalOnce(t *testing.T) {
	issuer := &reversingIssuer{code: iso8583.RCApproved}
	sink := &memSink{}
	f := testFlow(t, issuer, sink, nil)
	req := changeRequest(t, "000301")
	out := f.Handle(context.Background(), req)
	if out.Code != iso8583.RCApproved {
		t.Fatalf("Handle() = %s, want 00", out.Code)
	}
	adv := ReversalAdvice{Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: req.STAN, Transmit: req.Transmit, Reason: "68", PAN: req.PAN}

	other := adv
	other.PAN = "6228481200000025" // the same STAN and DE 7 from another card
	if err := f.Reverse(context.Background(), other); err != nil || len(issuer.reversed) != 0 {
		t.Fatalf("Reverse() naming another card = %v with %d reversals owed, want nil and none (original unknown)", err, len(issuer.reversed))
	}

	issuer.fail = errors.New("reversal store down")
	if err := f.Reverse(context.Background(), adv); !errors.Is(err, ErrReversalFailed) || ResponseFor(err).Code != iso8583.RCSystemMalfunction {
		t.Fatalf("Reverse() with the reversal store down = %v, want ErrReversalFailed, answered 96 (the acquirer sends it again)", err)
	}
	issuer.fail = nil
	if err := f.Reverse(context.Background(), adv); err != nil {
		t.Fatalf("Reverse() = %v, want nil (answered 00)", err)
	}
	if err := f.Reverse(context.Background(), adv); err != nil {
		t.Fatalf("Reverse() again = %v, want nil (answered 00)", err)
	}
	if len(issuer.reversed) != 1 || issuer.reversed[0].STAN != "000777" {
		t.Fatalf("issuer owed %d reversals (%+v), want 1 for the message it approved", len(issuer.reversed), issuer.reversed)
	}
	if len(sink.events) != 2 {
		t.Fatalf("%d events, want the approval and its reversal", len(sink.events))
	}
	approved, rev := sink.events[0], sink.events[1]
	if rev.Outcome != OutcomeReversed || rev.Reason != ReasonAcquirerReversal || rev.Code != "68" ||
		rev.Reverses != approved.ID || rev.ID == approved.ID || rev.Type != "pingate.pin.change.reversed.v1" ||
		rev.CardToken != approved.CardToken || rev.MaskedPAN != approved.MaskedPAN {
		t.Errorf("reversal event = %+v\nfor approved event %+v", rev, approved)
	}
}

func TestFlowReverseWithNothingToUndo(t *testing.T) {
	issuer := &reversingIssuer{code: iso8583.RCIncorrectPIN}
	sink := &memSink{}
	f := testFlow(t, issuer, sink, nil)
	req := changeRequest(t, "000302")
	if out := f.Handle(context.Background(), req); out.Code != iso8583.RCIncorrectPIN {
		t.Fatalf("Handle() = %s, want 55", out.Code)
	}
	tests := []struct {
		name string
		give ReversalAdvice
	}{
		{"declined original", ReversalAdvice{Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: req.STAN, Transmit: req.Transmit, PAN: req.PAN}},
		{"unknown original", ReversalAdvice{Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: "999999", Transmit: req.Transmit, PAN: req.PAN}},
		{"another terminal's", ReversalAdvice{Acquirer: req.Acquirer, Terminal: "ATM00099", STAN: req.STAN, Transmit: req.Transmit, PAN: req.PAN}},
	}
	for _, tt := range tests {
		if err := f.Reverse(context.Background(), tt.give); err != nil {
			t.Errorf("Reverse(%s) = %v, want nil (acknowledged with 00)", tt.name, err)
		}
	}
	if len(issuer.reversed) != 0 || len(sink.events) != 1 {
		t.Errorf("%d reversals owed and %d events, want none beyond the decline's event", len(issuer.reversed), len(sink.events))
	}
}

// TestFlowReverseReasonCode: the reversal event carries the acquirer's own
// reason code, or 68 when it gave none, gave 00, or gave something that is
// not a response code.
func TestFlowReverseReasonCode(t *testing.T) {
	tests := []struct{ give, want string }{
		{"17", "17"}, {"22", "22"}, {"", "68"}, {"00", "68"}, {"x!", "68"}, {"123", "68"},
	}
	issuer := &reversingIssuer{code: iso8583.RCApproved}
	sink := &memSink{}
	f := testFlow(t, issuer, sink, nil)
	for i, tt := range tests {
		req := changeRequest(t, fmt.Sprintf("0004%02d", i))
		if out := f.Handle(context.Background(), req); out.Code != iso8583.RCApproved {
			t.Fatalf("Handle() = %s, want 00", out.Code)
		}
		adv := ReversalAdvice{Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: req.STAN, Transmit: req.Transmit, Reason: tt.give, PAN: req.PAN}
		if err := f.Reverse(context.Background(), adv); err != nil {
			t.Fatalf("Reverse(reason %q) = %v, want nil", tt.give, err)
		}
		if got := sink.events[len(sink.events)-1]; got.Reason != ReasonAcquirerReversal || got.Code != tt.want {
			t.Errorf("reversal with reason %q recorded code %s (%s), want %s", tt.give, got.Code, got.Reason, tt.want)
		}
	}
}
