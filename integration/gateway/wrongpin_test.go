package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/integration/testservers"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// TestWrongPINsClearedByAnUnblock: over the ISO 8583 listener, on both
// limits backends, with card_wrong_pin_per_hour 2 (below the issuer
// simulator's own lock at 3), a card's second incorrect PIN (55) within the
// hour makes its next PIN change 75 card_wrong_pin_limit, before the
// issuer; an approved unblock clears the marks, so the change after it
// reaches the issuer again (docs/rate-limits.md, "Wrong PINs").
func TestWrongPINsClearedByAnUnblock(t *testing.T) {
	tests := []struct {
		name    string
		backend string
	}{
		{"memory", "memory"},
		{"redis", "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := gatewaytest.Start(t, func(c *gateway.Config) {
				c.Limits.CardWrongPINPerHour = 2
				if tt.backend == "redis" {
					c.Limits.Backend = "redis"
					c.Limits.Addrs = []string{testservers.StartRedisServer(t).Addr}
				}
			})
			gatewaytest.WaitSignedOn(t, g)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// One connection per acquirer: a connection is bound to the
			// acquirer of its first message.
			atm, err := loadgen.Dial(ctx, g.AcquirerAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer atm.Close()
			branch, err := loadgen.Dial(ctx, g.AcquirerAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer branch.Close()
			sc := g.Config().IssuerSim
			card := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}.Card(51)
			terminal := 0
			send := func(c *loadgen.Client, op loadgen.Op) string {
				t.Helper()
				terminal++ // one terminal each: the terminal limit does not bind
				op.Terminal = fmt.Sprintf("WP%06d", terminal)
				code, err := c.Send(ctx, op)
				if err != nil {
					t.Fatal(err)
				}
				return code
			}
			change := func(oldPIN string) string {
				return send(atm, loadgen.Op{Acquirer: gateway.DevATMAcquirer, Proc: iso8583.ProcPINChange, PAN: card.PAN,
					OldPIN: oldPIN, NewPIN: "4826", Format: pinblock.Format0, KeyID: devkeys.ATMZPK})
			}
			wrong := "0000"
			if card.PIN == wrong {
				wrong = "1111"
			}
			for i := range 2 {
				if got := change(wrong); got != iso8583.RCIncorrectPIN {
					t.Fatalf("wrong PIN %d answered %s, want 55", i+1, got)
				}
			}
			if got := change(card.PIN); got != iso8583.RCPINTriesExceeded {
				t.Fatalf("after 2 wrong PINs a change answered %s, want 75", got)
			}
			if ev := lastEvent(t, g); ev.Reason != "card_wrong_pin_limit" || ev.Outcome != "limited" {
				t.Fatalf("the 75's event = %s %s (%s), want limited (card_wrong_pin_limit)", ev.Code, ev.Outcome, ev.Reason)
			}
			if got := send(branch, loadgen.Op{Acquirer: gateway.DevBranchAcquirer, Proc: iso8583.ProcPINUnblock, PAN: card.PAN,
				Teller: "TELLER-0117-07", IDRef: "IDCHK-2026-000123"}); got != iso8583.RCApproved {
				t.Fatalf("unblock answered %s, want 00", got)
			}
			if got := change(card.PIN); got != iso8583.RCApproved {
				t.Errorf("after the unblock a change with the right PIN answered %s, want 00 (marks cleared)", got)
			}
		})
	}
}

// lastEvent is the newest outcome event in g's journal.
func lastEvent(t *testing.T, g *gateway.Gateway) routing.Event {
	t.Helper()
	entries, err := g.Journal().Entries(1, 1000)
	if err != nil || len(entries) == 0 {
		t.Fatalf("journal entries: %d, %v", len(entries), err)
	}
	ev, err := events.Decode(entries[len(entries)-1].Message)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
