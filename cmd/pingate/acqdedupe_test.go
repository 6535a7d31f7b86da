package main

import (
	"testing"
	"time"

	"pingate/integration/events"
	"pingate/iso8583"
)

// TestSameSTANOtherCardIsANewRequest: a terminal that sends two cards' PIN
// changes under one STAN and DE 7 sends two requests (docs/rate-limits.md,
// "The duplicate window": the card is part of a request's identity). Both
// reach the issuer and are approved, each card's PIN is changed, and each has
// its own event. A retransmission of the second is still answered from the
// window, without a third issuer call.
func TestSameSTANOtherCardIsANewRequest(t *testing.T) {
	g := opsGateway(t, nil)
	pop := opsPopulation(g.Config().IssuerSim)
	atm := devATMKey(t)
	c := dialRaw(t, g.AcquirerAddr())
	now := time.Now().UTC()
	change := func(i int) []byte {
		t.Helper()
		f := opsFieldsUnder(t, pop.Card(i), "DUP07600", atm)
		f.STAN, f.TransmissionTime = "076001", now.Format("0102150405")
		f.LocalTime, f.LocalDate = now.Format("150405"), now.Format("0102")
		b, err := iso8583.Pack(iso8583.AcquirerSpec, f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	calls := g.Sim().Requests.Load()
	for _, i := range []int{7600, 7601, 7601} {
		if ans := c.exchange("PIN change", change(i)); ans.ResponseCode != iso8583.RCApproved {
			t.Fatalf("card %d's PIN change under STAN 076001 = %s, want 00", i, ans.ResponseCode)
		}
	}
	if n := g.Sim().Requests.Load() - calls; n != 2 {
		t.Fatalf("the issuer got %d requests for two cards and a retransmission, want 2", n)
	}
	entries, err := g.Journal().Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	cards := map[string]int{}
	for _, e := range entries {
		ev, err := events.Decode(e.Message)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Outcome == "approved" {
			cards[ev.CardToken]++
		}
	}
	if len(cards) != 2 {
		t.Errorf("approval events name %d cards, want 2, one event each", len(cards))
	}
	for _, n := range cards {
		if n != 1 {
			t.Errorf("a card has %d approval events, want 1", n)
		}
	}
}
