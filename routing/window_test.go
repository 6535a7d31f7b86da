package routing

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pingate/iso8583"
)

// fakeWindow is a SharedWindow in memory, shared by the flows of a test as
// Redis is by gateway instances: unit tests only (redislimit's tests and the
// gateway's run the real one on redis-server).
type fakeWindow struct {
	mu       sync.Mutex
	entries  map[WindowID]*WindowEntry // nil entry: in flight
	inFlight bool                      // Claim of an in-flight record answers ErrDuplicateInFlight
	fed      []string                  // LimitCodes Finish fed to the limits
	allowed  int
}

func newFakeWindow() *fakeWindow { return &fakeWindow{entries: map[WindowID]*WindowEntry{}} }

func (w *fakeWindow) Allow(context.Context, *Request) (Decision, error) {
	return Decision{}, fmt.Errorf("Allow called for a request with a STAN")
}
func (w *fakeWindow) Record(context.Context, *Request, string) error {
	return fmt.Errorf("Record called for a request with a STAN")
}

func (w *fakeWindow) Claim(_ context.Context, req *Request, window time.Duration) (Claim, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if window != DefaultDuplicateWindow {
		return Claim{}, fmt.Errorf("window %v, want routing.duplicate_window", window)
	}
	id := WindowIDOf(req)
	if id.CardToken == "" {
		return Claim{}, fmt.Errorf("claimed before the card token was set")
	}
	e, ok := w.entries[id]
	switch {
	case !ok:
		w.entries[id] = nil
		w.allowed++
		return Claim{First: true, Decision: Decision{Allowed: true}}, nil
	case e == nil:
		return Claim{}, fmt.Errorf("still at the issuer: %w", ErrDuplicateInFlight)
	}
	return Claim{Previous: e.Outcome}, nil
}

func (w *fakeWindow) Finish(_ context.Context, req *Request, e WindowEntry, _ time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.entries[WindowIDOf(req)] = &e
	w.fed = append(w.fed, e.LimitCode)
	return nil
}

// TestFlowSharedWindowAcrossInstances: two flows (two instances) on one
// shared window. A retransmission to the other instance gets the first's
// answer without reaching the issuer or emitting an event; one that arrives
// while the first is in flight and does not finish is answered 94
// duplicate_in_flight, recorded as an event, not sent.
func TestFlowSharedWindowAcrossInstances(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	issuer := issuerFunc(func(_ context.Context, _ string, req *IssuerRequest) (string, error) {
		calls.Add(1)
		if req.Terminal == "ATM00001" && req.RRN == "slow" {
			<-release
		}
		return iso8583.RCIncorrectPIN, nil
	})
	w := newFakeWindow()
	sinkA, sinkB := &memSink{}, &memSink{}
	a, b := testFlow(t, issuer, sinkA, w), testFlow(t, issuer, sinkB, w)

	first := a.Handle(context.Background(), changeRequest(t, "000101"))
	again := b.Handle(context.Background(), changeRequest(t, "000101"))
	if first.Code != "55" || again.Code != first.Code || again.EventID != first.EventID || again.Reason != first.Reason {
		t.Errorf("retransmission to the other instance = %+v, want the first's %+v", again, first)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the issuer got %d requests, want 1", n)
	}
	if len(sinkA.events) != 1 || len(sinkB.events) != 0 {
		t.Errorf("events: %d on the first instance, %d on the other; want 1 and 0", len(sinkA.events), len(sinkB.events))
	}
	if len(w.fed) != 1 || w.fed[0] != "55" {
		t.Errorf("Finish fed the limits %q, want one 55", w.fed)
	}

	slow := changeRequest(t, "000102")
	slow.RRN = "slow"
	done := make(chan Outcome)
	go func() { done <- a.Handle(context.Background(), slow) }()
	for {
		w.mu.Lock()
		_, claimed := w.entries[WindowIDOf(&Request{CardToken: a.deps.Tokenizer.Token(testPAN), Acquirer: "100001", Terminal: "ATM00001", STAN: "000102", Transmit: "1125120000"})]
		w.mu.Unlock()
		if claimed {
			break
		}
		time.Sleep(time.Millisecond)
	}
	dup := changeRequest(t, "000102")
	dup.RRN = "slow"
	got := b.Handle(context.Background(), dup)
	close(release)
	<-done
	if got.Code != iso8583.RCDuplicate || got.Reason != "duplicate_in_flight" || got.Outcome != OutcomeRejected {
		t.Errorf("duplicate while the first is in flight = %+v, want 94 rejected duplicate_in_flight", got)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the issuer got %d requests, want 2 (one per distinct request)", n)
	}
	if len(sinkB.events) != 1 || sinkB.events[0].Reason != "duplicate_in_flight" {
		t.Errorf("the other instance's events = %+v, want one duplicate_in_flight", sinkB.events)
	}
}
