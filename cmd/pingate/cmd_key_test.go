package main

import (
	"bytes"
	"context"
	"crypto/des"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/cmd/internal/clitest"
	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/pinblock"
	"pingate/pinblock/keystore"
)

// Published keys and blocks (pinblock/testdata/tr31-vectors.json names the
// sources): ASC X9 TR 31-2018 Annex A.7.2.1 and A.7.2.2.
const (
	tr31KeyA    = "F039121BEC83D26B169BDCD5B22AAF8F" // KCV CB9DEA
	tr31KCVA    = "CB9DEA"
	tr31KBPKB   = "DD7515F2BFC17F85CE48F3CA25CB21F6" // A.7.2.2 KBPK
	tr31BlockB  = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E"
	tr31KCVB    = "57C409"                           // of the key in tr31BlockB
	tr31AESKey  = "3F419E1CB7079442AA37474C2EFBF8B8" // A.7.4 key, AES KCV 08793E
	tr31AESKCV6 = "08793E"
)

// tdesKCV and secretFile: see clitest.TDESKCV and clitest.SecretFile.
var (
	tdesKCV    = clitest.TDESKCV
	secretFile = clitest.SecretFile
)

func runKeyCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), append([]string{"key"}, args...), &o, &e)
	return o.String(), e.String(), code
}

func keyLastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func xorHex(t *testing.T, a, b string) string {
	t.Helper()
	x, _ := hex.DecodeString(a)
	y, _ := hex.DecodeString(b)
	if len(x) != len(y) || len(x) == 0 {
		t.Fatal("xorHex: bad input")
	}
	for i := range x {
		x[i] ^= y[i]
	}
	return strings.ToUpper(hex.EncodeToString(x))
}

// keyEnv is a store, LMK and custody log in a temporary directory.
type keyEnv struct {
	dir, lmk, store, log string
}

func newKeyEnv(t *testing.T) keyEnv {
	t.Helper()
	dir := t.TempDir()
	e := keyEnv{dir: dir, lmk: filepath.Join(dir, "lmk"), store: filepath.Join(dir, "keys.json"), log: filepath.Join(dir, "custody.log")}
	out, errOut, code := runKeyCLI(t, "lmk-generate", "--out", e.lmk)
	if code != 0 || len(keyLastLine(out)) != 10 {
		t.Fatalf("key lmk-generate = %q, %q, exit %d; want a 10-digit KCV", out, errOut, code)
	}
	if out, errOut, code := runKeyCLI(t, append([]string{"init"}, e.flags(false)...)...); code != 0 || !strings.HasPrefix(out, "created key store ") {
		t.Fatalf("key init = %q, %q, exit %d", out, errOut, code)
	}
	return e
}

func (e keyEnv) flags(who bool, extra ...string) []string {
	f := []string{"--store", e.store, "--lmk-file", e.lmk, "--log", e.log}
	if who {
		f = append(f, "--who", "alice", "--why", "test ceremony")
	}
	return append(f, extra...)
}

// do runs a store subcommand and returns its last line, failing on error.
func (e keyEnv) do(t *testing.T, sub string, args ...string) string {
	t.Helper()
	out, errOut, code := runKeyCLI(t, append([]string{sub}, e.flags(sub != "list", args...)...)...)
	if code != 0 {
		t.Fatalf("key %s exit %d: %s", sub, code, errOut)
	}
	return keyLastLine(out)
}

func TestKeyKCV(t *testing.T) {
	tests := []struct {
		give []string
		want string
	}{
		{[]string{"--key", secretFile(t, tr31KeyA), "--alg", "tdes"}, tr31KCVA},
		{[]string{"--key", secretFile(t, strings.ToLower(tr31KeyA))}, tr31KCVA},
		{[]string{"--key", secretFile(t, tr31AESKey), "--alg", "aes"}, tr31AESKCV6},
	}
	for _, tt := range tests {
		out, errOut, code := runKeyCLI(t, append([]string{"kcv"}, tt.give...)...)
		if code != 0 || !strings.HasPrefix(keyLastLine(out), tt.want) {
			t.Errorf("key kcv %v = %q, %q, exit %d; want %s", tt.give, out, errOut, code, tt.want)
		}
	}
	_, errOut, code := runKeyCLI(t, "kcv", "--key", secretFile(t, "F039121BEC83D26B169BDCD5B22AAF8G"))
	if code != 1 || strings.Contains(errOut, "F039") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("key kcv (non-hex) = %q, exit %d; want exit 1, one line, no key", errOut, code)
	}
}

