package main

import (
	"context"
	"crypto/des"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/pinblock/keystore"
	"pingate/routing"
)

// TestOnlineKeyChangeOverTCP: an ATM network changes its zone PIN key online
// (0800, network code 161), in DE 123 as a TR-31 key block under the shared
// ZMK, or — for an acquirer with key_change_legacy_ecb only — enciphered
// under the ZMK with its KCV. The gateway answers 0810 00, keeps the new
// version in the key store under the LMK with a custody record naming the
// acquirer, and translates blocks under it; blocks under the previous version
// still translate within the grace window. A wrong KCV, an altered key block,
// or the legacy form from an acquirer without the switch is answered 30 and
// changes nothing.
func TestOnlineKeyChangeOverTCP(t *testing.T) {
	for _, form := range []string{"tr31", "legacy-ecb"} {
		t.Run(form, func(t *testing.T) { testOnlineKeyChange(t, form == "legacy-ecb") })
	}
}

func testOnlineKeyChange(t *testing.T, legacy bool) {
	k := newATMStoreKeys(t, t.TempDir())
	ks, v1, v2, zmk := k.ks, k.v1, k.v2, k.zmk
	underZMK := underTDES(t, zmk, k.v2Clear)

	g := opsGateway(t, func(c *gateway.Config) {
		c.Security = ks.sec
		atmStoreAcquirer(c, legacy)
	})
	ctx := context.Background()
	c, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	do := func(f *iso8583.Fields) *iso8583.Fields {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ans, err := c.Do(rctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	if ans := do(&iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMISignOn, AcquirerID: gateway.DevATMAcquirer}); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("sign-on = %s", ans.ResponseCode)
	}
	send := func(de123 string) *iso8583.Fields {
		t.Helper()
		return do(&iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange, AcquirerID: gateway.DevATMAcquirer,
			SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: de123})
	}
	legacyForm := func(kcv string) string {
		t.Helper()
		de123, err := iso8583.KeyExchange{KeyUnderZMK: hex.EncodeToString(underZMK), KCV: kcv}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return de123
	}
	zmkKey, err := pinblock.NewKey("zmk-atm-store", pinblock.UsageZMK, pinblock.TDES, 1, zmk)
	if err != nil {
		t.Fatal(err)
	}
	block := wrapTR31(t, zmkKey, v2)
	keyChange := func(kcv string) *iso8583.Fields {
		t.Helper()
		if legacy {
			return send(legacyForm(kcv))
		}
		if kcv != v2.KCV() { // an altered block: its MAC does not verify
			b := []byte(block)
			b[len(b)-1] ^= 1
			if b[len(b)-1] > 'F' || (b[len(b)-1] > '9' && b[len(b)-1] < 'A') {
				b[len(b)-1] = '0'
			}
			return send(string(b))
		}
		return send(block)
	}
	if !legacy {
		if ans := send(legacyForm(v2.KCV())); ans.ResponseCode != iso8583.RCFormatError {
			t.Fatalf("legacy key change from an acquirer without key_change_legacy_ecb = %s, want 30", ans.ResponseCode)
		}
	}
	pop := opsPopulation(g.Config().IssuerSim)
	n := 7100
	change := func(key pinblock.Key) string {
		t.Helper()
		n++
		return do(opsFieldsUnder(t, pop.Card(n), fmt.Sprintf("KCH%05d", n), key)).ResponseCode
	}
	if code := change(v2); code == iso8583.RCApproved {
		t.Fatalf("PIN change under a key not yet exchanged = %s", code)
	}

	wrong := "000000"
	if wrong == v2.KCV() {
		wrong = "111111"
	}
	if ans := keyChange(wrong); ans.MTI != iso8583.MTINetworkResponse || ans.ResponseCode != iso8583.RCFormatError {
		t.Fatalf("key change with a wrong KCV or an altered block = %s %s, want 0810 30", ans.MTI, ans.ResponseCode)
	}
	if ans := keyChange(v2.KCV()); ans.MTI != iso8583.MTINetworkResponse || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("key change = %s %s, want 0810 00", ans.MTI, ans.ResponseCode)
	}
	if code := change(v2); code != iso8583.RCApproved {
		t.Errorf("PIN change under the exchanged key = %s, want 00", code)
	}
	if code := change(v1); code != iso8583.RCApproved {
		t.Errorf("PIN change under the previous key within the grace window = %s, want 00", code)
	}

	// The key store holds version 2 with the new key's KCV, and the custody
	// log records the handover by the acquirer, without key material.
	var current keystore.StoredKey
	for _, k := range listStore(t, ks.sec) {
		if k.ID == "zpk-atm-store" && k.RetiredAt == nil {
			current = k
		}
	}
	if current.Version != 2 || current.KCV != v2.KCV() {
		t.Fatalf("key store's current zpk-atm-store = v%d KCV %s, want v2 KCV %s", current.Version, current.KCV, v2.KCV())
	}
	if _, err := keystore.VerifyCustodyLog(ks.sec.CustodyLog); err != nil {
		t.Fatalf("custody log: %v", err)
	}
	raw, err := os.ReadFile(ks.sec.CustodyLog)
	if err != nil {
		t.Fatal(err)
	}
	log := string(raw)
	if !strings.Contains(log, "acquirer "+gateway.DevATMAcquirer) || !strings.Contains(log, "key change (0800/161)") || !strings.Contains(log, v2.KCV()) {
		t.Error("custody log has no record of the online key change")
	}
	if strings.Contains(strings.ToUpper(log), newZPK) || strings.Contains(strings.ToUpper(log), strings.ToUpper(hex.EncodeToString(underZMK))) ||
		strings.Contains(log, block[16:]) {
		t.Error("custody log carries key material")
	}
}

