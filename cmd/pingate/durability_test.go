package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pingate/integration/events"
	"pingate/integration/issuersim"
	"pingate/integration/outbox"
	"pingate/integration/reversalstore"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/routing"
)

// startAuditSim runs an issuer simulator in the test process, with its
// audit on, so the test can read the issuer's ledger after the gateway died.
func startAuditSim(t *testing.T, pop issuersim.Population, latency time.Duration) (*issuersim.Sim, string) {
	t.Helper()
	zpk, pvk, err := issuersim.DevelopmentKeys()
	if err != nil {
		t.Fatal(err)
	}
	sim, err := issuersim.New(issuersim.Config{Population: pop, ZPK: zpk, PVK: pvk, Latency: latency, Audit: true,
		Server: iso8583.Config{MaxInFlightPerConn: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = sim.Server().Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Server().Shutdown(ctx)
		<-done
	})
	return sim, ln.Addr().String()
}

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
	pop := issuersim.Population{Seed: 1, BINs: devBINs, PerBIN: 10000}
	sim, simAddr := startAuditSim(t, pop, 3*time.Millisecond)
	dir := t.TempDir()
	cfgPath := opsServeConfig(t, dir, simAddr, 5*time.Second)
	var (
		next     atomic.Int64
		mu       sync.Mutex
		answered = map[string]string{}
	)
	load := func(acq string, stop <-chan struct{}) {
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := dialATM(context.Background(), acq)
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
					i := int(next.Add(1))
					if !pop.Usable(i) {
						continue
					}
					op := opsChange(pop, i, "4826")
					code, err := opsDo(context.Background(), c, op)
					if err != nil {
						return // the gateway died
					}
					mu.Lock()
					answered[op.terminal] = code
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	const kills = 6
	for k := 0; k < kills; k++ {
		gw := opsStart(t, "serve", "--config", cfgPath)
		acq, httpAddr, _ := servingAddrs(t, gw.firstLine(t))
		waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { load(acq, stop); close(done) }()
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		_ = gw.cmd.Process.Signal(syscall.SIGKILL)
		gw.wait(t, 20*time.Second)
		close(stop)
		<-done
	}
	// Restart until every reversal owed has been acknowledged: each start
	// sends what the store holds.
	for round := 0; ; round++ {
		gw := opsStart(t, "serve", "--config", cfgPath)
		_, httpAddr, _ := servingAddrs(t, gw.firstLine(t))
		waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
		time.Sleep(500 * time.Millisecond)
		_ = gw.cmd.Process.Signal(syscall.SIGTERM)
		if code := gw.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("serve exited %d after SIGTERM\n%s", code, opsTail(gw.stderr.String(), 3000))
		}
		n := pendingReversals(t, filepath.Join(dir, "reversals"))
		if n == 0 {
			break
		}
		if round == 10 {
			t.Fatalf("%d reversals still owed after %d restarts", n, round+1)
		}
	}
	audit := sim.Audit()
	evs := stoppedJournalEvents(t, filepath.Join(dir, "journal"))
	standing, reversed := ledgerMatchesRecords(t, audit, evs, answered)
	if standing == 0 {
		t.Fatal("no operation stands at the issuer: the load did not run")
	}
	t.Logf("%d kills: %d requests answered, issuer applied %d (%d standing, %d reversed), %d events, %d reversal advices received",
		kills, len(answered), len(audit), standing, reversed, len(evs), sim.Reversals.Load())
}

// pendingReversals counts the reversals a stopped gateway still owes.
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

// openTestReversalStore opens a stopped gateway's reversal store.
// It derives the data key on the development keys, as the gateway does.
func openTestReversalStore(dir string) (*reversalstore.Store, error) {
	ring := pinblock.NewKeyring(0)
	if err := pinblock.LoadDevelopmentKeys(ring); err != nil {
		return nil, err
	}
	sealer, err := pinblock.NewSoftwareModule(ring, pinblock.PINPolicy{}, nil).DataSealer(pinblock.KeyRef{ID: pinblock.DevATMZMK}, "reversals")
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
	g := startTestGateway(t, func(c *Config) { c.Events.MinFree = 1 << 62 })
	waitIssuer(t, g)
	c, err := dialATM(context.Background(), g.acqAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pop := opsPopulation(g.cfg.IssuerSim)
	before := g.sim.Requests.Load()
	code, err := opsDo(context.Background(), c, opsChange(pop, 7, "4826"))
	if err != nil || code != iso8583.RCIssuerUnavailable {
		t.Fatalf("change with the journal disk below its reserve = %s, %v; want 91", code, err)
	}
	if n := g.sim.Requests.Load() - before; n != 0 {
		t.Fatalf("issuer got %d requests, want none: the journal refuses before the issuer is called", n)
	}
	resp, err := http.Get("http://" + g.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "free space below the reserve") {
		t.Fatalf("readyz = %d %s, want 503 naming the reserve", resp.StatusCode, body)
	}
	// The refusal itself is an outcome, recorded in the reserve.
	es, err := g.journal.Entries(1, 10)
	if err != nil || len(es) != 1 {
		t.Fatalf("journal holds %d entries (%v), want the refusal's event", len(es), err)
	}
	ev, err := events.Decode(es[0].Message)
	if err != nil || ev.Code != iso8583.RCIssuerUnavailable || ev.Reason != "journal_full" {
		t.Fatalf("refusal's event = %s %s (%v), want 91 journal_full", ev.Code, ev.Reason, err)
	}
}

// waitIssuer waits until the gateway's issuer links are signed on.
func waitIssuer(t *testing.T, g *gateway) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := true
		for _, up := range g.links.SignedOn() {
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