// setupCeremony builds a store holding a TDES ZMK made from components (the
// published A.7.2.2 KBPK), a ZPK imported from the published A.7.2.2 block,
// and a generated PVK.
func setupCeremony(t *testing.T) keyEnv {
	t.Helper()
	e := newKeyEnv(t)
	c2 := xorHex(t, tr31KBPKB, tr31KeyA)
	kcv2 := keyLastLine(mustRunKey(t, "kcv", "--key", secretFile(t, c2)))
	zmkKCV := keyLastLine(mustRunKey(t, "kcv", "--key", secretFile(t, tr31KBPKB)))
	got := e.do(t, "combine", "--id", "zmk-1", "--alg", "tdes", "--component", secretFile(t, tr31KeyA), "--kcv", tr31KCVA, "--component", secretFile(t, c2), "--kcv", kcv2)
	if got != "zmk-1 ZMK v1 "+zmkKCV {
		t.Fatalf("key combine = %q, want zmk-1 ZMK v1 %s", got, zmkKCV)
	}
	got = e.do(t, "import-tr31", "--id", "zpk-1", "--under", "zmk-1", "--block", tr31BlockB)
	if got != "zpk-1 ZPK v1 "+tr31KCVB {
		t.Fatalf("key import-tr31 = %q, want zpk-1 ZPK v1 %s", got, tr31KCVB)
	}
	if got := e.do(t, "generate", "--id", "pvk-1", "--usage", "pvk", "--alg", "tdes"); !strings.HasPrefix(got, "pvk-1 PVK v1 ") {
		t.Fatalf("key generate = %q", got)
	}
	return e
}

func mustRunKey(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runKeyCLI(t, args...)
	if code != 0 {
		t.Fatalf("key %v exit %d: %s", args, code, errOut)
	}
	return out
}

