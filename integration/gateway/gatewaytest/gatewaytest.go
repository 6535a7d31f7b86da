// Package gatewaytest starts pingate gateways in-process for tests, the way
// nats-server's test.RunServer does: every listener on a free loopback port
// (127.0.0.1:0), state in the test's temporary directory, stopped in
// t.Cleanup.
package gatewaytest

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/routing"
)

// Option changes how Start starts a gateway.
type Option func(*options)

type options struct {
	log *slog.Logger
	dir string
}

// WithLogger has the gateway log to log (default: discarded).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// WithDir keeps the journal and reversal store in dir instead of a fresh
// temporary directory: a second gateway started on the same dir after the
// first stopped finds what it left (a restart).
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// Config is the configuration Start runs before mutate: the embedded
// development default (gateway.EmbeddedConfig) with instance "test", every
// listener (acquirer, HTTP, admin, branch API, issuer simulator) on
// 127.0.0.1:0, and the journal, reversal store, development certificates
// and mailer spool under dir.
func Config(dir string) gateway.Config {
	cfg := gateway.EmbeddedConfig()
	cfg.Instance = "test"
	cfg.Acquirer.Addr, cfg.HTTP.Addr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Branch.Addr = "127.0.0.1:0"
	cfg.Events.JournalDir, cfg.Reversals.Dir = filepath.Join(dir, "journal"), filepath.Join(dir, "reversals")
	return cfg
}

// Start builds and runs a gateway on Config, changed by mutate (may be nil),
// and shuts it down in t.Cleanup, failing the test when it does not stop
// cleanly or a listener failed while it ran. A start-up error fails the test
// at once; use New to test one.
func Start(t testing.TB, mutate func(*gateway.Config), opts ...Option) *gateway.Gateway {
	t.Helper()
	g, err := New(t, mutate, opts...)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	return g
}

// New is Start that returns the start-up error instead of failing the test.
func New(t testing.TB, mutate func(*gateway.Config), opts ...Option) (*gateway.Gateway, error) {
	t.Helper()
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	cfg := Config(o.dir)
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := gateway.New(context.Background(), cfg, o.log)
	if err != nil {
		return nil, err
	}
	ran := make(chan error, 1)
	go func() { ran <- g.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("gateway Shutdown: %v", err)
		}
		if err := <-ran; err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	})
	return g, nil
}

// StartIssuer runs an issuer simulator outside any gateway, on a loopback
// port of its own, until the test ends: the issuer host of a gateway whose
// issuer_sim is off, which the test can stop, slow down or audit. c's zone
// and verification keys default to the development ones (the keys the
// embedded default's ssbank issuer is configured with).
func StartIssuer(t testing.TB, c issuersim.Config) (*issuersim.Sim, string) {
	t.Helper()
	zpk, pvk, err := issuersim.DevelopmentKeys()
	if err != nil {
		t.Fatal(err)
	}
	c.ZPK, c.PVK = zpk, pvk
	sim, err := issuersim.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return sim, ServeIssuer(t, sim)
}

// ServeIssuer serves sim on a loopback port of its own until the test ends
// and returns the port's address: for a simulator built with keys or a
// dialect of the test's own.
func ServeIssuer(t testing.TB, sim *issuersim.Sim) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = sim.Server().Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Server().Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// ExternalIssuer points the configuration at one issuer host, addr (a
// simulator from StartIssuer): the in-process simulator is off, and the
// embedded default's ssbank issuer, the only one left, takes every route.
func ExternalIssuer(addr string) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.IssuerSim = nil
		var iss []routing.IssuerConfig
		for _, is := range c.Routing.Issuers {
			if is.ID == gateway.DevIssuer {
				is.Hosts = []string{addr}
				iss = append(iss, is)
			}
		}
		c.Routing.Issuers = iss
		var routes []routing.Route
		for _, r := range c.Routing.Routes {
			if r.Issuer == gateway.DevIssuer {
				routes = append(routes, r)
			}
		}
		c.Routing.Routes = routes
	}
}
