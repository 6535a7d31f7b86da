package redislimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"pingate/routing"
)

const testWindow = 10 * time.Minute

// windowed is a request that can have duplicates: it carries a STAN and a
// transmission time.
func windowed(tok, stan string) *routing.Request {
	r := req(routing.OpChange, tok, "acq1", "T1")
	r.STAN, r.Transmit = stan, "1203061500"
	return r
}

func claim(t *testing.T, l *Limiter, r *routing.Request) routing.Claim {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.Claim(ctx, r, testWindow)
	if err != nil {
		t.Fatalf("Claim(%s) error: %v", r.STAN, err)
	}
	return c
}

func finish(t *testing.T, l *Limiter, r *routing.Request, e routing.WindowEntry) {
	t.Helper()
	if err := l.Finish(context.Background(), r, e, testWindow); err != nil {
		t.Fatalf("Finish(%s): %v", r.STAN, err)
	}
}

var approved = routing.Outcome{Code: "00", Outcome: routing.OutcomeApproved, Reason: "approved", Issuer: "ssbank", EventID: "ev-1"}

func TestClaimThenDuplicateGetsTheFirstOutcome(t *testing.T) {
	for _, split := range []bool{false, true} {
		l, m := newTestLimiter(t, Config{CardOpsPerDay: 5, TerminalRPS: 1000, TerminalBurst: 1000, AcquirerRPS: 1000, AcquirerBurst: 1000})
		l.split = split
		first := windowed("w1", "000001")
		if c := claim(t, l, first); !c.First || !c.Decision.Allowed {
			t.Fatalf("split=%v: first Claim = %+v, want first and allowed", split, c)
		}
		finish(t, l, first, routing.WindowEntry{Outcome: approved, LimitCode: "00", Reversal: []byte("sealed")})

		// The retransmission: a new operation id, the same identifying fields.
		again := windowed("w1", "000001")
		c := claim(t, l, again)
		if c.First || c.Previous != approved {
			t.Errorf("split=%v: duplicate Claim = %+v, want not first with %+v", split, c, approved)
		}
		if got, _ := m.Get("pg:{c:w1}:ops:20260314"); got != "1" {
			t.Errorf("split=%v: operations counted = %q, want 1 (the duplicate charges nothing)", split, got)
		}
		rec, found, err := l.Lookup(context.Background(), routing.WindowIDOf(again))
		if err != nil || !found || !rec.Done || rec.Outcome != approved || string(rec.Reversal) != "sealed" {
			t.Errorf("split=%v: Lookup = %+v, %v, %v; want done %+v with its reversal material", split, rec, found, err, approved)
		}
		// Another card with the same STAN and time at the same terminal is not a duplicate.
		if c := claim(t, l, windowed("w2", "000001")); !c.First {
			t.Errorf("split=%v: other card's Claim = %+v, want first", split, c)
		}
	}
}

// A duplicate that arrives while the first is in flight waits for its outcome.
func TestDuplicateWaitsForTheFirstInFlight(t *testing.T) {
	l, _ := newTestLimiter(t, wide)
	first := windowed("w1", "000002")
	claim(t, l, first)
	got := make(chan routing.Claim, 1)
	go func() {
		c, err := l.Claim(context.Background(), windowed("w1", "000002"), testWindow)
		if err != nil {
			t.Errorf("waiting Claim: %v", err)
		}
		got <- c
	}()
	// The waiter polls; finishing now or after its first poll must both work.
	declined := routing.Outcome{Code: "55", Outcome: routing.OutcomeDeclined, Reason: "incorrect_pin", Issuer: "ssbank", EventID: "ev-2"}
	finish(t, l, first, routing.WindowEntry{Outcome: declined, LimitCode: "55"})
	if c := <-got; c.First || c.Previous != declined {
		t.Errorf("waiting Claim = %+v, want the first's %+v", c, declined)
	}
	// Finish fed the limits as Record does: one wrong-PIN mark.
	if n := l.rdb.ZCard(context.Background(), "pg:{c:w1}:wp").Val(); n != 1 {
		t.Errorf("wrong-PIN marks after Finish(55) = %d, want 1", n)
	}
}

