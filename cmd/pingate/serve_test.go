package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pingate/cmd/internal/clitest"
)

// TestServeProductionRefusesDevelopmentSetup: the embedded default runs on
// published keys and a simulated issuer; --production refuses both, through
// the real entry point, with one line on stderr.
func TestServeProductionRefusesDevelopmentSetup(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"serve", "--production", "--acquirer-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("serve --production on the embedded default exited %d, want 1", code)
	}
	msg := errOut.String()
	for _, want := range []string{"security.dev_keys", "issuer_sim"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not name %s: %q", want, msg)
		}
	}
	if n := strings.Count(strings.TrimSpace(msg), "\n"); n != 0 {
		t.Errorf("refusal spans %d lines, want one", n+1)
	}
}

// TestCheckConfigNamesEveryProblem: check-config reports each bad value of a
// config file, not only the first, and accepts a good one.
func TestCheckConfigNamesEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`
production: true
security:
  dev_keys: true
acquirer_listener:
  framing: bcd9
routing:
  institution: "99x"
  issuers:
    - id: ssbank
      institution: "300001"
      hosts: []
      pin_format: 1
      key: k
  routes:
    - prefix: "62284812"
      issuer: nobank
events:
  journal_sync_interval: 50ms
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", bad}, &out, &errOut); code != 1 {
		t.Fatalf("check-config on a bad file exited %d, want 1", code)
	}
	for _, want := range []string{"dev_keys", "framing", "institution \"99x\"", "hosts", "pin_format 1", "unknown issuer \"nobank\"", "journal_sync_interval 50ms"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("check-config does not name %q; it said %q", want, errOut.String())
		}
	}

	unknown := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(unknown, []byte("acquirer_listner:\n  addr: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"check-config", unknown}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "acquirer_listner") {
		t.Errorf("a misspelt key is not refused: exit %d, %q", code, errOut.String())
	}
}

// TestProductionWarnsAboutLegacyAcquirerSettings: a production config may
// keep an acquirer on the legacy key change or without sign-on (for a
// migration), and is told so: check-config prints, and serve logs, one
// warning per setting, naming it.
func TestProductionWarnsAboutLegacyAcquirerSettings(t *testing.T) {
	dir := t.TempDir()
	path, keyFile := filepath.Join(dir, "prod.yaml"), filepath.Join(dir, "hsm-keys.json")
	// check-config reads it, as serve does, and the routes' keys must be in it.
	if err := os.WriteFile(keyFile, []byte(hsmKeyFileOf("zpk-atm", "zmk-atm", "zpk-atm2", "zpk-issuer")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`
production: true
security:
  module: payshield
  payshield:
    hosts: ["127.0.0.1:1"]
    key_file: %s
  card_token_key_env: PINGATE_TOKEN_KEY
branch:
  enabled: false
routing:
  institution: "999001"
  acquirers:
    - id: "100001"
      channel: atm
      terminals: ["*"]
      keys: {1: zpk-atm}
      zmk: zmk-atm
      key_change_legacy_ecb: true
    - id: "100002"
      channel: atm
      terminals: ["*"]
      keys: {1: zpk-atm2}
      require_sign_on: true
  issuers:
    - id: ssbank
      institution: "300001"
      hosts: ["127.0.0.1:1"]
      pin_format: 4
      key: zpk-issuer
  routes:
    - prefix: "62284812"
      issuer: ssbank
`, keyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", path}, &out, &errOut); code != 0 {
		t.Fatalf("check-config exited %d: %s", code, errOut.String())
	}
	got := out.String()
	for _, want := range []string{"routing.acquirers[0] (100001).key_change_legacy_ecb", "routing.acquirers[0] (100001).require_sign_on"} {
		if !strings.Contains(got, want) {
			t.Errorf("check-config does not warn about %s: %q", want, got)
		}
	}
	if strings.Contains(got, "(100002)") {
		t.Errorf("check-config warns about an acquirer that signs on and uses key blocks: %q", got)
	}

	// serve --production logs the same warnings before it starts (here it
	// then stops: no HSM answers at its address).
	out.Reset()
	errOut.Reset()
	run(context.Background(), []string{"serve", "--production", "--config", path, "--acquirer-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, &out, &errOut)
	for _, want := range []string{"key_change_legacy_ecb is on", "require_sign_on is off"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("serve --production does not warn %q: %q", want, errOut.String())
		}
	}
}

// TestServeProductionRequiresPayShield: through the built binary, serve
// --production and check-config refuse a production config on the software
// module with one line naming security.module, whether production comes
// from the file or the flag; the same config on module payshield passes
// check-config.
func TestServeProductionRequiresPayShield(t *testing.T) {
	bin := opsBinary(t)
	dir := t.TempDir()
	body := `
