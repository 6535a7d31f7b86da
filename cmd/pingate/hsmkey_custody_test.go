package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/integration/payshield/hsmsim"
)

// hsmComponentFile writes the clear component hexComponent enciphered under
// the simulator's test LMK as a ZMK component (key type 000), as the HSM's
// console encrypts a custodian's component, to a file in dir, and returns
// "@FILE" and the component's KCV.
func hsmComponentFile(t *testing.T, dir, name, hexComponent string) (ref, kcv string) {
	t.Helper()
	raw, err := hex.DecodeString(hexComponent)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := hsmsim.EncipherUnderTestLMK("000", raw)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "@" + p, tdesKCV(t, hexComponent)
}

// TestHSMKeyCombineRefusesRepeatedComponents: `pingate hsm-key combine`
// refuses a component entered twice, as `pingate key combine` does
// (docs/key-custody.md: repeated components would leave the key known to
// fewer custodians than entered it). The HSM's A4 XORs whatever it is
// given: two equal components form the all-zero key, which it would store
// and the custody log would record as a two-custodian ceremony. Nothing is
// written to the key file or the custody log.
func TestHSMKeyCombineRefusesRepeatedComponents(t *testing.T) {
	dir, cfgFile, keyFile, custody := hsmKeySetup(t)
	// Components of the openemv/tr31 payShield 10k ZMK (KCV 5C9405).
	c1, k1 := hsmComponentFile(t, dir, "c1", "0123456789ABCDEFFEDCBA9876543210")
	c1again, _ := hsmComponentFile(t, dir, "c1-again", "0123456789ABCDEFFEDCBA9876543210")
	c2, k2 := hsmComponentFile(t, dir, "c2", "5D974F23C7294543318A807C7F34C1AE")
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"component 1 twice", []string{"--component", c1, "--kcv", k1, "--component", c1again, "--kcv", k1}, "components 1 and 2 are identical"},
		{"component 1 as the third", []string{"--component", c1, "--kcv", k1, "--component", c2, "--kcv", k2, "--component", c1again, "--kcv", k1}, "components 1 and 3 are identical"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"hsm-key", "combine", "--config", cfgFile, "--id", "zmk-x", "--who", "alice,bob", "--why", "ZMK ceremony"}, tt.give...), &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%s: hsm-key combine = exit %d, %q, %q; want exit 1 and %q", tt.name, code, out.String(), errOut.String(), tt.want)
		}
	}
	if kf, err := os.ReadFile(keyFile); err == nil && strings.Contains(string(kf), "zmk-x") {
		t.Errorf("the refused ceremony's key is in the key file:\n%s", kf)
	}
	if b, err := os.ReadFile(custody); err == nil && len(b) > 0 {
		t.Errorf("the refused ceremony is in the custody log:\n%s", b)
	}
	// The two distinct components still form the key.
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"hsm-key", "combine", "--config", cfgFile, "--id", "zmk-x", "--who", "alice,bob", "--why", "ZMK ceremony",
		"--component", c1, "--kcv", k1, "--component", c2, "--kcv", k2}, &out, &errOut); code != 0 || !strings.Contains(out.String(), fmt.Sprintf("zmk-x v1 ZMK kcv=%s", "5C9405")) {
		t.Errorf("hsm-key combine of two components = exit %d, %q, %q; want zmk-x v1 ZMK kcv=5C9405", code, out.String(), errOut.String())
	}
}

// TestHSMKeyGenerateExportRecorded: `pingate hsm-key generate
// --export-under ZMK` hands the new key out under the ZMK, to the other
// zone; the custody log records that handover as `pingate key export-tr31`
// does (an export record under the ZMK's id, docs/key-custody.md), after
// the generate record, with the same key id, version and KCV, and never the
// key under the ZMK it printed.
func TestHSMKeyGenerateExportRecorded(t *testing.T) {
	_, cfgFile, _, custody := hsmKeySetup(t)
	hk := hsmKeyRunner(t, cfgFile)
	under, kcv := hsmKeyGenerateExported(t, hk)
	b, err := os.ReadFile(custody)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToUpper(string(b)), strings.ToUpper(under)) {
		t.Error("the custody log holds the key under the ZMK")
	}
	lines, last := lastCustodyRecord(t, custody)
	if lines != 3 || last.Action != "export" || last.KeyID != "zpk-b" || last.Version != 1 || last.KCV != kcv ||
		last.Under != "zmk-a" || last.Who != "custodian-1" || last.Why != "new zone key" {
		t.Errorf("custody log: %d records, last %+v; want 3, the last an export of zpk-b v1 (KCV %s) under zmk-a by custodian-1", lines, last, kcv)
	}
}