func TestKeyCeremonyCLI(t *testing.T) {
	e := setupCeremony(t)

	// Import a TPK enciphered (TDES-ECB) under the ZMK: the A.7.2.1 key.
	enc := tdesECB(t, tr31KBPKB, tr31KeyA)
	if got := e.do(t, "import", "--id", "tpk-1", "--usage", "TPK", "--alg", "tdes", "--under", "zmk-1", "--key", secretFile(t, enc), "--kcv", tr31KCVA); got != "tpk-1 TPK v1 "+tr31KCVA {
		t.Errorf("key import = %q", got)
	}
	// Rotate the TPK with a new version under the ZMK (the A.7.2.2 key).
	keyB := "3F419E1CB7079442AA37474C2EFBF8B8"
	if got := e.do(t, "rotate", "--id", "tpk-1", "--under", "zmk-1", "--key", secretFile(t, tdesECB(t, tr31KBPKB, keyB)), "--kcv", tr31KCVB); got != "tpk-1 TPK v2 "+tr31KCVB {
		t.Errorf("key rotate (under ZMK) = %q", got)
	}
	// Rotate the PVK with a generated version.
	if got := e.do(t, "rotate", "--id", "pvk-1"); !strings.HasPrefix(got, "pvk-1 PVK v2 ") {
		t.Errorf("key rotate (generate) = %q", got)
	}
	// Export the ZPK and import it back under another id.
	block := e.do(t, "export-tr31", "--id", "zpk-1", "--under", "zmk-1")
	if !strings.HasPrefix(block, "B0") {
		t.Fatalf("key export-tr31 = %q, want a version B block", block)
	}
	if got := e.do(t, "import-tr31", "--id", "zpk-2", "--under", "zmk-1", "--block", block); got != "zpk-2 ZPK v1 "+tr31KCVB {
		t.Errorf("re-import of the exported block = %q", got)
	}
	if got := e.do(t, "remove", "--id", "zpk-2"); got != "removed zpk-2" {
		t.Errorf("key remove = %q", got)
	}

	out, _, code := runKeyCLI(t, append([]string{"list"}, e.flags(false)...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 6 || lines[0] != "pvk-1 PVK v1 "+strings.Fields(lines[0])[3]+" mode C" || lines[3] != "tpk-1 TPK v2 "+tr31KCVB+" mode B" || lines[5] != "zpk-1 ZPK v1 "+tr31KCVB+" mode E" {
		t.Errorf("key list = %q, exit %d", out, code)
	}
	out, _, code = runKeyCLI(t, append([]string{"list", "--json"}, e.flags(false)...)...)
	var keys []struct {
		ID        string  `json:"id"`
		Version   int     `json:"version"`
		KCV       string  `json:"kcv"`
		RetiredAt *string `json:"retired_at"`
	}
	if err := json.Unmarshal([]byte(keyLastLine(out)), &keys); err != nil || code != 0 || len(keys) != 6 || keys[2].ID != "tpk-1" || keys[2].RetiredAt == nil || keys[3].RetiredAt != nil {
		t.Errorf("key list --json = %q (%v)", out, err)
	}

	// 3 setup + import + 2 rotations + export + import + remove.
	if got := keyLastLine(mustRunKey(t, "log", "verify", "--log", e.log)); got != "ok 9 records" {
		t.Errorf("key log verify = %q, want ok 9 records", got)
	}
	if got := keyLastLine(mustRunKey(t, append([]string{"log", "verify"}, e.flags(false)...)...)); got != "ok 9 records" {
		t.Errorf("key log verify --store = %q, want ok 9 records", got)
	}
	// No file holds a clear key.
	for _, p := range []string{e.store, e.log} {
		raw, _ := os.ReadFile(p)
		for _, k := range []string{tr31KeyA, tr31KBPKB, keyB} {
			if bytes.Contains(bytes.ToUpper(raw), []byte(k[:16])) {
				t.Errorf("%s holds a clear key", filepath.Base(p))
			}
		}
	}
}

// tdesECB enciphers data under a double-length key with crypto/des, as a
// partner's HSM would for an import under a ZMK.
func tdesECB(t *testing.T, keyHex, dataHex string) string {
	t.Helper()
	k, _ := hex.DecodeString(keyHex)
	d, _ := hex.DecodeString(dataHex)
	c, err := des.NewTripleDESCipher(append(k, k[:8]...))
	if err != nil || len(d)%8 != 0 {
		t.Fatalf("tdesECB: %v", err)
	}
	out := make([]byte, len(d))
	for i := 0; i < len(d); i += 8 {
		c.Encrypt(out[i:i+8], d[i:i+8])
	}
	return strings.ToUpper(hex.EncodeToString(out))
}

func TestKeyLogTamperCLI(t *testing.T) {
	tests := []struct {
		name    string
		edit    func([]string) []string
		wantSeq string
	}{
		{"line altered", func(l []string) []string {
			l[1] = strings.Replace(l[1], `"who":"alice"`, `"who":"mallory"`, 1)
			return l
		}, "seq 2"},
		{"two lines reordered", func(l []string) []string {
			l[0], l[1] = l[1], l[0]
			return l
		}, "seq 1"},
		{"line deleted", func(l []string) []string {
			return append(l[:1], l[2:]...)
		}, "seq 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setupCeremony(t)
			raw, _ := os.ReadFile(e.log)
			lines := strings.SplitAfter(string(raw), "\n")
			os.WriteFile(e.log, []byte(strings.Join(tt.edit(lines), "")), 0o640)
			out, errOut, code := runKeyCLI(t, "log", "verify", "--log", e.log)
			if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tt.wantSeq) {
				t.Errorf("key log verify = %q, %q, exit %d; want exit 1 and one line naming %s", out, errOut, code, tt.wantSeq)
			}
			// And the store refuses to work on top of it.
			if _, _, code := runKeyCLI(t, append([]string{"list"}, e.flags(false)...)...); code != 1 {
				t.Errorf("key list on a tampered log exit %d, want 1", code)
			}
		})
	}
}

func TestKeyCLIUsage(t *testing.T) {
	e := newKeyEnv(t)
	tests := []struct {
		name string
		give []string
		want int
	}{
		{"no subcommand", nil, 2},
		{"unknown subcommand", []string{"frobnicate"}, 2},
		{"log without verify", []string{"log"}, 2},
		{"generate without who", append([]string{"generate", "--id", "k", "--usage", "ZPK"}, e.flags(false)...), 2},
		{"generate bad usage", append([]string{"generate", "--id", "k", "--usage", "LMK"}, e.flags(true)...), 2},
		{"combine one component", append([]string{"combine", "--id", "k", "--component", secretFile(t, tr31KeyA), "--kcv", tr31KCVA}, e.flags(true)...), 2},
		{"combine kcv count", append([]string{"combine", "--id", "k", "--component", secretFile(t, tr31KeyA), "--component", secretFile(t, tr31KBPKB), "--kcv", tr31KCVA}, e.flags(true)...), 2},
		{"combine wrong kcv", append([]string{"combine", "--id", "k", "--component", secretFile(t, tr31KeyA), "--kcv", tr31KCVB, "--component", secretFile(t, tr31KBPKB), "--kcv", tr31KCVA}, e.flags(true)...), 1},
		{"no lmk", []string{"list", "--store", e.store, "--log", e.log}, 2},
		{"both lmk", []string{"list", "--store", e.store, "--log", e.log, "--lmk-file", e.lmk, "--lmk-env", "X"}, 2},
		{"lmk-generate over existing", []string{"lmk-generate", "--out", e.lmk}, 1},
		{"import under unknown zmk", append([]string{"import", "--id", "k", "--usage", "ZPK", "--under", "nope", "--key", secretFile(t, tr31KeyA), "--kcv", tr31KCVA}, e.flags(true)...), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runKeyCLI(t, tt.give...)
			if code != tt.want || strings.Count(errOut, "\n") != 1 {
				t.Errorf("key %v = %q, %q, exit %d; want exit %d and one stderr line", tt.give, out, errOut, code, tt.want)
			}
			for _, secret := range []string{tr31KeyA, tr31KBPKB} {
				if strings.Contains(errOut, secret[:12]) {
					t.Errorf("stderr %q shows key material", errOut)
				}
			}
		})
	}
}

