package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// These tests run two or three gateways in-process behind one address — a
// layer-4 balancer of the test's own, round robin per connection, as a bank
// puts a TCP load balancer in front of its instances — on one real
// redis-server (integration/testservers; skipped without it, failed under
// CI) and one issuer simulator, whose ledger says what the issuer did.

// balancer sends each connection it accepts to the next backend in turn and
// copies bytes both ways until either side closes.
type balancer struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// startBalancer listens on a loopback port in front of backends until the
// test ends.
func startBalancer(t *testing.T, backends ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) track(c net.Conn, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.conns[c] = struct{}{}
	} else {
		delete(b.conns, c)
	}
}

func (b *balancer) accept() {
	defer b.wg.Done()
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		backend := b.backends[(b.next.Add(1)-1)%uint64(len(b.backends))]
		out, err := net.Dial("tcp", backend)
		if err != nil {
			in.Close()
			continue
		}
		b.track(in, true)
		b.track(out, true)
		b.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer b.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			b.track(src, false)
		}
		go pipe(out, in)
		go pipe(in, out)
	}
}

// instances runs n gateways on one Redis and one issuer simulator (sc, its
// population set here) behind a balancer. mutate, if not nil, changes every
// gateway's configuration.
type instances struct {
	gws    []*gateway.Gateway
	lb     *balancer
	issuer *issuersim.Sim
	pop    issuersim.Population
	redis  string // address of the instances' Redis
	// stopRedis stops that Redis.
	stopRedis func()
}

func startInstances(t *testing.T, n int, sc issuersim.Config, mutate func(*gateway.Config)) *instances {
	t.Helper()
	redisAddr, stopRedis := testservers.StartRedis(t)
	in := &instances{pop: issuersim.Population{Seed: 7, BINs: gateway.DevBINs(), PerBIN: 1000}, stopRedis: stopRedis}
	sc.Population, in.redis = in.pop, redisAddr
	var addr string
	in.issuer, addr = gatewaytest.StartIssuer(t, sc)
	var backends []string
	for i := range n {
		g := startTestGateway(t, func(c *gateway.Config) {
			gatewaytest.ExternalIssuer(addr)(c)
			c.Instance = fmt.Sprintf("gw-%d", i+1)
			off := false
			c.Branch.Enabled = &off
			c.Limits.Backend, c.Limits.Addrs = "redis", []string{redisAddr}
			if mutate != nil {
				mutate(c)
			}
		})
		if err := waitReady(context.Background(), g); err != nil {
			t.Fatal(err)
		}
		in.gws = append(in.gws, g)
		backends = append(backends, g.AcquirerAddr())
	}
	in.lb = startBalancer(t, backends...)
	return in
}

// dial connects an ATM network to the balancer: connection k (from 0) of
// the test reaches gateway k mod n.
func (in *instances) dial(t *testing.T) *loadgen.Client {
	t.Helper()
	return loadgenDial(t, in.lb.addr())
}

func exchange(t *testing.T, c *loadgen.Client, f *iso8583.Fields) *iso8583.Fields {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ans, err := c.Do(ctx, f)
	if err != nil {
		t.Fatalf("%s on the balancer: %v", f.MTI, err)
	}
	return ans
}

// reversalAdvice is the ATM network's 0420 for the PIN change orig (sent,
// its STAN and DE 7 set): DE 90 names it, DE 39 68 (answer too late).
func reversalAdvice(t *testing.T, orig *iso8583.Fields) *iso8583.Fields {
	t.Helper()
	de90, err := iso8583.OriginalData{MTI: iso8583.MTIAuthRequest, STAN: orig.STAN, Transmission: orig.TransmissionTime,
		Acquirer: gateway.DevATMAcquirer}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &iso8583.Fields{MTI: iso8583.MTIReversalAdvice, PAN: orig.PAN, ProcessingCode: iso8583.ProcPINChange,
		AcquirerID: gateway.DevATMAcquirer, TerminalID: orig.TerminalID, CardAcceptorID: orig.CardAcceptorID, RRN: orig.RRN,
		ResponseCode: "68", OriginalData: de90}
}

