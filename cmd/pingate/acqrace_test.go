package main

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/routing"
)

// Probes of the ISO 8583 path with frames that race one another: several in
// one TCP write, or on two connections at once, while the first is at the
// issuer. Each checks the answers, the journal (one outcome event per
// request with the code answered) and the issuer's state against each other.

// terminalEvents returns the "outcome/reason/code" of every event of each
// terminal in g's journal, sorted.
func terminalEvents(t *testing.T, g *gateway.Gateway) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, ev := range instanceEvents(t, g) {
		out[ev.Terminal] = append(out[ev.Terminal], ev.Outcome+"/"+ev.Reason+"/"+ev.Code)
	}
	for _, s := range out {
		sort.Strings(s)
	}
	return out
}

// waitReversals waits until the issuer has had want reversal advices, and a
// little longer for any beyond them.
func waitReversals(t *testing.T, g *gateway.Gateway, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for g.Sim().Reversals.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := g.Sim().Reversals.Load(); got != want {
		t.Errorf("the issuer got %d reversal advices, want %d", got, want)
	}
}

// answerCodes is "MTI code" of each answer, sorted.
func answerCodes(as []*iso8583.Fields) []string {
	var s []string
	for _, a := range as {
		s = append(s, a.MTI+" "+a.ResponseCode)
	}
	sort.Strings(s)
	return s
}

// wantAnswers reads len(want) answers from raw and checks their MTIs and
// codes, in any order, against want ("MTI code"); what names the frames.
func wantAnswers(t *testing.T, raw *rawATM, what string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := answerCodes(readAnswers(t, raw.r, len(want))); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: answers %v, want %v", what, got, want)
	}
}

// wantIssuerRequests checks that the issuer got n requests since it had
// before; what says how the n changes were sent.
func wantIssuerRequests(t *testing.T, g *gateway.Gateway, before int64, n int, what string) {
	t.Helper()
	if got := g.Sim().Requests.Load() - before; got != int64(n) {
		t.Errorf("the issuer got %d requests for %d changes %s, want %d", got, n, what, n)
	}
}

// wantEvents checks the events of terminal term (terminalEvents) against
// want, sorted.
func wantEvents(t *testing.T, evs map[string][]string, term string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if fmt.Sprint(evs[term]) != fmt.Sprint(want) {
		t.Errorf("terminal %s: events %v, want %v", term, evs[term], want)
	}
}

// TestRetransmissionAndReversalInOneWrite: while a PIN change is at the
// issuer, the ATM writes its retransmission and its 0420 in one write, in
// either order. The retransmission gets the original's answer and is not
// sent to the issuer again; the 0420 reverses the change. The journal has
// the approval and its reversal, the issuer one request and one advice per
// change, and each card's old PIN works again.
func TestRetransmissionAndReversalInOneWrite(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) { c.IssuerSim.Latency = 100 * time.Millisecond })
	ctx, c := atmSession(t, g)
	raw := dialRaw(t, g.AcquirerAddr())
	const n = 8
	before := g.Sim().Requests.Load()
	for i := range n {
		change := pinnedChange(t, g, 7700+i, fmt.Sprintf("RRW%05d", i), 840000+i)
		rev := reversalAdvice(t, change)
		rev.STAN, rev.TransmissionTime = fmt.Sprintf("%06d", 850000+i), change.TransmissionTime
		writeFrames(t, raw.nc, change)
		if i%2 == 0 {
			writeFrames(t, raw.nc, change, rev)
		} else {
			writeFrames(t, raw.nc, rev, change)
		}
		wantAnswers(t, raw, fmt.Sprintf("change %d, its retransmission and its 0420", i), "0110 00", "0110 00", "0430 00")
	}
	wantIssuerRequests(t, g, before, n, "each retransmitted once")
	waitReversals(t, g, n)
	evs := terminalEvents(t, g)
	for i := range n {
		wantEvents(t, evs, fmt.Sprintf("RRW%05d", i), "approved/approved/00", "reversed/acquirer_reversal/68")
		card := opsPopulation(g.Config().IssuerSim).Card(7700 + i)
		if ans, err := c.Do(ctx, opsFieldsUnder(t, card, fmt.Sprintf("RRX%05d", i), devATMKey(t))); err != nil || ans.ResponseCode != iso8583.RCApproved {
			t.Errorf("change %d: the old PIN after the reversal = %v, %v; want 00", i, ans, err)
		}
	}
}

