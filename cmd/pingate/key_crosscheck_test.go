package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"pingate/cmd/internal/clitest"
)

// The components psec sees: each component's KCV and the KCV of their XOR
// after psec's own odd-parity adjustment.
const combineCrossScript = `
import sys, json, warnings
warnings.filterwarnings("ignore")
from psec import des
for line in sys.stdin:
    c = json.loads(line)
    parts = [bytes.fromhex(x) for x in c["components"]]
    key = bytes(len(parts[0]))
    for p in parts:
        key = bytes(a ^ b for a, b in zip(key, p))
    key = des.adjust_key_parity(key)
    print(json.dumps({"kcvs": [des.generate_kcv(p, 3).hex() for p in parts], "kcv": des.generate_kcv(key, 3).hex()}))
`

// TestKeyCombineAgainstPsec: random TDES components, their KCVs computed by
// psec, given to pingate key combine through @FILE: the combined key's KCV
// is psec's, and pingate's own KCV of each component is psec's.
func TestKeyCombineAgainstPsec(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import psec").Run()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 with psec is required under CI (scripts/test-deps.sh installs it)")
		}
		t.Skip("python3 with psec not available; run scripts/test-deps.sh")
	}
	type cse struct {
		Components []string `json:"components"`
	}
	var cases []cse
	var in bytes.Buffer
	for i := 0; i < 6; i++ {
		n, length := 2+i%2, []int{16, 24}[(i/2)%2]
		var c cse
		for j := 0; j < n; j++ {
			c.Components = append(c.Components, clitest.RandHex(t, length))
		}
		cases = append(cases, c)
		line, _ := json.Marshal(c)
		in.Write(append(line, '\n'))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", combineCrossScript)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python side failed: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("python returned %d results for %d cases", len(lines), len(cases))
	}
	e := newKeyEnv(t)
	for i, c := range cases {
		var r struct {
			KCVs []string `json:"kcvs"`
			KCV  string   `json:"kcv"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatal(err)
		}
		args := []string{"--id", fmt.Sprintf("zmk-%d", i), "--alg", "tdes"}
		for j, comp := range c.Components {
			if got := runLast(t, "key", "kcv", "--key", secretFile(t, comp)); !strings.EqualFold(got, r.KCVs[j]) {
				t.Errorf("case %d: `key kcv` of component %d = %s, psec %s", i, j+1, got, strings.ToUpper(r.KCVs[j]))
			}
			args = append(args, "--component", secretFile(t, comp), "--kcv", strings.ToUpper(r.KCVs[j]))
		}
		want := fmt.Sprintf("zmk-%d ZMK v1 %s", i, strings.ToUpper(r.KCV))
		if got := e.do(t, "combine", args...); got != want {
			t.Errorf("case %d (%d components of %d bytes): key combine = %q, psec's combined KCV gives %q", i, len(c.Components), len(c.Components[0])/2, got, want)
		}
	}
}

// runLast runs one pingate command in-process and returns its last stdout line.
func runLast(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("pingate %s %s: exit %d: %s", args[0], args[1], code, strings.TrimSpace(errOut.String()))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1]
}