// newZPK is the clear value of the ATM network's next zone PIN key.
const newZPK = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"

// atmStoreKeys is a key store (in dir) holding an ATM network's ZMK
// (zmk-atm-store) and zone PIN key (zpk-atm-store, version 1, v1), each
// combined from two components, and the next version of the zone PIN key
// (v2, newZPK) that the network sends online; zmk is the ZMK in clear, to
// build what the network sends, as the partner's HSM would.
type atmStoreKeys struct {
	ks      opsKeyStore
	v1, v2  pinblock.Key
	zmk     []byte
	v2Clear []byte
}

func newATMStoreKeys(t *testing.T, dir string) atmStoreKeys {
	t.Helper()
	ks := newOpsKeyStore(t, dir)
	st, err := gateway.OpenKeyStore(ks.sec)
	if err != nil {
		t.Fatal(err)
	}
	const (
		zmkA, zmkB = "0123456789ABCDEFFEDCBA9876543210", "1C587F1C13924FEF0101010101010101"
		zpkA, zpkB = "89ABCDEF01234567F0E1D2C3B4A59687", "2A2A2A2A2A2A2A2A5B5B5B5B5B5B5B5B"
	)
	who := keystore.Custodian{Who: "test", Why: "key change test"}
	for _, c := range []keystore.CombineRequest{
		{ID: "zmk-atm-store", Usage: pinblock.UsageZMK, Algorithm: pinblock.TDES, Components: []pinblock.Component{opsComponent(t, zmkA), opsComponent(t, zmkB)}, Custodian: who},
		{ID: "zpk-atm-store", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Components: []pinblock.Component{opsComponent(t, zpkA), opsComponent(t, zpkB)}, Custodian: who},
	} {
		if _, err := st.CombineComponents(c); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	k := atmStoreKeys{ks: ks, v1: xorKey(t, "zpk-atm-store", 1, zpkA, zpkB)}
	k.v2Clear, _ = hex.DecodeString(newZPK)
	if k.v2, err = pinblock.NewKey("zpk-atm-store", pinblock.UsageZPK, pinblock.TDES, 2, k.v2Clear); err != nil {
		t.Fatal(err)
	}
	k.zmk, _ = hex.DecodeString(zmkA)
	zb, _ := hex.DecodeString(zmkB)
	for i := range k.zmk {
		k.zmk[i] ^= zb[i]
	}
	return k
}

// atmStoreAcquirer has the development ATM network use the store's keys:
// zone PIN key index 1 and the ZMK for online key changes.
func atmStoreAcquirer(c *gateway.Config, legacy bool) {
	acq := c.Routing.Acquirers[0]
	acq.Keys, acq.ZMK, acq.LegacyKeyChange = map[int]string{1: "zpk-atm-store"}, "zmk-atm-store", legacy
	c.Routing.Acquirers = append([]routing.AcquirerConfig{acq}, c.Routing.Acquirers[1:]...)
}

// TestOnlineKeyChangeOutsideTheStore: with a key store configured, a key
// change for a zone PIN key the store does not hold (the development ATM
// key) takes effect in the running gateway and leaves the store untouched.
func TestOnlineKeyChangeOutsideTheStore(t *testing.T) {
	ks := newOpsKeyStore(t, t.TempDir())
	before := listStore(t, ks.sec)
	g := opsGateway(t, func(c *gateway.Config) {
		c.Security = ks.sec
		acqs := append([]routing.AcquirerConfig(nil), c.Routing.Acquirers...)
		acqs[0].LegacyKeyChange = true
		c.Routing.Acquirers = acqs
	})
	zmk, err := devkeys.Key(devkeys.ATMZMK)
	if err != nil {
		t.Fatal(err)
	}
	zmkClear, _ := hex.DecodeString("89E88CF7931444F334BD7547FC3F380C") // docs/dev-keys.md
	newClear, _ := hex.DecodeString("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
	v2, err := pinblock.NewKey(devkeys.ATMZPK, pinblock.UsageZPK, pinblock.TDES, 2, newClear)
	if err != nil {
		t.Fatal(err)
	}
	if zmk.KCV() != "D1D812" {
		t.Fatalf("dev ATM ZMK KCV = %s, want D1D812: docs/dev-keys.md and the key differ", zmk.KCV())
	}
	underZMK := underTDES(t, zmkClear, newClear)
	de123, err := iso8583.KeyExchange{KeyUnderZMK: hex.EncodeToString(underZMK), KCV: v2.KCV()}.Encode()
	if err != nil {
		t.Fatal(err)
	}

	ctx, c := atmSession(t, g)
	ans, err := c.Do(ctx, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange, AcquirerID: gateway.DevATMAcquirer,
		SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: de123})
	if err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("key change of the development key = %v, %v; want 0810 00", ans, err)
	}
	pop := opsPopulation(g.Config().IssuerSim)
	ans, err = c.Do(ctx, opsFieldsUnder(t, pop.Card(7300), "KCH07300", v2))
	if err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("PIN change under the new development key = %v, %v; want 00", ans, err)
	}

	if after := listStore(t, ks.sec); len(after) != len(before) {
		t.Fatalf("key store after the key change: %d keys, want %d: a key outside the store stays outside", len(after), len(before))
	}
}

// wrapTR31 wraps k under kbpk as a TR-31 key block with the header pingate
// makes for it (version B for TDES, key usage P0 for a ZPK).
func wrapTR31(t *testing.T, kbpk, k pinblock.Key) string {
	t.Helper()
	h, err := pinblock.NewKeyBlockHeader(k, kbpk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pinblock.WrapKeyBlock(kbpk, h, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// underTDES enciphers a 16-byte key under a double-length TDES key in ECB,
// with crypto/des rather than pingate, as a partner's HSM would.
func underTDES(t *testing.T, kek, key []byte) []byte {
	t.Helper()
	b, err := des.NewTripleDESCipher(append(append([]byte(nil), kek...), kek[:8]...))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(key))
	for i := 0; i < len(key); i += 8 {
		b.Encrypt(out[i:i+8], key[i:i+8])
	}
	return out
}

// listStore lists the key store of sec.
func listStore(t *testing.T, sec gateway.SecurityConfig) []keystore.StoredKey {
	t.Helper()
	st, err := gateway.OpenKeyStore(sec)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
