package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/iso8583"
	"pingate/routing"
)

// psecTR31Script wraps and unwraps TR-31 key blocks with psec's tr31 module
// (knovichikhin/psec, the independent implementation the other cross-checks
// use), one JSON object per line in and out.
const psecTR31Script = `
import sys, json, warnings
warnings.filterwarnings("ignore")
from psec import tr31
for line in sys.stdin:
    c = json.loads(line)
    kbpk = bytes.fromhex(c["kbpk"])
    if "block" in c:
        h, key = tr31.unwrap(kbpk, c["block"])
        print(json.dumps({"mode": h.mode_of_use, "usage": h.key_usage, "key": key.hex().upper()}))
    else:
        print(json.dumps({"block": tr31.wrap(kbpk, c["header"], bytes.fromhex(c["key"]))}))
`

type psecTR31Result struct {
	Block string `json:"block"`
	Mode  string `json:"mode"`
	Usage string `json:"usage"`
	Key   string `json:"key"`
}

// psecTR31 runs psecTR31Script on one request; without python3 and psec the
// test is skipped (a failure under CI).
func psecTR31(t *testing.T, req map[string]string) psecTR31Result {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import psec.tr31").Run()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 with psec is required under CI (scripts/test-deps.sh installs it)")
		}
		t.Skip("python3 with psec not available; run scripts/test-deps.sh")
	}
	line, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", psecTR31Script)
	cmd.Stdin = bytes.NewReader(append(line, '\n'))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("psec: %v", err)
	}
	var r psecTR31Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("psec output %q: %v", out, err)
	}
	return r
}

// psecWrap is a TR-31 block psec makes: key under kbpk with header (whose
// length field psec fills in).
func psecWrap(t *testing.T, kbpk, header, key string) string {
	t.Helper()
	return psecTR31(t, map[string]string{"kbpk": kbpk, "header": header, "key": key}).Block
}

// Test keys for the mode-of-use tests (clear, test only).
const (
	modeKeyD  = "0F1E2D3C4B5A69788796A5B4C3D2E1F0" // a ZPK sent as P0 D
	modeKeyB  = "1032547698BADCFE0123456789ABCDEF" // its next version, sent as P0 B
	modeKEKD  = "89ABCDEF01234567F0E1D2C3B4A59687" // a KEK sent as K0 D (unwrap only)
	modeKEKE  = "2A2A2A2A2A2A2A2A5B5B5B5B5B5B5B5B" // a KEK sent as K0 E (wrap only)
	modeUnder = "0123456789ABCDEFFEDCBA9876543210" // a ZPK psec wraps under modeKEKE
)

// setupModeCeremony is setupCeremony (zmk-1 the A.7.2.2 KBPK; zpk-1 from
// the A.7.2.2 block, P0 E) plus, from blocks psec made under zmk-1, zpk-d
// (P0 D), kek-d (K0 D) and kek-e (K0 E).
func setupModeCeremony(t *testing.T) keyEnv {
	t.Helper()
	e := setupCeremony(t)
	for _, k := range []struct{ id, header, key string }{
		{"zpk-d", "B0000P0TD00E0000", modeKeyD},
		{"kek-d", "B0000K0TD00E0000", modeKEKD},
		{"kek-e", "B0000K0TE00E0000", modeKEKE},
	} {
		block := psecWrap(t, tr31KBPKB, k.header, k.key)
		if got := e.do(t, "import-tr31", "--id", k.id, "--under", "zmk-1", "--block", block); !strings.HasPrefix(got, k.id+" ") {
			t.Fatalf("key import-tr31 --id %s = %q", k.id, got)
		}
	}
	return e
}

