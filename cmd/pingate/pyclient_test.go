package main

import (
	"bytes"
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

// runPyScript runs py with args in a temporary directory, logs its output
// as name's and returns its standard output; a non-zero exit status fails
// the test with the output.
func runPyScript(t *testing.T, name, py string, args ...string) []byte {
	t.Helper()
	stdout, stderr, err := pyScript(t, py, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", name, err, stdout, stderr)
	}
	t.Logf("%s:\n%s%s", name, stdout, stderr)
	return stdout
}

// pyScript runs py with args in a temporary directory and returns its
// standard output, its standard error and how it exited.
func pyScript(t *testing.T, py string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	cmd := exec.Command(py, args...)
	cmd.Dir = t.TempDir()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
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
