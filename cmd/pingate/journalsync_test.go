package main

import (
	"context"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/loadgen"
)

// TestJournalSyncIntervalSpacesFsyncs: events.journal_sync_interval reaches
// the journal's write-ahead log. Under concurrent PIN changes over TCP, no
// two fsyncs are closer than the interval (pebble's WALMinSyncInterval holds
// the next one back), so the journal makes at most one fsync per interval
// however many writes wait, and every request is still answered. Without
// the setting wired, this disk's fsyncs (a few hundred microseconds) would
// run several per interval.
func TestJournalSyncIntervalSpacesFsyncs(t *testing.T) {
	const interval = 10 * time.Millisecond
	g := gatewaytest.Start(t, func(c *gateway.Config) {
		c.Events.JournalSyncInterval = interval
		c.Limits.TerminalRPS, c.Limits.TerminalBurst = 100000, 100000
		raiseLimitsForLoad(c)
	})
	if err := waitReady(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	mix, err := loadgen.ParseMix("change=100")
	if err != nil {
		t.Fatal(err)
	}
	p := loadgen.Params{Target: g.AcquirerAddr(), Conns: 2, InFlight: 8, Duration: time.Second, Timeout: 30 * time.Second,
		Mix: mix, Pop: embeddedPopulation(), Terminals: 10000, Seed: 7}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	before, start := g.Journal().Stats(), time.Now()
	rep, err := loadgen.Run(context.Background(), p, nil)
	elapsed := time.Since(start)
	after := g.Journal().Stats()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if rep.Requests == 0 || rep.Errors != 0 || rep.Codes["00"] == 0 {
		t.Fatalf("load: %d requests, %d errors, codes %v", rep.Requests, rep.Errors, rep.Codes)
	}
	syncs, appends := after.Syncs-before.Syncs, after.Appends-before.Appends
	t.Logf("%d answers, %d journal appends, %d WAL fsyncs in %v", rep.Requests, appends, syncs, elapsed.Round(time.Millisecond))
	// At most one fsync per interval, plus the one that opens the run.
	if most := uint64(elapsed/interval) + 1; syncs > most {
		t.Errorf("%d WAL fsyncs in %v, want at most %d (one per %v)", syncs, elapsed.Round(time.Millisecond), most, interval)
	}
	if appends < 2*syncs {
		t.Errorf("%d journal appends shared %d fsyncs: want several per fsync", appends, syncs)
	}
}