// TestKeyBinary runs the built binary: a ceremony, then log tampering.
func TestKeyBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := opsBinary(t) // built once per test run, with the Makefile's line
	e := setupCeremony(t)
	runBin := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"key"}, args...)...)
		var o, eb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &eb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), eb.String(), code
	}
	if out, _, code := runBin("kcv", "--key", secretFile(t, tr31KeyA)); code != 0 || keyLastLine(out) != tr31KCVA {
		t.Errorf("pingate key kcv = %q, exit %d", out, code)
	}
	if out, errOut, code := runBin(append([]string{"list"}, e.flags(false)...)...); code != 0 || !strings.Contains(out, "zpk-1 ZPK v1 "+tr31KCVB) {
		t.Errorf("pingate key list = %q, %q, exit %d", out, errOut, code)
	}
	if out, _, code := runBin("log", "verify", "--log", e.log); code != 0 || keyLastLine(out) != "ok 3 records" {
		t.Errorf("pingate key log verify = %q, exit %d", out, code)
	}
	raw, _ := os.ReadFile(e.log)
	lines := strings.SplitAfter(string(raw), "\n")
	for name, edited := range map[string][]string{
		"altered":   {lines[0], strings.Replace(lines[1], `"why":"test ceremony"`, `"why":"nothing"`, 1), lines[2]},
		"reordered": {lines[0], lines[2], lines[1]},
		"deleted":   {lines[0], lines[2]},
	} {
		os.WriteFile(e.log, []byte(strings.Join(edited, "")), 0o640)
		out, errOut, code := runBin("log", "verify", "--log", e.log)
		if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "seq 2") {
			t.Errorf("%s: pingate key log verify = %q, %q, exit %d; want exit 1 naming seq 2", name, out, errOut, code)
		}
	}
	if _, _, code := runBin("generate", "--id", "k"); code != 2 {
		t.Errorf("pingate key generate without flags exit %d, want 2", code)
	}
}

// TestKeyCeremonyRefusesLiteralSecrets: through the built binary, every
// key-material flag of a ceremony command refuses a value given on the
// command line (where ps and the shell history see it) with exit 2 and one
// line naming the flag, never the value, and changes nothing; the same
// value from @FILE or - is accepted.
func TestKeyCeremonyRefusesLiteralSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := opsBinary(t)
	e := setupCeremony(t)
	logBefore, _ := os.ReadFile(e.log)
	storeBefore, _ := os.ReadFile(e.store)
	enc := tdesECB(t, tr31KBPKB, tr31KeyA)
	c2 := xorHex(t, tr31KBPKB, tr31KeyA)
	tests := []struct {
		name   string
		give   []string
		flag   string
		secret string
	}{
		{"kcv --key", []string{"kcv", "--key", tr31KeyA}, "--key", tr31KeyA},
		{"import --key", append([]string{"import", "--id", "tpk-9", "--usage", "TPK", "--under", "zmk-1", "--key", enc, "--kcv", tr31KCVA}, e.flags(true)...), "--key", enc},
		{"combine --component", append([]string{"combine", "--id", "zmk-9", "--component", tr31KeyA, "--kcv", tr31KCVA, "--component", secretFile(t, c2), "--kcv", tdesKCV(t, c2)}, e.flags(true)...), "--component", tr31KeyA},
		{"combine second --component", append([]string{"combine", "--id", "zmk-9", "--component", secretFile(t, tr31KeyA), "--kcv", tr31KCVA, "--component", c2, "--kcv", tdesKCV(t, c2)}, e.flags(true)...), "--component", c2},
		{"rotate --key", append([]string{"rotate", "--id", "zpk-1", "--under", "zmk-1", "--key", enc, "--kcv", tr31KCVA}, e.flags(true)...), "--key", enc},
		{"rotate --component", append([]string{"rotate", "--id", "zmk-1", "--component", tr31KeyA, "--kcv", tr31KCVA, "--component", c2, "--kcv", tdesKCV(t, c2)}, e.flags(true)...), "--component", tr31KeyA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"key"}, tt.give...)...)
			var o, eb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &eb
			err := cmd.Run()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 || o.Len() != 0 || strings.Count(eb.String(), "\n") != 1 {
				t.Fatalf("pingate key %s <literal> = %q, %q, %v; want exit 2 and one stderr line", tt.name, o.String(), eb.String(), err)
			}
			if !strings.Contains(eb.String(), tt.flag+" takes - (a line of standard input) or @FILE") {
				t.Errorf("stderr %q does not say that %s takes - or @FILE", eb.String(), tt.flag)
			}
			if strings.Contains(strings.ToUpper(eb.String()), tt.secret[:12]) {
				t.Errorf("stderr %q repeats the secret", eb.String())
			}
		})
	}
	if raw, _ := os.ReadFile(e.log); !bytes.Equal(raw, logBefore) {
		t.Error("a refused command changed the custody log")
	}
	if raw, _ := os.ReadFile(e.store); !bytes.Equal(raw, storeBefore) {
		t.Error("a refused command changed the key store")
	}
	// The same import with the key on standard input goes through.
	cmd := exec.Command(bin, append([]string{"key", "import", "--id", "tpk-9", "--usage", "TPK", "--under", "zmk-1", "--key", "-", "--kcv", tr31KCVA}, e.flags(true)...)...)
	cmd.Stdin = strings.NewReader(enc + "\n")
	if out, err := cmd.Output(); err != nil || keyLastLine(string(out)) != "tpk-9 TPK v1 "+tr31KCVA {
		t.Errorf("pingate key import --key - = %q, %v; want tpk-9 TPK v1 %s", out, err, tr31KCVA)
	}
}

