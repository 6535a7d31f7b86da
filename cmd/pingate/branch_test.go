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
	"time"

	"pingate/integration/branchapi"
)

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
	for _, id := range branchapi.DevIdentities(devBranchAcquirer) {
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

func TestBranchAPIConfig(t *testing.T) {
	base := t.TempDir()
	cfg := embeddedConfig()
	cfg.Events.JournalDir = filepath.Join(base, "journal")
	if !cfg.branchEnabled() {
		t.Fatal("the embedded default does not enable the branch API")
	}
	api, certDir, spool, err := cfg.branchAPIConfig(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if api.Addr != DefaultBranchAddr || certDir != filepath.Join(base, "dev-certs") || spool != filepath.Join(base, "mailers") {
		t.Errorf("embedded branch config = %s, %s, %s; want %s and dev-certs and mailers beside the journal", api.Addr, certDir, spool, DefaultBranchAddr)
	}
	if err := api.WithDefaults().Validate(); err != nil {
		t.Errorf("embedded branch config does not validate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(certDir, branchapi.DevServerKeyFile)); err != nil {
		t.Errorf("development certificates not made: %v", err)
	}
	cfg.Acquirer.Addr = "127.0.0.1:0"
	if api, _, _, _ := cfg.branchAPIConfig(time.Now()); api.Addr != "127.0.0.1:0" {
		t.Errorf("ephemeral setup branch addr = %s, want 127.0.0.1:0", api.Addr)
	}

	prod := cfg
	prod.Production, prod.Security.DevKeys = true, false
	if prod.branchEnabled() {
		t.Errorf("a production config enables the branch API without asking")
	}
	on := true
	prod.Branch.Enabled = &on
	if _, _, _, err := prod.branchAPIConfig(time.Now()); err == nil {
		t.Errorf("production without branch.tls files: no error, want one")
	}
}
