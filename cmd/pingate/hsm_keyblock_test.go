package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/integration/payshield"
	"pingate/integration/payshield/hsmsim"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/pinblock/keystore"
	"pingate/routing"
)

// TestServeKeyBlockLMK runs the binaries: `pingate-dev hsm-sim --key-block`
// (the published test key-block LMK), `pingate hsm-key` ceremonies against
// it with security.payshield.key_block_lmk (A0 with the key-block fields,
// also under a ZMK; A6 import of a key under the ZMK and of the key block
// recorded from a payShield, with its recorded KCV; BU; list showing each
// key block's usage and mode of use; custody records), and `pingate serve` with security.module
// payshield on the development keys as key blocks: ATM PIN changes through
// CC under key blocks are approved by the issuer, a wrong current PIN is 55,
// and the HSM's CC commands show on /metrics.
func TestServeKeyBlockLMK(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	hsm := opsStart(t, "hsm-sim", "--addr", "127.0.0.1:0", "--key-block")
	hsmAddr := hsm.firstLine(t)
	dir := t.TempDir()

	// Key ceremonies through the HSM.
	keyFile, custody := filepath.Join(dir, "hsm-keys.json"), filepath.Join(dir, "custody.log")
	cerCfg := filepath.Join(dir, "ceremony.yaml")
	if err := os.WriteFile(cerCfg, []byte(fmt.Sprintf("security:\n  module: payshield\n  custody_log: %s\n  payshield:\n    hosts: [%q]\n    key_file: %s\n    key_block_lmk: true\n    lmk_id: \"01\"\n", custody, hsmAddr, keyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The ZMK of an A6 recorded from a payShield on the test key-block LMK,
	// as a key custodian would bring its token (docs/hsm.md).
	var vec struct {
		Blocks []struct{ Token, KCV string } `json:"blocks"`
		A6     struct{ Request, KCV string } `json:"a6"`
	}
	if err := json.Unmarshal([]byte(mustRead(t, "../../integration/payshield/hsmsim/testdata/keyblock_vectors.json")), &vec); err != nil {
		t.Fatal(err)
	}
	recZMK := vec.Blocks[1]
	recBlock := strings.TrimSuffix(vec.A6.Request[5+len(recZMK.Token):], "S%01")
	seed, _ := json.Marshal([]payshield.Key{{ID: "zmk-rec", Version: 1, Usage: pinblock.UsageZMK, Algorithm: pinblock.TDES, Length: 16, Token: recZMK.Token, KCV: recZMK.KCV}})
	if err := os.WriteFile(keyFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	hk := hsmKeyRunner(t, cerCfg)
	under, kcv := hsmKeyGenerateExported(t, hk)
	hk("import", "--id", "zpk-c", "--usage", "ZPK", "--zmk", "zmk-a", "--key-under-zmk", under, "--kcv", kcv, "--who", "custodian-2", "--why", "partner key")
	hk("import", "--id", "zpk-rec", "--usage", "ZPK", "--zmk", "zmk-rec", "--key-block", recBlock, "--kcv", vec.A6.KCV, "--who", "custodian-2", "--why", "partner key as a key block")
	list := hk("list")
	for _, want := range []string{
		"zmk-a v1 ZMK tdes kcv=", "key-block usage=K0 mode=B exportability=E lmk=01",
		"zpk-c v1 ZPK tdes kcv=" + kcv + " key-block usage=P0 mode=B exportability=E lmk=01",
		"zpk-rec v1 ZPK tdes kcv=" + vec.A6.KCV + " key-block usage=P0 mode=B exportability=N lmk=01",
	} {
		if !strings.Contains(list, want) {
			t.Errorf("list = %q, want %q", list, want)
		}
	}
	var held []payshield.Key
	if err := json.Unmarshal([]byte(mustRead(t, keyFile)), &held); err != nil || len(held) != 5 {
		t.Fatalf("key file: %d keys, %v; want 5", len(held), err)
	}
	for _, k := range held {
		if _, ok := k.BlockHeader(); !ok {
			t.Errorf("key file holds %s as %.1s…, want a key block (S)", k.ID, k.Token)
		}
	}
	if head, err := keystore.VerifyCustodyLog(custody); err != nil || head.Seq != 5 {
		t.Errorf("custody log: %d records, %v; want 5 (two generations, the export under zmk-a, two imports)", head.Seq, err)
	}

	// pingate serve on the development keys as key blocks.
	atmZPK, err := devkeys.Key(devkeys.ATMZPK)
	if err != nil {
		t.Fatal(err)
	}
	pop := issuersim.Population{Seed: 1, BINs: gateway.DevBINs(), PerBIN: 100}
	_, issAddr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop, KeyIndexZPKs: map[int]pinblock.Key{3: atmZPK}})
	cfgPath := filepath.Join(dir, "pingate.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`instance: keyblock
acquirer_listener: {addr: "127.0.0.1:0"}
http: {addr: "127.0.0.1:0"}
admin: {addr: "127.0.0.1:0"}
security:
  module: payshield
  dev_keys: true
  payshield: {hosts: [%q], key_block_lmk: true, lmk_id: "01", health_interval: 1s}
routing:
  institution: "999001"
  acquirers:
    - {id: "100001", channel: atm, terminals: ["*"], keys: {1: dev-atm-zpk}, zmk: dev-atm-zmk, formats: [0, 3]}
  issuers:
    - {id: ssbank, institution: "300001", hosts: [%q], pin_format: 3, key: dev-atm-zpk, key_index: 3}
  routes:
    - {prefix: "62284812", issuer: ssbank}
    - {prefix: "62284813", issuer: ssbank}
    - {prefix: "621700", issuer: ssbank}
limits: {backend: memory}
events: {journal_dir: %q}
reversals: {dir: %q}
log: {format: json, level: info}
branch: {enabled: false}
`, hsmAddr, issAddr, filepath.Join(dir, "journal"), filepath.Join(dir, "reversals"))), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := opsStart(t, "serve", "--config", cfgPath)
	acq, httpAddr, _ := servingAddrs(t, gw.firstLine(t))
	waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
	ctx := context.Background()
	c, err := loadgen.Dial(ctx, acq)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := pop.Card(0), pop.Card(1)
	for _, st := range []struct {
		what string
		op   loadgen.Op
		want string
	}{
		{"change PIN", opsChange(pop, 0, "4826"), iso8583.RCApproved},
		{"change the changed PIN", loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: "KB000002", Proc: iso8583.ProcPINChange, PAN: a.PAN, OldPIN: "4826", NewPIN: "5937", Format: pinblock.Format3, KeyID: devkeys.ATMZPK}, iso8583.RCApproved},
		{"wrong current PIN", loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: "KB000003", Proc: iso8583.ProcPINChange, PAN: b.PAN, OldPIN: wrongPIN(b.PIN), NewPIN: "5931", Format: pinblock.Format0, KeyID: devkeys.ATMZPK}, "55"},
	} {
		code, err := opsDo(ctx, c, st.op)
		if err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		if code != st.want {
			t.Errorf("%s: answered %s, want %s\n%s", st.what, code, st.want, opsTail(gw.stderr.String(), 2000))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !hasSample(scrape(t, httpAddr, "pingate_hsm_command_duration_seconds_count"), "", `command="CC"`, `hsm="`+hsmAddr+`"`) {
		if time.Now().After(deadline) {
			t.Fatal("no CC commands of the HSM on /metrics")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wrongPIN is a 4-digit PIN other than pin.
func wrongPIN(pin string) string {
	if pin == "0007" {
		return "0008"
	}
	return "0007"
}

// TestPayShieldKeyBlockOnlineKeyChange: on a key-block LMK an acquirer's
// 0800/161 (legacy form: key under the ZMK, KCV) goes to the HSM as A6 with
// the key-block fields; the module takes version 2 as a P0 key block and a
// PIN change under it is approved; a wrong KCV changes nothing.
func TestPayShieldKeyBlockOnlineKeyChange(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := hsmsim.New(hsmsim.Config{HeaderLen: 4, KeyBlock: true})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close(); <-done })
	// The issuer's key apart from the acquirer's, which the change rotates:
	// the issuer simulator's ZPK (dev-atm-zpk's value) in a key file, beside
	// the development keys.
	tok, err := hsmsim.WrapUnderTestKeyBlockLMK("P0", 'B', mustHexBytes(t, "0123456789ABCDEFFEDCBA9876543210"))
	if err != nil {
		t.Fatal(err)
	}
	issKey, _ := devkeys.Key(devkeys.ATMZPK)
	b, _ := json.Marshal([]payshield.Key{{ID: "iss-zpk", Version: 1, Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Token: tok, KCV: issKey.KCV()}})
	keyFile := filepath.Join(t.TempDir(), "hsm-keys.json")
	if err := os.WriteFile(keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g := startTestGateway(t, func(c *gateway.Config) {
		c.UsePayShieldSim(ln.Addr().String())
		c.Security.PayShield.KeyBlockLMK, c.Security.PayShield.KeyFile = true, keyFile
		c.Routing.Issuers[0].Key = "iss-zpk"
		acqs := append([]routing.AcquirerConfig(nil), c.Routing.Acquirers...)
		acqs[0].ZMK, acqs[0].LegacyKeyChange = devkeys.ATMZMK, true
		c.Routing.Acquirers = acqs
	})
	if err := waitReady(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	zmkClear := mustHexBytes(t, "89E88CF7931444F334BD7547FC3F380C") // dev-atm-zmk's published value (docs/dev-keys.md)
	newClear := oddParity([]byte{0x3D, 0x5F, 0x71, 0x93, 0xB5, 0xD7, 0xF9, 0x1B, 0x2A, 0x4C, 0x6E, 0x80, 0xA2, 0xC4, 0xE6, 0x08})
	v2, err := pinblock.NewKey(devkeys.ATMZPK, pinblock.UsageZPK, pinblock.TDES, 2, newClear)
	if err != nil {
		t.Fatal(err)
	}
	ctx, c := atmSession(t, g)
	change := func(kcv string) *iso8583.Fields {
		t.Helper()
		de123, err := iso8583.KeyExchange{KeyUnderZMK: hex.EncodeToString(underTDES(t, zmkClear, newClear)), KCV: kcv}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		ans, err := c.Do(ctx, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange, AcquirerID: gateway.DevATMAcquirer,
			SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: de123})
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	if ans := change("000000"); ans.ResponseCode == iso8583.RCApproved {
		t.Fatal("key change with a wrong KCV approved")
	}
	if ans := change(v2.KCV()); ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("key change through A6 answered %s, want 00", ans.ResponseCode)
	}
	k, err := payShieldKeys(g).Lookup(pinblock.KeyRef{ID: devkeys.ATMZPK})
	if err != nil || k.Version != 2 || k.KCV != v2.KCV() {
		t.Fatalf("after the key change the module holds %v, %v; want version 2 with KCV %s", k, err, v2.KCV())
	}
	if h, ok := k.BlockHeader(); !ok || h.KeyUsage != "P0" {
		t.Fatalf("the new key is %+v (key block %v), want a P0 key block", h, ok)
	}
	pop := opsPopulation(g.Config().IssuerSim)
	if ans, err := c.Do(ctx, opsFieldsUnder(t, pop.Card(7310), "KBC07310", v2)); err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("PIN change under the new key = %v, %v; want 00", ans, err)
	}
}