// runWithStore runs a store subcommand of e with the store path replaced.
func (e keyEnv) runWithStore(t *testing.T, store string, sub string, args ...string) (string, string, int) {
	t.Helper()
	f := append([]string{sub, "--store", store, "--lmk-file", e.lmk, "--log", e.log}, args...)
	if sub != "list" && sub != "init" {
		f = append(f, "--who", "alice", "--why", "test ceremony")
	}
	return runKeyCLI(t, f...)
}

// keyGatewayStart starts the gateway on the embedded config with e's key store,
// as `pingate serve` does.
func keyGatewayStart(t *testing.T, e keyEnv, store string) (*gateway.Gateway, error) {
	t.Helper()
	return gatewaytest.New(t, func(cfg *gateway.Config) {
		cfg.Instance = "key-test"
		off := false
		cfg.Branch.Enabled = &off
		cfg.Security.KeyStore, cfg.Security.CustodyLog, cfg.Security.LMKFile = store, e.log, e.lmk
	})
}

// TestKeyStoreMissingIsRefused (issue 13 item 10): a store file that does
// not exist is not an empty store. With a custody log past seq 0 every key
// command and the gateway's start-up refuse, and nothing is written; with
// no log either, the refusal names key init, the only way to create a store.
func TestKeyStoreMissingIsRefused(t *testing.T) {
	e := setupCeremony(t)
	logBefore, _ := os.ReadFile(e.log)
	wrong := filepath.Join(e.dir, "keys-typo.json")
	for _, sub := range []string{"list", "generate"} {
		args := []string{}
		if sub == "generate" {
			args = []string{"--id", "zpk-9", "--usage", "ZPK"}
		}
		out, errOut, code := e.runWithStore(t, wrong, sub, args...)
		if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "does not exist, but the custody log") {
			t.Errorf("key %s --store <missing> = %q, %q, exit %d; want exit 1 naming the missing store and the log", sub, out, errOut, code)
		}
	}
	if _, err := os.Stat(wrong); !os.IsNotExist(err) {
		t.Error("a refused command created the store file")
	}
	if raw, _ := os.ReadFile(e.log); !bytes.Equal(raw, logBefore) {
		t.Error("a refused command changed the custody log")
	}
	// key init refuses to start a store over a log that has records.
	if out, errOut, code := e.runWithStore(t, wrong, "init"); code != 1 || !strings.Contains(errOut, "already has records") {
		t.Errorf("key init over a log with records = %q, %q, exit %d; want exit 1", out, errOut, code)
	}
	// The gateway does not start on a missing store.
	if _, err := keyGatewayStart(t, e, wrong); err == nil || !strings.Contains(err.Error(), "security.key_store") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("startGateway(missing key store) error = %v, want security.key_store: … does not exist", err)
	}
	// With neither store nor log, the refusal says how to create a store.
	fresh := keyEnv{dir: e.dir, lmk: e.lmk, store: filepath.Join(e.dir, "new.json"), log: filepath.Join(e.dir, "new.log")}
	out, errOut, code := fresh.runWithStore(t, fresh.store, "generate", "--id", "zpk-9", "--usage", "ZPK")
	if code != 1 || out != "" || !strings.Contains(errOut, "pingate key init") {
		t.Errorf("key generate without a store = %q, %q, exit %d; want exit 1 naming key init", out, errOut, code)
	}
	if got := keyLastLine(mustRunKey(t, append([]string{"init"}, fresh.flags(false)...)...)); !strings.HasPrefix(got, "created key store "+fresh.store) {
		t.Errorf("key init = %q", got)
	}
	// A store that is there is not one that "does not verify".
	if _, errOut, code := runKeyCLI(t, append([]string{"init"}, fresh.flags(false)...)...); code != 1 || !strings.Contains(errOut, "key store exists: "+fresh.store+" already exists") ||
		strings.Contains(errOut, "does not verify") {
		t.Errorf("second key init = %q, exit %d; want exit 1, key store exists: %s already exists", errOut, code, fresh.store)
	}
	if got := fresh.do(t, "list"); got != "no keys" {
		t.Errorf("key list of a new store = %q, want no keys", got)
	}
}

