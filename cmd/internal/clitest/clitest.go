// Package clitest runs pingate's binaries in tests, through their real entry
// point: build once per test run, exec, and check that every command
// answers --help (the contract of package cli).
package clitest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pingate/cmd/internal/cli"
	"pingate/pinblock"
)

var built struct {
	sync.Mutex
	paths map[string]string
}

// Build builds the main package pkg ("pingate/cmd/pingate-dev") once per test
// run into a temporary directory and returns the binary's path.
func Build(t *testing.T, pkg string) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if p, ok := built.paths[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "pingate-bin-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", p, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	if built.paths == nil {
		built.paths = map[string]string{}
	}
	built.paths[pkg] = p
	return p
}

// Exec runs bin with args (stdin empty) and returns its stdout, stderr and
// exit status.
func Exec(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
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

// CheckHelp checks, through the binary bin of app, that every command and
// sub-command answers -h, --help and "NAME help CMD" with exit 0, no stderr,
// its usage line, every flag it takes and an example of itself; that every
// command group and the top level answer too; and that NAME alone prints the
// help with exit 2. The top-level commands named in pending are not checked
// (not yet moved onto declared flags).
func CheckHelp(t *testing.T, bin string, app cli.App, pending ...string) {
	t.Helper()
	cmds := cli.Commands(app)
	if len(cmds) == 0 {
		t.Fatalf("cli.Commands(%s) is empty", app.Name)
	}
	groups := map[string][]string{}
	skip := map[string]bool{}
	for _, p := range pending {
		skip[p] = true
	}
	for _, c := range cmds {
		if skip[c.Path[0]] {
			continue
		}
		for i := 1; i < len(c.Path); i++ {
			groups[strings.Join(c.Path[:i], " ")] = c.Path[:i]
		}
		if c.Passthrough {
			t.Errorf("%s %s: its flags are not declared (arguments passed through)", app.Name, strings.Join(c.Path, " "))
			continue
		}
		name := strings.Join(c.Path, " ")
		for _, form := range [][]string{
			append(append([]string{}, c.Path...), "--help"),
			append(append([]string{}, c.Path...), "-h"),
			append([]string{"help"}, c.Path...),
		} {
			line := app.Name + " " + strings.Join(form, " ")
			out, errOut, code := Exec(t, bin, form...)
			if code != 0 || errOut != "" {
				t.Errorf("%s = exit %d, stderr %q; want exit 0 and no stderr", line, code, errOut)
				continue
			}
			if !strings.Contains(out, "Usage: "+app.Name+" "+name) {
				t.Errorf("%s: no line %q in\n%s", line, "Usage: "+app.Name+" "+name, out)
			}
			if !strings.Contains(out, "Example:\n") || !strings.Contains(out, "    "+app.Name+" "+name) {
				t.Errorf("%s: no example of %s %s in\n%s", line, app.Name, name, out)
			}
			for _, f := range c.Flags {
				if !strings.Contains(out, f+"=") && !strings.Contains(out, f+" ") && !strings.Contains(out, f+"\n") {
					t.Errorf("%s: flag %s not described in\n%s", line, f, out)
				}
			}
		}
	}
	forms := [][]string{{"--help"}, {"-h"}, {"help"}}
	for _, g := range groups {
		forms = append(forms, append(append([]string{}, g...), "--help"), append([]string{"help"}, g...))
	}
	for _, form := range forms {
		if out, errOut, code := Exec(t, bin, form...); code != 0 || errOut != "" || !strings.Contains(out, "Usage: "+app.Name) {
			t.Errorf("%s %s = exit %d, %q, %q; want exit 0 and the usage", app.Name, strings.Join(form, " "), code, out, errOut)
		}
	}
	if out, _, code := Exec(t, bin); code != 2 || !strings.Contains(out, "Usage: "+app.Name) {
		t.Errorf("%s alone: exit %d, want 2 with the help (a usage error)", app.Name, code)
	}
}

// TDESKCV is the KCV of a TDES key in hex, through pinblock (itself checked
// against published KCVs and psec).
func TDESKCV(t *testing.T, keyHex string) string {
	t.Helper()
	k, err := pinblock.ParseHexKey("kcv", pinblock.UsageZMK, pinblock.TDES, 1, keyHex)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Zeroize()
	return k.KCV()
}

// SecretFile writes value to a new mode-0600 file and returns "@FILE", the
// way a key ceremony hands a secret to a secret flag.
func SecretFile(t *testing.T, value string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "secret-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(value + "\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return "@" + f.Name()
}

// RandHex is n random bytes in upper-case hex.
func RandHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

// MakeBuildLine returns the first recipe line of the Makefile's build target
// (the production binary's build line, which deploy/Dockerfile repeats) in the
// repository at root.
func MakeBuildLine(t *testing.T, root string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "build:") && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t") {
			return strings.TrimSpace(lines[i+1])
		}
	}
	t.Fatal("Makefile: no build target")
	return ""
}