// instanceEvents decodes every event in g's journal.
func instanceEvents(t *testing.T, g *gateway.Gateway) []routing.Event {
	t.Helper()
	entries, err := g.Journal().Entries(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := gateway.DecodeEntries(entries)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestAcquirerReversalOnAnotherInstance: behind the balancer, an ATM changes
// a PIN on one instance (00), its connection drops, and its 0420 for the
// change reaches the second instance. The second instance answers 0430 00
// and sends the issuer the reversal of the message the first one sent; the
// issuer's ledger holds the old PIN again. The advice repeated to the third
// instance changes nothing more. The events tell the story once: the first
// instance's journal has the approval, the second's the reversal naming it,
// the third's nothing.
func TestAcquirerReversalOnAnotherInstance(t *testing.T) {
	in := startInstances(t, 3, issuersim.Config{}, nil)
	card := in.pop.Card(410)
	atm := devATMKey(t)

	c1 := in.dial(t) // gw-1
	change := opsFieldsUnder(t, card, "MULTI001", atm)
	if ans := exchange(t, c1, change); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("PIN change on gw-1 = %s, want 00", ans.ResponseCode)
	}
	c1.Close() // the terminal gave up on it; the network reconnects
	advice := func() *iso8583.Fields { return reversalAdvice(t, change) }
	c2 := in.dial(t) // gw-2
	if ans := exchange(t, c2, advice()); ans.MTI != iso8583.MTIReversalResponse || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("reversal advice on gw-2 = %s %s, want 0430 00", ans.MTI, ans.ResponseCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for in.issuer.Reversals.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := in.issuer.Reversals.Load(); n != 1 {
		t.Fatalf("the issuer got %d reversal advices, want 1", n)
	}
	c3 := in.dial(t) // gw-3
	if ans := exchange(t, c3, advice()); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("repeated reversal advice on gw-3 = %s, want 00", ans.ResponseCode)
	}
	if owed, err := in.gws[2].Reversals().Pending(context.Background()); err != nil || len(owed) != 0 {
		t.Errorf("gw-3 owes %d reversals after a repeated advice (%v), want 0", len(owed), err)
	}
	// The issuer's ledger: the change was undone, so the old PIN changes
	// the PIN again (on gw-1, the fourth connection).
	c4 := in.dial(t)
	if ans := exchange(t, c4, opsFieldsUnder(t, card, "MULTI002", atm)); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("PIN change from the old PIN after the reversal = %s, want 00 (the issuer still has the new PIN)", ans.ResponseCode)
	}
	if n := in.issuer.Reversals.Load(); n != 1 {
		t.Errorf("the issuer got %d reversal advices in all, want 1", n)
	}

	// Redis holds the approval sealed: no key or value has the PAN, or its
	// last ten digits, in clear.
	rdb := redis.NewClient(&redis.Options{Addr: in.redis})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		dump, _ := rdb.Dump(context.Background(), k).Result()
		if strings.Contains(k+dump, card.PAN[6:]) {
			t.Errorf("Redis key %s holds the card number in clear", k)
		}
		if strings.Contains(k, ":w:") {
			mem, _ := rdb.MemoryUsage(context.Background(), k).Result()
			t.Logf("the approved request's window record, with its sealed approval, takes %d bytes in Redis", mem)
		}
	}

	var approvedID string
	for _, ev := range instanceEvents(t, in.gws[0]) {
		if ev.Terminal == "MULTI001" && ev.Outcome == routing.OutcomeApproved {
			approvedID = ev.ID
		}
	}
	if approvedID == "" {
		t.Fatal("gw-1's journal has no approved event for the change")
	}
	var reversals []routing.Event
	for i, g := range in.gws {
		for _, ev := range instanceEvents(t, g) {
			if ev.Reason == routing.ReasonAcquirerReversal {
				if i != 1 {
					t.Errorf("gw-%d recorded a reversal event, want only gw-2", i+1)
				}
				reversals = append(reversals, ev)
			}
		}
	}
	if len(reversals) != 1 {
		t.Fatalf("%d reversal events in all, want 1", len(reversals))
	}
	if rev := reversals[0]; rev.Reverses != approvedID || rev.Outcome != routing.OutcomeReversed || rev.Code != "68" ||
		rev.MaskedPAN != iso8583.MaskPAN(card.PAN) || rev.Terminal != "MULTI001" {
		t.Errorf("gw-2's reversal event: reverses %q (want %q), outcome %s, code %s, terminal %s",
			rev.Reverses, approvedID, rev.Outcome, rev.Code, rev.Terminal)
	}
}

