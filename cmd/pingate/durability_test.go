package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/integration/outbox"
	"pingate/integration/reversalstore"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// stoppedJournalEvents reads every event in the journal of a stopped gateway.
func stoppedJournalEvents(t *testing.T, dir string) []routing.Event {
	t.Helper()
	j, err := outbox.Open(outbox.Config{Dir: dir, Source: "/pingate/ops-shutdown"})
	if err != nil {
		t.Fatalf("open journal after exit: %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = j.Shutdown(ctx)
	}()
	entries, err := j.Entries(1, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]routing.Event, 0, len(entries))
	for _, e := range entries {
		ev, err := events.Decode(e.Message)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// ledgerMatchesRecords is the independent accounting: every operation the
// issuer applied either stands with an approved event (and no reversal), or
// was reversed at the issuer; an approved event the issuer reversed has a
// reversed event naming it; every approved event is an operation the issuer
// applied; a request answered 00 stands at the issuer.
func ledgerMatchesRecords(t *testing.T, audit []issuersim.Applied, evs []routing.Event, answered map[string]string) (standing, reversed int) {
	t.Helper()
	approved := map[string]string{} // terminal → event id
	reversedEv := map[string]bool{} // event id reversed by an event
	for _, ev := range evs {
		switch ev.Outcome {
		case routing.OutcomeApproved:
			approved[ev.Terminal] = ev.ID
		case routing.OutcomeReversed:
			if ev.Reverses != "" {
				reversedEv[ev.Reverses] = true
			}
		}
	}
	applied := map[string]bool{}
	for _, a := range audit {
		applied[a.Terminal] = true
		id, hasEvent := approved[a.Terminal]
		switch {
		case a.Reversed:
			reversed++
			if hasEvent && !reversedEv[id] {
				t.Errorf("operation at %s: reversed at the issuer, but its approved event %s has no reversal event", a.Terminal, id)
			}
			if answered[a.Terminal] == iso8583.RCApproved {
				t.Errorf("operation at %s: answered 00, then reversed at the issuer", a.Terminal)
			}
		case !hasEvent:
			t.Errorf("operation at %s stands at the issuer with no event and no reversal", a.Terminal)
		case reversedEv[id]:
			t.Errorf("operation at %s stands at the issuer, but an event says it was reversed", a.Terminal)
		default:
			standing++
		}
	}
	for term := range approved {
		if !applied[term] {
			t.Errorf("approved event for %s, which the issuer never applied", term)
		}
	}
	for term, code := range answered {
		if code == iso8583.RCApproved && !applied[term] {
			t.Errorf("request at %s answered 00, which the issuer never applied", term)
		}
	}
	return standing, reversed
}

// TestKilledGatewayLeavesEveryChangeRecordedOrReversed: `pingate serve` runs
// PIN changes under load against an issuer simulator and is killed with
// SIGKILL at random instants, six times, and restarted on the same journal
// and reversal store. Then every operation the issuer's ledger applied has
// an event or was reversed by an advice the issuer received (write-ahead
// reversals), and no answered 00 was reversed.
func TestKilledGatewayLeavesEveryChangeRecordedOrReversed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	pop, sim, simAddr := auditedIssuer(t, 3*time.Millisecond)
	dir := t.TempDir()
	cfgPath := opsServeConfig(t, dir, simAddr, 5*time.Second)
	var (
		next     atomic.Int64
		mu       sync.Mutex
		answered = map[string]string{}
	)
	load := func(acq string, stop <-chan struct{}) {
		changeLoad(acq, 8, pop, &next, stop, func(c *loadgen.Client, op loadgen.Op) bool {
			code, err := opsDo(context.Background(), c, op)
			if err != nil {
				return false // the gateway died
			}
			mu.Lock()
			answered[op.Terminal] = code
			mu.Unlock()
			return true
		})
	}
	const kills = 6
	killUnderLoad(t, cfgPath, kills, 100*time.Millisecond, load)
	restartUntilNoReversalOwed(t, cfgPath, filepath.Join(dir, "journal"), nil)
	audit := sim.Audit()
	evs := stoppedJournalEvents(t, filepath.Join(dir, "journal"))
	standing, reversed := ledgerMatchesRecords(t, audit, evs, answered)
	if standing == 0 {
		t.Fatal("no operation stands at the issuer: the load did not run")
	}
	t.Logf("%d kills: %d requests answered, issuer applied %d (%d standing, %d reversed), %d events, %d reversal advices received",
		kills, len(answered), len(audit), standing, reversed, len(evs), sim.Reversals.Load())
}

// changeLoad runs workers ATM connections to acq, each sending PIN changes
// (to 4826) of pop's usable cards numbered from next through send, until
// stop is closed or send returns false (the gateway died).
func changeLoad(acq string, workers int, pop issuersim.Population, next *atomic.Int64, stop <-chan struct{}, send func(*loadgen.Client, loadgen.Op) bool) {
	connWorkers(acq, workers, stop, func(c *loadgen.Client) bool {
		i := int(next.Add(1))
		if !pop.Usable(i) {
			return true
		}
		return send(c, opsChange(pop, i, "4826"))
	})
}

// connWorkers runs workers ATM connections to acq, each calling step on its
// connection until stop is closed or step returns false (the gateway
// died), and returns once every worker has.
func connWorkers(acq string, workers int, stop <-chan struct{}, step func(*loadgen.Client) bool) {
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := loadgen.Dial(context.Background(), acq)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !step(c) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// auditedIssuer starts an issuer simulator with latency, keeping its
// ledger (Audit) for the kill tests to check the journal against, on a
// population of 10 000 cards per development BIN.
func auditedIssuer(t *testing.T, latency time.Duration) (issuersim.Population, *issuersim.Sim, string) {
	t.Helper()
	pop := issuersim.Population{Seed: 1, BINs: gateway.DevBINs(), PerBIN: 10000}
	sim, addr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop, Latency: latency, Audit: true,
		Server: iso8583.Config{MaxInFlightPerConn: 4096}})
	return pop, sim, addr
}

