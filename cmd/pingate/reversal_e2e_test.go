package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"pingate/integration/events"
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
	for {
		left, err := g2.Reversals().Pending(ctx)
		if err == nil && len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the acknowledged reversal is still stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The first run recorded the outcome (reversed, issuer_timeout); the
	// acknowledgement after the restart must not record it again.
	entries, err := g2.Journal().Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range entries {
		ev, err := events.Decode(e.Message)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Outcome == "reversed" {
			reasons = append(reasons, ev.Reason)
		}
	}
	if len(reasons) != 1 || reasons[0] != "issuer_timeout" {
		t.Fatalf("journal holds reversed events with reasons %v for one timed-out change, want [issuer_timeout]", reasons)
	}
}
