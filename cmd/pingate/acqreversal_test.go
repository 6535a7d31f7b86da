package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
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

// TestReversalBehindItsChangeInOneWrite: an ATM writes a PIN change and its
// 0420 back to back in one TCP write. The gateway handles a connection's
// frames concurrently, but the 0420 is not taken before the 0100 it names:
// every change is reversed at the issuer (its old PIN works again) and
// recorded reversed, none left standing with a 0430 00 for an "unknown"
// original.
func TestReversalBehindItsChangeInOneWrite(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) { c.IssuerSim.Latency = 50 * time.Millisecond })
	ctx, c := atmSession(t, g)
	atm := devATMKey(t)
	raw := dialRaw(t, g.AcquirerAddr())
	const n = 12
	for i := range n {
		change := pinnedChange(t, g, 7500+i, fmt.Sprintf("RVW%05d", i), 810000+i)
		rev := reversalAdvice(t, change)
		rev.STAN, rev.TransmissionTime = fmt.Sprintf("%06d", 820000+i), change.TransmissionTime
		writeFrames(t, raw.nc, change, rev)
		codes := map[string]string{}
		for _, a := range readAnswers(t, raw.r, 2) {
			codes[a.MTI] = a.ResponseCode
		}
		if codes[iso8583.MTIAuthResponse] != iso8583.RCApproved || codes[iso8583.MTIReversalResponse] != iso8583.RCApproved {
			t.Fatalf("change %d and its 0420 in one write: answers %v, want 0110 00 and 0430 00", i, codes)
		}
	}
	// Every change was reversed: the issuer got n advices and each card's
	// old PIN works again.
	deadline := time.Now().Add(20 * time.Second)
	for g.Sim().Reversals.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := g.Sim().Reversals.Load(); got != n {
		t.Errorf("the issuer got %d reversal advices for %d changes each reversed in the write that sent it, want %d", got, n, n)
	}
	for i := range n {
		card := opsPopulation(g.Config().IssuerSim).Card(7500 + i)
		if ans, err := c.Do(ctx, opsFieldsUnder(t, card, fmt.Sprintf("RVX%05d", i), atm)); err != nil || ans.ResponseCode != iso8583.RCApproved {
			t.Errorf("change %d: the old PIN after the reversal = %v, %v; want 00 (the reversed change left standing)", i, ans, err)
		}
	}
}

// pinnedChange is a PIN change of card i of the embedded population from
// terminal term (opsFieldsUnder, to PIN 4826), with STAN stan and a fixed
// DE 7, so that an 0420 can name it before it is sent.
func pinnedChange(t *testing.T, g *gateway.Gateway, i int, term string, stan int) *iso8583.Fields {
	t.Helper()
	f := opsFieldsUnder(t, opsPopulation(g.Config().IssuerSim).Card(i), term, devATMKey(t))
	f.STAN, f.TransmissionTime = fmt.Sprintf("%06d", stan), "1207235959"
	f.LocalTime, f.LocalDate = f.TransmissionTime[4:], f.TransmissionTime[:4]
	return f
}

// writeFrames packs fs, frames them (binary 2-byte lengths) and sends them
// in one TCP write.
func writeFrames(t *testing.T, conn net.Conn, fs ...*iso8583.Fields) {
	t.Helper()
	var out []byte
	for _, f := range fs {
		msg, err := iso8583.Pack(iso8583.AcquirerSpec, f)
		if err != nil {
			t.Fatal(err)
		}
		if out, err = iso8583.AppendFrame(out, iso8583.Binary2, msg); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
}

// readAnswers reads n answers from br, in the order they come.
func readAnswers(t *testing.T, br *bufio.Reader, n int) []*iso8583.Fields {
	t.Helper()
	var out []*iso8583.Fields
	for range n {
		frame, err := iso8583.ReadFrame(br, iso8583.Binary2, 8192, nil)
		if err != nil {
			t.Fatalf("answer %d of %d: %v", len(out)+1, n, err)
		}
		a, err := iso8583.Unpack(iso8583.AcquirerSpec, frame)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// TestReversalBeforeItsChangeOnAnotherConnection: a switch's 0420 overtakes
// the PIN change it names, sent on another connection (one the gateway has
// not read yet: a backlog, a slow path). The advice is answered 0430 00 with
// nothing to undo; the change, when it comes, must not stand at the issuer
// behind a reversal the acquirer was told is taken: it is refused 94
// reversed_before_received, recorded as such, never sent, and so is its
// retransmission, with no second event.
func TestReversalBeforeItsChangeOnAnotherConnection(t *testing.T) {
	g := opsGateway(t, nil)
	ctx, c := atmSession(t, g)
	change := pinnedChange(t, g, 7600, "RVB07600", 830000)
	rev := reversalAdvice(t, change)
	rev.STAN = "830001"
	ans, err := c.Do(ctx, rev)
	if err != nil || ans.MTI != iso8583.MTIReversalResponse || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("0420 for a change not yet sent = %v, %v; want 0430 00", ans, err)
	}
	before := g.Sim().Requests.Load()
	raw := dialRaw(t, g.AcquirerAddr())
	for i := range 2 { // the change, then its retransmission
		writeFrames(t, raw.nc, change)
		a := readAnswers(t, raw.r, 1)[0]
		if a.MTI != iso8583.MTIAuthResponse || a.ResponseCode != iso8583.RCDuplicate {
			t.Fatalf("send %d of the change its acquirer reversed before sending it: %s %s, want 0110 94", i+1, a.MTI, a.ResponseCode)
		}
	}
	if n := g.Sim().Requests.Load() - before; n != 0 {
		t.Errorf("the issuer got %d requests for a change reversed before it came, want 0", n)
	}
	// The card's old PIN still works: nothing changed at the issuer.
	card := opsPopulation(g.Config().IssuerSim).Card(7600)
	if ans, err := c.Do(ctx, opsFieldsUnder(t, card, "RVB07601", devATMKey(t))); err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("change from the card's old PIN afterwards = %v, %v; want 00", ans, err)
	}
	// A repeated advice still finds nothing to undo.
	if ans, err := c.Do(ctx, rev); err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("repeated 0420 = %v, %v; want 0430 00", ans, err)
	}
	var refused int
	for _, ev := range instanceEvents(t, g) {
		if ev.Reason == "reversed_before_received" {
			refused++
			if ev.Outcome != "rejected" || ev.Code != iso8583.RCDuplicate || ev.Issuer != "" {
				t.Errorf("refusal event: outcome %s, code %s, issuer %q; want rejected 94 and no issuer", ev.Outcome, ev.Code, ev.Issuer)
			}
		}
	}
	if refused != 1 {
		t.Errorf("%d reversed_before_received events, want 1 (the retransmission is answered from the window)", refused)
	}
}
