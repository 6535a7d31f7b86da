package routing

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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

// TestFlowDuplicateWindowReloads: a duplicate_window loaded by Reload holds
// for the requests answered after it; one answered before keeps its own.
func TestFlowDuplicateWindowReloads(t *testing.T) {
	var calls atomic.Int32
	issuer := issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) {
		calls.Add(1)
		return iso8583.RCApproved, nil
	})
	f := testFlow(t, issuer, &memSink{}, nil)
	clock := &fakeClock{t: time.Date(2026, 12, 4, 23, 0, 0, 0, time.UTC)}
	f.deps.Now = clock.now
	cfg := f.Config()
	cfg.DuplicateWindow = 10 * time.Minute
	if err := f.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	f.Handle(context.Background(), changeRequest(t, "000611")) // remembered for 10 minutes
	cfg.DuplicateWindow = time.Minute
	if err := f.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	f.Handle(context.Background(), changeRequest(t, "000612")) // for 1 minute
	clock.advance(2 * time.Minute)
	f.Handle(context.Background(), changeRequest(t, "000611"))
	if calls.Load() != 2 {
		t.Errorf("duplicate of a request answered under the 10-minute window, 2 minutes on: %d issuer calls, want 2 (answered from the window)", calls.Load())
	}
	f.Handle(context.Background(), changeRequest(t, "000612"))
	if calls.Load() != 3 {
		t.Errorf("the same request 2 minutes after one answered under the reloaded 1-minute window: %d issuer calls, want 3 (a new request)", calls.Load())
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

// TestDedupeExpiry: an outcome is remembered for the window from the time
// its request finished, also one that was still in flight when the window
// from its start had passed; finished records leave the index and the log
// once past it, so neither grows without bound.
func TestDedupeExpiry(t *testing.T) {
	const w = time.Minute
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	d := newDedupe()
	begin := func(key string, at time.Time) bool {
		t.Helper()
		first, _, _, err := d.begin(ctx, key, at)
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
	d.finish("done", Outcome{Code: iso8583.RCApproved}, t0, w)
	if begin("done", t0.Add(w)) {
		t.Error("begin(done) within the window = first, want the duplicate")
	}
	if !begin("done", t0.Add(w+time.Second)) {
		t.Error("begin(done) after the window = duplicate, want first")
	}
	d.finish("done", Outcome{Code: iso8583.RCApproved}, t0.Add(w+time.Second), w)
	// Still in flight after its window: a duplicate still waits for it.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := d.begin(cctx, "inflight", t0.Add(w+2*time.Second)); !errors.Is(err, context.Canceled) {
		t.Fatalf("begin(in flight past its window) = %v, want it to wait (context.Canceled)", err)
	}
	d.finish("inflight", Outcome{Code: iso8583.RCApproved}, t0.Add(w+2*time.Second), w)
	if begin("inflight", t0.Add(2*w+2*time.Second)) {
		t.Error("begin(inflight) within the window from its finish = first, want the duplicate")
	}
	if !begin("inflight", t0.Add(2*w+3*time.Second)) {
		t.Error("begin(inflight) past the window from its finish = duplicate, want first")
	}
	d.finish("inflight", Outcome{Code: iso8583.RCApproved}, t0.Add(2*w+3*time.Second), w)

	// Enough records for several of the log's chunks.
	n := 3 * dupChunkSize / 40
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k%d", i)
		begin(key, t0)
		d.finish(key, Outcome{}, t0, w)
	}
	if len(d.log.chunks) < 3 {
		t.Fatalf("%d records in %d chunks, want at least 3", n, len(d.log.chunks))
	}
	begin("last", t0.Add(10*w))
	if len(d.done) != 0 || len(d.flying) != 1 || len(d.log.chunks) != 1 {
		t.Errorf("after every record expired: %d indexed, %d in flight, %d chunks; want 0, 1 (last), 1 (the one written)", len(d.done), len(d.flying), len(d.log.chunks))
	}
}

// TestDedupeRemembersTheWholeOutcome: a duplicate of a finished request,
// and an acquirer's reversal looking it up, get its outcome as it was, the
// approval to undo included; the reversal mark is taken once and can be
// released.
func TestDedupeRemembersTheWholeOutcome(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	d := newDedupe()
	want := fullOutcome(t)
	if first, _, _, _ := d.begin(ctx, "k", t0); !first {
		t.Fatal("begin(new key) = not first")
	}
	d.finish("k", want, t0, time.Minute)

	_, _, got, err := d.begin(ctx, "k", t0)
	if err != nil {
		t.Fatal(err)
	}
	sameOutcome(t, got, want)
	got, found, err := d.lookup(ctx, "k", t0)
	if err != nil || !found {
		t.Fatalf("lookup(k) = found %v, %v; want found", found, err)
	}
	sameOutcome(t, got, want)

	if !d.claimReversal("k", t0) || d.claimReversal("k", t0) {
		t.Error("claimReversal twice = not true then false")
	}
	d.releaseReversal("k", t0)
	if !d.claimReversal("k", t0) {
		t.Error("claimReversal after releaseReversal = false, want true")
	}
	if d.claimReversal("unknown", t0) {
		t.Error("claimReversal(unknown key) = true")
	}
}

