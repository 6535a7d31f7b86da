package main

import (
	"context"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/routing"
)

// TestISOChannelRefusesIdentifiersAnEventRefuses: a 0100 whose DE 48 teller
// id the outcome event would refuse (12 digits: a possible PAN) is answered
// 30 before the issuer is involved, and its refusal is recorded (without the
// id), not lost as 91 journal_unavailable.
func TestISOChannelRefusesIdentifiersAnEventRefuses(t *testing.T) {
	g := startTestGateway(t, nil)
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	sc := g.Config().IssuerSim
	c := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}.Card(40)
	client, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	before := g.Sim().Requests.Load()
	op := loadgen.Op{Acquirer: gateway.DevBranchAcquirer, Terminal: "BR0117T1", Proc: iso8583.ProcPINUnblock, PAN: c.PAN,
		Teller: "123456789012", IDRef: "IDCHK-2026-000777"}
	f, err := op.Fields()
	if err != nil {
		t.Fatal(err)
	}
	f.STAN, f.TransmissionTime = "000777", time.Now().UTC().Format("0102150405")
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ans, err := client.Do(rctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if ans.ResponseCode != iso8583.RCFormatError {
		t.Errorf("0100 with a 12-digit DE 48.01 = %s, want 30", ans.ResponseCode)
	}
	if got := g.Sim().Requests.Load(); got != before {
		t.Errorf("the request reached the issuer")
	}
	entries, err := g.Journal().Entries(1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := gateway.DecodeEntries(entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Code != iso8583.RCFormatError || evs[0].Outcome != routing.OutcomeRejected || evs[0].Teller != "" {
		t.Errorf("journal = %d events, want the one rejection (30) without the teller id", len(evs))
	}
}
