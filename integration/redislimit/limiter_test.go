package redislimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"pingate/routing"
)

// t0 is the clock of the unit tests, on both the gateway and miniredis side.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// newTestLimiter returns a Limiter on a fresh miniredis whose clock (TIME in
// scripts) and the limiter's own clock are both t0.
func newTestLimiter(t *testing.T, cfg Config) (*Limiter, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	m.SetTime(t0)
	cfg.Addrs = []string{m.Addr()}
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	l.now = func() time.Time { return t0 }
	return l, m
}

// req returns a request for card token tok at terminal term of acquirer acq.
func req(op routing.Operation, tok, acq, term string) *routing.Request {
	return &routing.Request{ID: fmt.Sprintf("%s-%s-%d", tok, term, time.Now().UnixNano()),
		Operation: op, Channel: routing.ChannelATM, Acquirer: acq, Terminal: term, CardToken: tok,
		PAN: "4000001234567899"}
}

// wide is a config whose throughput limits never bind, to test card limits.
var wide = Config{TerminalRPS: 1000, TerminalBurst: 1000, AcquirerRPS: 1000, AcquirerBurst: 1000}

func mustAllow(t *testing.T, l *Limiter, r *routing.Request) {
	t.Helper()
	d, err := l.Allow(context.Background(), r)
	if err != nil || !d.Allowed {
		t.Fatalf("Allow(%s at %s/%s) = %+v, %v; want allowed", r.Operation, r.Acquirer, r.Terminal, d, err)
	}
}

func mustRefuse(t *testing.T, l *Limiter, r *routing.Request, want routing.Decision) {
	t.Helper()
	d, err := l.Allow(context.Background(), r)
	if err != nil || d != want {
		t.Fatalf("Allow(%s at %s/%s) = %+v, %v; want %+v, nil", r.Operation, r.Acquirer, r.Terminal, d, err, want)
	}
}

var (
	wantDaily    = routing.Decision{Refusal: routing.ErrCardDailyLimit, Limit: "card_daily"}
	wantWrongPIN = routing.Decision{Refusal: routing.ErrCardWrongPINLimit, Limit: "card_wrong_pin"}
	wantTerminal = routing.Decision{Refusal: routing.ErrTerminalLimit, Limit: "terminal"}
	wantAcquirer = routing.Decision{Refusal: routing.ErrAcquirerLimit, Limit: "acquirer"}
	wantDown     = routing.Decision{Refusal: routing.ErrLimiterUnavailable, Limit: "card"}
)

func TestCardDailyLimit(t *testing.T) {
	cfg := wide
	cfg.CardOpsPerDay = 4
	l, m := newTestLimiter(t, cfg)
	ops := []routing.Operation{routing.OpChange, routing.OpReset, routing.OpUnblock, routing.OpChange}
	for i, op := range ops { // every operation kind counts, at any terminal
		mustAllow(t, l, req(op, "tokA", "acq1", fmt.Sprint("T", i)))
	}
	mustRefuse(t, l, req(routing.OpChange, "tokA", "acq2", "T9"), wantDaily)
	mustAllow(t, l, req(routing.OpChange, "tokB", "acq1", "T0")) // another card

	// The next day in the configured zone starts a new count.
	l.now = func() time.Time { return t0.Add(24 * time.Hour) }
	mustAllow(t, l, req(routing.OpChange, "tokA", "acq1", "T0"))

	// The counter expires on its own.
	if ttl := m.TTL("pg:{c:tokA}:ops:20260314"); ttl <= 24*time.Hour || ttl > 48*time.Hour {
		t.Errorf("TTL of the daily counter = %v, want (24h, 48h]", ttl)
	}
}

func TestDayZone(t *testing.T) {
	cfg := wide
	cfg.DayZone = "Asia/Tokyo" // UTC+9: t0 (15:09 UTC) is already 15 March there
	l, m := newTestLimiter(t, cfg)
	mustAllow(t, l, req(routing.OpChange, "tokZ", "acq1", "T1"))
	if !m.Exists("pg:{c:tokZ}:ops:20260315") {
		t.Errorf("keys = %v, want the counter of 2026-03-15 (Tokyo day)", m.Keys())
	}
}

