package main

import (
	"context"
	"testing"
	"time"

	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// TestAcquirerReversalUndoesApprovalOverTCP: an ATM changes a PIN (00), then
// reverses it with a 0420 (DE 90 naming the 0100). The gateway answers 0430
// 00, sends the issuer a reversal advice, and records the reversal as an
// event that names the approved event; the old PIN works again at the
// issuer. A second 0420 for the same request changes nothing more.
func TestAcquirerReversalUndoesApprovalOverTCP(t *testing.T) {
	g := opsGateway(t, nil)
	ctx, c := atmSession(t, g)
	card := opsPopulation(g.Config().IssuerSim).Card(7400)
	atm := devATMKey(t)
	change := opsFieldsUnder(t, card, "REV07400", atm) // the card's PIN to 4826
	ans, err := c.Do(ctx, change)
	if err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("PIN change = %v, %v; want 00", ans, err)
	}
	de90, err := iso8583.OriginalData{MTI: iso8583.MTIAuthRequest, STAN: change.STAN, Transmission: change.TransmissionTime,
		Acquirer: gateway.DevATMAcquirer}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	reversal := func() *iso8583.Fields {
		t.Helper()
		ans, err := c.Do(ctx, &iso8583.Fields{MTI: iso8583.MTIReversalAdvice, PAN: card.PAN, ProcessingCode: iso8583.ProcPINChange,
			AcquirerID: gateway.DevATMAcquirer, TerminalID: change.TerminalID, CardAcceptorID: change.CardAcceptorID, RRN: change.RRN,
			ResponseCode: "68", OriginalData: de90})
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	if ans := reversal(); ans.MTI != iso8583.MTIReversalResponse || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("reversal advice = %s %s, want 0430 00", ans.MTI, ans.ResponseCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.Sim().Reversals.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.Sim().Reversals.Load(); n != 1 {
		t.Fatalf("the issuer got %d reversal advices, want 1", n)
	}
	if ans := reversal(); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("repeated reversal advice = %s, want 00", ans.ResponseCode)
	}
	if ans, err := c.Do(ctx, opsFieldsUnder(t, card, "REV07400", atm)); err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("PIN change from the card's old PIN after the reversal = %v, %v; want 00", ans, err)
	}
	if n := g.Sim().Reversals.Load(); n != 1 {
		t.Errorf("the issuer got %d reversal advices after a repeated advice, want 1", n)
	}

	entries, err := g.Journal().Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]bool{}
	var reversals int
	for _, e := range entries {
		ev, err := events.Decode(e.Message)
		if err != nil {
			t.Fatal(err)
		}
		byID[ev.ID] = ev.Outcome == "approved"
		if ev.Reason == "acquirer_reversal" {
			reversals++
			if ev.Outcome != "reversed" || ev.Code != "68" || ev.Reverses == "" {
				t.Errorf("reversal event: outcome %s, code %s, reverses %q", ev.Outcome, ev.Code, ev.Reverses)
			}
			if !byID[ev.Reverses] {
				t.Errorf("reversal event names %q, not an approved event recorded before it", ev.Reverses)
			}
		}
	}
	if reversals != 1 {
		t.Errorf("%d reversal events, want 1", reversals)
	}
}

// atmSession dials the gateway's acquirer listener as an ATM network and
// returns the client with a context bounding the test's exchanges; both end
// with the test.
func atmSession(t *testing.T, g *gateway.Gateway) (context.Context, *loadgen.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ctx, c
}

// devATMKey is the development ATM network's zone PIN key.
func devATMKey(t *testing.T) pinblock.Key {
	t.Helper()
	k, err := devkeys.Key(devkeys.ATMZPK)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