// TestKeyStoreWriteFailureRecordsNothing (issue 13 item 11): when the store
// file cannot be written, the custody log gets no record, and a retry makes
// one v1 with one record. The store's directory is made immutable
// (chattr +i, which stops even root from creating the temporary file).
func TestKeyStoreWriteFailureRecordsNothing(t *testing.T) {
	e := setupCeremony(t)
	if err := exec.Command("chattr", "+i", e.dir).Run(); err != nil {
		t.Skipf("chattr +i not available here (%v): cannot make the store write fail", err)
	}
	logBefore, _ := os.ReadFile(e.log)
	out, errOut, code := runKeyCLI(t, append([]string{"generate", "--id", "zpk-9", "--usage", "ZPK"}, e.flags(true)...)...)
	if err := exec.Command("chattr", "-i", e.dir).Run(); err != nil {
		t.Fatal(err)
	}
	if code != 1 || !strings.Contains(errOut, "write key store") {
		t.Fatalf("key generate with an unwritable store = %q, %q, exit %d; want exit 1, write key store", out, errOut, code)
	}
	if raw, _ := os.ReadFile(e.log); !bytes.Equal(raw, logBefore) {
		t.Errorf("the failed change left a custody record: %q", strings.TrimPrefix(string(raw), string(logBefore)))
	}
	if got := e.do(t, "generate", "--id", "zpk-9", "--usage", "ZPK"); !strings.HasPrefix(got, "zpk-9 ZPK v1 ") {
		t.Errorf("retry = %q, want zpk-9 ZPK v1", got)
	}
	raw, _ := os.ReadFile(e.log)
	if n := strings.Count(string(raw), `"key_id":"zpk-9"`); n != 1 {
		t.Errorf("custody log has %d records of zpk-9, want 1", n)
	}
	if got := keyLastLine(mustRunKey(t, append([]string{"log", "verify"}, e.flags(false)...)...)); got != "ok 4 records" {
		t.Errorf("key log verify --store = %q, want ok 4 records", got)
	}
}

