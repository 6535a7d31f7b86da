package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/iso8583"
)

// runSimInProcess runs `pingate-dev issuer-sim ARGS` in-process until the
// returned stop is called; it returns the printed address and stop, which
// reports the command's exit code.
func runSimInProcess(t *testing.T, args ...string) (addr string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, append([]string{"issuer-sim"}, args...), pw, &stderr)
		pw.Close()
	}()
	line := make(chan string, 1)
	go func() {
		b := make([]byte, 256)
		n, _ := pr.Read(b)
		line <- strings.TrimSpace(string(b[:n]))
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case addr = <-line:
	case c := <-code:
		cancel()
		t.Fatalf("issuer-sim exited %d: %s", c, stderr.String())
	}
	var once bool
	var result int
	stop = func() int {
		if !once {
			once = true
			cancel()
			select {
			case result = <-code:
			case <-time.After(15 * time.Second):
				t.Fatal("issuer-sim did not stop within 15s of its context ending")
			}
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return addr, stop
}

// TestIssuerSimCommand: the standalone simulator prints its address, serves
// a gateway (approves, or fails and drops as told), and stops cleanly.
func TestIssuerSimCommand(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"approves", nil, iso8583.RCApproved},
		{"fail rate 1", []string{"--fail-rate", "1"}, iso8583.RCSystemMalfunction},
		{"drop rate 1", []string{"--drop-rate", "1"}, iso8583.RCIssuerUnavailable},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, stop := runSimInProcess(t, append([]string{"--addr", "127.0.0.1:0", "--latency", "10ms"}, tt.args...)...)
			if _, _, err := net.SplitHostPort(addr); err != nil {
				t.Fatalf("issuer-sim printed %q, want its address", addr)
			}
			g := startGateway(t, func(c *gateway.Config) {
				c.Instance = "issuersim-test"
				c.IssuerSim = nil // the standalone simulator is the issuer
				c.Routing.Issuers = append(c.Routing.Issuers[:0:0], c.Routing.Issuers...)
				c.Routing.Issuers[0].Hosts = []string{addr}
				c.Routing.Issuers[0].Timeout = 300 * time.Millisecond
			})
			code := changeDevCard(t, g, 600+i)
			if code != tt.want {
				t.Errorf("PIN change through issuer-sim %v = %s, want %s", tt.args, code, tt.want)
			}
			if c := stop(); c != 0 {
				t.Errorf("issuer-sim exited %d when its context ended, want 0", c)
			}
		})
	}
}

func TestIssuerSimCommandUsage(t *testing.T) {
	tests := []struct {
		give []string
		want string
	}{
		{[]string{"--fail-rate", "2"}, "fail_rate"},
		{[]string{"--drop-rate=-1"}, "drop_rate"},
		{[]string{"--drop-rate", "-1"}, "--drop-rate=VALUE"},
		{[]string{"--framing", "bcd9"}, "--framing"},
		{[]string{"--latency", "-1s"}, "--latency"},
		{[]string{"--per-bin", "0"}, "issuer-sim"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"issuer-sim", "--addr", "127.0.0.1:0"}, tt.give...), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("issuer-sim %q: exit %d %q, want 2 naming %q", tt.give, code, strings.TrimSpace(errb.String()), tt.want)
		}
		if out.Len() != 0 {
			t.Errorf("issuer-sim %q printed %q on a usage error", tt.give, out.String())
		}
	}
}

// changeDevCard changes the PIN of card i of the simulator's default
// population (the embedded default's) through g and returns DE 39.
func changeDevCard(t *testing.T, g *gateway.Gateway, i int) string {
	t.Helper()
	client, err := loadgen.Dial(context.Background(), g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc := gateway.EmbeddedConfig().WithDefaults().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	code, err := send(context.Background(), client, pinChange(pop, i, "4826"))
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// TestIssuerSimCommandDialect: with --dialect the standalone simulator
// speaks the dialect of a spec file — here the built-in issuer dialect with
// the MTI in ASCII — and serves a gateway whose issuer names that dialect;
// a bad spec file is a usage error naming the field.
func TestIssuerSimCommandDialect(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "iso8583", "dialects", "issuer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	variant := strings.Replace(string(b), "enc: pingate.BCD.n\n    prefix: BCD.Fixed", "enc: pingate.ASCII.n\n    prefix: ASCII.Fixed", 1)
	if variant == string(b) {
		t.Fatal("the variant did not apply")
	}
	spec := filepath.Join(t.TempDir(), "ascii-mti.yaml")
	if err := os.WriteFile(spec, []byte(variant), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, stop := runSimInProcess(t, "--addr", "127.0.0.1:0", "--dialect", spec)
	g := startGateway(t, func(c *gateway.Config) {
		c.Instance = "issuersim-dialect-test"
		c.IssuerSim = nil
		c.Dialects = map[string]string{"ascii-mti": spec}
		c.Routing.Issuers = append(c.Routing.Issuers[:0:0], c.Routing.Issuers...)
		c.Routing.Issuers[0].Hosts = []string{addr}
		c.Routing.Issuers[0].Dialect = "ascii-mti"
	})
	if code := changeDevCard(t, g, 640); code != iso8583.RCApproved {
		t.Errorf("PIN change through issuer-sim --dialect = %s, want 00", code)
	}
	if c := stop(); c != 0 {
		t.Errorf("issuer-sim exited %d, want 0", c)
	}

	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte(strings.Replace(variant, "enc: pingate.ASCII.an\n", "enc: nope\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"issuer-sim", "--addr", "127.0.0.1:0", "--dialect", broken}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "field 37") {
		t.Errorf("issuer-sim --dialect broken: exit %d %q, want 2 naming field 37", code, strings.TrimSpace(errb.String()))
	}
}
