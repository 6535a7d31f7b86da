package main

import (
	"encoding/hex"
	"testing"

	"pingate/integration/gateway"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// TestNetworkManagementWithoutDE32OverTCP sends the document's own golden
// 0800 messages byte for byte. An echo test without DE 32 is answered on a
// connection bound to no acquirer; after sign-on, echo tests and the key
// change without DE 32 speak for the signed-on acquirer: none is answered 58
// and the connection stays open (a PIN change on it is still served).
func TestNetworkManagementWithoutDE32OverTCP(t *testing.T) {
	g := opsGateway(t, nil)
	golden := docGolden(t)
	c := dialRaw(t, g.AcquirerAddr())

	want := func(name string, ans *iso8583.Fields, mti, code string) {
		t.Helper()
		if ans.MTI != mti || ans.ResponseCode != code {
			t.Fatalf("%s = %s %s, want %s %s", name, ans.MTI, ans.ResponseCode, mti, code)
		}
	}
	echo := goldenNamed(t, golden, "0800-echo")
	want("0800-echo before sign-on", c.exchange("echo", echo), "0810", "00")
	want("0800-sign-on", c.exchange("sign-on", goldenNamed(t, golden, "0800-sign-on")), "0810", "00")
	ans := c.exchange("echo", echo)
	want("0800-echo after sign-on", ans, "0810", "00")
	if ans.STAN != "000102" || ans.AcquirerID != "" {
		t.Errorf("echo answer: DE 11 %q DE 32 %q, want the request's 000102 and no DE 32", ans.STAN, ans.AcquirerID)
	}
	// The golden key change is a TR-31 block: the embedded default takes it.
	want("0800-key-change after sign-on", c.exchange("key change", goldenNamed(t, golden, "0800-key-change")), "0810", "00")
	// The legacy form is refused 30 by an acquirer without key_change_legacy_ecb.
	want("0800-key-change-legacy", c.exchange("key change", goldenNamed(t, golden, "0800-key-change-legacy")), "0810", "30")
	want("0800-sign-off", c.exchange("sign-off", goldenNamed(t, golden, "0800-sign-off")), "0810", "00")
	want("0800-echo after sign-off", c.exchange("echo", echo), "0810", "00")

	op := opsChange(opsPopulation(g.Config().IssuerSim), 7500, "4826")
	f, err := op.Fields()
	if err != nil {
		t.Fatal(err)
	}
	f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = "007500", "0612150000", "150000", "0612"
	b, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		t.Fatal(err)
	}
	want("0100 on the same connection", c.exchange("0100", b), "0110", "00")

	// The key the golden key change delivered is the one the document names:
	// PIN blocks under it translate.
	docKey := docNewZPK(t)
	f = opsFieldsUnder(t, opsPopulation(g.Config().IssuerSim).Card(7501), "KCH07501", docKey)
	f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = "007501", "0612150001", "150001", "0612"
	if b, err = iso8583.Pack(iso8583.AcquirerSpec, f); err != nil {
		t.Fatal(err)
	}
	want("0100 under the key the golden key change delivered", c.exchange("0100", b), "0110", "00")
}

// TestGoldenLegacyKeyChangeOverTCP: the document's legacy key change, byte
// for byte, is taken (0810 00) by an acquirer with key_change_legacy_ecb,
// after the golden sign-on, and PIN blocks under the key it names translate.
func TestGoldenLegacyKeyChangeOverTCP(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) {
		acqs := append([]routing.AcquirerConfig(nil), c.Routing.Acquirers...)
		acqs[0].LegacyKeyChange = true
		c.Routing.Acquirers = acqs
	})
	golden := docGolden(t)
	c := dialRaw(t, g.AcquirerAddr())
	if ans := c.exchange("sign-on", goldenNamed(t, golden, "0800-sign-on")); ans.ResponseCode != "00" {
		t.Fatalf("sign-on = %s", ans.ResponseCode)
	}
	if ans := c.exchange("key change", goldenNamed(t, golden, "0800-key-change-legacy")); ans.MTI != "0810" || ans.ResponseCode != "00" {
		t.Fatalf("0800-key-change-legacy = %s %s, want 0810 00", ans.MTI, ans.ResponseCode)
	}
	f := opsFieldsUnder(t, opsPopulation(g.Config().IssuerSim).Card(7502), "KCH07502", docNewZPK(t))
	f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = "007502", "0612150002", "150002", "0612"
	b, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		t.Fatal(err)
	}
	if ans := c.exchange("0100", b); ans.ResponseCode != "00" {
		t.Fatalf("0100 under the key the legacy key change delivered = %s, want 00", ans.ResponseCode)
	}
}

