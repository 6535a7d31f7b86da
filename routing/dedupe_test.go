package routing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pingate/iso8583"
)

// fakeClock is the flow's clock in tests that cross the duplicate window.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestFlowDuplicateWindowExpires: a duplicate within the window is answered
// with the first outcome without the issuer; the same request after the
// window is a new request and goes to the issuer.
func TestFlowDuplicateWindowExpires(t *testing.T) {
	var calls atomic.Int32
	codes := []string{iso8583.RCApproved, iso8583.RCIncorrectPIN}
	issuer := issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) {
		n := calls.Add(1)
		return codes[(n-1)%2], nil
	})
	f := testFlow(t, issuer, &memSink{}, nil)
	clock := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	f.deps.Now = clock.now
	window := f.Config().DuplicateWindow

	tests := []struct {
		name      string
		advance   time.Duration
		wantCode  string
		wantCalls int32
	}{
		{"first", 0, iso8583.RCApproved, 1},
		{"duplicate at once", 0, iso8583.RCApproved, 1},
		{"duplicate at the end of the window", window, iso8583.RCApproved, 1},
		{"after the window", time.Second, iso8583.RCIncorrectPIN, 2},
		{"duplicate of the new one", window / 2, iso8583.RCIncorrectPIN, 2},
	}
	for _, tt := range tests {
		clock.advance(tt.advance)
		out := f.Handle(context.Background(), changeRequest(t, "000601"))
		if out.Code != tt.wantCode || calls.Load() != tt.wantCalls {
			t.Errorf("%s: Handle() = %s with %d issuer calls, want %s with %d", tt.name, out.Code, calls.Load(), tt.wantCode, tt.wantCalls)
		}
	}
}

// TestFlowDuplicateWaitsForTheFirst: a duplicate that arrives while the
// first is at the issuer waits for the first's outcome; one whose caller
// gives up meanwhile is answered as a deadline, not sent.
func TestFlowDuplicateWaitsForTheFirst(t *testing.T) {
	atIssuer, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	issuer := issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) {
		calls.Add(1)
		close(atIssuer)
		<-release
		return iso8583.RCApproved, nil
	})
	f := testFlow(t, issuer, &memSink{}, nil)
	first := make(chan Outcome, 1)
	go func() { first <- f.Handle(context.Background(), changeRequest(t, "000602")) }()
	<-atIssuer

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if out := f.Handle(ctx, changeRequest(t, "000602")); out.Code != iso8583.RCIssuerUnavailable || out.Outcome != OutcomeFailed {
		t.Errorf("duplicate whose caller gave up = %s %s, want 91 failed", out.Code, out.Outcome)
	}
	dup := make(chan Outcome, 1)
	go func() { dup <- f.Handle(context.Background(), changeRequest(t, "000602")) }()
	close(release)
	a, b := <-first, <-dup
	if a.Code != iso8583.RCApproved || b != a || calls.Load() != 1 {
		t.Errorf("first %s, duplicate %+v, issuer calls %d; want the first's outcome and one call", a.Code, b, calls.Load())
	}
}

// TestDedupeExpiry: entries leave the window once it has passed, except
// one still in flight, which stays until it has finished and passed it
// again; the expiry queue does not grow without bound.
func TestDedupeExpiry(t *testing.T) {
	const w = time.Minute
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	d := newDedupe(w)
	begin := func(key string, at time.Time) bool {
		t.Helper()
		first, _, err := d.begin(ctx, key, at)
		if err != nil {
			t.Fatalf("begin(%s) = %v", key, err)
		}
		return first
	}

	if !begin("inflight", t0) {
		t.Fatal("begin(new key) = not first")
	}
	if !begin("done", t0) {
		t.Fatal("begin(new key) = not first")
	}
	d.finish("done", Outcome{Code: iso8583.RCApproved})
	if begin("done", t0.Add(w)) {
		t.Error("begin(done) within the window = first, want the duplicate")
	}
	if !begin("done", t0.Add(w+time.Second)) {
		t.Error("begin(done) after the window = duplicate, want first")
	}
	d.finish("done", Outcome{Code: iso8583.RCApproved})
	// Still in flight after its window: a duplicate still waits for it.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := d.begin(cctx, "inflight", t0.Add(w+2*time.Second)); !errors.Is(err, context.Canceled) {
		t.Fatalf("begin(in flight past its window) = %v, want it to wait (context.Canceled)", err)
	}
	d.finish("inflight", Outcome{Code: iso8583.RCApproved})
	if !begin("inflight", t0.Add(3*w+2*time.Second)) {
		t.Error("begin(inflight) once finished and past the window again = duplicate, want first")
	}
	d.finish("inflight", Outcome{Code: iso8583.RCApproved})

	const n = 3000
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k%d", i)
		begin(key, t0)
		d.finish(key, Outcome{})
	}
	begin("last", t0.Add(10*w))
	if len(d.m) != 1 || len(d.order)-d.head > 1 || len(d.order) > n/2 {
		t.Errorf("after every entry expired: %d entries, queue of %d from %d, want 1 entry in a compacted queue", len(d.m), len(d.order), d.head)
	}
}
