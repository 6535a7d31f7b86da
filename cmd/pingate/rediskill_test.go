package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pingate/integration/loadgen"
	"pingate/integration/testservers"
	"pingate/iso8583"
)

// TestRedisAndGatewayKilledLeaveTheLedgerRecorded: `pingate serve` with
// limits.backend redis runs PIN changes under load; redis-server is killed
// with SIGKILL mid-load (card limits fail closed: 91 limiter_unavailable,
// nothing reaches the issuer), the gateway is killed with SIGKILL while
// Redis is down and restarted, Redis comes back empty, and the gateway is
// killed once more. Then the issuer's ledger matches the journal: every
// change that stands has its approved event, every reversal has its record,
// no answered 00 was reversed, and while Redis was down no answer was 00.
func TestRedisAndGatewayKilledLeaveTheLedgerRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary, runs redis-server")
	}
	rds := testservers.StartRedisServer(t)
	pop, sim, simAddr := auditedIssuer(t, 3*time.Millisecond)
	dir := t.TempDir()
	cfgPath := opsServeConfig(t, dir, simAddr, 5*time.Second)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), "limits: {backend: memory}", fmt.Sprintf("limits: {backend: redis, addrs: [%q]}", rds.Addr), 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		next      atomic.Int64
		mu        sync.Mutex
		answered  = map[string]string{}
		redisDown atomic.Bool
		downOK    atomic.Int64 // 00 answers to requests sent while Redis was down
	)
	load := func(acq string, stop <-chan struct{}) {
		changeLoad(acq, 8, pop, &next, stop, func(c *loadgen.Client, op loadgen.Op) bool {
			down := redisDown.Load()
			code, err := opsDo(context.Background(), c, op)
			if err != nil {
				return false // the gateway died
			}
			if down && redisDown.Load() && code == iso8583.RCApproved {
				downOK.Add(1)
			}
			mu.Lock()
			answered[op.Terminal] = code
			mu.Unlock()
			return true
		})
	}
	// run starts the gateway (ready only when Redis is up: its readiness
	// does not depend on Redis), loads it, calls mid halfway and kills it.
	run := func(mid func()) {
		gw := opsStart(t, "serve", "--config", cfgPath)
		acq, httpAddr, _ := servingAddrs(t, gw.firstLine(t))
		waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { load(acq, stop); close(done) }()
		time.Sleep(time.Duration(150+rand.IntN(300)) * time.Millisecond)
		if mid != nil {
			mid()
			time.Sleep(time.Duration(150+rand.IntN(300)) * time.Millisecond)
		}
		_ = gw.cmd.Process.Signal(syscall.SIGKILL)
		gw.wait(t, 20*time.Second)
		close(stop)
		<-done
	}
	// redisDown is set once the server has exited and cleared before it
	// starts again, so it never covers a moment Redis was up.
	run(func() { rds.Kill(); redisDown.Store(true) })
	run(nil) // Redis still down
	run(func() { redisDown.Store(false); rds.Start() })
	restartUntilNoReversalOwed(t, cfgPath, filepath.Join(dir, "journal"), nil)

	audit := sim.Audit()
	evs := stoppedJournalEvents(t, filepath.Join(dir, "journal"))
	standing, reversed := ledgerMatchesRecords(t, audit, evs, answered)
	if standing == 0 {
		t.Fatal("no operation stands at the issuer: the load did not run")
	}
	if n := downOK.Load(); n != 0 {
		t.Errorf("%d PIN changes approved while Redis was down, want none (card limits fail closed)", n)
	}
	codes := map[string]int{}
	for _, c := range answered {
		codes[c]++
	}
	t.Logf("answers by code: %v; issuer applied %d (%d standing, %d reversed), %d events", codes, len(audit), standing, reversed, len(evs))
}