// TestTwoReversalsOfOneChangeInOneWrite: a PIN change and two 0420s for it
// in one write. Both advices are answered 00; the change is reversed once:
// one advice to the issuer, one reversal event.
func TestTwoReversalsOfOneChangeInOneWrite(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) { c.IssuerSim.Latency = 50 * time.Millisecond })
	raw := dialRaw(t, g.AcquirerAddr())
	const n = 8
	for i := range n {
		change := pinnedChange(t, g, 7720+i, fmt.Sprintf("RTW%05d", i), 860000+i)
		rev1, rev2 := reversalAdvice(t, change), reversalAdvice(t, change)
		rev1.STAN, rev1.TransmissionTime = fmt.Sprintf("%06d", 870000+i), change.TransmissionTime
		rev2.STAN, rev2.TransmissionTime = fmt.Sprintf("%06d", 880000+i), change.TransmissionTime
		writeFrames(t, raw.nc, change, rev1, rev2)
		wantAnswers(t, raw, fmt.Sprintf("change %d and two 0420s", i), "0110 00", "0430 00", "0430 00")
	}
	waitReversals(t, g, n)
	evs := terminalEvents(t, g)
	for i := range n {
		wantEvents(t, evs, fmt.Sprintf("RTW%05d", i), "approved/approved/00", "reversed/acquirer_reversal/68")
	}
}

// TestReversalAndRetransmissionOfATimedOutChange: the issuer answers after
// the gateway's issuer timeout. A PIN change, its retransmission and its
// 0420 in one write: both 0100s get 91, the 0420 00 (nothing left to undo);
// the issuer gets the change once and the one advice owed ahead of it, and
// the journal the timeout's event alone.
func TestReversalAndRetransmissionOfATimedOutChange(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) {
		c.IssuerSim.Latency = 400 * time.Millisecond
		c.Routing.Issuers[0].Timeout = 150 * time.Millisecond
	})
	raw := dialRaw(t, g.AcquirerAddr())
	const n = 6
	before := g.Sim().Requests.Load()
	for i := range n {
		change := pinnedChange(t, g, 7740+i, fmt.Sprintf("RTO%05d", i), 890000+i)
		rev := reversalAdvice(t, change)
		rev.STAN, rev.TransmissionTime = fmt.Sprintf("%06d", 900000+i), change.TransmissionTime
		writeFrames(t, raw.nc, change, change, rev)
		wantAnswers(t, raw, fmt.Sprintf("timed-out change %d, its retransmission and its 0420", i), "0110 91", "0110 91", "0430 00")
	}
	wantIssuerRequests(t, g, before, n, "each retransmitted once")
	waitReversals(t, g, n)
	evs := terminalEvents(t, g)
	for i := range n {
		wantEvents(t, evs, fmt.Sprintf("RTO%05d", i), "reversed/issuer_timeout/91")
	}
}

// TestSameChangeOnTwoConnectionsAtOnce: an acquirer's two connections carry
// the same PIN change (same STAN, DE 7, terminal and card) at once, as a
// switch that fails over mid-request might send it. The issuer gets it once;
// both are answered 00; the journal has one event.
func TestSameChangeOnTwoConnectionsAtOnce(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) { c.IssuerSim.Latency = 50 * time.Millisecond })
	raws := []*rawATM{dialRaw(t, g.AcquirerAddr()), dialRaw(t, g.AcquirerAddr())}
	const n = 8
	before := g.Sim().Requests.Load()
	for i := range n {
		change := pinnedChange(t, g, 7760+i, fmt.Sprintf("RTC%05d", i), 910000+i)
		var wg sync.WaitGroup
		codes := make([]string, len(raws))
		for k, raw := range raws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				writeFrames(t, raw.nc, change)
				codes[k] = answerCodes(readAnswers(t, raw.r, 1))[0]
			}()
		}
		wg.Wait()
		if codes[0] != "0110 00" || codes[1] != "0110 00" {
			t.Errorf("change %d on two connections: answers %v, want 0110 00 on both", i, codes)
		}
	}
	wantIssuerRequests(t, g, before, n, "each sent on two connections")
	evs := terminalEvents(t, g)
	for i := range n {
		wantEvents(t, evs, fmt.Sprintf("RTC%05d", i), "approved/approved/00")
	}
}

