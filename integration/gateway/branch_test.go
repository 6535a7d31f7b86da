package gateway

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"pingate/integration/branchapi"
)

func TestBranchAPIConfig(t *testing.T) {
	base := t.TempDir()
	cfg := EmbeddedConfig()
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
