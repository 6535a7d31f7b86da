package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"pingate/cmd/internal/cli"
)

// execPingate runs the built binary and returns its stdout, stderr and exit
// status.
func execPingate(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return o.String(), e.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// TestEveryCommandAnswersHelp: through the built binary, every command and
// sub-command answers -h, --help and "pingate help CMD" with exit 0, its
// usage line, every flag it takes and an example.
func TestEveryCommandAnswersHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := opsBinary(t)
	cmds := cli.Commands(app)
	if len(cmds) < 20 {
		t.Fatalf("cli.Commands(app) = %d commands, want the whole tree", len(cmds))
	}
	for _, c := range cmds {
		if c.Passthrough {
			continue // not yet on kong: flags parsed by the command itself
		}
		name := strings.Join(c.Path, " ")
		for _, form := range [][]string{
			append(append([]string{}, c.Path...), "--help"),
			append(append([]string{}, c.Path...), "-h"),
			append([]string{"help"}, c.Path...),
		} {
			out, errOut, code := execPingate(t, bin, form...)
			if code != 0 || errOut != "" {
				t.Errorf("pingate %s = exit %d, stderr %q; want exit 0 and no stderr", strings.Join(form, " "), code, errOut)
				continue
			}
			if !strings.Contains(out, "Usage: pingate "+name) {
				t.Errorf("pingate %s: no line %q in\n%s", strings.Join(form, " "), "Usage: pingate "+name, out)
			}
			if !strings.Contains(out, "Example:\n") || !strings.Contains(out, "    pingate "+name) {
				t.Errorf("pingate %s: no example of pingate %s in\n%s", strings.Join(form, " "), name, out)
			}
			for _, f := range c.Flags {
				if !strings.Contains(out, f+"=") && !strings.Contains(out, f+" ") && !strings.Contains(out, f+"\n") {
					t.Errorf("pingate %s: flag %s not described in\n%s", strings.Join(form, " "), f, out)
				}
			}
		}
	}
	// The top level and every command group answer too.
	for _, form := range [][]string{{"--help"}, {"-h"}, {"help"}, {"key", "--help"}, {"key", "log", "-h"}, {"help", "pin"}} {
		if out, errOut, code := execPingate(t, bin, form...); code != 0 || errOut != "" || !strings.Contains(out, "Usage: pingate") {
			t.Errorf("pingate %s = exit %d, %q, %q; want exit 0 and the usage", strings.Join(form, " "), code, out, errOut)
		}
	}
	if _, _, code := execPingate(t, bin); code != 2 {
		t.Errorf("pingate alone: exit %d, want 2 (the help, on a usage error)", code)
	}
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
		{give: []string{"pin", "encode", "--fromat", "0"}, want: []string{"--fromat", `"--format"`}},
		{give: []string{"key", "lsit"}, want: []string{"lsit", `"list"`}},
		{give: []string{"kye", "list"}, want: []string{"kye", `"key"`}},
	}
	for _, tt := range tests {
		out, errOut, code := execPingate(t, bin, tt.give...)
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
		{"pin", "encode", "--format", "0", "--pin", pin, "--pan", pan, "--key", key, "--kye", key},
		{"pin", "decode", "--format", "0", "--pan", pan, "--key", key, "--block", key, pin},
		{"pin", "encode", "--format", "0", "--pin", pin, "--pin"},
		{key},
	}
	for _, give := range tests {
		out, errOut, code := execPingate(t, bin, give...)
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