// TestKeyChangeAmongChangesUnderTheOldKey: an ATM network writes PIN
// changes under its zone PIN key's current version, its online key change
// and more changes under the old version, in one write, while the first are
// at the issuer. The key change is taken; every change translates (the old
// version is kept for the grace window) and is approved and recorded, and
// one under the new version is too.
func TestKeyChangeAmongChangesUnderTheOldKey(t *testing.T) {
	g, k, zmk := keyStoreGateway(t, 50*time.Millisecond)
	raw := dialRaw(t, g.AcquirerAddr())
	pop := opsPopulation(g.Config().IssuerSim)
	const n = 6
	var frames []*iso8583.Fields
	for i := range n {
		f := opsFieldsUnder(t, pop.Card(7780+i), fmt.Sprintf("RKC%05d", i), k.v1)
		f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = fmt.Sprintf("%06d", 920000+i), "1207235959", "235959", "1207"
		frames = append(frames, f)
		if i == n/2 {
			frames = append(frames, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange,
				AcquirerID: gateway.DevATMAcquirer, STAN: "929999", TransmissionTime: "1207235959",
				SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: wrapTR31(t, zmk, k.v2)})
		}
	}
	writeFrames(t, raw.nc, frames...)
	want := []string{"0810 00"}
	for range n {
		want = append(want, "0110 00")
	}
	wantAnswers(t, raw, "changes under the old key around a key change", want...)
	f := opsFieldsUnder(t, pop.Card(7780+n), fmt.Sprintf("RKC%05d", n), k.v2)
	f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = fmt.Sprintf("%06d", 920000+n), "1207235959", "235959", "1207"
	writeFrames(t, raw.nc, f)
	wantAnswers(t, raw, "a change under the new key", "0110 00")
	evs := terminalEvents(t, g)
	for i := range n + 1 {
		wantEvents(t, evs, fmt.Sprintf("RKC%05d", i), "approved/approved/00")
	}
}

// TestSignOnAndOffAroundChangesInOneWrite: with require_sign_on, an ATM
// network writes its sign-on, PIN changes and its sign-off in one write.
// Frames are handled concurrently, but the changes are not refused for a
// sign-on read before them and not yet handled, nor for a sign-off read
// after them: every change is carried out, answered 00 and recorded. A
// change written after the sign-off, once it is answered, is refused.
func TestSignOnAndOffAroundChangesInOneWrite(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) {
		c.Routing.Acquirers[0].RequireSignOn = true
		c.IssuerSim.Latency = 50 * time.Millisecond
	})
	raw := dialRaw(t, g.AcquirerAddr())
	signOn := &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMISignOn, AcquirerID: gateway.DevATMAcquirer,
		STAN: "939998", TransmissionTime: "1207235959"}
	signOff := *signOn
	signOff.NetworkCode, signOff.STAN = iso8583.NMISignOff, "939999"
	const rounds, n = 4, 4
	before := g.Sim().Requests.Load()
	for r := range rounds {
		frames := []*iso8583.Fields{signOn}
		for i := range n {
			frames = append(frames, pinnedChange(t, g, 7800+r*n+i, fmt.Sprintf("RSO%05d", r*n+i), 930000+r*n+i))
		}
		writeFrames(t, raw.nc, append(frames, &signOff)...)
		want := []string{"0810 00", "0810 00"}
		for range n {
			want = append(want, "0110 00")
		}
		wantAnswers(t, raw, fmt.Sprintf("round %d: sign-on, %d changes and sign-off in one write", r, n), want...)
	}
	wantIssuerRequests(t, g, before, rounds*n, "between a sign-on and a sign-off")
	evs := terminalEvents(t, g)
	for i := range rounds * n {
		wantEvents(t, evs, fmt.Sprintf("RSO%05d", i), "approved/approved/00")
	}
	writeFrames(t, raw.nc, pinnedChange(t, g, 7800+rounds*n, "RSOAFTER", 939000))
	wantAnswers(t, raw, "a change after the sign-off was answered", "0110 91")
}