// TestKeyTornCustodyLog (issue 13 item 9): a custody log whose last line
// was torn (a full disk during an append) stops neither the key commands
// nor the gateway; the next change cuts the torn line back, puts back any
// record the store held, and records the repair.
func TestKeyTornCustodyLog(t *testing.T) {
	tests := []struct {
		name       string
		tear       func(t *testing.T, e keyEnv)
		wantVerify string
		wantLines  int // after the next change
	}{
		{"torn bytes the store never acknowledged", func(t *testing.T, e keyEnv) {
			f, err := os.OpenFile(e.log, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"seq":4,"time":"2026-12-02T10:00:00Z","who":"al`)
			f.Close()
		}, "ok 3 records; a torn last line (48 bytes, never a complete record) is cut back by the next change", 5},
		{"the last record torn after the store was written", func(t *testing.T, e keyEnv) {
			st, _ := os.Stat(e.log)
			if err := os.Truncate(e.log, st.Size()-40); err != nil {
				t.Fatal(err)
			}
		}, "ok 2 records; 1 more held in the key store, appended by the next change; a torn last line", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setupCeremony(t)
			orig := readLogLines(t, e.log)
			tt.tear(t, e)
			if _, errOut, code := runKeyCLI(t, "log", "verify", "--log", e.log); code != 1 || !strings.Contains(errOut, "incomplete") {
				t.Errorf("key log verify without --store = %q, exit %d; want exit 1, incomplete (it cannot know what the store acknowledged)", errOut, code)
			}
			if got := keyLastLine(mustRunKey(t, append([]string{"log", "verify"}, e.flags(false)...)...)); !strings.HasPrefix(got, tt.wantVerify) {
				t.Errorf("key log verify --store = %q, want %q", got, tt.wantVerify)
			}
			if out := mustRunKey(t, append([]string{"list"}, e.flags(false)...)...); !strings.Contains(out, "zpk-1 ZPK v1 "+tr31KCVB) {
				t.Errorf("key list on a torn log = %q", out)
			}
			if _, err := keyGatewayStart(t, e, e.store); err != nil {
				t.Errorf("startGateway on a torn custody log: %v", err)
			}
			if got := e.do(t, "generate", "--id", "zpk-9", "--usage", "ZPK"); !strings.HasPrefix(got, "zpk-9 ZPK v1 ") {
				t.Errorf("key generate on a torn log = %q", got)
			}
			lines := readLogLines(t, e.log)
			if got := keyLastLine(mustRunKey(t, append([]string{"log", "verify"}, e.flags(false)...)...)); got != fmt.Sprintf("ok %d records", tt.wantLines) || len(lines) != tt.wantLines {
				t.Fatalf("after the next change: key log verify --store = %q, %d lines; want ok %d records", got, len(lines), tt.wantLines)
			}
			for i := range orig {
				if lines[i] != orig[i] {
					t.Errorf("seq %d after the repair differs from the record first written", i+1)
				}
			}
			if !strings.Contains(lines[3], `"who":"pingate","action":"repair"`) || !strings.Contains(lines[3], "cut back") || !strings.Contains(lines[4], `"key_id":"zpk-9"`) {
				t.Errorf("seq 4, 5 = %s, %s; want the repair record, then zpk-9", lines[3], lines[4])
			}
		})
	}
}

func readLogLines(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
}

// forgeRecord appends to the log at path a record that chains onto its last
// one with a correctly recomputed SHA-256 hash, as anyone who can write the
// file could; mac is its MAC field (empty, or a guess).
func forgeRecord(t *testing.T, path, mac string) {
	t.Helper()
	lines := readLogLines(t, path)
	var last keystore.CustodyRecord
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	rec := keystore.CustodyRecord{Seq: last.Seq + 1, Time: last.Time.Add(time.Minute), Who: "mallory", Action: keystore.ActionGenerate,
		KeyID: "zpk-evil", Usage: pinblock.UsageZPK, Version: 1, KCV: "0A1B2C", Why: "nothing to see", Under: "lmk", PrevHash: last.Hash}
	b, _ := json.Marshal(rec)
	sum := sha256.Sum256(b)
	rec.Hash, rec.MAC = hex.EncodeToString(sum[:]), mac
	line, _ := json.Marshal(rec)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(line, '\n'))
	f.Close()
}

