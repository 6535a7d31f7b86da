package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// startTestGateway runs a gateway in-process (gatewaytest.Start): every
// listener on a loopback port of its own, its own journal and reversal
// directories, stopped in t.Cleanup.
func startTestGateway(t *testing.T, mutate func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	return gatewaytest.Start(t, func(c *gateway.Config) {
		c.Instance = "e2e"
		if mutate != nil {
			mutate(c)
		}
	})
}

// TestEndToEndEveryOperationAndCode plays the demo script over real TCP:
// every operation and every response code, each answered request that
// reached routing with exactly one event carrying the same code.
func TestEndToEndEveryOperationAndCode(t *testing.T) {
	g := startTestGateway(t, func(c *gateway.Config) {
		c.Routing.Issuers = append(c.Routing.Issuers, routing.IssuerConfig{ID: demoDownIssuer, Institution: "300002",
			Hosts: []string{"127.0.0.1:1"}, PINFormat: 4, Key: devkeys.IssuerZPK})
		c.Routing.Routes = append(c.Routing.Routes, routing.Route{Prefix: demoDownPrefix, Issuer: demoDownIssuer})
	})
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	sc := g.Config().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	clients := map[string]*loadgen.Client{}
	seen := map[string]bool{}
	for _, st := range demoScript(pop) {
		client := clients[st.op.Acquirer]
		if client == nil && st.raw == nil {
			c, err := loadgen.Dial(ctx, g.AcquirerAddr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			clients[st.op.Acquirer], client = c, c
		}
		r, err := playStep(ctx, g, client, st)
		if err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		if r.ResponseCode != st.want {
			t.Errorf("%s: answered %s, want %s", st.what, r.ResponseCode, st.want)
		}
		seen[r.ResponseCode] = true
	}
	for _, code := range []string{"00", "14", "30", "55", "57", "58", "61", "65", "75", "91", "96", "P6"} {
		if !seen[code] {
			t.Errorf("no step answered %s", code)
		}
	}
	evs, err := journalEvents(g)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	sm4Changes := 0
	for _, e := range evs {
		if e.Issuer == gateway.DevSM4Issuer && e.Code == iso8583.RCApproved {
			sm4Changes++
		}
		if ids[e.ID] {
			t.Errorf("event id %s appears twice", e.ID)
		}
		ids[e.ID] = true
		if strings.Contains(e.MaskedPAN, "*") == false {
			t.Errorf("event %s carries an unmasked card number", e.ID)
		}
	}
	// The SM4 steps: the SM4 ATM network's key change, then its SM4-0 blocks
	// to the SM4 issuer and a TDES block to it (the SM4 issuer's cards also
	// take part in the steps before).
	if sm4Changes < 2 {
		t.Errorf("%d approved events at the SM4 issuer %s, want at least 2", sm4Changes, gateway.DevSM4Issuer)
	}
	// Every request but the unknown acquirer and the malformed frame reached
	// routing; repeated steps add one event per try.
	if len(evs) < len(demoScript(pop))-2 {
		t.Errorf("%d events for %d steps", len(evs), len(demoScript(pop)))
	}
}

// TestBadClientsDoNotDisturbOthers: a client sending garbage, one announcing
// an oversized frame and one that sends half a frame and stalls do not delay
// or break a well-behaved client on the same listener.
func TestBadClientsDoNotDisturbOthers(t *testing.T) {
	g := startTestGateway(t, func(c *gateway.Config) { c.Acquirer.ReadTimeout = 500 * time.Millisecond })
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", g.AcquirerAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	garbage := dial()
	_, _ = garbage.Write([]byte{0x00, 0x08, 'G', 'A', 'R', 'B', 'A', 'G', 'E', '!'})
	oversized := dial()
	_, _ = oversized.Write([]byte{0xFF, 0xFF, 'x'})
	slow := dial()
	_, _ = slow.Write([]byte{0x00, 0x40, '0', '1'})

	sc := g.Config().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	good, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	for i := 0; i < 5; i++ {
		card := pop.Card(100 + i)
		f, err := loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: "ATM7000" + string(rune('0'+i)), Proc: iso8583.ProcPINChange,
			PAN: card.PAN, OldPIN: card.PIN, NewPIN: "4826", Format: pinblock.Format0, KeyID: devkeys.ATMZPK}.Fields()
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ans, err := good.Do(rctx, f)
		cancel()
		if err != nil || ans.ResponseCode != "00" {
			t.Fatalf("well-behaved request %d: %v, %v", i, ans, err)
		}
	}
	// The garbage frame unpacks as nothing: it is answered 30 on its own
	// connection. The oversized and the stalled connections are closed.
	garbage.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(garbage)
	var n uint16
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		t.Fatalf("garbage frame got no answer: %v", err)
	}
	frame := make([]byte, n)
	if _, err := r.Read(frame); err != nil {
		t.Fatal(err)
	}
	f, err := iso8583.Unpack(iso8583.AcquirerSpec, frame)
	if err != nil || f.ResponseCode != "30" {
		t.Fatalf("garbage frame answered %v, %v; want a 30", f, err)
	}
	for name, c := range map[string]net.Conn{"oversized": oversized, "slow": slow} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s client: connection still open", name)
		}
	}
}

// TestAcquirerMismatchOnConnection: a connection bound to one acquirer is
// refused (58) when a message names another.
func TestAcquirerMismatchOnConnection(t *testing.T) {
	g := startTestGateway(t, nil)
	ctx := context.Background()
	c, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	signOn := func(acq string) string {
		ans, err := c.Do(ctx, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMISignOn, AcquirerID: acq})
		if err != nil {
			t.Fatal(err)
		}
		return ans.ResponseCode
	}
	if code := signOn(gateway.DevATMAcquirer); code != "00" {
		t.Fatalf("sign-on answered %s, want 00", code)
	}
	if code := signOn(gateway.DevBranchAcquirer); code != "58" {
		t.Fatalf("sign-on of a second acquirer on the same connection answered %s, want 58", code)
	}
}
