package main

import (
	"fmt"
	"net"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/iso8583"
	"pingate/routing"
)

// TestConnectionResetWhileChangesAtTheIssuer: an ATM writes PIN changes in
// one TCP write and resets the connection while they are at the issuer,
// which applies them. The connection's end does not end the requests: each
// is recorded with the issuer's answer (the one the gateway meant to write),
// and no reversal is sent for a change the acquirer never reversed. The
// issuer's ledger and the journal agree: every change stands, and each has
// its approved event.
func TestConnectionResetWhileChangesAtTheIssuer(t *testing.T) {
	const latency = 300 * time.Millisecond
	g := opsGateway(t, func(c *gateway.Config) { c.IssuerSim.Latency = latency })
	ctx, c := atmSession(t, g)
	conn := dialRaw(t, g.AcquirerAddr()).nc
	const n = 8
	var changes []*iso8583.Fields
	for i := range n {
		changes = append(changes, pinnedChange(t, g, 7600+i, fmt.Sprintf("RST%05d", i), 830000+i))
	}
	before := g.Sim().Requests.Load()
	writeFrames(t, conn, changes...)
	deadline := time.Now().Add(10 * time.Second)
	for g.Sim().Requests.Load() < before+n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := g.Sim().Requests.Load() - before; got != n {
		t.Fatalf("the issuer got %d of the %d changes", got, n)
	}
	// Reset, not a clean close: the listener's read fails at once and the
	// connection is torn down with the changes still at the issuer.
	if err := conn.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	byTerminal := func() map[string][]routing.Event {
		got := map[string][]routing.Event{}
		for _, ev := range instanceEvents(t, g) {
			got[ev.Terminal] = append(got[ev.Terminal], ev)
		}
		return got
	}
	deadline = time.Now().Add(3*latency + 5*time.Second)
	for recorded := 0; recorded < n && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		recorded = 0
		got := byTerminal()
		for _, f := range changes {
			if len(got[f.TerminalID]) > 0 {
				recorded++
			}
		}
	}
	time.Sleep(latency) // anything more to come: a reversal, a second event
	got := byTerminal()
	var missing []string
	for _, f := range changes {
		evs := got[f.TerminalID]
		switch {
		case len(evs) == 0:
			missing = append(missing, f.TerminalID)
		case len(evs) > 1 || evs[0].Outcome != routing.OutcomeApproved || evs[0].Code != iso8583.RCApproved:
			var s []string
			for _, ev := range evs {
				s = append(s, ev.Outcome+"/"+ev.Reason+"/"+ev.Code)
			}
			t.Errorf("terminal %s: events %v, want one approved 00", f.TerminalID, s)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d changes the issuer applied have no event after the acquirer's connection reset: %v", len(missing), n, missing)
	}
	if r := g.Sim().Reversals.Load(); r != 0 {
		t.Errorf("the issuer got %d reversal advices, want 0: the acquirer reversed nothing", r)
	}
	// The issuer's ledger agrees: each card's PIN was changed, so a change
	// from its old PIN is refused (55).
	for i, f := range changes {
		card := opsPopulation(g.Config().IssuerSim).Card(7600 + i)
		ans, err := c.Do(ctx, opsFieldsUnder(t, card, fmt.Sprintf("RSX%05d", i), devATMKey(t)))
		if err != nil {
			t.Fatal(err)
		}
		if ans.ResponseCode != iso8583.RCIncorrectPIN {
			t.Errorf("terminal %s: a change from the old PIN = %s, want %s (the change stands)", f.TerminalID, ans.ResponseCode, iso8583.RCIncorrectPIN)
		}
	}
}