func TestDuplicateInFlightGivesUp(t *testing.T) {
	l, m := newTestLimiter(t, wide)
	claimCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := l.Claim(claimCtx, windowed("w1", "000003"), testWindow); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	t.Run("own deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := l.Claim(ctx, windowed("w1", "000003"), testWindow)
		if !errors.Is(err, routing.ErrDuplicateInFlight) {
			t.Errorf("Claim while the first is in flight = %v, want ErrDuplicateInFlight", err)
		}
		if ctx.Err() != nil {
			t.Errorf("Claim gave up after its deadline, want before it (to answer 94 in time)")
		}
	})
	t.Run("first's deadline passed", func(t *testing.T) {
		// Server time past the first's deadline and the grace: its instance
		// never finished (stopped, or lost Redis). No waiting, no resend.
		m.SetTime(t0.Add(time.Second + inFlightGrace + time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := l.Claim(ctx, windowed("w1", "000003"), testWindow)
		if !errors.Is(err, routing.ErrDuplicateInFlight) {
			t.Errorf("Claim after the first's deadline = %v, want ErrDuplicateInFlight", err)
		}
		if r := routing.ResponseFor(err); r.Code != "94" || r.Reason != "duplicate_in_flight" {
			t.Errorf("ResponseFor(%v) = %+v, want 94 duplicate_in_flight", err, r)
		}
	})
}

func TestWindowRedisDownFailsClosed(t *testing.T) {
	l, m := newTestLimiter(t, wide)
	m.Close()
	c, err := l.Claim(context.Background(), windowed("w1", "000004"), testWindow)
	if !errors.Is(err, ErrUnavailable) || c.First || c.Decision != wantDown {
		t.Errorf("Claim with Redis down = %+v, %v; want the fail-closed refusal and ErrUnavailable", c, err)
	}
	if r := routing.ResponseFor(&routing.LimitError{Limit: "limiter", Err: err}); r.Code != "91" || r.Reason != "limiter_unavailable" {
		t.Errorf("answer = %+v, want 91 limiter_unavailable", r)
	}
	if err := l.Finish(context.Background(), windowed("w1", "000004"), routing.WindowEntry{Outcome: approved}, testWindow); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Finish with Redis down = %v, want ErrUnavailable", err)
	}
}

func TestClaimReversalOnce(t *testing.T) {
	l, _ := newTestLimiter(t, wide)
	r := windowed("w1", "000005")
	id := routing.WindowIDOf(r)
	ctx := context.Background()
	claim(t, l, r)
	if ok, err := l.ClaimReversal(ctx, id); ok || err != nil {
		t.Errorf("ClaimReversal in flight = %v, %v; want false", ok, err)
	}
	finish(t, l, r, routing.WindowEntry{Outcome: approved})
	for i, want := range []bool{true, false} {
		if ok, err := l.ClaimReversal(ctx, id); ok != want || err != nil {
			t.Errorf("ClaimReversal #%d = %v, %v; want %v", i+1, ok, err, want)
		}
	}
	if err := l.ReleaseReversal(ctx, id); err != nil {
		t.Fatalf("ReleaseReversal: %v", err)
	}
	if ok, _ := l.ClaimReversal(ctx, id); !ok {
		t.Error("ClaimReversal after ReleaseReversal = false, want true")
	}
	if rec, _, _ := l.Lookup(ctx, id); !rec.Reversed {
		t.Errorf("Lookup = %+v, want Reversed", rec)
	}
	if ok, _ := l.ClaimReversal(ctx, routing.WindowID{CardToken: "none"}); ok {
		t.Error("ClaimReversal of an unknown request = true, want false")
	}
}

func TestWindowKeyHoldsNoPANAndSharesTheCardSlot(t *testing.T) {
	l, m := newTestLimiter(t, wide)
	r := windowed("tok{x}:1", "00:06")
	r.Terminal = "te}rm"
	claim(t, l, r)
	want := "pg:{c:tok%7Bx%7D%3A1}:w:acq1:te%7Drm:00%3A06:1203061500"
	if !m.Exists(want) {
		t.Errorf("keys = %q, want %q among them", m.Keys(), want)
	}
	for _, k := range m.Keys() {
		if strings.Contains(k, r.PAN) || strings.Contains(k, r.PAN[6:]) {
			t.Errorf("key %q contains the PAN", k)
		}
	}
	fields, _ := m.HKeys(want)
	for _, k := range fields {
		if v := m.HGet(want, k); strings.Contains(v, r.PAN[6:]) {
			t.Errorf("record field %s = %q holds the PAN", k, v)
		}
	}
}