// TestDedupeChecksTheKey: a record found by its key's hash is the key's
// only if the key it holds is the same; a colliding hash is a miss.
func TestDedupeChecksTheKey(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	d := newDedupe()
	d.begin(context.Background(), "a", t0)
	d.finish("a", Outcome{Code: iso8583.RCApproved}, t0, time.Minute)
	d.done[d.hash("b")] = d.done[d.hash("a")] // b's hash now leads to a's record
	if first, _, o, _ := d.begin(context.Background(), "b", t0); !first {
		t.Fatalf("begin(b) with a's record under its hash = duplicate answered %q, want first", o.Code)
	}
	if _, found, _ := d.lookup(context.Background(), "a", t0); !found {
		t.Error("lookup(a) = not found")
	}
}

// TestOutcomeCodecRoundTrip: the window's binary form of an outcome keeps
// every field: fullOutcome sets each, and a field of a kind it does not know
// fails the test.
func TestOutcomeCodecRoundTrip(t *testing.T) {
	want := fullOutcome(t)
	sameOutcome(t, readOutcome(&fieldReader{b: appendOutcome(nil, &want)}), want)
	want.undo = nil
	sameOutcome(t, readOutcome(&fieldReader{b: appendOutcome(nil, &want)}), want)
}

func fullOutcome(t *testing.T) Outcome {
	t.Helper()
	var o Outcome
	v := reflect.ValueOf(&o).Elem()
	for i := range v.NumField() {
		f, n := v.Field(i), v.Type().Field(i).Name
		switch {
		case f.Type() == reflect.TypeOf(&Approval{}):
			o.undo = fullApproval(t)
		case f.Kind() == reflect.String:
			f.SetString(n + " ü")
		case f.Kind() == reflect.Int64:
			f.SetInt(int64(7 + i))
		default:
			t.Fatalf("Outcome.%s: a field of kind %s the window's form does not encode", n, f.Kind())
		}
	}
	return o
}

// sameOutcome compares two outcomes, their approvals with sameApproval.
func sameOutcome(t *testing.T, got, want Outcome) {
	t.Helper()
	if (got.undo == nil) != (want.undo == nil) {
		t.Fatalf("undo = %v, want %v", got.undo != nil, want.undo != nil)
	}
	if want.undo != nil {
		sameApproval(t, got.undo, want.undo)
	}
	got.undo, want.undo = nil, nil
	if got != want {
		t.Errorf("outcome = %+v, want %+v", got, want)
	}
}

// TestDedupeForbid: an acquirer's reversal advice that comes before its
// request leaves the key forbidden: the request, when it comes, is first
// and reported reversedFirst, and once finished its outcome answers a
// retransmission. A key a request holds, or has finished, is not forbidden.
func TestDedupeForbid(t *testing.T) {
	ctx := context.Background()
	d := newDedupe()
	t0 := time.Unix(1_800_000_000, 0)
	if !d.forbid("k", t0, time.Minute) {
		t.Fatal("forbid of an unknown key = false")
	}
	if d.forbid("k", t0, time.Minute) {
		t.Error("forbid of a forbidden key = true")
	}
	if o, found, _ := d.lookup(ctx, "k", t0); !found || o.undo != nil {
		t.Errorf("lookup of a forbidden key = %+v, %v; want found with nothing to undo", o, found)
	}
	first, reversedFirst, _, err := d.begin(ctx, "k", t0)
	if err != nil || !first || !reversedFirst {
		t.Fatalf("begin of a forbidden key = %v, %v, %v; want first and reversedFirst", first, reversedFirst, err)
	}
	if d.forbid("k", t0, time.Minute) {
		t.Error("forbid of a key in flight = true")
	}
	d.finish("k", Outcome{Code: "94", Reason: "reversed_before_received"}, t0, time.Minute)
	first, reversedFirst, o, _ := d.begin(ctx, "k", t0.Add(time.Second))
	if first || reversedFirst || o.Code != "94" {
		t.Errorf("begin after the refusal = %v, %v, %+v; want the refusal as a retransmission's answer", first, reversedFirst, o)
	}
	if d.claimReversal("k", t0.Add(time.Second)) {
		t.Error("claimReversal of the refused request = true, want false: it is reversed already")
	}
	if first, _, _, _ := d.begin(ctx, "other", t0); !first {
		t.Fatal("begin of a new key not first")
	}
	d.finish("other", Outcome{Code: "00"}, t0, time.Minute)
	if d.forbid("other", t0, time.Minute) {
		t.Error("forbid of a finished key = true")
	}
	// A forbidden key expires with its window like any record.
	d.forbid("late", t0, time.Minute)
	if first, reversedFirst, _, _ := d.begin(ctx, "late", t0.Add(2*time.Minute)); !first || reversedFirst {
		t.Errorf("begin after the forbidden key's window = %v, %v; want first, not reversedFirst", first, reversedFirst)
	}
}