security:
  %s
  card_token_key_env: PINGATE_TOKEN_KEY
branch:
  enabled: false
routing:
  institution: "999001"
  acquirers:
    - id: "100001"
      channel: atm
      terminals: ["*"]
      keys: {1: zpk-atm}
      require_sign_on: true
  issuers:
    - id: ssbank
      institution: "300001"
      hosts: ["127.0.0.1:1"]
      pin_format: 3
      key: zpk-issuer
  routes:
    - prefix: "62284812"
      issuer: ssbank
`
	write := func(name, production, security string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(production+fmt.Sprintf(body, security)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	software := "key_store: " + filepath.Join(dir, "keystore.json") + "\n  lmk_env: PINGATE_LMK"
	const want = "security.module software: production requires payshield"
	prodSoftware := write("prod-software.yaml", "production: true\n", software)
	if _, errOut, code := clitest.Exec(t, bin, "check-config", prodSoftware); code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("check-config of production on the software module: exit %d, %q; want 1 and %q", code, errOut, want)
	}
	for _, args := range [][]string{
		{"serve", "--config", prodSoftware},
		{"serve", "--production", "--config", write("software.yaml", "", software)},
	} {
		args = append(args, "--acquirer-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
		_, errOut, code := clitest.Exec(t, bin, args...)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("pingate %v: exit %d, %q; want 1 and %q", args, code, errOut, want)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
			t.Errorf("pingate %v: refusal spans %d lines, want one", args, n+1)
		}
	}
	keyFile := filepath.Join(dir, "hsm-keys.json")
	// check-config reads it, as serve does, and the routes' keys must be in it.
	if err := os.WriteFile(keyFile, []byte(hsmKeyFileOf("zpk-atm", "zpk-issuer")), 0o600); err != nil {
		t.Fatal(err)
	}
	hsm := "module: payshield\n  payshield:\n    hosts: [\"127.0.0.1:1500\"]\n    key_file: " + keyFile
	if out, errOut, code := clitest.Exec(t, bin, "check-config", write("prod-hsm.yaml", "production: true\n", hsm)); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check-config of production on module payshield: exit %d, %q %q; want ok", code, out, errOut)
	}
}

// TestServeRefusesARouteKeyNotLoaded: a route naming a key the module does
// not hold would refuse every request on it; serve refuses to start on it,
// as a reload refuses it, and check-config names it too.
func TestServeRefusesARouteKeyNotLoaded(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pingate.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
security: {dev_keys: true}
issuer_sim: {seed: 1}
routing:
  institution: "999001"
  acquirers:
    - {id: "100001", name: "ATM", channel: atm, terminals: ["*"], keys: {1: dev-atm-zpk, 2: zpk-not-there}, formats: [0, 3]}
  issuers:
    - {id: ssbank, institution: "300001", hosts: [issuer-sim], pin_format: 4, key: no-such-zpk, key_index: 1}
  routes:
    - {prefix: "62284812", issuer: ssbank}
events: {journal_dir: %q}
reversals: {dir: %q}
`, filepath.Join(dir, "journal"), filepath.Join(dir, "reversals"))), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check-config", cfg},
		{"serve", "--config", cfg, "--acquirer-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 1 {
			t.Errorf("%s with route keys not loaded exited %d, want 1 (stdout %q)", args[0], code, out.String())
		}
		for _, want := range []string{`keys[2]: key "zpk-not-there" is not loaded`, `key: key "no-such-zpk" is not loaded`} {
			if !strings.Contains(errOut.String(), want) {
				t.Errorf("%s: stderr %q does not name %s", args[0], errOut.String(), want)
			}
		}
	}
}