func TestTerminalRateLimit(t *testing.T) {
	l, m := newTestLimiter(t, Config{TerminalRPS: 1, TerminalBurst: 3, AcquirerRPS: 1000, AcquirerBurst: 1000})
	for i := range 3 {
		mustAllow(t, l, req(routing.OpChange, fmt.Sprint("card", i), "acq1", "T1"))
	}
	mustRefuse(t, l, req(routing.OpChange, "card9", "acq1", "T1"), wantTerminal)
	mustAllow(t, l, req(routing.OpChange, "card9", "acq1", "T2")) // another terminal
	mustAllow(t, l, req(routing.OpChange, "card9", "acq2", "T1")) // same id, other acquirer

	// The refused request gave its card operation back: card9 counted 2.
	if got, _ := m.Get("pg:{c:card9}:ops:20260314"); got != "2" {
		t.Errorf("card9 operations = %q, want 2 (the refused one refunded)", got)
	}
	// One emission interval (1 s) later, one more.
	m.SetTime(t0.Add(time.Second))
	mustAllow(t, l, req(routing.OpChange, "card8", "acq1", "T1"))
	mustRefuse(t, l, req(routing.OpChange, "card8", "acq1", "T1"), wantTerminal)
}

func TestKeysHoldNoPANAndShareSlots(t *testing.T) {
	l, m := newTestLimiter(t, wide)
	r := req(routing.OpChange, "tok{x}:1", "ac:q", "te}rm")
	mustAllow(t, l, r)
	if err := l.Record(context.Background(), r, "55"); err != nil {
		t.Fatalf("Record: %v", err)
	}
	want := map[string]bool{
		"pg:{c:tok%7Bx%7D%3A1}:ops:20260314": true,
		"pg:{c:tok%7Bx%7D%3A1}:wp":           true,
		"pg:{t:ac%3Aq:te%7Drm}":              true,
		"pg:{a:ac%3Aq}":                      true,
	}
	keys := m.Keys()
	for _, k := range keys {
		if strings.Contains(k, r.PAN) || strings.Contains(k, r.PAN[6:]) {
			t.Errorf("key %q contains the PAN", k)
		}
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
	}
	if len(keys) != len(want) {
		t.Errorf("keys = %q, want %d keys", keys, len(want))
	}
}

func TestNoCardToken(t *testing.T) {
	l, _ := newTestLimiter(t, wide)
	d, err := l.Allow(context.Background(), req(routing.OpChange, "", "acq1", "T1"))
	if !errors.Is(err, ErrNoCardToken) || d != wantDown {
		t.Errorf("Allow(no token) = %+v, %v; want %+v, ErrNoCardToken", d, err, wantDown)
	}
	if err := l.Record(context.Background(), req(routing.OpChange, "", "acq1", "T1"), "55"); !errors.Is(err, ErrNoCardToken) {
		t.Errorf("Record(no token) = %v, want ErrNoCardToken", err)
	}
}

func TestRedisDownFailsClosedAndFallsBack(t *testing.T) {
	l, m := newTestLimiter(t, Config{TerminalRPS: 1, TerminalBurst: 2, AcquirerRPS: 1000, AcquirerBurst: 1000})
	mustAllow(t, l, req(routing.OpChange, "c1", "acq1", "T1"))
	m.Close()

	ctx := context.Background()
	for i := range 3 {
		d, err := l.Allow(ctx, req(routing.OpChange, "c1", "acq1", "T1"))
		if !errors.Is(err, ErrUnavailable) || d != wantDown {
			t.Fatalf("Allow #%d with Redis down = %+v, %v; want %+v, ErrUnavailable", i+1, d, err, wantDown)
		}
	}
	if err := l.Record(ctx, req(routing.OpChange, "c1", "acq1", "T1"), "55"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Record with Redis down = %v, want ErrUnavailable", err)
	}
	s := l.Stats()
	// 3 Allows x 2 throughput limits decided locally.
	want := Stats{Allowed: 1, Refused: 3, FailedClosed: 3, Fallbacks: 6, RecordErrors: 1}
	if s != want {
		t.Errorf("Stats() = %+v, want %+v", s, want)
	}
	// The local terminal bucket (burst 2) saw the traffic.
	if l.termLoc.allow("acq1\x00T1", t0) {
		t.Error("local terminal bucket allowed a 4th request at t0, want refused (burst 2)")
	}

	if err := m.Restart(); err != nil {
		t.Fatalf("miniredis restart: %v", err)
	}
	m.SetTime(t0.Add(time.Minute))
	// Restarted: the scripts are loaded again (NOSCRIPT → EVAL) and limits work.
	mustAllow(t, l, req(routing.OpChange, "c2", "acq1", "T1"))
}