// TestKeyChangeOnEveryInstance: three gateways share one key store; an ATM
// network changes its zone PIN key online (0800/161) through the balancer,
// which sends it to the first. Within security.key_sync_interval the new
// key is in force on all three: PIN changes under it are approved on the
// second and third, and under the previous version still (grace window).
// The custody log holds one record of the change, written by the instance
// that took it. A fourth instance started afterwards on a key store of its
// own, copied before the change, takes the new key from Redis before it
// serves, and writes no custody record.
func TestKeyChangeOnEveryInstance(t *testing.T) {
	dir := t.TempDir()
	k := newATMStoreKeys(t, dir)
	// The fourth instance's own copy of the store, taken before the change.
	lateDir := t.TempDir()
	late := k.ks.sec
	for _, f := range []struct{ from, to *string }{{&k.ks.sec.KeyStore, &late.KeyStore}, {&k.ks.sec.CustodyLog, &late.CustodyLog}, {&k.ks.sec.LMKFile, &late.LMKFile}} {
		b, err := os.ReadFile(*f.from)
		if err != nil {
			t.Fatal(err)
		}
		*f.to = filepath.Join(lateDir, filepath.Base(*f.from))
		if err := os.WriteFile(*f.to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	storeConfig := func(c *gateway.Config) {
		c.Security = k.ks.sec
		atmStoreAcquirer(c, false)
	}
	in := startInstances(t, 3, issuersim.Config{}, storeConfig)

	zmk, err := pinblock.NewKey("zmk-atm-store", pinblock.UsageZMK, pinblock.TDES, 1, k.zmk)
	if err != nil {
		t.Fatal(err)
	}
	c1 := in.dial(t) // gw-1
	if ans := exchange(t, c1, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMISignOn, AcquirerID: gateway.DevATMAcquirer}); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("sign-on = %s", ans.ResponseCode)
	}
	start := time.Now()
	ans := exchange(t, c1, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange, AcquirerID: gateway.DevATMAcquirer,
		SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: wrapTR31(t, zmk, k.v2)})
	if ans.MTI != iso8583.MTINetworkResponse || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("key change on gw-1 = %s %s, want 0810 00", ans.MTI, ans.ResponseCode)
	}
	// Wait (bounded) until every instance's module holds the new version.
	inForce := func(g *gateway.Gateway) bool {
		kcv, err := g.SecurityModule().KCV(context.Background(), pinblock.KeyRef{ID: "zpk-atm-store"})
		return err == nil && kcv == k.v2.KCV()
	}
	deadline := time.Now().Add(15 * time.Second)
	for i, g := range in.gws {
		for !inForce(g) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !inForce(g) {
			t.Fatalf("gw-%d does not use the new key 15 s after the change", i+1)
		}
	}
	t.Logf("the key change was in force on all 3 instances %v after its 0810", time.Since(start).Round(time.Millisecond))

	// Through the balancer, the next connections reach gw-2, gw-3, gw-1, gw-2.
	n := 420
	changeUnder := func(key pinblock.Key) string {
		t.Helper()
		n++
		c := in.dial(t)
		return exchange(t, c, opsFieldsUnder(t, in.pop.Card(n), fmt.Sprintf("MKC%05d", n), key)).ResponseCode
	}
	for i, key := range []pinblock.Key{k.v2, k.v2, k.v1, k.v1} {
		if code := changeUnder(key); code != iso8583.RCApproved {
			t.Errorf("PIN change %d under key version %d on gw-%d = %s, want 00", i+1, key.Version(), (i+1)%3+1, code)
		}
	}

	// One custody record of the change, from gw-1.
	raw, err := os.ReadFile(k.ks.sec.CustodyLog)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(raw), "key change (0800/161)"); got != 1 {
		t.Errorf("the custody log has %d records of the key change, want 1", got)
	}
	for _, sk := range listStore(t, k.ks.sec) {
		if sk.ID == "zpk-atm-store" && sk.RetiredAt == nil && (sk.Version != 2 || sk.KCV != k.v2.KCV()) {
			t.Errorf("the key store's current zpk-atm-store is v%d %s, want v2 %s", sk.Version, sk.KCV, k.v2.KCV())
		}
	}

	// A fourth instance on its own, older store takes the key before serving.
	lateLog, err := os.ReadFile(late.CustodyLog)
	if err != nil {
		t.Fatal(err)
	}
	g4 := startTestGateway(t, func(c *gateway.Config) {
		c.IssuerSim = nil
		c.Routing = in.gws[0].Config().Routing
		c.Instance = "gw-4"
		off := false
		c.Branch.Enabled = &off
		c.Limits = in.gws[0].Config().Limits
		c.Security = late
		atmStoreAcquirer(c, false)
	})
	if !inForce(g4) {
		t.Error("an instance started after the key change does not use the new key when it starts serving")
	}
	if err := waitReady(context.Background(), g4); err != nil {
		t.Fatal(err)
	}
	c := loadgenDial(t, g4.AcquirerAddr())
	if code := exchange(t, c, opsFieldsUnder(t, in.pop.Card(430), "MKC00430", k.v2)).ResponseCode; code != iso8583.RCApproved {
		t.Errorf("PIN change under the new key on gw-4 = %s, want 00", code)
	}
	after, err := os.ReadFile(late.CustodyLog)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(lateLog) {
		t.Error("gw-4 wrote a custody record for a key change another instance took")
	}
}

