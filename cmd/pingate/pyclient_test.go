package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPyISO8583Client runs scripts/pyiso8583_client.py, an acquirer client
// built on pyiso8583 and psec from docs/iso8583-acquirer.md alone, against a
// gateway on the embedded default: the document's golden messages, its
// development cards and keys, its refusal codes. scripts/test-deps.sh
// installs the libraries; without python3 or them the test skips, and fails
// under CI=true.
func TestPyISO8583Client(t *testing.T) {
	py := needPyISO8583(t)
	g := opsGateway(t, nil)
	script, _ := filepath.Abs("../../scripts/pyiso8583_client.py")
	doc, _ := filepath.Abs(acqDocPath)
	runPyScript(t, "pyiso8583 client", py, script, "--addr", g.AcquirerAddr(), "--doc", doc)
}

// runPyScript runs py with args in a temporary directory and logs its
// output as name's; a non-zero exit status fails the test with the output.
func runPyScript(t *testing.T, name, py string, args ...string) {
	t.Helper()
	cmd := exec.Command(py, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	t.Logf("%s:\n%s", name, out)
}

// needPyISO8583 returns the path of a python3 that imports pyiso8583, psec
// and cryptography. Without one the test skips, and fails under CI=true.
func needPyISO8583(t *testing.T) string {
	t.Helper()
	return needPython(t, "import iso8583.encoder, psec, cryptography", "pyiso8583 and psec")
}

// needPython returns the path of a python3 that runs imports (a Python
// statement), which needs what. Without one the test skips, and fails under
// CI=true.
func needPython(t *testing.T, imports, what string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err == nil {
		probe := exec.Command(py, "-c", imports)
		probe.Dir = "/" // not the repo: its iso8583/ directory would shadow the library
		if out, perr := probe.CombinedOutput(); perr != nil {
			err = perr
			t.Logf("python libraries: %s", strings.TrimSpace(string(out)))
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 with %s is needed (scripts/test-deps.sh installs them): %v", what, err)
		}
		t.Skipf("python3 with %s not available (scripts/test-deps.sh installs them): %v", what, err)
	}
	return py
}