// killUnderLoad starts pingate serve on cfgPath kills times; each time,
// once it is ready, it runs load against its acquirer listener, SIGKILLs it
// after minUp plus up to 400 ms, and stops the load once the process is gone.
func killUnderLoad(t *testing.T, cfgPath string, kills int, minUp time.Duration, load func(acq string, stop <-chan struct{})) {
	t.Helper()
	for range kills {
		gw := opsStart(t, "serve", "--config", cfgPath)
		acq, httpAddr, _ := servingAddrs(t, gw.firstLine(t))
		waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { load(acq, stop); close(done) }()
		time.Sleep(minUp + time.Duration(rand.IntN(400))*time.Millisecond)
		_ = gw.cmd.Process.Signal(syscall.SIGKILL)
		gw.wait(t, 20*time.Second)
		close(stop)
		<-done
	}
}

// restartUntilNoReversalOwed starts `serve --config cfgPath` and stops it
// with SIGTERM until no reversal is owed in journalDir (each start sends
// what the store holds). started, if not nil, runs on each start once the
// gateway is ready, with its acquirer and HTTP addresses.
func restartUntilNoReversalOwed(t *testing.T, cfgPath, journalDir string, started func(acq, httpAddr string)) {
	t.Helper()
	for round := 0; ; round++ {
		gw := opsStart(t, "serve", "--config", cfgPath)
		acq, httpAddr, _ := servingAddrs(t, gw.firstLine(t))
		waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
		if started != nil {
			started(acq, httpAddr)
		}
		time.Sleep(500 * time.Millisecond)
		_ = gw.cmd.Process.Signal(syscall.SIGTERM)
		if code := gw.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("serve exited %d after SIGTERM\n%s", code, opsTail(gw.stderr.String(), 3000))
		}
		n := pendingReversals(t, journalDir)
		if n == 0 {
			return
		}
		if round == 10 {
			t.Fatalf("%d reversals still owed after %d restarts", n, round+1)
		}
	}
}