// TestCheckConfigReadsPayShieldKeyFile: with security.module payshield,
// check-config reads security.payshield.key_file as serve does at start-up,
// so a missing or malformed key file, or an entry the module could not use
// (no usage, a token that is not one, no KCV), is named by check-config
// (exit 1), as serve refuses it, and never repeats a token; a good key file
// passes.
func TestCheckConfigReadsPayShieldKeyFile(t *testing.T) {
	dir := t.TempDir()
	cfg := func(keyFile string) string {
		p := filepath.Join(dir, "pingate.yaml")
		body := fmt.Sprintf(`
security:
  module: payshield
  payshield:
    hosts: ["127.0.0.1:1500"]
    key_file: %s
events:
  journal_dir: %s
routing:
  institution: "999001"
`, keyFile, filepath.Join(dir, "journal"))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "hsm-keys.json")
	tests := []struct {
		name, keyFile, want string
	}{
		{"missing", missing, "security.payshield.key_file: open " + missing},
		{"not JSON", write("garbled.json", "U0123\n"), "security.payshield.key_file: not a JSON array of keys"},
		{"usage-less", write("no-usage.json", `[{"id":"zpk-a","version":1,"algorithm":"tdes","length":16,"token":"U`+strings.Repeat("AB", 16)+`","kcv":"08D7B4"}]`),
			`security.payshield.key_file: invalid key: key zpk-a v1: usage "": want ZMK, ZPK, TPK, PVK or TAK`},
		{"token-less", write("bad-token.json", `[{"id":"zpk-a","version":1,"usage":"ZPK","algorithm":"tdes","length":16,"token":"U`+strings.Repeat("AB", 15)+`ZZ","kcv":"08D7B4"}]`),
			"security.payshield.key_file: invalid key: key zpk-a v1: token is not a key under the LMK"},
		{"KCV-less", write("no-kcv.json", `[{"id":"zpk-a","version":1,"usage":"ZPK","algorithm":"tdes","length":16,"token":"U`+strings.Repeat("AB", 16)+`"}]`),
			`security.payshield.key_file: invalid key: key zpk-a v1: kcv "": want the key's check value`},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"check-config", cfg(tt.keyFile)}, &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("check-config with a %s key file = exit %d, %q, %q; want exit 1 and %q", tt.name, code, out.String(), errOut.String(), tt.want)
		}
		if strings.Contains(errOut.String(), strings.Repeat("AB", 15)) {
			t.Errorf("check-config repeats a token: %q", errOut.String())
		}
		_, serveErr, serveCode := runServeOnce(t, cfg(tt.keyFile))
		if serveCode == 0 || !strings.Contains(serveErr, tt.want) {
			t.Errorf("serve with a %s key file = exit %d, %q; want the refusal check-config gives, %q", tt.name, serveCode, serveErr, tt.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", cfg(write("good.json", "[]\n"))}, &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != "ok" {
		t.Errorf("check-config with a good key file = exit %d, %q, %q; want ok", code, out.String(), errOut.String())
	}
}

