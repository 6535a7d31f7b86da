package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/integration/redislimit"
	"pingate/integration/testservers"
	"pingate/routing"
)

// These tests run against a real redis-server started by testservers (skipped
// without one, failed without one when CI=true).

func newLimiter(t testing.TB, addr string, cfg redislimit.Config) *redislimit.Limiter {
	t.Helper()
	cfg.Addrs = []string{addr}
	l, err := redislimit.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

var seq atomic.Int64

func request(op routing.Operation, token, acq, term string) *routing.Request {
	return &routing.Request{ID: fmt.Sprint("it-", seq.Add(1)), Operation: op, Channel: routing.ChannelATM,
		Acquirer: acq, Terminal: term, CardToken: token}
}

func allow(t *testing.T, l *redislimit.Limiter, r *routing.Request) routing.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), r)
	if err != nil {
		t.Fatalf("Allow(%s/%s) error: %v", r.Acquirer, r.Terminal, err)
	}
	return d
}

func TestRealRedisLimitsSharedByTwoInstances(t *testing.T) {
	addr, _ := testservers.StartRedis(t)
	cfg := redislimit.Config{CardOpsPerDay: 5, CardWrongPINPerHour: 2,
		TerminalRPS: 0.001, TerminalBurst: 3, // one token per 1000 s: no refill during the test
		AcquirerRPS: 1000, AcquirerBurst: 1000}
	a, b := newLimiter(t, addr, cfg), newLimiter(t, addr, cfg)
	ctx := context.Background()

	t.Run("card daily", func(t *testing.T) {
		for i := range 5 {
			l := []*redislimit.Limiter{a, b}[i%2]
			if d := allow(t, l, request(routing.OpChange, "daily", "acq1", fmt.Sprint("D", i))); !d.Allowed {
				t.Fatalf("operation %d = %+v, want allowed", i+1, d)
			}
		}
		for _, l := range []*redislimit.Limiter{a, b} {
			if d := allow(t, l, request(routing.OpChange, "daily", "acq1", "D9")); d.Allowed || d.Refusal != routing.ErrCardDailyLimit {
				t.Errorf("6th operation = %+v, want refused card_daily_limit", d)
			}
		}
	})

	t.Run("wrong PIN", func(t *testing.T) {
		for range 2 {
			if err := a.Record(ctx, request(routing.OpChange, "wp", "acq1", "W1"), "55"); err != nil {
				t.Fatalf("Record(55): %v", err)
			}
		}
		if d := allow(t, b, request(routing.OpChange, "wp", "acq2", "W2")); d.Allowed || d.Refusal != routing.ErrCardWrongPINLimit {
			t.Errorf("change after 2 wrong PINs recorded by the other instance = %+v, want refused 75", d)
		}
	})

	t.Run("terminal", func(t *testing.T) {
		for i := range 3 {
			l := []*redislimit.Limiter{a, b}[i%2]
			if d := allow(t, l, request(routing.OpChange, fmt.Sprint("term", i), "acq1", "T1")); !d.Allowed {
				t.Fatalf("request %d = %+v, want allowed (burst 3)", i+1, d)
			}
		}
		if d := allow(t, b, request(routing.OpChange, "term9", "acq1", "T1")); d.Allowed || d.Refusal != routing.ErrTerminalLimit {
			t.Errorf("4th request = %+v, want refused terminal_rate_limit", d)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := []*redislimit.Limiter{a, b}[i%2]
				d, err := l.Allow(ctx, request(routing.OpReset, "race", "acq1", fmt.Sprint("R", i)))
				if err == nil && d.Allowed {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		if got := allowed.Load(); got != 5 {
			t.Errorf("40 concurrent operations on one card through 2 instances: %d allowed, want exactly 5", got)
		}
	})
}

func TestRealRedisStoppedAndRestarted(t *testing.T) {
	r := testservers.StartRedisServer(t)
	cfg := redislimit.Config{TerminalRPS: 1000, TerminalBurst: 1000, AcquirerRPS: 1000, AcquirerBurst: 1000}
	a, b := newLimiter(t, r.Addr, cfg), newLimiter(t, r.Addr, cfg)
	ctx := context.Background()
	for _, l := range []*redislimit.Limiter{a, b} {
		if d := allow(t, l, request(routing.OpChange, "c1", "acq1", "T1")); !d.Allowed {
			t.Fatalf("before stop: %+v, want allowed", d)
		}
	}

	r.Stop()
	for _, l := range []*redislimit.Limiter{a, b} {
		d, err := l.Allow(ctx, request(routing.OpChange, "c1", "acq1", "T1"))
		if !errors.Is(err, redislimit.ErrUnavailable) || d.Allowed || d.Refusal != routing.ErrLimiterUnavailable {
			t.Errorf("Redis stopped: Allow = %+v, %v; want refused ErrLimiterUnavailable, ErrUnavailable", d, err)
		}
		if s := l.Stats(); s.FailedClosed != 1 || s.Fallbacks != 2 {
			t.Errorf("Redis stopped: Stats() = %+v, want 1 failed closed, 2 local throughput decisions", s)
		}
	}
	if err := a.Record(ctx, request(routing.OpChange, "c1", "acq1", "T1"), "55"); !errors.Is(err, redislimit.ErrUnavailable) {
		t.Errorf("Redis stopped: Record(55) = %v, want ErrUnavailable", err)
	}

	r.Start() // empty, and without our scripts: EVALSHA → NOSCRIPT → EVAL
	for _, l := range []*redislimit.Limiter{a, b} {
		// The pool may still hold a connection from before the restart, and
		// go-redis may wait a moment before dialling again after failures;
		// the first answers can be 91. Bounded wait, no timing assertion.
		deadline := time.Now().Add(15 * time.Second)
		for {
			d, err := l.Allow(ctx, request(routing.OpChange, "c2", "acq1", "T1"))
			if err == nil && d.Allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after restart: Allow = %+v, %v; want allowed again", d, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// BenchmarkAllow measures one Allow (one EVALSHA on a single Redis) and one
// Claim+Finish (the shared window's two scripts) against a
// real redis-server, beside a bare PING round trip on the same server as the
// baseline, serially and from parallel goroutines.
func BenchmarkAllow(b *testing.B) {
	addr, _ := testservers.StartRedis(b)
	cfg := redislimit.Config{CardOpsPerDay: 1 << 30, TerminalRPS: 1e6, TerminalBurst: 1 << 30,
		AcquirerRPS: 1e6, AcquirerBurst: 1 << 30, ReadTimeout: time.Second}
	l := newLimiter(b, addr, cfg)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	b.Cleanup(func() { rdb.Close() })
	ctx := context.Background()

	// Correctness once, before timing.
	if d, err := l.Allow(ctx, request(routing.OpChange, "bench", "acq1", "T1")); err != nil || !d.Allowed {
		b.Fatalf("Allow = %+v, %v; want allowed", d, err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		b.Fatalf("PING: %v", err)
	}

	b.Run("baseline-ping", func(b *testing.B) {
		b.ReportAllocs()
		cpu := redisCPU(b, rdb)
		for b.Loop() {
			if err := rdb.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
		reportRedisCPU(b, rdb, cpu)
	})
	b.Run("allow", func(b *testing.B) {
		b.ReportAllocs()
		r := request(routing.OpChange, "bench", "acq1", "T1")
		cpu := redisCPU(b, rdb)
		for b.Loop() {
			if d, err := l.Allow(ctx, r); err != nil || !d.Allowed {
				b.Fatalf("Allow = %+v, %v", d, err)
			}
		}
		reportRedisCPU(b, rdb, cpu)
	})
	b.Run("claim-finish", func(b *testing.B) {
		// A request with a STAN: the window's check and every limit in one
		// script, then its outcome stored (Finish) — the limiter's whole
		// cost per request on the acquirer channel.
		b.ReportAllocs()
		r := request(routing.OpChange, "bench-w", "acq1", "T1")
		r.Transmit = "1203061500"
		entry := routing.WindowEntry{Outcome: routing.Outcome{Code: "00", Outcome: routing.OutcomeApproved, Reason: "approved", Issuer: "ssbank", EventID: "ev"}, LimitCode: "00"}
		cpu := redisCPU(b, rdb)
		for b.Loop() {
			r.STAN = strconv.FormatInt(seq.Add(1), 10) // a new request each time
			c, err := l.Claim(ctx, r, time.Minute)
			if err != nil || !c.First || !c.Decision.Allowed {
				b.Fatalf("Claim = %+v, %v", c, err)
			}
			if err := l.Finish(ctx, r, entry, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
		reportRedisCPU(b, rdb, cpu)
	})
	b.Run("claim-finish-parallel16", func(b *testing.B) {
		// As claim-finish, from 16 goroutines: their scripts share
		// pipelines (the batcher), as concurrent requests of a gateway do.
		b.ReportAllocs()
		b.SetParallelism(8)
		entry := routing.WindowEntry{Outcome: routing.Outcome{Code: "00", Outcome: routing.OutcomeApproved, Reason: "approved", Issuer: "ssbank", EventID: "ev"}, LimitCode: "00"}
		var n atomic.Int64
		cpu := redisCPU(b, rdb)
		b.RunParallel(func(pb *testing.PB) {
			i := n.Add(1)
			r := request(routing.OpChange, fmt.Sprint("bench-wp", i), "acq1", fmt.Sprint("T", i))
			r.Transmit = "1203061500"
			for pb.Next() {
				r.STAN = strconv.FormatInt(seq.Add(1), 10)
				c, err := l.Claim(ctx, r, time.Minute)
				if err != nil || !c.First || !c.Decision.Allowed {
					b.Errorf("Claim = %+v, %v", c, err)
					return
				}
				if err := l.Finish(ctx, r, entry, time.Minute); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRedisCPU(b, rdb, cpu)
	})
	b.Run("baseline-ping-parallel16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8) // 8 x GOMAXPROCS goroutines: 16 on this 2-core machine
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := rdb.Ping(ctx).Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("allow-parallel16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := n.Add(1)
			r := request(routing.OpChange, fmt.Sprint("bench", i), "acq1", fmt.Sprint("T", i))
			for pb.Next() {
				if d, err := l.Allow(ctx, r); err != nil || !d.Allowed {
					b.Errorf("Allow = %+v, %v", d, err)
					return
				}
			}
		})
	})
}

// redisCPU is the redis-server's CPU time so far (INFO cpu: used_cpu_sys +
// used_cpu_user, the server's own /proc figures), for a benchmark to report
// the server's cost per operation beside its own.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatalf("INFO cpu: %v", err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu %s=%q: %v", k, v, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// reportRedisCPU reports the redis-server's CPU per operation since since.
func reportRedisCPU(b *testing.B, rdb *redis.Client, since time.Duration) {
	b.Helper()
	used := redisCPU(b, rdb) - since
	b.ReportMetric(float64(used.Nanoseconds())/float64(b.N)/1e3, "redis-µs/op")
}

// TestRealRedisReplicaAcks: with replica_acks 1 a request proceeds only once
// a replica has its writes; a Redis without one refuses it, fail closed.
func TestRealRedisReplicaAcks(t *testing.T) {
	addr, _ := testservers.StartRedis(t)
	l := newLimiter(t, addr, redislimit.Config{ReplicaAcks: 1, ReplicaAckTimeout: 10 * time.Millisecond})
	d, err := l.Allow(context.Background(), request(routing.OpChange, "acks", "acq1", "T1"))
	if !errors.Is(err, redislimit.ErrUnavailable) || d.Allowed || d.Refusal != routing.ErrLimiterUnavailable {
		t.Errorf("Allow without a replica = %+v, %v; want the fail-closed refusal", d, err)
	}
	c, err := l.Claim(context.Background(), &routing.Request{ID: "acks-1", Operation: routing.OpUnblock, CardToken: "acks-w",
		Acquirer: "acq1", Terminal: "T1", STAN: "000001", Transmit: "1203070000"}, time.Minute)
	if !errors.Is(err, redislimit.ErrUnavailable) || c.First {
		t.Errorf("Claim without a replica = %+v, %v; want ErrUnavailable", c, err)
	}
	if !strings.Contains(fmt.Sprint(err), "0 of 1 replicas") {
		t.Errorf("error %q does not say how many replicas acknowledged", err)
	}
	// An 0420's mark of a request not yet received is held to the same.
	marked, err := l.Forbid(context.Background(), routing.WindowID{CardToken: "acks-f", Acquirer: "acq1", Terminal: "T1",
		STAN: "000002", Transmit: "1203070000"}, time.Minute)
	if !errors.Is(err, redislimit.ErrUnavailable) || marked || !strings.Contains(fmt.Sprint(err), "0 of 1 replicas") {
		t.Errorf("Forbid without a replica = %v, %v; want ErrUnavailable naming 0 of 1 replicas", marked, err)
	}
	// The refused claim spent nothing and holds nothing in flight. (Allow's
	// card, which no window guards, may have been counted twice and
	// refunded once, should the client have retried the script after a
	// slow answer: the refusal errs on the safe side.)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "pg:{c:acks-w}*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if v, _ := rdb.Get(context.Background(), k).Result(); !strings.Contains(k, ":ops:") || v != "0" {
			t.Errorf("after the refusals %s = %q, want only the day's counter at 0 (refunded; the claim removed)", k, v)
		}
	}
	ok := newLimiter(t, addr, redislimit.Config{})
	if d, err := ok.Allow(context.Background(), request(routing.OpChange, "acks2", "acq1", "T1")); err != nil || !d.Allowed {
		t.Errorf("Allow with replica_acks 0 = %+v, %v; want allowed", d, err)
	}
}
