package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/integration/events"
	"pingate/integration/issuersim"
	"pingate/integration/outbox"
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
	sc := g.cfg.IssuerSim
	c := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}.Card(40)
	client, err := dialATM(ctx, g.acqAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	before := g.sim.Requests.Load()
	op := pinOp{acquirer: devBranchAcquirer, terminal: "BR0117T1", proc: iso8583.ProcPINUnblock, pan: c.PAN,
		teller: "123456789012", idRef: "IDCHK-2026-000777"}
	f, err := op.fields()
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
	if got := g.sim.Requests.Load(); got != before {
		t.Errorf("the request reached the issuer")
	}
	entries, err := g.journal.Entries(1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := decodeEntries(entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Code != iso8583.RCFormatError || evs[0].Outcome != routing.OutcomeRejected || evs[0].Teller != "" {
		t.Errorf("journal = %d events, want the one rejection (30) without the teller id", len(evs))
	}
}

// TestLoggedSinkLogsFailedPublications: every outcome the journal refuses
// or cannot store is logged, naming the event and not its card.
func TestLoggedSinkLogsFailedPublications(t *testing.T) {
	j, err := outbox.Open(outbox.Config{Dir: filepath.Join(t.TempDir(), "journal"), Source: events.Source("sink-test")})
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	s := loggedSink{Journal: j, log: slog.New(slog.NewJSONHandler(&logs, nil))}
	now := time.Now()
	ev := routing.Event{ID: "a3a4c6f2-5b0e-4b8e-9a57-0e4a5d8c9f10", Operation: routing.OpUnblock, Outcome: routing.OutcomeApproved,
		Type: routing.EventType(routing.OpUnblock, routing.OutcomeApproved), Code: "00", Channel: routing.ChannelBranch,
		Acquirer: "200001", Terminal: "BR0117T1", MaskedPAN: "622848******0017", CardToken: "tok", Teller: "123456789012",
		Received: now, Completed: now}
	if err := s.Publish(context.Background(), ev); !errors.Is(err, events.ErrUnsafeEvent) {
		t.Fatalf("Publish(teller like a PAN) = %v, want events.ErrUnsafeEvent", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := j.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ev.Teller = "T0117-07"
	if err := s.Publish(context.Background(), ev); err == nil {
		t.Fatal("Publish on a closed journal = nil, want an error")
	}
	if n := strings.Count(logs.String(), `"msg":"outcome event not recorded"`); n != 2 || !strings.Contains(logs.String(), ev.ID) {
		t.Errorf("%d failed publications logged, want 2 naming the event", n)
	}
	if strings.Contains(logs.String(), "123456789012") {
		t.Errorf("the log repeats the refused identifier")
	}
}