// A Claim sent again by the client (it lost the first answer and retried)
// finds its own claim: it gets the same decision and is not charged twice.
func TestClaimRetriedBySameRequest(t *testing.T) {
	for _, split := range []bool{false, true} {
		l, m := newTestLimiter(t, Config{CardOpsPerDay: 5, TerminalRPS: 1000, TerminalBurst: 1000, AcquirerRPS: 1000, AcquirerBurst: 1000})
		l.split = split
		r := windowed("w1", "000006")
		c1, c2 := claim(t, l, r), claim(t, l, r)
		if !c1.First || !c2.First || c2.Decision != c1.Decision {
			t.Errorf("split=%v: Claim, Claim again = %+v, %+v; want first twice with one decision", split, c1, c2)
		}
		if got, _ := m.Get("pg:{c:w1}:ops:20260314"); got != "1" {
			t.Errorf("split=%v: operations counted = %q, want 1", split, got)
		}
	}
}

// TestForbidThenClaim: an 0420 that came before its request marks it
// (Forbid); the request's Claim is first, refused with
// routing.ErrReversedBeforeReceived, charging and counting nothing; its
// outcome then answers a retransmission, and the record stays reversed. A
// request the window holds is not marked.
func TestForbidThenClaim(t *testing.T) {
	ctx := context.Background()
	for _, split := range []bool{false, true} {
		l, m := newTestLimiter(t, Config{CardOpsPerDay: 5, TerminalRPS: 1000, TerminalBurst: 1000, AcquirerRPS: 1000, AcquirerBurst: 1000})
		l.split = split
		r := windowed("f1", "000001")
		id := routing.WindowIDOf(r)
		if ok, err := l.Forbid(ctx, id, testWindow); err != nil || !ok {
			t.Fatalf("split=%v: Forbid of an unknown request = %v, %v; want true", split, ok, err)
		}
		if ok, _ := l.Forbid(ctx, id, testWindow); ok {
			t.Errorf("split=%v: Forbid of a marked request = true, want false", split)
		}
		if rec, found, err := l.Lookup(ctx, id); err != nil || !found || !rec.Reversed || rec.Done {
			t.Errorf("split=%v: Lookup of the mark = %+v, %v, %v; want found, reversed, not done", split, rec, found, err)
		}
		c := claim(t, l, r)
		if !c.First || c.Decision.Allowed || !errors.Is(c.Decision.Refusal, routing.ErrReversedBeforeReceived) {
			t.Fatalf("split=%v: Claim of the marked request = %+v, want first, refused ErrReversedBeforeReceived", split, c)
		}
		if got, _ := m.Get("pg:{c:f1}:ops:20260314"); got != "" {
			t.Errorf("split=%v: operations counted = %q, want none for a refused request", split, got)
		}
		refusal := routing.Outcome{Code: "94", Outcome: routing.OutcomeRejected, Reason: "reversed_before_received", EventID: "ev-r"}
		finish(t, l, r, routing.WindowEntry{Outcome: refusal, LimitCode: "94"})
		if c := claim(t, l, windowed("f1", "000001")); c.First || c.Previous != refusal {
			t.Errorf("split=%v: retransmission's Claim = %+v, want the refusal", split, c)
		}
		if claimed, err := l.ClaimReversal(ctx, id); err != nil || claimed {
			t.Errorf("split=%v: ClaimReversal of the refused request = %v, %v; want false, it is reversed", split, claimed, err)
		}
		held := windowed("f1", "000002")
		claim(t, l, held)
		if ok, _ := l.Forbid(ctx, routing.WindowIDOf(held), testWindow); ok {
			t.Errorf("split=%v: Forbid of a request in flight = true, want false", split)
		}
	}
}