// TestKeyCustodyChainIsKeyed (issue 13 item 12): a record appended with a
// recomputed SHA-256 chain hash passes the chain-only check (key log verify
// without --store, as documented) but not the keyed one: key log verify
// --store names it, no key command chains onto it, the gateway does not
// start on it.
func TestKeyCustodyChainIsKeyed(t *testing.T) {
	tests := []struct {
		name, mac, want string
	}{
		{"no MAC", "", "seq 4: record has no MAC"},
		{"a guessed MAC", strings.Repeat("ab", 32), "seq 4: MAC does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setupCeremony(t)
			forgeRecord(t, e.log, tt.mac)
			forged, _ := os.ReadFile(e.log)
			if got := keyLastLine(mustRunKey(t, "log", "verify", "--log", e.log)); got != "ok 4 records" {
				t.Errorf("key log verify (chain only) = %q, want ok 4 records: the chain alone cannot tell", got)
			}
			out, errOut, code := runKeyCLI(t, append([]string{"log", "verify"}, e.flags(false)...)...)
			if code != 1 || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("key log verify --store = %q, %q, exit %d; want exit 1, %q", out, errOut, code, tt.want)
			}
			if _, errOut, code := runKeyCLI(t, append([]string{"generate", "--id", "zpk-9", "--usage", "ZPK"}, e.flags(true)...)...); code != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("key generate after a forged record = %q, exit %d; want exit 1, %q", errOut, code, tt.want)
			}
			if raw, _ := os.ReadFile(e.log); !bytes.Equal(raw, forged) {
				t.Error("a key command chained onto the forged record")
			}
			if _, err := keyGatewayStart(t, e, e.store); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("startGateway on a forged custody log: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestKeyCustodyLogMigrate: a log an older pingate wrote (records without a
// MAC) is refused until key log migrate checks it against the store's head
// and appends the first keyed record; then it works, and an unkeyed record
// appended afterwards is caught.
func TestKeyCustodyLogMigrate(t *testing.T) {
	e := setupCeremony(t)
	var legacy []string
	for _, l := range readLogLines(t, e.log) {
		var rec keystore.CustodyRecord
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.MAC == "" {
			t.Fatalf("record without a MAC from this pingate: %s (%v)", l, err)
		}
		rec.MAC = ""
		b, _ := json.Marshal(rec)
		legacy = append(legacy, string(b))
	}
	os.WriteFile(e.log, []byte(strings.Join(legacy, "\n")+"\n"), 0o640)
	if got := keyLastLine(mustRunKey(t, "log", "verify", "--log", e.log)); got != "ok 3 records" {
		t.Fatalf("key log verify of the unkeyed log = %q, want ok 3 records", got)
	}
	if _, errOut, code := runKeyCLI(t, append([]string{"list"}, e.flags(false)...)...); code != 1 || !strings.Contains(errOut, "key log migrate") {
		t.Errorf("key list on an unkeyed log = %q, exit %d; want exit 1 naming key log migrate", errOut, code)
	}
	if got := keyLastLine(mustRunKey(t, append([]string{"log", "migrate"}, e.flags(true)...)...)); got != "custody log keyed: ok 4 records" {
		t.Errorf("key log migrate = %q", got)
	}
	if _, errOut, code := runKeyCLI(t, append([]string{"log", "migrate"}, e.flags(true)...)...); code != 1 || !strings.Contains(errOut, "already keyed") {
		t.Errorf("second key log migrate = %q, exit %d; want exit 1, already keyed", errOut, code)
	}
	lines := readLogLines(t, e.log)
	if !strings.Contains(lines[3], `"action":"migrate"`) || !strings.Contains(lines[3], "records 1 to 3 were written without a MAC") || !strings.Contains(lines[3], `"mac":"`) {
		t.Errorf("seq 4 = %s, want a keyed migrate record", lines[3])
	}
	if got := e.do(t, "generate", "--id", "zpk-9", "--usage", "ZPK"); !strings.HasPrefix(got, "zpk-9 ZPK v1 ") {
		t.Errorf("key generate after migration = %q", got)
	}
	forgeRecord(t, e.log, "")
	if _, errOut, code := runKeyCLI(t, append([]string{"log", "verify"}, e.flags(false)...)...); code != 1 || !strings.Contains(errOut, "seq 6: record has no MAC") {
		t.Errorf("key log verify --store after a forged unkeyed record = %q, exit %d", errOut, code)
	}
}

// TestKeyRotateRefusesAKeyItHolds: a rotation that brings back a version of
// the key, or the ZMK it came under, is refused: exit 1, the check value
// named, the store and the custody log unchanged. (Keys from ASC X9
// TR-31:2018 A.7.2.1 and A.7.2.2, as setupCeremony's.)
func TestKeyRotateRefusesAKeyItHolds(t *testing.T) {
	e := setupCeremony(t)
	enc := tdesECB(t, tr31KBPKB, tr31KeyA)
	e.do(t, "import", "--id", "tpk-1", "--usage", "TPK", "--alg", "tdes", "--under", "zmk-1", "--key", secretFile(t, enc), "--kcv", tr31KCVA)
	store, log := mustRead(t, e.store), mustRead(t, e.log)
	for _, tt := range []struct {
		name, key, kcv, want string
	}{
		{"its own current version", tr31KeyA, tr31KCVA, "the check value of version 1 (" + tr31KCVA + ")"},
		{"the ZMK it came under", tr31KBPKB, keyLastLine(mustRunKey(t, "kcv", "--key", secretFile(t, tr31KBPKB))), "the check value of zmk-1 v1"},
	} {
		args := append([]string{"rotate", "--id", "tpk-1", "--under", "zmk-1", "--key", secretFile(t, tdesECB(t, tr31KBPKB, tt.key)), "--kcv", tt.kcv}, e.flags(true)...)
		_, errOut, code := runKeyCLI(t, args...)
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("key rotate to %s: exit %d, %q; want 1 naming %q", tt.name, code, errOut, tt.want)
		}
		if strings.Contains(strings.ToUpper(errOut), tt.key) {
			t.Errorf("key rotate to %s: the refusal repeats the key", tt.name)
		}
		if mustRead(t, e.store) != store || mustRead(t, e.log) != log {
			t.Errorf("key rotate to %s: the store or the custody log changed", tt.name)
		}
	}
}