// loadgenDial connects to one gateway directly, past the balancer.
func loadgenDial(t *testing.T, addr string) *loadgen.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := loadgen.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stampedChange is a PIN change by card from terminal with its STAN and
// DE 7 set here, and its frame: what an ATM network sends, and sends again
// unchanged when it retransmits.
func stampedChange(t *testing.T, card issuersim.Card, terminal, stan string) (*iso8583.Fields, []byte) {
	t.Helper()
	f := opsFieldsUnder(t, card, terminal, devATMKey(t))
	now := time.Now().UTC()
	f.STAN, f.TransmissionTime = stan, now.Format("0102150405")
	f.LocalTime, f.LocalDate = now.Format("150405"), now.Format("0102")
	frame, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		t.Fatal(err)
	}
	return f, frame
}

// TestRetransmissionToAnotherInstanceMidOperation: two gateways behind the
// balancer, an issuer that takes 1 s per answer. An ATM network's PIN
// change is on its way to the issuer through gw-1 when the network, on a
// new connection (gw-2), retransmits it (same STAN and DE 7). Both get the
// one answer, 00; the issuer sees one request, and the journals of both
// instances together hold one event for it, as on one instance.
func TestRetransmissionToAnotherInstanceMidOperation(t *testing.T) {
	in := startInstances(t, 2, issuersim.Config{Latency: time.Second}, nil)
	_, frame := stampedChange(t, in.pop.Card(510), "MULTI510", "000510")
	before := in.issuer.Requests.Load()

	first, again := dialRaw(t, in.lb.addr()), dialRaw(t, in.lb.addr()) // gw-1, gw-2
	first.send(frame)
	again.send(frame) // while gw-1's is at the issuer
	answer := func(c *rawATM, what string) *iso8583.Fields {
		t.Helper()
		b, err := c.recv()
		if err != nil {
			t.Fatalf("%s: no answer: %v", what, err)
		}
		ans, err := iso8583.Unpack(iso8583.AcquirerSpec, b)
		if err != nil {
			t.Fatalf("%s: answer does not unpack: %v", what, err)
		}
		return ans
	}
	a, b := answer(first, "request on gw-1"), answer(again, "retransmission on gw-2")
	if a.ResponseCode != iso8583.RCApproved || b.ResponseCode != iso8583.RCApproved {
		t.Fatalf("request on gw-1 = %s, retransmission on gw-2 = %s; want 00 and 00", a.ResponseCode, b.ResponseCode)
	}
	if n := in.issuer.Requests.Load() - before; n != 1 {
		t.Errorf("the issuer saw %d requests, want 1", n)
	}
	var evs int
	for _, g := range in.gws {
		for _, ev := range instanceEvents(t, g) {
			if ev.Terminal == "MULTI510" {
				evs++
			}
		}
	}
	if evs != 1 {
		t.Errorf("%d events for the request across both instances, want 1", evs)
	}
}

