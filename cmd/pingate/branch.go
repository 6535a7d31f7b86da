package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"pingate/integration/branchapi"
	"pingate/pinblock"
)

// BranchConfig is the branch and self-service HTTPS channel (issue 8,
// docs/branch-api.md). The API's own settings are branchapi.Config's, inline.
type BranchConfig struct {
	// Enabled turns the branch API on or off. Unset, it is on in a
	// development setup (security.dev_keys without production: the embedded
	// default) and off otherwise.
	Enabled *bool `yaml:"enabled"`
	// DevCertDir: in a development setup with no tls files configured, the
	// development CA, server and client certificates are made here if absent
	// (default: dev-certs beside the journal directory, var/dev-certs).
	DevCertDir string `yaml:"dev_cert_dir"`
	// MailerSpool is the directory the software security module writes PIN
	// mailers to, one 0600 file each (default: mailers beside the journal
	// directory, var/mailers).
	MailerSpool      string `yaml:"mailer_spool"`
	branchapi.Config `yaml:",inline"`
}

// DefaultBranchAddr is the branch API's address in the embedded default.
const DefaultBranchAddr = "127.0.0.1:8443"

// branchRuntime is a running branch API (gateway.branch).
type branchRuntime struct {
	srv     *branchapi.Server
	addr    string
	certDir string // development certificates, "" when configured ones are used
	spool   string
}

// branchOf returns g's running branch API, if any.
func branchOf(g *gateway) (*branchRuntime, bool) {
	return g.branch, g.branch != nil
}

func (c Config) branchEnabled() bool {
	if c.Branch.Enabled != nil {
		return *c.Branch.Enabled
	}
	return c.Security.DevKeys && !c.Production
}

// branchAPIConfig resolves the branch API's configuration: defaults for the
// address, and in a development setup without configured certificates the
// development certificates (made if absent) and identities.
func (c Config) branchAPIConfig(now time.Time) (api branchapi.Config, certDir, spool string, err error) {
	bc := c.Branch
	api = bc.Config
	base := filepath.Dir(c.Events.JournalDir)
	if api.Addr == "" {
		api.Addr = DefaultBranchAddr
		if strings.HasSuffix(c.Acquirer.Addr, ":0") {
			// An ephemeral setup (demo, tests): no fixed port either.
			api.Addr = "127.0.0.1:0"
		}
	}
	spool = bc.MailerSpool
	if spool == "" {
		spool = filepath.Join(base, "mailers")
	}
	if api.TLS.CertFile != "" || api.TLS.KeyFile != "" || api.TLS.ClientCAFile != "" {
		return api, "", spool, nil
	}
	if !c.Security.DevKeys || c.Production {
		return api, "", "", errors.New("branch.tls: cert_file, key_file and client_ca_file are required outside a development setup")
	}
	certDir = bc.DevCertDir
	if certDir == "" {
		certDir = filepath.Join(base, "dev-certs")
	}
	if err := branchapi.EnsureDevCerts(certDir, devBranchAcquirer, now); err != nil {
		return api, "", "", fmt.Errorf("development certificates in %s: %w", certDir, err)
	}
	dev := branchapi.DevConfig(certDir, api.Addr, devBranchAcquirer)
	crl, serials := api.TLS.CRLFile, api.TLS.RevokedSerials
	api.TLS = dev.TLS
	api.TLS.CRLFile, api.TLS.RevokedSerials = crl, serials
	if len(api.Clients) == 0 {
		api.Clients = dev.Clients
	}
	if len(api.Institutions) == 0 {
		api.Institutions = dev.Institutions
	}
	return api, certDir, spool, nil
}

// startBranchAPI starts the branch HTTPS API over g.flow, if enabled: the
// security module prints PIN mailers into the spool, and the API listens on
// its address until stopBranchAPI.
func (g *gateway) startBranchAPI(ctx context.Context) error {
	if !g.cfg.branchEnabled() {
		return nil
	}
	api, certDir, spool, err := g.cfg.branchAPIConfig(time.Now())
	if err != nil {
		return err
	}
	printer, err := pinblock.NewSpoolPrinter(spool)
	if err != nil {
		return err
	}
	g.hsm.SetMailerPrinter(printer)
	srv, err := branchapi.New(api, g.flow, g.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", api.Addr)
	if err != nil {
		return fmt.Errorf("branch api listener: %w", err)
	}
	rt := &branchRuntime{srv: srv, addr: ln.Addr().String(), certDir: certDir, spool: spool}
	g.branch = rt
	g.serve("branch api", func() error { return srv.Serve(ln) })
	attrs := []any{"addr", rt.addr, "mailer_spool", spool}
	if certDir != "" {
		attrs = append(attrs, "dev_certs", certDir)
		g.log.Warn("branch api on development certificates: for development and test only", "dir", certDir)
	}
	g.log.Info("branch api listening", attrs...)
	return nil
}

// stopBranchAPI drains and stops the branch API: requests in flight run to
// their recorded outcome within ctx.
func (g *gateway) stopBranchAPI(ctx context.Context) error {
	rt := g.branch
	if rt == nil {
		return nil
	}
	g.branch = nil
	return rt.srv.Shutdown(ctx)
}
