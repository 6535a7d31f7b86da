package main

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"pingate/integration/branchapi"
	"pingate/integration/gateway"
)

// TestPyBranchClient runs scripts/branch_client.py, a branch teller system
// built from docs/branch-api.md, docs/openapi.yaml and docs/dev-keys.md alone
// (Python requests over mutual TLS, ISO 9564-1 format 4 PIN blocks with
// cryptography, cross-checked with psec), against a gateway on the embedded
// default with its branch API on: every documented flow and problem. The
// script reads the gateway's development certificates and PIN mailer spool
// from the directories the gateway made; the institution's approval window
// is short enough for the script to wait one out. scripts/test-deps.sh installs the
// libraries; without them the test skips, and fails under CI=true.
func TestPyBranchClient(t *testing.T) {
	py := needPyBranch(t)
	const window = 3 * time.Second // short enough for the script to wait out
	g := startTestGateway(t, func(c *gateway.Config) {
		c.Instance = "pybranch-test"
		inst := branchapi.DevConfig("", "", gateway.DevBranchAcquirer).Institutions
		for i := range inst {
			inst[i].ApprovalWindow = window
		}
		c.Branch.Institutions = inst
	})
	if err := waitReady(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	b, ok := g.Branch()
	if !ok || b.CertDir == "" {
		t.Fatalf("branch API = %+v, %v; want it on with development certificates", b, ok)
	}
	script, _ := filepath.Abs("../../scripts/branch_client.py")
	docs, _ := filepath.Abs("../../docs")
	runPyScript(t, "branch client", py, script, "--url", "https://"+b.Addr, "--certs", b.CertDir,
		"--spool", b.Spool, "--docs", docs, "--approval-window", strconv.Itoa(int(window/time.Second)))
}

// needPyBranch returns the path of a python3 that imports requests, psec and
// cryptography. Without one the test skips, and fails under CI=true.
func needPyBranch(t *testing.T) string {
	t.Helper()
	return needPython(t, "import requests, psec, cryptography", "requests, psec and cryptography")
}