// TestRetransmissionAtTheWindowsEnd: retransmissions (and an 0420 behind
// each) written around the moment the duplicate window forgets the original.
// Each retransmission is either a duplicate (the original's 00, not sent to
// the issuer) or a new request (sent, refused 55: the change stood) with an
// event of its own, and the 0420 is either taken for the original (00,
// reversed) or for nothing. The issuer's requests and reversals match the
// answers and the journal.
func TestRetransmissionAtTheWindowsEnd(t *testing.T) {
	const window = 200 * time.Millisecond
	g := opsGateway(t, func(c *gateway.Config) { c.Routing.DuplicateWindow = window })
	raw := dialRaw(t, g.AcquirerAddr())
	const n = 12
	before := g.Sim().Requests.Load()
	fresh, reversed := 0, 0 // retransmissions taken as new requests; changes reversed
	for i := range n {
		change := pinnedChange(t, g, 7820+i, fmt.Sprintf("RWE%05d", i), 940000+i)
		writeFrames(t, raw.nc, change)
		wantAnswers(t, raw, fmt.Sprintf("change %d", i), "0110 00")
		time.Sleep(window - 10*time.Millisecond + time.Duration(i)*2*time.Millisecond)
		rev := reversalAdvice(t, change)
		rev.STAN, rev.TransmissionTime = fmt.Sprintf("%06d", 950000+i), change.TransmissionTime
		writeFrames(t, raw.nc, change, rev)
		term := fmt.Sprintf("RWE%05d", i)
		var codes []string
		for _, a := range readAnswers(t, raw.r, 2) {
			codes = append(codes, a.MTI+" "+a.ResponseCode)
		}
		sort.Strings(codes)
		switch fmt.Sprint(codes) {
		case "[0110 00 0430 00]": // a duplicate: the original's answer
		case "[0110 55 0430 00]": // a new request: the change stood
			fresh++
		default:
			t.Errorf("%s: retransmission and 0420 at the window's end: answers %v", term, codes)
		}
	}
	time.Sleep(300 * time.Millisecond)
	evs := terminalEvents(t, g)
	recorded := 0
	for i := range n {
		term := fmt.Sprintf("RWE%05d", i)
		switch fmt.Sprint(evs[term]) {
		case "[approved/approved/00 reversed/acquirer_reversal/68]":
			reversed++
		case "[approved/approved/00 declined/incorrect_pin/55]":
			recorded++
		case "[approved/approved/00]": // a duplicate, its 0420 past the window
		default:
			t.Errorf("%s: events %v", term, evs[term])
		}
	}
	t.Logf("%d of %d retransmissions were new requests, %d changes reversed", fresh, n, reversed)
	if recorded != fresh {
		t.Errorf("%d retransmissions answered 55, %d recorded so", fresh, recorded)
	}
	wantIssuerRequests(t, g, before, n+fresh, "and the retransmissions past the window")
	waitReversals(t, g, int64(reversed))
}