// runServeOnce runs `pingate serve --config cfg` on loopback ports, for a
// configuration serve refuses at start-up; one that starts is stopped.
func runServeOnce(t *testing.T, cfg string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	code = run(ctx, []string{"serve", "--config", cfg, "--acquirer-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, &o, &e)
	return o.String(), e.String(), code
}

// TestCheckConfigNamesEveryPayShieldProblem: check-config names every bad
// security.payshield value at once (configuration.md: "names every problem
// at once"), each on its own, not only the first the client finds.
func TestCheckConfigNamesEveryPayShieldProblem(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pingate.yaml")
	if err := os.WriteFile(p, []byte(`
security:
  module: payshield
  dev_keys: true
  payshield:
    hosts: ["hsm-1.bank.example"]
    header_length: 40
    connections: 65
    timeout: -1s
    lmk_id: "1"
    no_header: true
routing:
  institution: "999001"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"check-config", p}, &out, &errOut)
	if code != 1 {
		t.Fatalf("check-config = exit %d, %q; want 1", code, errOut.String())
	}
	for _, want := range []string{
		`security.payshield: payshield: host "hsm-1.bank.example" is not host:port`,
		"security.payshield: payshield: header length 40 is not 0-32",
		"security.payshield: payshield: connections 65 is not 1-64",
		"security.payshield: payshield: timeout -1s is negative",
		`security.payshield: payshield: LMK identifier "1" is not 2 digits`,
		"security.payshield: no_header with header_length 40",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("check-config does not name %q; it said %q", want, errOut.String())
		}
	}
	if n := strings.Count(strings.TrimSpace(errOut.String()), "\n"); n != 0 {
		t.Errorf("check-config's refusal spans %d lines, want one: %q", n+1, errOut.String())
	}
}

// TestHSMKeyUnansweringHSM: an HSM that takes the connection but never
// answers gives each hsm-key ceremony a clear error within
// security.payshield.timeout — naming the command and the HSM, and for a
// key generation that the HSM may have acted — not a hang, and not a bare
// "context deadline exceeded". Nothing is written to the key file or the
// custody log.
func TestHSMKeyUnansweringHSM(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // held open, never answered
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(held)
		for c := range held {
			c.Close()
		}
	})
	dir := t.TempDir()
	keyFile, custody, cfgFile := filepath.Join(dir, "hsm-keys.json"), filepath.Join(dir, "custody.log"), filepath.Join(dir, "pingate.yaml")
	tok, err := hsmsim.EncipherUnderTestLMK("001", []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10})
	if err != nil {
		t.Fatal(err)
	}
	keys := fmt.Sprintf(`[{"id":"zpk-a","version":1,"usage":"ZPK","algorithm":"tdes","length":16,"token":%q,"kcv":"08D7B4"}]`, tok)
	if err := os.WriteFile(keyFile, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("security:\n  module: payshield\n  custody_log: %s\n  payshield:\n    hosts: [%q]\n    timeout: 300ms\n    key_file: %s\n", custody, ln.Addr().String(), keyFile)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give []string
		want string
	}{
		{[]string{"kcv", "--id", "zpk-a"}, "BU to hsm " + ln.Addr().String() + ": no answer in time"},
		{[]string{"generate", "--id", "zpk-b", "--usage", "ZPK", "--who", "alice", "--why", "new ZPK"},
			"A0 to hsm " + ln.Addr().String() + ": no answer in time (not retried: it may have acted)"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		start := time.Now()
		code := run(context.Background(), append([]string{"hsm-key", tt.give[0], "--config", cfgFile}, tt.give[1:]...), &out, &errOut)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("hsm-key %v took %s against an HSM that does not answer, want about the 300ms timeout", tt.give, took)
		}
		if code != 1 || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("hsm-key %v = exit %d, %q, %q; want exit 1 and %q", tt.give, code, out.String(), errOut.String(), tt.want)
		}
	}
	if b, _ := os.ReadFile(keyFile); string(b) != keys {
		t.Errorf("the key file changed:\n%s", b)
	}
	if b, err := os.ReadFile(custody); err == nil && len(b) > 0 {
		t.Errorf("the custody log has records:\n%s", b)
	}
}

// TestHSMKeyImportUsage: hsm-key import without --zmk or --kcv is a usage
// error (exit 2) naming the flags, not "unknown key: " (the empty ZMK id)
// or a check value mismatch; a missing or unknown --usage names the usages,
// and an --id pingate key would refuse is refused, as pingate key does; and the top-level help lists every hsm-key
// ceremony, combine included.
func TestHSMKeyImportUsage(t *testing.T) {
	_, cfgFile, _, custody := hsmKeySetup(t)
	base := []string{"hsm-key", "import", "--config", cfgFile, "--id", "zpk-a", "--usage", "ZPK", "--key-under-zmk", "0123456789ABCDEFFEDCBA9876543210", "--who", "alice", "--why", "ZPK"}
	for _, give := range [][]string{{"--kcv", "08D7B4"}, {"--zmk", "zmk-a"}} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(append([]string{}, base...), give...), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "--zmk and --kcv are required") {
			t.Errorf("hsm-key import %v = exit %d, %q; want exit 2 and %q", give, code, errOut.String(), "--zmk and --kcv are required")
		}
	}
	for _, id := range []string{"zpk with space", strings.Repeat("z", 65)} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"hsm-key", "generate", "--config", cfgFile, "--id", id, "--usage", "ZPK", "--who", "alice", "--why", "ZPK"}, &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "--id: invalid key: key id") {
			t.Errorf("hsm-key generate --id %q = exit %d, %q; want exit 2, the id refused as pingate key refuses it", id, code, errOut.String())
		}
	}
	for _, give := range [][]string{{}, {"--usage", "LMK"}} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"hsm-key", "generate", "--config", cfgFile, "--id", "zpk-b", "--who", "alice", "--why", "ZPK"}, give...), &out, &errOut)
		if want := "want ZMK, ZPK, TPK, TAK or PVK"; code != 2 || !strings.Contains(errOut.String(), want) {
			t.Errorf("hsm-key generate %v = exit %d, %q; want exit 2 and %q", give, code, errOut.String(), want)
		}
	}
	if b, err := os.ReadFile(custody); err == nil && len(b) > 0 {
		t.Errorf("the custody log has records:\n%s", b)
	}
	var out bytes.Buffer
	run(context.Background(), []string{"--help"}, &out, &out)
	if !strings.Contains(strings.Join(strings.Fields(out.String()), " "), "generate, import, combine, kcv, list") {
		t.Errorf("pingate --help does not list hsm-key combine:\n%s", out.String())
	}
}

// TestHSMKeyCombineParity: a component without odd parity (its check value
// right, since DES ignores the parity bits) is refused by the HSM's A4
// (error 10 for the first component, 11 for another); hsm-key combine says
// so in the ceremony's terms, and nothing is written.
func TestHSMKeyCombineParity(t *testing.T) {
	dir, cfgFile, keyFile, custody := hsmKeySetup(t)
	c1, k1 := hsmComponentFile(t, dir, "c1", "0123456789ABCDEFFEDCBA9876543210")
	// 5D974F23C7294543318A807C7F34C1AE with every parity bit flipped.
	even, kEven := hsmComponentFile(t, dir, "even", "5C964E22C6284442308B817D7E35C0AF")
	tests := []struct {
		give []string
		want string
	}{
		{[]string{"--component", c1, "--kcv", k1, "--component", even, "--kcv", kEven}, "a component after the first does not have odd parity"},
		{[]string{"--component", even, "--kcv", kEven, "--component", c1, "--kcv", k1}, "component 1 does not have odd parity"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"hsm-key", "combine", "--config", cfgFile, "--id", "zmk-x", "--who", "alice,bob", "--why", "ZMK ceremony"}, tt.give...), &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("hsm-key combine %v = exit %d, %q; want exit 1 and %q", tt.give, code, errOut.String(), tt.want)
		}
	}
	if kf, err := os.ReadFile(keyFile); err == nil && strings.Contains(string(kf), "zmk-x") {
		t.Errorf("the refused ceremony's key is in the key file:\n%s", kf)
	}
	if b, err := os.ReadFile(custody); err == nil && len(b) > 0 {
		t.Errorf("the refused ceremony is in the custody log:\n%s", b)
	}
}

// TestHSMKeyCeremonyNeedsItsCustodyLog: a ceremony whose record cannot be
// written does not happen. Without security.custody_log, hsm-key
// generate, import and combine are usage errors (exit 2) — --who and --why
// would be recorded nowhere — and with a custody log that fails its check
// (an altered record) the ceremony stops before the HSM makes a key: the
// key file does not get one that no record accounts for.
func TestHSMKeyCeremonyNeedsItsCustodyLog(t *testing.T) {
	dir, cfgFile, keyFile, custody := hsmKeySetup(t)
	hk := hsmKeyRunner(t, cfgFile)
	hk("generate", "--id", "zmk-a", "--usage", "ZMK", "--who", "alice", "--why", "ceremony")
	before, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	noLog := filepath.Join(dir, "no-log.yaml")
	if err := os.WriteFile(noLog, []byte(strings.Replace(string(cfg), "  custody_log: "+custody+"\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	generate := func(cfg, id string) (string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"hsm-key", "generate", "--config", cfg, "--id", id, "--usage", "ZPK", "--who", "alice", "--why", "new ZPK"}, &out, &errOut)
		return errOut.String(), code
	}
	if errOut, code := generate(noLog, "zpk-b"); code != 2 || !strings.Contains(errOut, "hsm-key generate needs security.custody_log") {
		t.Errorf("hsm-key generate without security.custody_log = exit %d, %q; want exit 2 naming security.custody_log", code, errOut)
	}
	log, err := os.ReadFile(custody)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(custody, bytes.Replace(log, []byte(`"who":"alice"`), []byte(`"who":"mallory"`), 1), 0o640); err != nil {
		t.Fatal(err)
	}
	if errOut, code := generate(cfgFile, "zpk-c"); code != 1 || !strings.Contains(errOut, "seq 1") {
		t.Errorf("hsm-key generate over an altered custody log = exit %d, %q; want exit 1 naming seq 1", code, errOut)
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(after, before) {
		t.Errorf("a ceremony without its custody record changed the key file:\n%s", after)
	}
}

// TestHSMKeyRefusesUnrecordableWho: a --who or --why the custody log
// cannot hold (a control character: a newline would forge a second line)
// is refused (exit 2) before the HSM makes the key, as pingate key refuses
// it before the store changes; the key file does not get a key no record
// accounts for.
func TestHSMKeyRefusesUnrecordableWho(t *testing.T) {
	_, cfgFile, keyFile, custody := hsmKeySetup(t)
	for _, give := range [][]string{{"--who", "alice\nbob", "--why", "new ZPK"}, {"--who", "alice", "--why", "new\x1bZPK"}} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"hsm-key", "generate", "--config", cfgFile, "--id", "zpk-b", "--usage", "ZPK"}, give...), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "control characters") {
			t.Errorf("hsm-key generate %q = exit %d, %q; want exit 2 and the refusal", give, code, errOut.String())
		}
	}
	if kf, err := os.ReadFile(keyFile); err == nil && strings.Contains(string(kf), "zpk-b") {
		t.Errorf("the key file holds a key without its custody record:\n%s", kf)
	}
	if b, err := os.ReadFile(custody); err == nil && len(b) > 0 {
		t.Errorf("the custody log has records:\n%s", b)
	}
}

// TestCheckConfigReadsPayShieldTLSFiles: check-config reads the HSMs' TLS
// files as serve does at start-up, so a CA file that is missing or holds
// no certificate is named by check-config (exit 1) as serve refuses it.
func TestCheckConfigReadsPayShieldTLSFiles(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "hsm-keys.json")
	if err := os.WriteFile(keyFile, []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing-ca.pem")
	for _, tt := range []struct{ caFile, want string }{
		{missing, "security.payshield.tls.ca_file: open " + missing},
		{notPEM, "security.payshield.tls.ca_file: no PEM certificate"},
	} {
		p := filepath.Join(dir, "pingate.yaml")
		body := fmt.Sprintf("security:\n  module: payshield\n  payshield:\n    hosts: [\"127.0.0.1:1500\"]\n    key_file: %s\n    tls:\n      ca_file: %s\nevents:\n  journal_dir: %s\nrouting:\n  institution: \"999001\"\n",
			keyFile, tt.caFile, filepath.Join(dir, "journal"))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"check-config", p}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("check-config with ca_file %s = exit %d, %q, %q; want exit 1 and %q", tt.caFile, code, out.String(), errOut.String(), tt.want)
		}
		if _, serveErr, code := runServeOnce(t, p); code == 0 || !strings.Contains(serveErr, tt.want) {
			t.Errorf("serve with ca_file %s = exit %d, %q; want the refusal check-config gives, %q", tt.caFile, code, serveErr, tt.want)
		}
	}
}
