package redislimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pingate/routing"
)

// backend is a limiter under test with its clock: both backends run the same
// scenarios, so the in-process one is held to the Redis one's semantics.
type backend struct {
	name    string
	l       routing.Limiter
	setTime func(time.Time)
}

// backends builds both limiters for cfg at t0: the Redis one on miniredis
// (its TIME and the limiter's clock set together) and Memory.
func backends(t *testing.T, cfg Config) []backend {
	t.Helper()
	rl, mr := newTestLimiter(t, cfg)
	mem := newTestMemory(t, cfg)
	return []backend{
		{"redis", rl, func(at time.Time) { mr.SetTime(at); rl.now = func() time.Time { return at } }},
		{"memory", mem, func(at time.Time) { mem.now = func() time.Time { return at } }},
	}
}

func newTestMemory(t *testing.T, cfg Config) *Memory {
	t.Helper()
	m, err := NewMemory(cfg)
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	m.now = func() time.Time { return t0 }
	return m
}

func allowed(t *testing.T, b backend, r *routing.Request) {
	t.Helper()
	d, err := b.l.Allow(context.Background(), r)
	if err != nil || !d.Allowed {
		t.Fatalf("%s: Allow(%s of %s at %s/%s) = %+v, %v; want allowed", b.name, r.Operation, r.CardToken, r.Acquirer, r.Terminal, d, err)
	}
}

func refused(t *testing.T, b backend, r *routing.Request, want routing.Decision) {
	t.Helper()
	d, err := b.l.Allow(context.Background(), r)
	if err != nil || d != want {
		t.Fatalf("%s: Allow(%s of %s at %s/%s) = %+v, %v; want %+v, nil", b.name, r.Operation, r.CardToken, r.Acquirer, r.Terminal, d, err, want)
	}
}

func record(t *testing.T, b backend, r *routing.Request, code string) {
	t.Helper()
	if err := b.l.Record(context.Background(), r, code); err != nil {
		t.Fatalf("%s: Record(%s) = %v", b.name, code, err)
	}
}

func TestBackendsCardDaily(t *testing.T) {
	cfg := wide
	cfg.CardOpsPerDay = 4
	for _, b := range backends(t, cfg) {
		ops := []routing.Operation{routing.OpChange, routing.OpReset, routing.OpUnblock, routing.OpChange}
		for i, op := range ops { // every operation kind counts, at any terminal
			allowed(t, b, req(op, "tokA", "acq1", fmt.Sprint("T", i)))
		}
		refused(t, b, req(routing.OpChange, "tokA", "acq2", "T9"), wantDaily)
		refused(t, b, req(routing.OpUnblock, "tokA", "acq2", "T9"), wantDaily) // a refusal is not counted, and refuses again
		allowed(t, b, req(routing.OpChange, "tokB", "acq1", "T0"))
		b.setTime(t0.Add(24 * time.Hour)) // the next day in the zone
		allowed(t, b, req(routing.OpChange, "tokA", "acq1", "T0"))
	}
}

func TestBackendsDayZone(t *testing.T) {
	cfg := wide
	cfg.CardOpsPerDay = 1
	cfg.DayZone = "Asia/Tokyo" // UTC+9: t0 (15:09 UTC) is 15 March, 00:09 there
	for _, b := range backends(t, cfg) {
		b.setTime(t0.Add(-10 * time.Minute)) // 14 March, 23:59 in Tokyo
		allowed(t, b, req(routing.OpChange, "tokZ", "acq1", "T1"))
		b.setTime(t0) // 15 March there, still 14 March in UTC
		allowed(t, b, req(routing.OpChange, "tokZ", "acq1", "T2"))
		b.setTime(t0.Add(time.Hour))
		refused(t, b, req(routing.OpChange, "tokZ", "acq1", "T3"), wantDaily)
	}
}