// TestReversalWhileTheOriginalIsInFlightElsewhere: two gateways behind the
// balancer, an issuer that takes 2 s per answer. The ATM network's 0420
// for a PIN change reaches gw-2 while the change is still at the issuer
// through gw-1: gw-2 cannot know yet whether there is anything to undo and
// answers 0430 96, so the network sends the advice again. Once gw-1 has
// answered 00, the repeated advice to gw-2 is 00 and the issuer gets the
// reversal, once.
func TestReversalWhileTheOriginalIsInFlightElsewhere(t *testing.T) {
	// 2 s at the issuer: ample for the 0420 to reach gw-2 first on a loaded machine.
	in := startInstances(t, 2, issuersim.Config{Latency: 2 * time.Second}, nil)
	f, frame := stampedChange(t, in.pop.Card(520), "MULTI520", "000520")
	before := in.issuer.Requests.Load()
	first := dialRaw(t, in.lb.addr()) // gw-1
	first.send(frame)
	deadline := time.Now().Add(10 * time.Second)
	for in.issuer.Requests.Load() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	advice := func() *iso8583.Fields { return reversalAdvice(t, f) }
	c2 := in.dial(t) // gw-2
	if ans := exchange(t, c2, advice()); ans.ResponseCode != iso8583.RCSystemMalfunction {
		t.Fatalf("0420 on gw-2 while the original is at the issuer through gw-1 = %s, want 96 (send it again)", ans.ResponseCode)
	}
	b, err := first.recv()
	if err != nil {
		t.Fatal(err)
	}
	if ans, err := iso8583.Unpack(iso8583.AcquirerSpec, b); err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("PIN change on gw-1 = %v, %v; want 00", ans, err)
	}
	if ans := exchange(t, c2, advice()); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("repeated 0420 on gw-2 = %s, want 00", ans.ResponseCode)
	}
	for in.issuer.Reversals.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := in.issuer.Reversals.Load(); n != 1 {
		t.Fatalf("the issuer got %d reversal advices, want 1", n)
	}
}

