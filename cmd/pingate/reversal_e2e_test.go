package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// TestReversalAfterTimeoutSurvivesRestart: the issuer takes a PIN change and
// never answers; the acquirer gets 91, a reversal advice is persisted, the
// gateway stops before any issuer could acknowledge it, and the next gateway
// run on the same reversal store sends it until acknowledged.
func TestReversalAfterTimeoutSurvivesRestart(t *testing.T) {
	pop := issuersim.Population{Seed: 7, BINs: gateway.DevBINs(), PerBIN: 1000}
	silent, silentAddr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop, DropRate: 1}) // takes every request, answers none
	// The advices live in the journal's database: both runs share it.
	journalDir := filepath.Join(t.TempDir(), "journal")
	ctx := context.Background()

	gw := func(host string) *gateway.Gateway {
		g := startTestGateway(t, func(c *gateway.Config) {
			c.IssuerSim = nil
			c.Events.JournalDir = journalDir
			c.Routing.Issuers[0].Hosts = []string{host}
			c.Routing.Issuers[0].Timeout = 300 * time.Millisecond
		})
		if err := waitReady(ctx, g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	g1 := gw(silentAddr)
	card := pop.Card(3)
	client, err := loadgen.Dial(ctx, g1.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	f, err := loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: "ATM00777", Proc: iso8583.ProcPINChange, PAN: card.PAN,
		OldPIN: card.PIN, NewPIN: "4826", Format: pinblock.Format0, KeyID: devkeys.ATMZPK}.Fields()
	if err != nil {
		t.Fatal(err)
	}
	ans, err := client.Do(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	if ans.ResponseCode != iso8583.RCIssuerUnavailable {
		t.Fatalf("timed-out change answered %s, want 91", ans.ResponseCode)
	}
	if silent.Requests.Load() != 1 {
		t.Fatalf("issuer saw %d requests, want 1", silent.Requests.Load())
	}
	// The silent issuer also drops the advice; stop the gateway with it owed.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := g1.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	store, err := openTestReversalStore(journalDir)
	if err != nil {
		t.Fatal(err)
	}
	owed, err := store.Pending(ctx)
	store.Close()
	if err != nil || len(owed) != 1 {
		t.Fatalf("after the first run %d reversals are stored (%v), want 1", len(owed), err)
	}

	healthy, healthyAddr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop})
	g2 := gw(healthyAddr)
	deadline := time.Now().Add(10 * time.Second)
	for healthy.Reversals.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if healthy.Reversals.Load() != 1 {
		t.Fatalf("the restarted gateway sent %d reversal advices, want 1", healthy.Reversals.Load())
	}
	waitReversalsAcknowledged(t, g2, deadline)
	// The first run recorded the outcome (reversed, issuer_timeout); the
	// acknowledgement after the restart must not record it again.
	reasons := journalOutcomes(t, g2)["reversed"]
	if len(reasons) != 1 || reasons[0] != "issuer_timeout" {
		t.Fatalf("journal holds reversed events with reasons %v for one timed-out change, want [issuer_timeout]", reasons)
	}
}

// waitReversalsAcknowledged waits until g's reversal store is empty: every
// advice acknowledged by the issuer.
func waitReversalsAcknowledged(t *testing.T, g *gateway.Gateway, deadline time.Time) {
	t.Helper()
	for {
		left, err := g.Reversals().Pending(context.Background())
		if err == nil && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reversal advices still owed (%v)", len(left), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// journalOutcomes returns the reasons of g's journaled events by outcome.
func journalOutcomes(t *testing.T, g *gateway.Gateway) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, ev := range instanceEvents(t, g) {
		out[ev.Outcome] = append(out[ev.Outcome], ev.Reason)
	}
	return out
}

// TestLateIssuerAnswersAreReversedNotMatched: the issuer applies every PIN
// change but answers after the gateway's timeout. No late 0110 may be taken
// for another request (several in flight at once, the same card again and
// again): every answer is 91, every applied change gets its reversal
// advice, and the journal says reversed/issuer_timeout once per change.
func TestLateIssuerAnswersAreReversedNotMatched(t *testing.T) {
	pop := issuersim.Population{Seed: 11, BINs: gateway.DevBINs(), PerBIN: 1000}
	sim, addr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop, Latency: 400 * time.Millisecond, Audit: true})
	g := startTestGateway(t, func(c *gateway.Config) {
		c.IssuerSim = nil
		c.Routing.Issuers[0].Hosts = []string{addr}
		c.Routing.Issuers[0].Timeout = 300 * time.Millisecond
	})
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 4, 3
	var wg sync.WaitGroup
	codes := make(chan string, workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			card := pop.Card(w % 2) // two workers share each card
			c, err := loadgen.Dial(ctx, g.AcquirerAddr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for r := 0; r < rounds; r++ {
				f, err := loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: fmt.Sprintf("ATML%04d", w), Proc: iso8583.ProcPINChange,
					PAN: card.PAN, OldPIN: card.PIN, NewPIN: "4826", Format: pinblock.Format0, KeyID: devkeys.ATMZPK}.Fields()
				if err != nil {
					t.Error(err)
					return
				}
				ans, err := c.Do(ctx, f)
				if err != nil {
					t.Error(err)
					return
				}
				codes <- ans.ResponseCode
			}
		}(w)
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != iso8583.RCIssuerUnavailable {
			t.Errorf("a change the issuer answered late was answered %s, want 91", code)
		}
	}
	waitReversalsAcknowledged(t, g, time.Now().Add(15*time.Second))
	applied := sim.Audit()
	if len(applied) == 0 {
		t.Fatal("the issuer applied no change: the probe proves nothing")
	}
	for _, a := range applied {
		if !a.Reversed {
			t.Errorf("a change applied at terminal %s stands without its reversal", a.Terminal)
		}
	}
	outcomes := journalOutcomes(t, g)
	for outcome, reasons := range outcomes {
		for _, reason := range reasons {
			if outcome != "reversed" || reason != "issuer_timeout" {
				t.Errorf("event %s/%s for a late-answered change, want reversed/issuer_timeout", outcome, reason)
			}
		}
	}
	if n := len(outcomes["reversed"]); n != workers*rounds {
		t.Errorf("journal holds %d reversed events, want %d", n, workers*rounds)
	}
	if n := sim.Reversals.Load(); n < int64(len(applied)) {
		t.Errorf("issuer got %d reversal advices for %d applied changes", n, len(applied))
	}
}