func TestBackendsWrongPIN(t *testing.T) {
	for _, b := range backends(t, wide) { // 3 wrong PINs per hour
		for i := range 3 {
			r := req(routing.OpChange, "tokW", "acq1", "T1")
			r.ID = fmt.Sprint("op-", i)
			allowed(t, b, r)
			record(t, b, r, "55")
		}
		refused(t, b, req(routing.OpChange, "tokW", "acq2", "T2"), wantWrongPIN)
		// Reset and unblock do not verify the current PIN.
		allowed(t, b, req(routing.OpReset, "tokW", "acq1", "T1"))
		allowed(t, b, req(routing.OpUnblock, "tokW", "acq1", "T1"))
		record(t, b, req(routing.OpChange, "tokW", "acq1", "T1"), "05") // feeds nothing
		record(t, b, req(routing.OpChange, "tokW", "acq1", "T1"), "00") // an approved change clears nothing
		refused(t, b, req(routing.OpChange, "tokW", "acq1", "T1"), wantWrongPIN)
		b.setTime(t0.Add(time.Hour + time.Second)) // the marks left the window
		allowed(t, b, req(routing.OpChange, "tokW", "acq1", "T1"))
	}
}

func TestBackendsWrongPINWindowSlides(t *testing.T) {
	for _, b := range backends(t, wide) {
		for i, at := range []time.Duration{0, 20 * time.Minute, 40 * time.Minute} {
			b.setTime(t0.Add(at))
			r := req(routing.OpChange, "tokS", "acq1", "T1")
			r.ID = fmt.Sprint("op-", i)
			record(t, b, r, "55")
		}
		b.setTime(t0.Add(59 * time.Minute))
		refused(t, b, req(routing.OpChange, "tokS", "acq1", "T1"), wantWrongPIN)
		b.setTime(t0.Add(61 * time.Minute)) // the first mark is out: 2 left
		allowed(t, b, req(routing.OpChange, "tokS", "acq1", "T1"))
	}
}

func TestBackendsUnblockAndResetClearWrongPINs(t *testing.T) {
	for _, b := range backends(t, wide) {
		for _, op := range []routing.Operation{routing.OpUnblock, routing.OpReset} {
			for i := range 3 {
				r := req(routing.OpChange, "tokU", "acq1", "T1")
				r.ID = fmt.Sprint(op, "-", i)
				record(t, b, r, "55")
			}
			refused(t, b, req(routing.OpChange, "tokU", "acq1", "T1"), wantWrongPIN)
			record(t, b, req(op, "tokU", "br1", "B1"), "00")
			allowed(t, b, req(routing.OpChange, "tokU", "acq1", "T1"))
		}
	}
}

func TestBackendsTerminalRate(t *testing.T) {
	cfg := Config{TerminalRPS: 1, TerminalBurst: 3, AcquirerRPS: 1000, AcquirerBurst: 1000, CardOpsPerDay: 3}
	for _, b := range backends(t, cfg) {
		for i := range 3 {
			allowed(t, b, req(routing.OpChange, fmt.Sprint("card", i), "acq1", "T1"))
		}
		refused(t, b, req(routing.OpChange, "card9", "acq1", "T1"), wantTerminal)
		allowed(t, b, req(routing.OpChange, "card9", "acq1", "T2")) // another terminal
		allowed(t, b, req(routing.OpChange, "card9", "acq2", "T1")) // same id, other acquirer
		// The refused request did not count for card9: one more today.
		allowed(t, b, req(routing.OpChange, "card9", "acq1", "T3"))
		refused(t, b, req(routing.OpChange, "card9", "acq1", "T4"), wantDaily)
		// One emission interval (1 s) later, one more at T1.
		b.setTime(t0.Add(time.Second))
		allowed(t, b, req(routing.OpChange, "card8", "acq1", "T1"))
		refused(t, b, req(routing.OpChange, "card8", "acq1", "T1"), wantTerminal)
	}
}