// pendingReversals counts the reversals a stopped gateway still owes: the
// advices kept in its journal's database (dir, events.journal_dir).
func pendingReversals(t *testing.T, dir string) int {
	t.Helper()
	s, err := openTestReversalStore(dir)
	if err != nil {
		t.Fatalf("open reversal store: %v", err)
	}
	defer s.Close()
	p, err := s.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(p)
}

// openTestReversalStore opens the reversal store of a stopped gateway, kept
// in its journal's database (dir: events.journal_dir).
// It derives the data key on the development keys, as the gateway does.
func openTestReversalStore(dir string) (*reversalstore.Store, error) {
	ring := pinblock.NewKeyring(0)
	if err := devkeys.Load(ring); err != nil {
		return nil, err
	}
	sealer, err := pinblock.NewSoftwareModule(ring, pinblock.PINPolicy{}, nil).DataSealer(pinblock.KeyRef{ID: devkeys.ATMZMK}, "reversals")
	if err != nil {
		return nil, err
	}
	return reversalstore.Open(dir, sealer)
}

// TestJournalBelowReserveRefusesBeforeTheIssuer: with less free space on
// the journal's disk than events.min_free, a PIN change over TCP is
// answered 91 journal_full without the issuer being called, and /readyz
// says why.
func TestJournalBelowReserveRefusesBeforeTheIssuer(t *testing.T) {
	// A reserve above the free space, but less than twice it: the refusals'
	// own events still go into the upper half of the reserve.
	var st syscall.Statfs_t
	if err := syscall.Statfs(t.TempDir(), &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	g := startTestGateway(t, func(c *gateway.Config) { c.Events.MinFree = free + free/2 })
	waitIssuer(t, g)
	c, err := loadgen.Dial(context.Background(), g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pop := opsPopulation(g.Config().IssuerSim)
	before := g.Sim().Requests.Load()
	code, err := opsDo(context.Background(), c, opsChange(pop, 7, "4826"))
	if err != nil || code != iso8583.RCIssuerUnavailable {
		t.Fatalf("change with the journal disk below its reserve = %s, %v; want 91", code, err)
	}
	if n := g.Sim().Requests.Load() - before; n != 0 {
		t.Fatalf("issuer got %d requests, want none: the journal refuses before the issuer is called", n)
	}
	resp, err := http.Get("http://" + g.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "free space below the reserve") {
		t.Fatalf("readyz = %d %s, want 503 naming the reserve", resp.StatusCode, body)
	}
	// The refusal itself is an outcome, recorded in the reserve.
	es, err := g.Journal().Entries(1, 10)
	if err != nil || len(es) != 1 {
		t.Fatalf("journal holds %d entries (%v), want the refusal's event", len(es), err)
	}
	ev, err := events.Decode(es[0].Message)
	if err != nil || ev.Code != iso8583.RCIssuerUnavailable || ev.Reason != "journal_full" {
		t.Fatalf("refusal's event = %s %s (%v), want 91 journal_full", ev.Code, ev.Reason, err)
	}
}

// waitIssuer waits until the gateway's issuer links are signed on.
func waitIssuer(t *testing.T, g *gateway.Gateway) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := true
		for _, up := range g.SignedOn() {
			all = all && up
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("issuer links did not sign on")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fillTo writes a filler file in dir until the file system has at most
// leave bytes free (0: until ENOSPC).
func fillTo(t *testing.T, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize
		if free <= leave {
			return p
		}
		n := min(int64(len(chunk)), free-leave)
		if _, err := f.Write(chunk[:n]); err != nil {
			return p // ENOSPC: full
		}
	}
}

// TestJournalDiskFillsUnderLoad: a gateway with its journal on a 20 MiB
// tmpfs runs PIN changes under load while the disk is filled, first to below
// the reserve (events.min_free), then to the last byte, and freed after
// each. Every request is answered (never a hang or a dropped connection),
// approvals stop while the disk is short and resume by themselves after each
// fill, the full one included (no restart), nothing
// panics, Shutdown drains within the grace, and after a restart the issuer's
// ledger matches the journal's events and the reversals it received.
func TestJournalDiskFillsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs and runs load")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s): this test needs mount permission", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	pop, sim, simAddr := auditedIssuer(t, 2*time.Millisecond)
	// The advices owed ahead live in the journal's database, on the small
	// disk too.
	journalDir := filepath.Join(mnt, "journal")
	const grace = 5 * time.Second
	onTmpfs := func(c *gateway.Config) {
		gatewaytest.ExternalIssuer(simAddr)(c)
		c.Instance = "ops-shutdown"
		off := false
		c.Branch.Enabled = &off // no development certificates on the small disk
		c.Events.JournalDir = journalDir
		c.Events.MinFree, c.Events.JournalWriteTimeout = 4<<20, time.Second
		c.Acquirer.ShutdownGrace = grace
	}
	shutdown := func(g *gateway.Gateway) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown within the %s grace: %v", grace, err)
		}
	}

	g := gatewaytest.Start(t, onTmpfs)
	acq, httpAddr := g.AcquirerAddr(), g.HTTPAddr()
	waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
	var (
		next              atomic.Int64
		mu                sync.Mutex
		answered          = map[string]string{}
		unanswered        atomic.Int64
		approvals, refusd atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := loadgen.Dial(context.Background(), acq)
			if err != nil {
				unanswered.Add(1)
				return
			}
			defer c.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(next.Add(1))
				if !pop.Usable(i) {
					continue
				}
				op := opsChange(pop, i, "4826")
				code, err := opsDo(context.Background(), c, op)
				if err != nil {
					unanswered.Add(1)
					return
				}
				mu.Lock()
				answered[op.Terminal] = code
				mu.Unlock()
				if code == iso8583.RCApproved {
					approvals.Add(1)
				} else {
					refusd.Add(1)
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				t.Fatalf("%s: not within 30s (%d approvals, %d refusals, %d unanswered)", what,
					approvals.Load(), refusd.Load(), unanswered.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ready := func() int {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor("approvals under load", func() bool { return approvals.Load() >= 100 })

	// Below the reserve: approvals stop, readiness says so; freed: they resume.
	filler := fillTo(t, mnt, 3<<20)
	waitFor("readyz 503 below the reserve", func() bool { return ready() == http.StatusServiceUnavailable })
	r0 := refusd.Load()
	waitFor("refusals below the reserve", func() bool { return refusd.Load() >= r0+50 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor("readyz 200 once freed", func() bool { return ready() == http.StatusOK })
	a0 := approvals.Load()
	waitFor("approvals resume by themselves", func() bool { return approvals.Load() >= a0+50 })

	// To the last byte: still every request answered, no panic. Freed, the
	// journal recovers in process (a fatal ENOSPC in pebble included:
	// pebblestore reopens it) and approvals resume without a restart.
	filler = fillTo(t, mnt, 0)
	r0 = refusd.Load()
	waitFor("refusals on a full disk", func() bool { return refusd.Load() >= r0+50 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor("readyz 200 once the full disk is freed", func() bool { return ready() == http.StatusOK })
	a0 = approvals.Load()
	waitFor("approvals resume by themselves after a full disk", func() bool { return approvals.Load() >= a0+50 })
	close(stop)
	wg.Wait()
	if n := unanswered.Load(); n != 0 {
		t.Errorf("%d requests got no answer from a running gateway, want 0", n)
	}
	shutdown(g)
	for round := 0; ; round++ {
		g2 := gatewaytest.Start(t, onTmpfs)
		waitHTTP(t, "http://"+g2.HTTPAddr()+"/readyz", http.StatusOK)
		time.Sleep(500 * time.Millisecond)
		shutdown(g2)
		n := pendingReversals(t, journalDir)
		if n == 0 {
			break
		}
		if round == 10 {
			t.Fatalf("%d reversals still owed after %d restarts", n, round+1)
		}
	}
	audit := sim.Audit()
	evs := stoppedJournalEvents(t, journalDir)
	standing, reversed := ledgerMatchesRecords(t, audit, evs, answered)
	t.Logf("%d answered (%d approvals, %d refusals); issuer applied %d (%d standing, %d reversed); %d events; %d reversal advices",
		len(answered), approvals.Load(), refusd.Load(), len(audit), standing, reversed, len(evs), sim.Reversals.Load())
}

// TestJournalDepthLimitRefusesBeforeTheIssuer: with Kafka unreachable and
// events.max_depth 3, the journal holds three events waiting for the relay;
// the next PIN change over TCP is answered 91 journal_full and never reaches
// the issuer (the journal-depth guard, routing.Admitter).
func TestJournalDepthLimitRefusesBeforeTheIssuer(t *testing.T) {
	g := startTestGateway(t, func(c *gateway.Config) {
		c.Events.MaxDepth = 3
		c.Events.KafkaBrokers = []string{freeAddr(t)} // nothing listens there
	})
	waitIssuer(t, g)
	c, err := loadgen.Dial(context.Background(), g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pop := opsPopulation(g.Config().IssuerSim)
	for i := 0; i < 3; i++ {
		if code, err := opsDo(context.Background(), c, opsChange(pop, 20+i, "4826")); err != nil || code != iso8583.RCApproved {
			t.Fatalf("change %d below the depth limit = %s, %v; want 00", i, code, err)
		}
	}
	before := g.Sim().Requests.Load()
	code, err := opsDo(context.Background(), c, opsChange(pop, 30, "4826"))
	if err != nil || code != iso8583.RCIssuerUnavailable {
		t.Fatalf("change at the depth limit = %s, %v; want 91", code, err)
	}
	if n := g.Sim().Requests.Load() - before; n != 0 {
		t.Fatalf("issuer got %d requests at the depth limit, want none", n)
	}
	if err := g.Journal().Admit(); !errors.Is(err, outbox.ErrJournalFull) {
		t.Fatalf("Admit at the depth limit = %v, want ErrJournalFull", err)
	}
}

// syncBlocker holds every write-kind operation of the journal (its WAL
// write and fsync; errorfs does not see pebble's fdatasync on its own) once
// armed, until released: a disk whose commit never returns.
type syncBlocker struct {
	armed   atomic.Bool
	release chan struct{}
}

func (b *syncBlocker) MaybeError(op errorfs.Op, _ string) error {
	if b.armed.Load() && op.OpKind() == errorfs.OpKindWrite {
		<-b.release
	}
	return nil
}

// TestStuckJournalSyncAnswers91: through the acquirer TCP listener, a PIN
// change whose journal commit never returns (a write and Sync the disk holds, injected
// with pebble's errorfs through the test-only Events.JournalFS) is answered
// 91 after events.journal_write_timeout, not left hanging, later requests
// are refused at once, and Shutdown returns within its drain time with the
// disk still stuck.
func TestStuckJournalSyncAnswers91(t *testing.T) {
	pop := issuersim.Population{Seed: 1, BINs: gateway.DevBINs(), PerBIN: 10000}
	_, simAddr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop})
	blk := &syncBlocker{release: make(chan struct{})}
	released := false
	heal := func() {
		if !released {
			released = true
			blk.armed.Store(false)
			close(blk.release)
		}
	}
	t.Cleanup(heal)
	const grace = 3 * time.Second
	// Not gatewaytest.Start: its cleanup's Shutdown would fail on the stuck
	// disk; this test shuts the gateway down itself.
	cfg := gatewaytest.Config(t.TempDir())
	gatewaytest.ExternalIssuer(simAddr)(&cfg)
	off := false
	cfg.Branch.Enabled = &off
	cfg.Events.JournalFS = errorfs.Wrap(vfs.Default, blk)
	cfg.Events.JournalWriteTimeout = 500 * time.Millisecond
	cfg.Acquirer.ShutdownGrace = grace
	g, err := gateway.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- g.Run(context.Background()) }()
	waitHTTP(t, "http://"+g.HTTPAddr()+"/readyz", http.StatusOK)
	c, err := loadgen.Dial(context.Background(), g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	i := 1
	for !pop.Usable(i) {
		i++
	}
	if code, err := opsDo(context.Background(), c, opsChange(pop, i, "4826")); err != nil || code != iso8583.RCApproved {
		t.Fatalf("PIN change on a healthy disk = %q, %v; want %s", code, err, iso8583.RCApproved)
	}
	blk.armed.Store(true)
	for k := 0; k < 2; k++ {
		for i++; !pop.Usable(i); i++ {
		}
		code, err := opsDo(context.Background(), c, opsChange(pop, i, "4826"))
		if err != nil {
			t.Fatalf("PIN change %d with the journal's Sync stuck: no answer (%v), want 91", k, err)
		}
		if code != iso8583.RCIssuerUnavailable {
			t.Fatalf("PIN change %d with the journal's Sync stuck = %q, want 91", k, code)
		}
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		done <- g.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Logf("Shutdown with the disk stuck: %v", err)
	case <-time.After(grace + 30*time.Second):
		t.Fatal("Shutdown with the journal's Sync stuck did not return")
	}
	heal() // the journal's store closes once the held write returns
	<-ran
}

// writeFaults fails every write-kind operation of the journal with ENOSPC
// once armed (pebble's fatal commit error).
type writeFaults struct{ armed atomic.Bool }

func (f *writeFaults) MaybeError(op errorfs.Op, _ string) error {
	if f.armed.Load() && op.OpKind() == errorfs.OpKindWrite {
		return syscall.ENOSPC
	}
	return nil
}

// TestJournalFaultRecoversWithoutRestart: through the acquirer TCP listener
// and /readyz, a journal whose writes fail with ENOSPC answers 91 and shows
// the fault on readiness; once the disk is healed, the same running gateway
// reports ready again and approves PIN changes.
func TestJournalFaultRecoversWithoutRestart(t *testing.T) {
	pop := issuersim.Population{Seed: 1, BINs: gateway.DevBINs(), PerBIN: 10000}
	_, simAddr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop})
	inj := &writeFaults{}
	g := gatewaytest.Start(t, func(c *gateway.Config) {
		gatewaytest.ExternalIssuer(simAddr)(c)
		off := false
		c.Branch.Enabled = &off
		c.Events.JournalFS = errorfs.Wrap(vfs.Default, inj)
	})
	readyz := "http://" + g.HTTPAddr() + "/readyz"
	waitHTTP(t, readyz, http.StatusOK)
	c, err := loadgen.Dial(context.Background(), g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	i := 0
	change := func() string {
		t.Helper()
		for i++; !pop.Usable(i); i++ {
		}
		code, err := opsDo(context.Background(), c, opsChange(pop, i, "4826"))
		if err != nil {
			t.Fatalf("PIN change %d: no answer: %v", i, err)
		}
		return code
	}
	if code := change(); code != iso8583.RCApproved {
		t.Fatalf("PIN change on a healthy disk = %q, want %s", code, iso8583.RCApproved)
	}
	inj.armed.Store(true)
	if code := change(); code != iso8583.RCIssuerUnavailable {
		t.Fatalf("PIN change with the journal failing = %q, want 91", code)
	}
	waitHTTP(t, readyz, http.StatusServiceUnavailable)
	if code := change(); code != iso8583.RCIssuerUnavailable {
		t.Fatalf("PIN change with the journal failed = %q, want 91", code)
	}
	inj.armed.Store(false)
	waitHTTP(t, readyz, http.StatusOK)
	if code := change(); code != iso8583.RCApproved {
		t.Fatalf("PIN change after the disk healed = %q, want %s (recovered without a restart)", code, iso8583.RCApproved)
	}
}
