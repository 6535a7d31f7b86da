package gateway_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
)

// newGateway builds a gateway on gatewaytest.Config without running it; the
// test owns its Shutdown.
func newGateway(t *testing.T) *gateway.Gateway {
	t.Helper()
	g, err := gateway.New(context.Background(), gatewaytest.Config(t.TempDir()), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return g
}

func shutdown(t *testing.T, g *gateway.Gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// dialable reports whether something accepts connections at addr.
func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestNewBindsEveryListener: after New every listener of the embedded
// default has its own loopback port (":0" chosen), and Shutdown without
// Run closes them all.
func TestNewBindsEveryListener(t *testing.T) {
	g := newGateway(t)
	br, ok := g.Branch()
	if !ok {
		t.Fatal("Branch() = off, want the embedded default's branch API")
	}
	addrs := map[string]string{"acquirer": g.AcquirerAddr(), "http": g.HTTPAddr(), "admin": g.AdminAddr(), "branch": br.Addr, "issuer sim": g.SimAddr()}
	seen := map[string]string{}
	for name, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("%s address = %q, want 127.0.0.1 and a chosen port", name, a)
		}
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s share %s", name, other, a)
		}
		seen[a] = name
	}
	shutdown(t, g)
	for name, a := range addrs {
		if dialable(a) {
			t.Errorf("%s listener %s still accepts after Shutdown without Run", name, a)
		}
	}
	if err := g.Run(context.Background()); !errors.Is(err, gateway.ErrClosed) {
		t.Errorf("Run after Shutdown = %v, want ErrClosed", err)
	}
}

// TestRunServesUntilShutdown: Run serves every listener, returns nil when
// Shutdown begins, and refuses a second call; after Shutdown nothing
// listens.
func TestRunServesUntilShutdown(t *testing.T) {
	g := newGateway(t)
	ran := make(chan error, 1)
	go func() { ran <- g.Run(context.Background()) }()
	waitStatus(t, "http://"+g.HTTPAddr()+"/healthz", http.StatusOK)
	waitStatus(t, "http://"+g.AdminAddr()+"/admin/keys", http.StatusOK)
	if !dialable(g.AcquirerAddr()) {
		t.Errorf("acquirer listener %s does not accept while running", g.AcquirerAddr())
	}
	if err := g.Run(context.Background()); err == nil {
		t.Error("second Run = nil, want an error")
	}
	shutdown(t, g)
	if err := <-ran; err != nil {
		t.Errorf("Run = %v after Shutdown, want nil", err)
	}
	for _, a := range []string{g.AcquirerAddr(), g.HTTPAddr(), g.AdminAddr()} {
		if dialable(a) {
			t.Errorf("%s still accepts after Shutdown", a)
		}
	}
}

// TestRunReturnsWhenContextEnds: Run returns nil when its context ends
// without draining; the listeners still serve until Shutdown.
func TestRunReturnsWhenContextEnds(t *testing.T) {
	g := newGateway(t)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	waitStatus(t, "http://"+g.HTTPAddr()+"/healthz", http.StatusOK)
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run = %v after its context ended, want nil", err)
	}
	waitStatus(t, "http://"+g.HTTPAddr()+"/healthz", http.StatusOK)
	shutdown(t, g)
}

// TestNewRefusesAnInvalidConfig: New validates, names the problem, and
// leaves nothing listening.
func TestNewRefusesAnInvalidConfig(t *testing.T) {
	cfg := gatewaytest.Config(t.TempDir())
	cfg.Acquirer.Framing = "ascii9"
	if _, err := gateway.New(context.Background(), cfg, nil); err == nil {
		t.Fatal("New(framing ascii9) = nil error, want one")
	}
	// A listener that cannot bind: New closes what it had bound already.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg = gatewaytest.Config(t.TempDir())
	cfg.Admin.Addr = held.Addr().String()
	cfg.Acquirer.Addr, cfg.HTTP.Addr = freeAddr(t), freeAddr(t)
	g, err := gateway.New(context.Background(), cfg, nil)
	if err == nil {
		shutdown(t, g)
		t.Fatal("New(admin address in use) = nil error, want one")
	}
	if g != nil {
		t.Error("New returned a gateway with its error")
	}
	for _, a := range []string{cfg.Acquirer.Addr, cfg.HTTP.Addr} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("after a failed New, %s is still bound: %v", a, err)
			continue
		}
		ln.Close()
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s did not answer %d within 10s (last: %v)", url, want, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
