package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/routing"
)

// TestJPOSClient builds scripts/jpos, an ATM network client on jPOS built
// from docs/iso8583-acquirer.md and docs/dev-keys.md alone, and runs it
// against a gateway on the embedded default: the document's golden messages
// through its own packager and on the wire, PIN changes with ISO 9564 and SM4
// blocks it computes, key changes with TR-31 and SM4 key blocks it makes,
// reversals, unblocks and resets, limits, the documented refusals. The
// client exits non-zero naming each answer that differs from the document.
// It runs again over the ascii4 framing (jPOS's ASCIIChannel) with a short
// read timeout it checks, with require_sign_on for the ATM network (its
// sign-on scenario), and with a slow issuer (a retransmission and an 0420 of
// a request still in flight).
// scripts/test-deps.sh fetches the Maven dependencies, so that the build runs
// offline; without java or mvn the test skips, and fails under CI=true.
func TestJPOSClient(t *testing.T) {
	java, mvn := needJavaMaven(t)
	cp := buildJPOSClient(t, mvn)
	doc, _ := filepath.Abs(acqDocPath)
	tests := []struct {
		name   string
		mutate func(*gateway.Config)
		args   []string
	}{
		{name: "embedded default"},
		{
			name: "ascii4 framing, short read timeout",
			mutate: func(c *gateway.Config) {
				c.Acquirer.Framing = "ascii4"
				c.Acquirer.ReadTimeout = 500 * time.Millisecond
			},
			args: []string{"--framing", "ascii4", "--read-timeout-ms", "500"},
		},
		{
			name: "require_sign_on",
			mutate: func(c *gateway.Config) {
				acqs := append([]routing.AcquirerConfig(nil), c.Routing.Acquirers...)
				for i := range acqs {
					acqs[i].RequireSignOn = acqs[i].ID == gateway.DevATMAcquirer
				}
				c.Routing.Acquirers = acqs
			},
			args: []string{"--scenario", "sign-on-required"},
		},
		{
			name:   "slow issuer",
			mutate: func(c *gateway.Config) { c.IssuerSim.Latency = 300 * time.Millisecond },
			args:   []string{"--scenario", "in-flight"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := opsGateway(t, tt.mutate)
			args := append([]string{"-cp", cp, "atmclient.AcquirerClient", "--addr", g.AcquirerAddr(), "--doc", doc},
				tt.args...)
			runPyScript(t, "jPOS client", java, args...) // it runs any program: here java
		})
	}
}

// jposBuilt is the class path of the first successful build of scripts/jpos
// in this test run: the ATM client's and the issuer host's tests share it.
var jposBuilt struct {
	mu sync.Mutex
	cp string
}

// buildJPOSClient compiles scripts/jpos into a temporary directory, once
// per test run, and returns the class path that runs it. It builds offline
// (the dependencies scripts/test-deps.sh fetched); when they are not in the
// local repository it fetches them once, and without a reachable repository
// it skips (fails under CI=true). A compile error fails the test.
func buildJPOSClient(t *testing.T, mvn string) string {
	t.Helper()
	jposBuilt.mu.Lock()
	defer jposBuilt.mu.Unlock()
	if jposBuilt.cp != "" {
		return jposBuilt.cp
	}
	pom, _ := filepath.Abs(opsPath("scripts", "jpos", "pom.xml"))
	dir, err := os.MkdirTemp("", "pingate-jpos-")
	if err != nil {
		t.Fatal(err)
	}
	cpFile := filepath.Join(dir, "classpath.txt")
	build := func(offline bool) ([]byte, error) {
		args := []string{"-q", "-B", "-f", pom, "-Djposclient.build=" + dir,
			"compile", "dependency:build-classpath", "-Dmdep.outputFile=" + cpFile}
		if offline {
			args = append([]string{"-o"}, args...)
		}
		cmd := exec.Command(mvn, args...)
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	start := time.Now()
	out, err := build(true)
	if err != nil && mavenUnresolved(out) {
		t.Logf("Maven dependencies not in the local repository (scripts/test-deps.sh fetches them); fetching")
		out, err = build(false)
		if err != nil && mavenUnresolved(out) {
			if os.Getenv("CI") == "true" {
				t.Fatalf("Maven dependencies of scripts/jpos cannot be resolved (scripts/test-deps.sh fetches them):\n%s", out)
			}
			t.Skipf("Maven dependencies of scripts/jpos cannot be resolved (scripts/test-deps.sh fetches them):\n%s", out)
		}
	}
	if err != nil {
		t.Fatalf("mvn compile scripts/jpos: %v\n%s", err, out)
	}
	t.Logf("mvn compile scripts/jpos: %s", time.Since(start).Round(100*time.Millisecond))
	cp, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatal(err)
	}
	jposBuilt.cp = filepath.Join(dir, "classes") + string(os.PathListSeparator) + strings.TrimSpace(string(cp))
	return jposBuilt.cp
}

// mavenUnresolved reports whether Maven's output says that an artifact or
// plugin could not be resolved (offline, or no repository reachable), as
// opposed to a compile error.
func mavenUnresolved(out []byte) bool {
	for _, s := range []string{"offline mode", "Could not resolve", "could not be resolved", "Could not transfer"} {
		if bytes.Contains(out, []byte(s)) {
			return true
		}
	}
	return false
}

// needJavaMaven returns the paths of java and mvn, with a javac beside them
// (Maven compiles with the JDK; a runtime alone is not enough). Without them
// the test skips, and fails under CI=true.
func needJavaMaven(t *testing.T) (java, mvn string) {
	t.Helper()
	java, err := exec.LookPath("java")
	if err == nil {
		_, err = exec.LookPath("javac")
	}
	if err == nil {
		mvn, err = exec.LookPath("mvn")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("a JDK (17 or later) and mvn are needed (scripts/services.sh installs them): %v", err)
		}
		t.Skipf("a JDK (17 or later) and mvn not available (scripts/services.sh installs them): %v", err)
	}
	return java, mvn
}