// TestKeyModeOfUseCLI: import-tr31 keeps each block's mode of use; key list
// and --json show it; the custody record of the import carries it;
// export-tr31 writes it (psec reads the exported block back); a rotation
// from a block takes the block's mode, one generated here keeps the mode.
func TestKeyModeOfUseCLI(t *testing.T) {
	e := setupModeCeremony(t)
	out := mustRunKey(t, append([]string{"list"}, e.flags(false)...)...)
	for _, want := range []string{"zpk-1 ZPK v1 " + tr31KCVB + " mode E", "zpk-d ZPK v1 ", " mode D", "kek-d ZMK v1 ", "kek-e ZMK v1 ", "zmk-1 ZMK v1 "} {
		if !strings.Contains(out, want) {
			t.Errorf("key list = %q, want a line with %q", out, want)
		}
	}
	var keys []struct {
		ID   string `json:"id"`
		Mode string `json:"mode_of_use"`
	}
	if err := json.Unmarshal([]byte(keyLastLine(mustRunKey(t, append([]string{"list", "--json"}, e.flags(false)...)...))), &keys); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"zpk-1": "E", "zpk-d": "D", "kek-d": "D", "kek-e": "E", "zmk-1": "B", "pvk-1": "C"}
	for _, k := range keys {
		if k.Mode != want[k.ID] {
			t.Errorf("key list --json: %s mode_of_use %q, want %q", k.ID, k.Mode, want[k.ID])
		}
	}
	raw, err := os.ReadFile(e.log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"action":"import-tr31","key_id":"zpk-d"`) || !strings.Contains(string(raw), `"under":"zmk-1","mode_of_use":"D"`) {
		t.Errorf("custody log has no import-tr31 record of zpk-d with mode_of_use D:\n%s", raw)
	}

	for _, tt := range []struct{ id, key, mode string }{{"zpk-d", modeKeyD, "D"}, {"zpk-1", "3F419E1CB7079442AA37474C2EFBF8B8", "E"}} {
		block := e.do(t, "export-tr31", "--id", tt.id, "--under", "zmk-1")
		r := psecTR31(t, map[string]string{"kbpk": tr31KBPKB, "block": block})
		if r.Usage != "P0" || r.Mode != tt.mode || r.Key != tt.key {
			t.Errorf("export-tr31 --id %s, read by psec: usage %s mode %s (key matches: %v); want P0 %s", tt.id, r.Usage, r.Mode, r.Key == tt.key, tt.mode)
		}
	}

	e.do(t, "rotate", "--id", "zpk-d", "--under", "zmk-1", "--block", psecWrap(t, tr31KBPKB, "B0000P0TB00E0000", modeKeyB))
	e.do(t, "rotate", "--id", "zpk-1")
	out = mustRunKey(t, append([]string{"list"}, e.flags(false)...)...)
	for _, want := range []string{"zpk-d ZPK v2 ", "zpk-1 ZPK v2 "} {
		i := strings.Index(out, want)
		if i < 0 {
			t.Fatalf("key list = %q, no %s", out, want)
		}
		line, _, _ := strings.Cut(out[i:], "\n")
		if wantMode := map[string]string{"zpk-d ZPK v2 ": "mode B", "zpk-1 ZPK v2 ": "mode E"}[want]; !strings.HasSuffix(line, wantMode) {
			t.Errorf("after rotation: %q, want %s", line, wantMode)
		}
	}
}

// TestKeyTR31RefusesKEKMode: a ZMK that arrived as K0 E (wrap only) does not
// unwrap an import-tr31, and one that arrived as K0 D (unwrap only) does not
// wrap an export-tr31; each refusal is exit 1 naming the ZMK and its mode,
// records nothing and shows no key material.
func TestKeyTR31RefusesKEKMode(t *testing.T) {
	e := setupModeCeremony(t)
	before := keyLastLine(mustRunKey(t, append([]string{"log", "verify"}, e.flags(false)...)...))
	block := psecWrap(t, modeKEKE, "B0000P0TB00E0000", modeUnder)
	_, errOut, code := runKeyCLI(t, append([]string{"import-tr31", "--id", "zpk-x", "--under", "kek-e", "--block", block}, e.flags(true)...)...)
	if code != 1 || !strings.Contains(errOut, "kek-e") || !strings.Contains(errOut, "E (encrypt only)") || !strings.Contains(errOut, "unwrapping") {
		t.Errorf("import-tr31 under a K0 E = %q, exit %d; want exit 1 naming kek-e, mode E, unwrapping", errOut, code)
	}
	_, errOut2, code := runKeyCLI(t, append([]string{"export-tr31", "--id", "zpk-d", "--under", "kek-d"}, e.flags(true)...)...)
	if code != 1 || !strings.Contains(errOut2, "kek-d") || !strings.Contains(errOut2, "D (decrypt only)") || !strings.Contains(errOut2, "wrapping") {
		t.Errorf("export-tr31 under a K0 D = %q, exit %d; want exit 1 naming kek-d, mode D, wrapping", errOut2, code)
	}
	for _, secret := range []string{modeKEKE, modeKEKD, modeKeyD, modeUnder, block[16:48]} {
		if strings.Contains(strings.ToUpper(errOut+errOut2), secret) {
			t.Errorf("a refusal shows key material: %q %q", errOut, errOut2)
		}
	}
	if after := keyLastLine(mustRunKey(t, append([]string{"log", "verify"}, e.flags(false)...)...)); after != before {
		t.Errorf("key log verify = %q after the refusals, was %q: something was recorded", after, before)
	}
	if got := e.do(t, "import-tr31", "--id", "zpk-y", "--under", "kek-d", "--block", psecWrap(t, modeKEKD, "B0000P0TB00E0000", modeUnder)); !strings.HasPrefix(got, "zpk-y ZPK v1 ") {
		t.Errorf("import-tr31 under a K0 D (unwrap only) = %q", got)
	}
	if block := e.do(t, "export-tr31", "--id", "zpk-d", "--under", "kek-e"); !strings.HasPrefix(block, "B") {
		t.Errorf("export-tr31 under a K0 E (wrap only) = %q", block)
	}
}

// modeConfig is a config file over e's key store whose acquirer 100001
// deciphers under acqKey and changes keys under zmk, and whose issuer
// ssbank enciphers under issKey.
func modeConfig(t *testing.T, e keyEnv, acqKey, zmk, issKey string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pingate.yaml")
	cfg := `
security:
  dev_keys: true
  key_store: ` + e.store + `
  custody_log: ` + e.log + `
  lmk_file: ` + e.lmk + `
branch:
  enabled: false
routing:
  institution: "999001"
  acquirers:
    - id: "100001"
      channel: atm
      terminals: ["*"]
      keys: {1: ` + acqKey + `}
      zmk: ` + zmk + `
  issuers:
    - id: ssbank
      institution: "300001"
      hosts: ["127.0.0.1:1"]
      pin_format: 0
      key: ` + issKey + `
  routes:
    - prefix: "62284812"
      issuer: ssbank
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckConfigRefusesKeyModes: check-config opens the key store and
// refuses a config that deciphers an acquirer's PIN blocks under a P0 E
// key, enciphers an issuer's under a P0 D key, or takes key changes under
// a K0 E ZMK, naming each place, key id and mode; the same keys in roles
// their modes permit pass.
func TestCheckConfigRefusesKeyModes(t *testing.T) {
	e := setupModeCeremony(t)
	var out, errOut bytes.Buffer
	bad := modeConfig(t, e, "zpk-1", "kek-e", "zpk-d")
	if code := run(context.Background(), []string{"check-config", bad}, &out, &errOut); code != 1 {
		t.Fatalf("check-config exited %d (%s), want 1", code, errOut.String())
	}
	for _, want := range []string{
		"routing.acquirers (100001): keys[1]", "zpk-1 v1 (KCV " + tr31KCVB + ") has mode of use E (encrypt only), which does not permit deciphering PIN blocks",
		"routing.acquirers (100001): zmk", "kek-e v1", "does not permit unwrapping keys",
		"routing.issuers (ssbank): key", "zpk-d v1", "D (decrypt only), which does not permit enciphering PIN blocks",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("check-config does not say %q; it said %q", want, errOut.String())
		}
	}
	out.Reset()
	errOut.Reset()
	good := modeConfig(t, e, "zpk-d", "kek-d", "zpk-1")
	if code := run(context.Background(), []string{"check-config", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "ok") {
		t.Errorf("check-config on keys in roles their modes permit = exit %d, %q %q", code, out.String(), errOut.String())
	}
}

// TestOnlineKeyChangeModeOfUse: over TCP, an acquirer's 0800/161 whose
// TR-31 block (made by psec under the shared ZMK) says P0 E is answered 30
// and changes nothing — pingate deciphers under that key; P0 D is taken,
// kept in the store as D, and PIN blocks under it translate. A reload, or
// a new gateway, that would encipher an issuer's PIN blocks under that D
// key is refused, naming the key and its mode.
func TestOnlineKeyChangeModeOfUse(t *testing.T) {
	k := newATMStoreKeys(t, t.TempDir())
	g := opsGateway(t, func(c *gateway.Config) {
		c.Security = k.ks.sec
		atmStoreAcquirer(c, false)
	})
	ctx, c := atmSession(t, g)
	send := func(header string) string {
		t.Helper()
		block := psecWrap(t, strings.ToUpper(hex.EncodeToString(k.zmk)), header, newZPK)
		ans, err := c.Do(ctx, &iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange, AcquirerID: gateway.DevATMAcquirer,
			SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: mustKeyExchange(t, block)})
		if err != nil {
			t.Fatal(err)
		}
		return ans.ResponseCode
	}
	// The store's current version of the key, as key list prints it.
	current := func() string {
		t.Helper()
		sec := k.ks.sec
		out := mustRunKey(t, "list", "--store", sec.KeyStore, "--lmk-file", sec.LMKFile, "--log", sec.CustodyLog)
		last := ""
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(line, "zpk-atm-store ") {
				last = line
			}
		}
		return last
	}
	if code := send("B0000P0TE00E0000"); code != iso8583.RCFormatError {
		t.Errorf("key change to a P0 E block = %s, want 30", code)
	}
	if got := current(); !strings.HasPrefix(got, "zpk-atm-store ZPK v1 ") {
		t.Errorf("after the refused key change the store's current zpk-atm-store is %q, want v1", got)
	}
	raw, _ := os.ReadFile(k.ks.sec.CustodyLog)
	if strings.Contains(string(raw), "key change (0800/161)") {
		t.Error("the refused key change was recorded in the custody log")
	}
	if code := send("B0000P0TD00E0000"); code != iso8583.RCApproved {
		t.Fatalf("key change to a P0 D block = %s, want 00", code)
	}
	if got, want := current(), "zpk-atm-store ZPK v2 "+k.v2.KCV()+" mode D"; got != want {
		t.Errorf("after the key change the store's current zpk-atm-store is %q, want %q", got, want)
	}
	pop := opsPopulation(g.Config().IssuerSim)
	ans, err := c.Do(ctx, opsFieldsUnder(t, pop.Card(7400), "KCM07400", k.v2))
	if err != nil || ans.ResponseCode != iso8583.RCApproved {
		t.Fatalf("PIN change under the P0 D key = %v, %v; want 00", ans, err)
	}

	// The D key as an issuer's zone PIN key: refused at reload and at start.
	next := g.Config()
	next.Routing.Issuers = append([]routing.IssuerConfig(nil), next.Routing.Issuers...)
	next.Routing.Issuers[0].Key = "zpk-atm-store"
	g.SetReloadSource(func() (gateway.Config, error) { return next, nil })
	_, err = g.Reload("test")
	if !errors.Is(err, gateway.ErrReloadRefused) || !strings.Contains(err.Error(), "mode of use D (decrypt only)") || !strings.Contains(err.Error(), "zpk-atm-store v2") || !strings.Contains(err.Error(), "does not permit enciphering") {
		t.Errorf("reload with the P0 D key as an issuer key = %v; want refused, naming zpk-atm-store v2 and enciphering", err)
	}
	if _, err := gateway.New(context.Background(), next, nil); err == nil || !strings.Contains(err.Error(), "routing.issuers (") || !strings.Contains(err.Error(), "zpk-atm-store v2") {
		t.Errorf("gateway.New with the P0 D key as an issuer key = %v, want a refusal naming the issuer and zpk-atm-store v2", err)
	}
}

func mustKeyExchange(t *testing.T, block string) string {
	t.Helper()
	de123, err := iso8583.KeyExchange{KeyBlock: block}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return de123
}
