package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pingate/integration/branchapi"
	"pingate/integration/gateway"
)

// TestDevCertsCommand: dev-certs writes a CA, a server certificate for the
// loopback addresses and one client certificate per development identity.
func TestDevCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"dev-certs", dir}, &out, &errOut); code != 0 {
		t.Fatalf("dev-certs = %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if lines[len(lines)-1] != dir {
		t.Errorf("last line %q, want the directory", lines[len(lines)-1])
	}
	ca := readPEMCert(t, filepath.Join(dir, branchapi.DevCAFile))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, id := range branchapi.DevIdentities(gateway.DevBranchAcquirer) {
		c := readPEMCert(t, filepath.Join(dir, id.File+".pem"))
		if c.Subject.String() != id.Client.Subject {
			t.Errorf("%s subject %q, want %q", id.File, c.Subject.String(), id.Client.Subject)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s does not verify as a client certificate of the CA: %v", id.File, err)
		}
		st, err := os.Stat(filepath.Join(dir, id.File+"-key.pem"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s key file mode %v (%v), want 0600", id.File, st.Mode().Perm(), err)
		}
	}
	srv := readPEMCert(t, filepath.Join(dir, branchapi.DevServerCertFile))
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("server certificate does not verify for 127.0.0.1: %v", err)
	}
	if code := run(context.Background(), []string{"dev-certs"}, &out, &errOut); code != 2 {
		t.Errorf("dev-certs without DIR = %d, want 2", code)
	}
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