// TestKeyChangeOnEveryInstanceHSMMode: with security.module payshield, two
// gateways on one payShield simulator and one Redis, each with its own key
// file and custody log. A key change (0800/161, the key under the ZMK) on
// gw-1 is imported there through the HSM and recorded in gw-1's custody log;
// gw-2 takes it through its own import within the sync interval, keeps it in
// its key file (as LMK tokens), translates under it, and writes no custody
// record.
func TestKeyChangeOnEveryInstanceHSMMode(t *testing.T) {
	_, hsmAddr := startHSMSim(t)
	redisAddr, _ := testservers.StartRedis(t)
	var (
		gws                []*gateway.Gateway
		keyFiles, custodys []string
		zmkClear           []byte
	)
	for i := range 2 {
		dir := t.TempDir()
		keyFile, custody := filepath.Join(dir, "hsm-keys.json"), filepath.Join(dir, "custody.log")
		zmkClear, _ = writeHSMKeyChangeKeys(t, keyFile)
		g := startTestGateway(t, func(c *gateway.Config) {
			hsmKeyChangeMode(hsmAddr, keyFile, custody)(c)
			c.Instance = fmt.Sprintf("hsm-gw-%d", i+1)
			c.Limits.Backend, c.Limits.Addrs = "redis", []string{redisAddr}
		})
		if err := waitReady(context.Background(), g); err != nil {
			t.Fatal(err)
		}
		gws, keyFiles, custodys = append(gws, g), append(keyFiles, keyFile), append(custodys, custody)
	}
	_, v2, de123 := hsmNextZPK(t, zmkClear)
	c1 := loadgenDial(t, gws[0].AcquirerAddr())
	ans := exchange(t, c1, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange, AcquirerID: gateway.DevATMAcquirer,
		SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: de123})
	if ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("key change on hsm-gw-1 = %s, want 00", ans.ResponseCode)
	}
	taken := func() bool {
		k, err := payShieldKeys(gws[1]).Lookup(pinblock.KeyRef{ID: devkeys.ATMZPK})
		return err == nil && k.Version == 2 && k.KCV == v2.KCV()
	}
	deadline := time.Now().Add(15 * time.Second)
	for !taken() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !taken() {
		t.Fatal("hsm-gw-2 does not hold the new key 15 s after the change")
	}
	c2 := loadgenDial(t, gws[1].AcquirerAddr())
	pop := opsPopulation(gws[1].Config().IssuerSim)
	if code := exchange(t, c2, opsFieldsUnder(t, pop.Card(7310), "KCH07310", v2)).ResponseCode; code != iso8583.RCApproved {
		t.Errorf("PIN change under the new key on hsm-gw-2 = %s, want 00", code)
	}
	if !strings.Contains(mustRead(t, keyFiles[1]), v2.KCV()) {
		t.Error("hsm-gw-2's key file does not hold the new version")
	}
	if lines, _ := lastCustodyRecord(t, custodys[0]); lines != 1 {
		t.Errorf("hsm-gw-1's custody log has %d records, want 1", lines)
	}
	if _, err := os.Stat(custodys[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hsm-gw-2 has a custody log (%v): the change is recorded once, by hsm-gw-1", err)
	}
}

// TestKeyChangeFollowsTheLimitsRedisAcrossAReload: two gateways share key
// changes through the limits' Redis; both are reloaded onto another Redis
// (limits.addrs changed) and the first is stopped. A key change (0800/161)
// on gw-1 then reaches gw-2 through the new Redis within the sync interval:
// the key changes moved with the limits, not only the limits.
func TestKeyChangeFollowsTheLimitsRedisAcrossAReload(t *testing.T) {
	dir := t.TempDir()
	k := newATMStoreKeys(t, dir)
	in := startInstances(t, 2, issuersim.Config{}, func(c *gateway.Config) {
		c.Security = k.ks.sec
		atmStoreAcquirer(c, false)
	})
	movedTo, _ := testservers.StartRedis(t)
	for i, g := range in.gws {
		next := g.Config()
		next.Limits.Addrs = []string{movedTo}
		g.SetReloadSource(func() (gateway.Config, error) { return next, nil })
		if rep, err := g.Reload("test"); err != nil || !rep.LimitsChanged {
			t.Fatalf("gw-%d: Reload() onto the second Redis = %+v, %v; want the limits changed", i+1, rep, err)
		}
	}
	in.stopRedis()

	zmk, err := pinblock.NewKey("zmk-atm-store", pinblock.UsageZMK, pinblock.TDES, 1, k.zmk)
	if err != nil {
		t.Fatal(err)
	}
	c1 := loadgenDial(t, in.gws[0].AcquirerAddr())
	ans := exchange(t, c1, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange, AcquirerID: gateway.DevATMAcquirer,
		SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: wrapTR31(t, zmk, k.v2)})
	if ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("key change on gw-1 = %s, want 00", ans.ResponseCode)
	}
	inForce := func() bool {
		kcv, err := in.gws[1].SecurityModule().KCV(context.Background(), pinblock.KeyRef{ID: "zpk-atm-store"})
		return err == nil && kcv == k.v2.KCV()
	}
	deadline := time.Now().Add(15 * time.Second)
	for !inForce() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !inForce() {
		t.Fatal("gw-2 does not use the new key 15 s after the change: the key changes did not follow the reload onto the second Redis")
	}
}