// docNewZPK is the new zone PIN key the document's key change examples
// deliver, as version 2 of dev-atm-zpk: its value and KCV are read from the
// DE 123 section of docs/iso8583-acquirer.md and must agree.
func docNewZPK(t *testing.T) pinblock.Key {
	t.Helper()
	ex := docKeyChangeExample(t)
	raw, err := hex.DecodeString(ex.newKey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pinblock.NewKey(devkeys.ATMZPK, pinblock.UsageZPK, pinblock.TDES, 2, raw)
	if err != nil {
		t.Fatal(err)
	}
	if k.KCV() != ex.kcv {
		t.Fatalf("docs/iso8583-acquirer.md: the example key's KCV is %s, the document says %s", k.KCV(), ex.kcv)
	}
	return k
}

// TestKeyChangeWithoutDE32OnUnboundConnection: a key change that names no
// acquirer on a connection bound to none has no acquirer to act for: 58, and
// the connection stays open.
func TestKeyChangeWithoutDE32OnUnboundConnection(t *testing.T) {
	g := opsGateway(t, nil)
	golden := docGolden(t)
	c := dialRaw(t, g.AcquirerAddr())
	if ans := c.exchange("key change", goldenNamed(t, golden, "0800-key-change")); ans.MTI != "0810" || ans.ResponseCode != iso8583.RCNotPermittedTerm {
		t.Fatalf("unbound key change = %s %s, want 0810 58", ans.MTI, ans.ResponseCode)
	}
	if ans := c.exchange("echo", goldenNamed(t, golden, "0800-echo")); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("echo after the refused key change = %s, want 00 on the same connection", ans.ResponseCode)
	}
}

// TestSignOnRequiredOverTCP: with require_sign_on, a 0100 before sign-on and
// after sign-off is refused 91 and reaches no issuer; between them it is
// served. A 0420 is taken without sign-on.
func TestSignOnRequiredOverTCP(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) {
		acqs := append([]routing.AcquirerConfig(nil), c.Routing.Acquirers...)
		acqs[0].RequireSignOn = true
		c.Routing.Acquirers = acqs
	})
	golden := docGolden(t)
	c := dialRaw(t, g.AcquirerAddr())
	pop := opsPopulation(g.Config().IssuerSim)
	n := 0
	change := func() *iso8583.Fields {
		t.Helper()
		n++
		f, err := opsChange(pop, 7600+n, "4826").Fields()
		if err != nil {
			t.Fatal(err)
		}
		f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = "0076"+string(rune('0'+n/10))+string(rune('0'+n%10)), "0612150000", "150000", "0612"
		b, err := iso8583.Pack(iso8583.AcquirerSpec, f)
		if err != nil {
			t.Fatal(err)
		}
		return c.exchange("0100", b)
	}
	if ans := change(); ans.ResponseCode != iso8583.RCIssuerUnavailable {
		t.Fatalf("0100 before sign-on = %s, want 91", ans.ResponseCode)
	}
	if ans := c.exchange("sign-on", goldenNamed(t, golden, "0800-sign-on")); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("sign-on = %s", ans.ResponseCode)
	}
	if ans := change(); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("0100 after sign-on = %s, want 00", ans.ResponseCode)
	}
	if ans := c.exchange("sign-off", goldenNamed(t, golden, "0800-sign-off")); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("sign-off = %s", ans.ResponseCode)
	}
	if ans := change(); ans.ResponseCode != iso8583.RCIssuerUnavailable {
		t.Fatalf("0100 after sign-off = %s, want 91", ans.ResponseCode)
	}
	if ans := c.exchange("0420", goldenNamed(t, golden, "0420-change-reversal")); ans.MTI != "0430" || ans.ResponseCode == iso8583.RCIssuerUnavailable {
		t.Fatalf("0420 after sign-off = %s %s, want a 0430 that is not 91", ans.MTI, ans.ResponseCode)
	}
}

// TestRefusalCodesOverTCP: the refusals the document's table lists for a
// disallowed PIN block format and an unknown key index, as an acquirer sees
// them: 30, on a connection that stays open.
func TestRefusalCodesOverTCP(t *testing.T) {
	g := opsGateway(t, nil)
	ctx, c := atmSession(t, g)
	pop := opsPopulation(g.Config().IssuerSim)
	tests := []struct {
		name string
		give iso8583.SecurityControl
		want string
	}{
		{"format 01, not among the ATM network's formats 00 and 03", iso8583.SecurityControl{Format: 1, KeyIndex: 1}, "30"},
		{"key index 02, which names no key of the ATM network", iso8583.SecurityControl{Format: 0, KeyIndex: 2}, "30"},
		{"format 00 under key index 01", iso8583.SecurityControl{Format: 0, KeyIndex: 1}, "00"},
	}
	for i, tt := range tests {
		f := opsFieldsUnder(t, pop.Card(7700+i), "REF0770"+string(rune('0'+i)), devATMKey(t))
		f.SecurityControl = tt.give.String()
		ans, err := c.Do(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if ans.ResponseCode != tt.want {
			t.Errorf("%s: answered %s, want %s", tt.name, ans.ResponseCode, tt.want)
		}
	}
}
