package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/integration/branchapi"
	"pingate/integration/redislimit"
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
	shared  *branchShared // nil: operations and idempotency records in memory
}

// branchShared is the Redis store the branch API shares with the other
// instances, and its client.
type branchShared struct {
	st  *branchapi.RedisStore
	rdb redis.UniversalClient
}

func (b *branchShared) close() {
	if b == nil {
		return
	}
	_ = b.st.Close()
	_ = b.rdb.Close()
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
	if err := branchapi.EnsureDevCerts(certDir, DevBranchAcquirer, now); err != nil {
		return api, "", "", fmt.Errorf("development certificates in %s: %w", certDir, err)
	}
	dev := branchapi.DevConfig(certDir, api.Addr, DevBranchAcquirer)
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
func (g *Gateway) startBranchAPI(ctx context.Context) error {
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
	shared, err := g.branchStore()
	if err != nil {
		return err
	}
	var st branchapi.Store
	if shared != nil {
		st = shared.st
	}
	srv, err := branchapi.NewWithStore(api, g.flow, g.log, st)
	if err != nil {
		shared.close()
		return err
	}
	ln, err := net.Listen("tcp", api.Addr)
	if err != nil {
		shared.close()
		return fmt.Errorf("branch api listener: %w", err)
	}
	rt := &branchRuntime{srv: srv, addr: ln.Addr().String(), certDir: certDir, spool: spool, shared: shared}
	g.branch = rt
	g.serve("branch api", ln, func(context.Context) error { return srv.Serve(ln) })
	attrs := []any{"addr", rt.addr, "mailer_spool", spool, "store", "memory"}
	if shared != nil {
		attrs[len(attrs)-1] = "redis"
	}
	if certDir != "" {
		attrs = append(attrs, "dev_certs", certDir)
		g.log.Warn("branch api on development certificates: for development and test only", "dir", certDir)
	}
	g.log.Info("branch api listening", attrs...)
	return nil
}

// stopBranchAPI drains and stops the branch API: requests in flight run to
// their recorded outcome within ctx.
func (g *Gateway) stopBranchAPI(ctx context.Context) error {
	rt := g.branch
	if rt == nil {
		return nil
	}
	g.branch = nil
	err := rt.srv.Shutdown(ctx)
	rt.shared.close()
	return err
}

// branchStore builds the Redis store of the branch API when the limiter
// runs on Redis (limits.backend redis): the same servers, credentials and
// timeouts as the limiter, so that every instance sees every operation,
// idempotency key and pending approval (docs/branch-api.md, "Several
// instances"). Otherwise it returns nil: the in-memory store. Request
// fingerprints are keyed by a key derived from the card token key, which
// every instance holds and Redis never sees.
func (g *Gateway) branchStore() (*branchShared, error) {
	if g.cfg.Limits.Backend != "redis" {
		return nil, nil
	}
	lc := g.cfg.Limits.Config.WithDefaults()
	secret, err := secretHex(g.cfg.Security.CardTokenKeyFile, g.cfg.Security.CardTokenKeyEnv, devTokenKey)
	if err != nil {
		return nil, fmt.Errorf("card token key: %w", err)
	}
	defer clear(secret)
	rdb, err := redislimit.NewClient(lc)
	if err != nil {
		return nil, err
	}
	st, err := branchapi.NewRedisStore(rdb, branchapi.RedisStoreConfig{
		Instance: g.cfg.Instance, KeyPrefix: lc.KeyPrefix, FingerprintSecret: secret, Logger: g.log,
	})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &branchShared{st: st, rdb: rdb}, nil
}