// TestReversalBeforeItsChangeOnAnotherInstance: a switch's 0420 reaches gw-2
// before the PIN change it names reaches gw-1 (two connections through the
// balancer, the change's not yet read). gw-2 answers 0430 00 and marks the
// change reversed in the shared window; gw-1 refuses the change 94
// reversed_before_received, records it and never sends it, so the card's
// old PIN still works; a retransmission to gw-3 gets the same answer and no
// second event.
func TestReversalBeforeItsChangeOnAnotherInstance(t *testing.T) {
	in := startInstances(t, 3, issuersim.Config{}, nil)
	card := in.pop.Card(420)
	atm := devATMKey(t)
	change := opsFieldsUnder(t, card, "MULTI420", atm)
	change.STAN, change.TransmissionTime = "842000", "1207235959"
	change.LocalTime, change.LocalDate = change.TransmissionTime[4:], change.TransmissionTime[:4]
	// Raw connections: the change goes with its own STAN and DE 7.
	send := func(raw *rawATM) *iso8583.Fields {
		t.Helper()
		writeFrames(t, raw.nc, change)
		return readAnswers(t, raw.r, 1)[0]
	}
	c1 := dialRaw(t, in.lb.addr()) // gw-1, which will get the change
	c2 := in.dial(t)               // gw-2, which gets the 0420 first
	if ans := exchange(t, c2, reversalAdvice(t, change)); ans.MTI != iso8583.MTIReversalResponse || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("0420 on gw-2 before its change = %s %s, want 0430 00", ans.MTI, ans.ResponseCode)
	}
	before := in.issuer.Requests.Load()
	if ans := send(c1); ans.ResponseCode != iso8583.RCDuplicate {
		t.Fatalf("the change on gw-1 after gw-2 took its reversal = %s, want 94", ans.ResponseCode)
	}
	if ans := send(dialRaw(t, in.lb.addr())); ans.ResponseCode != iso8583.RCDuplicate { // gw-3
		t.Fatalf("its retransmission on gw-3 = %s, want 94", ans.ResponseCode)
	}
	if n := in.issuer.Requests.Load() - before; n != 0 {
		t.Errorf("the issuer got %d requests for a change reversed before it came, want 0", n)
	}
	if ans := exchange(t, in.dial(t), opsFieldsUnder(t, card, "MULTI421", atm)); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("change from the card's old PIN afterwards = %s, want 00", ans.ResponseCode)
	}
	var refusals []string
	for i, g := range in.gws {
		for _, ev := range instanceEvents(t, g) {
			if ev.Reason == "reversed_before_received" {
				refusals = append(refusals, fmt.Sprintf("gw-%d %s %s", i+1, ev.Outcome, ev.Code))
			}
		}
	}
	if len(refusals) != 1 || refusals[0] != "gw-1 rejected 94" {
		t.Errorf("reversed_before_received events %v, want one, gw-1 rejected 94", refusals)
	}
}
