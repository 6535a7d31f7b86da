package routing

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"pingate/iso8583"
)

// memApprovals is an in-memory Approvals shared by the flows of a unit test
// (the Redis one is tested in integration/redislimit).
type memApprovals struct {
	mu      sync.Mutex
	kept    map[string]Approval
	claimed map[string]bool
	fail    error
}

func newMemApprovals() *memApprovals {
	return &memApprovals{kept: map[string]Approval{}, claimed: map[string]bool{}}
}

func (m *memApprovals) Keep(_ context.Context, key string, a Approval, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.kept[key] = a
	return nil
}

func (m *memApprovals) Recall(_ context.Context, key string) (Approval, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return Approval{}, false, m.fail
	}
	a, ok := m.kept[key]
	return a, ok, nil
}

func (m *memApprovals) Claim(_ context.Context, key string, _ time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail
	}
	if m.claimed[key] {
		return false, nil
	}
	m.claimed[key] = true
	return true, nil
}

func (m *memApprovals) Release(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.claimed, key)
	return nil
}

func sharedFlow(t *testing.T, issuer IssuerSender, sink *memSink, shared Approvals) *Flow {
	t.Helper()
	return testFlowWith(t, issuer, sink, func(d *Deps) { d.Approvals = shared })
}

// TestFlowReverseOnAnotherInstance: flow A approves; the acquirer's 0420
// reaches flow B, which shares A's approvals: B owes the issuer the reversal
// of the message A sent and records it, naming A's approved event. The same
// advice to A, or again to B, changes nothing more.
func TestFlowReverseOnAnotherInstance(t *testing.T) {
	shared := newMemApprovals()
	issuerA, issuerB := &reversingIssuer{code: iso8583.RCApproved}, &reversingIssuer{code: iso8583.RCApproved}
	sinkA, sinkB := &memSink{}, &memSink{}
	a, b := sharedFlow(t, issuerA, sinkA, shared), sharedFlow(t, issuerB, sinkB, shared)
	req := changeRequest(t, "000501")
	if out := a.Handle(context.Background(), req); out.Code != iso8583.RCApproved {
		t.Fatalf("A.Handle() = %s, want 00", out.Code)
	}
	adv := ReversalAdvice{Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: req.STAN, Transmit: req.Transmit, Reason: "68"}

	shared.fail = errors.New("redis down")
	if err := b.Reverse(context.Background(), adv); !errors.Is(err, ErrReversalFailed) {
		t.Fatalf("B.Reverse() with the shared approvals down = %v, want ErrReversalFailed (answered 96)", err)
	}
	shared.fail = nil
	if err := b.Reverse(context.Background(), adv); err != nil {
		t.Fatalf("B.Reverse() = %v, want nil", err)
	}
	if err := a.Reverse(context.Background(), adv); err != nil {
		t.Fatalf("A.Reverse() after B's = %v, want nil", err)
	}
	if err := b.Reverse(context.Background(), adv); err != nil {
		t.Fatalf("B.Reverse() again = %v, want nil", err)
	}
	if len(issuerB.reversed) != 1 || issuerB.reversed[0].STAN != "000777" || issuerB.reversed[0].PAN != req.PAN {
		t.Fatalf("B owed the issuer %d reversals, want 1 for the message A sent", len(issuerB.reversed))
	}
	if len(issuerA.reversed) != 0 {
		t.Errorf("A owed the issuer %d reversals, want 0: B took the advice", len(issuerA.reversed))
	}
	if len(sinkA.events) != 1 || len(sinkB.events) != 1 {
		t.Fatalf("events: A %d, B %d; want A's approval and B's reversal", len(sinkA.events), len(sinkB.events))
	}
	approved, rev := sinkA.events[0], sinkB.events[0]
	if rev.Outcome != OutcomeReversed || rev.Reason != ReasonAcquirerReversal || rev.Reverses != approved.ID ||
		rev.CardToken != approved.CardToken || rev.MaskedPAN != approved.MaskedPAN || rev.Issuer != approved.Issuer {
		t.Errorf("B's reversal event = %+v\nfor A's approved event %+v", rev, approved)
	}
}

// TestFlowReverseUnknownEverywhere: a 0420 for a request no instance
// approved is acknowledged and nothing is owed; a declined original is not
// shared at all.
func TestFlowReverseUnknownEverywhere(t *testing.T) {
	shared := newMemApprovals()
	issuer := &reversingIssuer{code: iso8583.RCIncorrectPIN}
	a, b := sharedFlow(t, issuer, &memSink{}, shared), sharedFlow(t, issuer, &memSink{}, shared)
	req := changeRequest(t, "000502")
	if out := a.Handle(context.Background(), req); out.Code != iso8583.RCIncorrectPIN {
		t.Fatalf("A.Handle() = %s, want 55", out.Code)
	}
	if len(shared.kept) != 0 {
		t.Errorf("%d approvals shared after a decline, want 0", len(shared.kept))
	}
	for _, adv := range []ReversalAdvice{
		{Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: req.STAN, Transmit: req.Transmit},
		{Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: "999999", Transmit: req.Transmit},
	} {
		if err := b.Reverse(context.Background(), adv); err != nil {
			t.Errorf("B.Reverse(%s) = %v, want nil", adv.STAN, err)
		}
	}
	if len(issuer.reversed) != 0 {
		t.Errorf("%d reversals owed, want 0", len(issuer.reversed))
	}
}