// A throughput script that fails while the card script works (in Cluster
// mode: the terminal's node is down) is decided by the local bucket.
func TestThroughputFallbackAlone(t *testing.T) {
	l, m := newTestLimiter(t, Config{TerminalRPS: 1, TerminalBurst: 2, AcquirerRPS: 1000, AcquirerBurst: 1000})
	l.split = true // the Cluster path: one script per slot
	// A key of the wrong type makes the terminal's GCRA script fail.
	if _, err := m.Lpush("pg:{t:acq1:T1}", "x"); err != nil {
		t.Fatalf("LPUSH: %v", err)
	}
	mustAllow(t, l, req(routing.OpChange, "c1", "acq1", "T1"))
	mustAllow(t, l, req(routing.OpChange, "c2", "acq1", "T1"))
	mustRefuse(t, l, req(routing.OpChange, "c3", "acq1", "T1"), wantTerminal) // local burst 2
	if s := l.Stats(); s.Fallbacks != 3 || s.FailedClosed != 0 {
		t.Errorf("Stats() = %+v, want 3 fallbacks, 0 failed closed", s)
	}
	if got, _ := m.Get("pg:{c:c3}:ops:20260314"); got != "0" {
		t.Errorf("c3 operations = %q, want 0 (refunded)", got)
	}
}

// roundTrips counts what a client sends: single commands and pipelines.
type roundTrips struct{ single, pipelines, cmds int }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" && cmd.Name() != "client" { // connection set-up, not ours
			r.single++
		}
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.pipelines++
		r.cmds += len(cmds)
		return next(ctx, cmds)
	}
}

func TestAllowIsOneRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		split bool // Redis Cluster: one script per slot group
		give  *routing.Request
		want  roundTrips
	}{
		// A single Redis: one script, sent as a single command.
		{"allowed", false, req(routing.OpChange, "rt", "acq1", "T2"), roundTrips{single: 1}},
		{"no terminal", false, req(routing.OpChange, "rt", "acq1", ""), roundTrips{single: 1}},
		{"terminal refused", false, req(routing.OpChange, "rt", "acq1", "T1"), roundTrips{single: 1}},
		{"cluster allowed", true, req(routing.OpChange, "rt", "acq1", "T2"), roundTrips{pipelines: 1, cmds: 3}},
		{"cluster no terminal", true, req(routing.OpChange, "rt", "acq1", ""), roundTrips{pipelines: 1, cmds: 2}},
		// A throughput refusal gives the card's count back: the one extra trip.
		{"cluster terminal refused", true, req(routing.OpChange, "rt", "acq1", "T1"), roundTrips{single: 1, pipelines: 1, cmds: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTestLimiter(t, Config{TerminalRPS: 1, TerminalBurst: 1, AcquirerRPS: 1000, AcquirerBurst: 1000})
			l.split = tt.split
			// Load every script on the server (the first use of each is
			// EVALSHA, NOSCRIPT, then EVAL), and spend T1's burst.
			mustAllow(t, l, req(routing.OpChange, "rt", "acq1", "T1"))
			mustRefuse(t, l, req(routing.OpChange, "rt", "acq1", "T1"), wantTerminal)
			got := &roundTrips{}
			l.rdb.AddHook(got)
			l.Allow(context.Background(), tt.give)
			if *got != tt.want {
				t.Errorf("Allow sent %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestScriptFlushReloads(t *testing.T) {
	l, m := newTestLimiter(t, wide)
	mustAllow(t, l, req(routing.OpChange, "c1", "acq1", "T1"))
	if err := l.rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	mustAllow(t, l, req(routing.OpChange, "c1", "acq1", "T1"))
	if got, _ := m.Get("pg:{c:c1}:ops:20260314"); got != "2" {
		t.Errorf("operations after SCRIPT FLUSH = %q, want 2", got)
	}
}

func TestContextExpired(t *testing.T) {
	l, _ := newTestLimiter(t, wide)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := l.Allow(ctx, req(routing.OpChange, "c1", "acq1", "T1"))
	if !errors.Is(err, ErrUnavailable) || d != wantDown {
		t.Errorf("Allow(cancelled ctx) = %+v, %v; want %+v, ErrUnavailable", d, err, wantDown)
	}
}