func TestBackendsAcquirerRate(t *testing.T) {
	cfg := Config{TerminalRPS: 1000, TerminalBurst: 1000, AcquirerRPS: 10, AcquirerBurst: 2}
	for _, b := range backends(t, cfg) {
		allowed(t, b, req(routing.OpChange, "c1", "acq1", "T1"))
		allowed(t, b, req(routing.OpChange, "c2", "acq1", "T2"))
		refused(t, b, req(routing.OpChange, "c3", "acq1", "T3"), wantAcquirer)
		allowed(t, b, req(routing.OpChange, "c3", "acq2", "T3"))
		b.setTime(t0.Add(100 * time.Millisecond)) // 1/10 s: one more
		allowed(t, b, req(routing.OpChange, "c4", "acq1", "T4"))
		refused(t, b, req(routing.OpChange, "c5", "acq1", "T5"), wantAcquirer)
	}
}

// TestBackendsRefusalOrder: wrong PIN before card daily before terminal
// before acquirer; and, as in the Redis pipeline, a request the card refuses
// is still charged to its terminal and acquirer.
func TestBackendsRefusalOrder(t *testing.T) {
	cfg := Config{TerminalRPS: 1, TerminalBurst: 3, AcquirerRPS: 1, AcquirerBurst: 4, CardOpsPerDay: 1}
	for _, b := range backends(t, cfg) {
		allowed(t, b, req(routing.OpChange, "k1", "acq1", "T1"))
		for i := range 3 {
			r := req(routing.OpChange, "k1", "acq1", "T1")
			r.ID = fmt.Sprint("op-", i)
			record(t, b, r, "55")
		}
		refused(t, b, req(routing.OpChange, "k1", "acq1", "T1"), wantWrongPIN) // also past its daily limit
		refused(t, b, req(routing.OpUnblock, "k1", "acq1", "T1"), wantDaily)   // T1's burst of 3 is spent now
		refused(t, b, req(routing.OpChange, "k2", "acq1", "T1"), wantTerminal)
		refused(t, b, req(routing.OpChange, "k3", "acq1", "T2"), wantAcquirer) // acquirer: 4 of 4 spent
	}
}

func TestBackendsSkipMissingIdentifiers(t *testing.T) {
	cfg := Config{TerminalRPS: 1, TerminalBurst: 1, AcquirerRPS: 1, AcquirerBurst: 1}
	for _, b := range backends(t, cfg) {
		for i := range 3 {
			allowed(t, b, req(routing.OpChange, fmt.Sprint("n", i), "", "")) // no throughput limit applies
		}
		allowed(t, b, req(routing.OpChange, "n9", "acq1", ""))               // the acquirer's one
		refused(t, b, req(routing.OpChange, "n8", "acq1", ""), wantAcquirer) // no terminal limit, but the acquirer's
	}
}

func TestMemoryNoCardToken(t *testing.T) {
	m := newTestMemory(t, wide)
	d, err := m.Allow(context.Background(), req(routing.OpChange, "", "acq1", "T1"))
	if !errors.Is(err, ErrNoCardToken) || d != wantDown {
		t.Errorf("Allow(no token) = %+v, %v; want %+v, ErrNoCardToken", d, err, wantDown)
	}
	if err := m.Record(context.Background(), req(routing.OpChange, "", "acq1", "T1"), "55"); !errors.Is(err, ErrNoCardToken) {
		t.Errorf("Record(no token) = %v, want ErrNoCardToken", err)
	}
	if s := m.Stats(); s.Refused != 1 || s.FailedClosed != 1 || s.RecordErrors != 1 {
		t.Errorf("Stats() = %+v, want 1 refused, 1 failed closed, 1 record error", s)
	}
}

func TestMemoryReconfigureKeepsCounts(t *testing.T) {
	cfg := wide
	cfg.CardOpsPerDay = 2
	m := newTestMemory(t, cfg)
	b := backend{"memory", m, nil}
	allowed(t, b, req(routing.OpChange, "r1", "acq1", "T1"))
	allowed(t, b, req(routing.OpChange, "r1", "acq1", "T1"))
	refused(t, b, req(routing.OpChange, "r1", "acq1", "T1"), wantDaily)

	bad := cfg
	bad.DayZone = "Nowhere/Atlantis"
	if err := m.Reconfigure(bad); err == nil {
		t.Fatal("Reconfigure(unknown day_zone) = nil, want an error")
	}
	refused(t, b, req(routing.OpChange, "r1", "acq1", "T1"), wantDaily) // unchanged

	cfg.CardOpsPerDay = 3
	if err := m.Reconfigure(cfg); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if got := m.Config().CardOpsPerDay; got != 3 {
		t.Errorf("Config().CardOpsPerDay = %d, want 3", got)
	}
	allowed(t, b, req(routing.OpChange, "r1", "acq1", "T1")) // the 3rd: the first two still count
	refused(t, b, req(routing.OpChange, "r1", "acq1", "T1"), wantDaily)
}

