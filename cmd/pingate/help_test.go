package main

import (
	"strings"
	"testing"

	"pingate/cmd/internal/clitest"
)

// TestEveryCommandAnswersHelp: through the built binary, every command and
// sub-command answers -h, --help and "pingate help CMD" with exit 0, its
// usage line, every flag it takes and an example (clitest.CheckHelp).
func TestEveryCommandAnswersHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	clitest.CheckHelp(t, opsBinary(t), app)
}

// TestMisspeltFlagIsNamed: a misspelt flag is named with the flag it
// resembles, exit 2, on one line; a misspelt command word is named too.
func TestMisspeltFlagIsNamed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := opsBinary(t)
	tests := []struct {
		give []string
		want []string
	}{
		{give: []string{"key", "kcv", "--alh", "aes"}, want: []string{"--alh", `"--alg"`}},
		{give: []string{"events", "tail", "--jornal", "/tmp"}, want: []string{"--jornal", `"--journal"`}},
		{give: []string{"key", "lsit"}, want: []string{"lsit", `"list"`}},
		{give: []string{"kye", "list"}, want: []string{"kye", `"key"`}},
	}
	for _, tt := range tests {
		out, errOut, code := clitest.Exec(t, bin, tt.give...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("pingate %s = exit %d, %q, %q; want exit 2 and one stderr line", strings.Join(tt.give, " "), code, out, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("pingate %s: stderr %q does not name %s", strings.Join(tt.give, " "), errOut, w)
			}
		}
	}
}

// TestBadFlagNeverEchoesSecret: whatever is wrong with a command line, the
// error line never repeats a value given: a PIN, a PAN or a key in a flag
// kong could not take, in a misspelt flag, or as a stray argument.
func TestBadFlagNeverEchoesSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := opsBinary(t)
	const (
		key = "0123456789ABCDEFFEDCBA9876543210"
		pin = "739184"
		pan = "4111111111111111"
	)
	tests := [][]string{
		{"key", "kcv", "--key", key},
		{"key", "kcv", "--key=" + key},
		{"key", "kcv", "--kye=" + key},
		{"key", "generate", "--length", pin},
		{"key", "generate", "--length=" + key},
		{"key", "list", "--json=" + pin},
		{"key", "list", pan},
		{"key", key},
		{"key", "import", "--id", "k", "--key", "@/dev/null", "--kcv", pin, "--kye", key},
		{"events", "tail", "-n", pin + "x"},
		{"records", "run", "--batch=" + pan},
		{key},
	}
	for _, give := range tests {
		out, errOut, code := clitest.Exec(t, bin, give...)
		if code != 2 {
			t.Errorf("pingate %s: exit %d, want 2", give[0], code)
		}
		for _, secret := range []string{key, pin, pan} {
			if strings.Contains(out+errOut, secret) || strings.Contains(out+errOut, secret[:6]) {
				t.Errorf("pingate %s …: output repeats a value given (%d bytes of stderr)", give[0], len(errOut))
			}
		}
	}
}

// TestNoPINToolsInProduction: the tools that reveal a PIN or take clear keys
// and the simulators are not in the production binary (they are in
// pingate-dev: docs/operations.md, "Two binaries").
func TestNoPINToolsInProduction(t *testing.T) {
	for _, name := range []string{"pin", "hsm-sim", "dev-certs"} {
		if commandExists(name) {
			t.Errorf("pingate has the command %s; it belongs in pingate-dev", name)
		}
	}
}
