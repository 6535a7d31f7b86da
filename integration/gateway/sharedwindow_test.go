package gateway_test

import (
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
)

// TestSharedWindowAcrossTwoGateways: two gateways on one real Redis
// (limits.backend redis) and one issuer. A request retransmitted to the
// other instance — after the first's answer, or while the first is still at
// the issuer — gets the first answer, and the issuer sees one request. With
// Redis down, a request is refused 91 limiter_unavailable (recorded so) and
// not sent to the issuer.
func TestSharedWindowAcrossTwoGateways(t *testing.T) {
	rs := testservers.StartRedisServer(t)
	sc := gateway.EmbeddedConfig().WithDefaults().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	// The issuer takes 150 ms per answer: long enough for a retransmission
	// to reach the other instance while the first is in flight.
	sim, simAddr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop, Latency: 150 * time.Millisecond})
	var gws [2]*gateway.Gateway
	var links [2]*gatewaytest.AcquirerLink
	for i := range gws {
		gws[i] = gatewaytest.Start(t, func(c *gateway.Config) {
			gatewaytest.ExternalIssuer(simAddr)(c)
			c.Instance = fmt.Sprintf("gw-%c", 'a'+i)
			c.Limits.Backend = "redis"
			c.Limits.Addrs = []string{rs.Addr}
		})
	}
	for i, g := range gws {
		gatewaytest.WaitSignedOn(t, g)
		links[i] = gatewaytest.DialAcquirer(t, g.AcquirerAddr())
	}

	var stan int
	request := func(card int, terminal string) *iso8583.Fields {
		t.Helper()
		c := pop.Card(card)
		f, err := loadgen.Op{Acquirer: gateway.DevBranchAcquirer, Terminal: terminal, Proc: iso8583.ProcPINUnblock,
			PAN: c.PAN, Teller: "TELLER-0117-07", IDRef: "IDCHK-2026-000123"}.Fields()
		if err != nil {
			t.Fatal(err)
		}
		stan++
		now := time.Now().UTC()
		f.STAN, f.TransmissionTime = fmt.Sprintf("%06d", stan), now.Format("0102150405")
		f.LocalTime, f.LocalDate = now.Format("150405"), now.Format("0102")
		return f
	}
	same := func(t *testing.T, a, b *iso8583.Fields) {
		t.Helper()
		if a.ResponseCode != b.ResponseCode || a.RRN != b.RRN || a.STAN != b.STAN {
			t.Errorf("retransmission answered %s (RRN %s, STAN %s), the first %s (RRN %s, STAN %s): want the same answer",
				b.ResponseCode, b.RRN, b.STAN, a.ResponseCode, a.RRN, a.STAN)
		}
	}

	t.Run("after the first answer", func(t *testing.T) {
		before := sim.Requests.Load()
		f := request(31, "BR011701")
		first := gatewaytest.Answer(t, links[0].Send(t, f))
		if first.ResponseCode != iso8583.RCApproved {
			t.Fatalf("first request answered %s, want 00", first.ResponseCode)
		}
		again := gatewaytest.Answer(t, links[1].Send(t, f))
		same(t, first, again)
		if n := sim.Requests.Load() - before; n != 1 {
			t.Errorf("the issuer got %d requests for one request and its retransmission, want 1", n)
		}
	})

	t.Run("while the first is in flight", func(t *testing.T) {
		before := sim.Requests.Load()
		f := request(32, "BR011702")
		cha := links[0].Send(t, f)
		chb := links[1].Send(t, f) // whichever instance claims it first, the other waits
		a, b := gatewaytest.Answer(t, cha), gatewaytest.Answer(t, chb)
		if a.ResponseCode != iso8583.RCApproved {
			t.Errorf("answer = %s, want 00", a.ResponseCode)
		}
		same(t, a, b)
		if n := sim.Requests.Load() - before; n != 1 {
			t.Errorf("the issuer got %d requests for one request sent to two instances at once, want 1", n)
		}
	})

	t.Run("redis down", func(t *testing.T) {
		rs.Stop()
		defer rs.Start()
		before := sim.Requests.Load()
		got := gatewaytest.Answer(t, links[1].Send(t, request(33, "BR011703")))
		if got.ResponseCode != iso8583.RCIssuerUnavailable {
			t.Errorf("with Redis down a request answered %s, want 91", got.ResponseCode)
		}
		if n := sim.Requests.Load() - before; n != 0 {
			t.Errorf("with Redis down the issuer got %d requests, want 0 (refused before it)", n)
		}
		entries, err := gws[1].Journal().Entries(1, 1000)
		if err != nil || len(entries) == 0 {
			t.Fatalf("journal entries: %d, %v", len(entries), err)
		}
		last, err := events.Decode(entries[len(entries)-1].Message)
		if err != nil {
			t.Fatal(err)
		}
		if last.Code != iso8583.RCIssuerUnavailable || last.Reason != "limiter_unavailable" {
			t.Errorf("the refusal's event = %s %s (%s), want 91 limited (limiter_unavailable)", last.Code, last.Outcome, last.Reason)
		}
	})
}