// TestMemorySweepDropsOnlyWhatLimitsNothing: state past its use is dropped,
// a card's count of today and its marks in the window are kept.
func TestMemorySweepDropsOnlyWhatLimitsNothing(t *testing.T) {
	cfg := wide
	cfg.CardOpsPerDay = 1
	m := newTestMemory(t, cfg)
	b := backend{"memory", m, nil}
	allowed(t, b, req(routing.OpChange, "old", "acq1", "T1"))
	record(t, b, req(routing.OpChange, "marked", "acq1", "T1"), "55")

	at := t0.Add(30 * time.Minute) // same day, the mark still in the window
	m.now = func() time.Time { return at }
	allowed(t, b, req(routing.OpChange, "fresh", "acq1", "T2")) // sweeps
	if _, ok := m.cards["old"]; !ok {
		t.Error("the card counted today was dropped")
	}
	if _, ok := m.cards["marked"]; !ok {
		t.Error("the card with a mark in the window was dropped")
	}
	if len(m.tats) != 2 {
		t.Errorf("%d throughput keys kept, want 2 (T1's burst whole again is dropped; T2 and acq1 just charged)", len(m.tats))
	}

	at = t0.Add(25 * time.Hour) // another day, the mark out of the window
	m.now = func() time.Time { return at }
	allowed(t, b, req(routing.OpChange, "fresh2", "acq2", "T9"))
	for _, k := range []string{"old", "marked", "fresh"} {
		if _, ok := m.cards[k]; ok {
			t.Errorf("card %s kept a day later, with nothing to limit", k)
		}
	}
	if len(m.tats) != 2 {
		t.Errorf("%d throughput keys kept, want 2 (acq2 and its T9)", len(m.tats))
	}
	refused(t, b, req(routing.OpChange, "fresh2", "acq2", "T9"), wantDaily) // what is kept still limits
}

func TestMemoryConfigValidated(t *testing.T) {
	if _, err := NewMemory(Config{TerminalRPS: -1}); err == nil {
		t.Error("NewMemory(terminal_rps -1) = nil error, want one")
	}
	m, err := NewMemory(Config{})
	if err != nil {
		t.Fatalf("NewMemory(defaults): %v", err)
	}
	if c := m.Config(); c.CardOpsPerDay != DefaultCardOpsPerDay || c.TerminalBurst != DefaultTerminalBurst {
		t.Errorf("Config() = %+v, want the defaults", c)
	}
}

// TestMemoryConcurrent: 40 operations of one card at once, from 40
// terminals, are allowed exactly the daily limit, whatever their order.
func TestMemoryConcurrent(t *testing.T) {
	cfg := wide
	cfg.CardOpsPerDay = 7
	m := newTestMemory(t, cfg)
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := m.Allow(context.Background(), req(routing.OpUnblock, "conc", "acq1", fmt.Sprint("T", i)))
			if err == nil && d.Allowed {
				ok.Add(1)
			}
			_ = m.Record(context.Background(), req(routing.OpChange, "conc", "acq1", "T1"), "55")
		}()
	}
	wg.Wait()
	if got := ok.Load(); got != 7 {
		t.Errorf("%d of 40 concurrent operations allowed, want exactly 7", got)
	}
	if s := m.Stats(); s.Allowed != 7 || s.Refused != 33 {
		t.Errorf("Stats() = %+v, want 7 allowed, 33 refused", s)
	}
}