// TestReloadAmongChangesAndReversals: the configuration is reloaded (limits
// changed) again and again while PIN changes and 0420s for half of them,
// written together, are in flight. Every change is approved and recorded
// once, every reversed one is reversed once at the issuer and recorded: a
// reload forgets no request of the duplicate window.
func TestReloadAmongChangesAndReversals(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) {
		c.IssuerSim.Latency = 30 * time.Millisecond
		c.Limits.AcquirerRPS, c.Limits.AcquirerBurst = 1e6, 1e6
	})
	base := g.Config()
	base.Routing.Issuers = append([]routing.IssuerConfig(nil), base.Routing.Issuers...)
	for i := range base.Routing.Issuers {
		base.Routing.Issuers[i].Hosts = []string{"issuer-sim"}
	}
	src := &opsSource{cfg: base}
	g.SetReloadSource(src.get)
	stop := make(chan struct{})
	reloaded := make(chan int)
	go func() {
		n := 0
		defer func() { reloaded <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c := base
			c.Limits.CardOpsPerDay = 20 + n%5
			src.set(c, nil)
			if _, err := g.Reload("test"); err != nil {
				t.Errorf("reload %d: %v", n, err)
				return
			}
			n++
			time.Sleep(5 * time.Millisecond)
		}
	}()
	raw := dialRaw(t, g.AcquirerAddr())
	const rounds, n = 6, 6
	for r := range rounds {
		var frames []*iso8583.Fields
		for i := range n {
			k := r*n + i
			change := pinnedChange(t, g, 7840+k, fmt.Sprintf("RLD%05d", k), 960000+k)
			frames = append(frames, change)
			if i%2 == 0 {
				rev := reversalAdvice(t, change)
				rev.STAN, rev.TransmissionTime = fmt.Sprintf("%06d", 970000+k), change.TransmissionTime
				frames = append(frames, rev)
			}
		}
		writeFrames(t, raw.nc, frames...)
		var want []string
		for i := range n {
			want = append(want, "0110 00")
			if i%2 == 0 {
				want = append(want, "0430 00")
			}
		}
		wantAnswers(t, raw, fmt.Sprintf("round %d during reloads", r), want...)
	}
	close(stop)
	t.Logf("%d reloads during the traffic", <-reloaded)
	waitReversals(t, g, rounds*((n+1)/2))
	evs := terminalEvents(t, g)
	for k := range rounds * n {
		want := []string{"approved/approved/00"}
		if k%n%2 == 0 {
			want = append(want, "reversed/acquirer_reversal/68")
		}
		wantEvents(t, evs, fmt.Sprintf("RLD%05d", k), want...)
	}
}

// TestChangesUnderTheNewKeyBehindTheKeyChange: an ATM network writes its
// online key change and, in the same write, PIN changes already under the
// new key. Frames are handled concurrently, so a change may be translated
// before the key change is in force; such a change is tried again once the
// frames before it have passed, instead of being refused 30: every change
// is approved and recorded.
func TestChangesUnderTheNewKeyBehindTheKeyChange(t *testing.T) {
	g, k, zmk := keyStoreGateway(t, 0)
	raw := dialRaw(t, g.AcquirerAddr())
	pop := opsPopulation(g.Config().IssuerSim)
	const n = 6
	frames := []*iso8583.Fields{{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange,
		AcquirerID: gateway.DevATMAcquirer, STAN: "949999", TransmissionTime: "1207235959",
		SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: wrapTR31(t, zmk, k.v2)}}
	for i := range n {
		f := opsFieldsUnder(t, pop.Card(7880+i), fmt.Sprintf("RNK%05d", i), k.v2)
		f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = fmt.Sprintf("%06d", 940000+i), "1207235959", "235959", "1207"
		frames = append(frames, f)
	}
	writeFrames(t, raw.nc, frames...)
	want := []string{"0810 00"}
	for range n {
		want = append(want, "0110 00")
	}
	wantAnswers(t, raw, "changes under the new key behind the key change", want...)
	evs := terminalEvents(t, g)
	for i := range n {
		wantEvents(t, evs, fmt.Sprintf("RNK%05d", i), "approved/approved/00")
	}
}

// keyStoreGateway is a gateway whose ATM network's zone PIN key is in a key
// store (version 1 in force, k.v2 its next), with the issuer simulator's
// latency, and the network's ZMK to wrap a key change under.
func keyStoreGateway(t *testing.T, latency time.Duration) (*gateway.Gateway, atmStoreKeys, pinblock.Key) {
	t.Helper()
	k := newATMStoreKeys(t, t.TempDir())
	g := opsGateway(t, func(c *gateway.Config) {
		c.Security = k.ks.sec
		atmStoreAcquirer(c, false)
		c.IssuerSim.Latency = latency
	})
	zmk, err := pinblock.NewKey("zmk-atm-store", pinblock.UsageZMK, pinblock.TDES, 1, k.zmk)
	if err != nil {
		t.Fatal(err)
	}
	return g, k, zmk
}
