package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// exampleBankSpec is the example third dialect of docs/dialects.
var exampleBankSpec = filepath.Join("..", "..", "docs", "dialects", "example-bank.yaml")

// TestTwoIssuersTwoDialects: one gateway, two issuers in two dialects — the
// built-in issuer dialect (the in-process simulator) and example-bank,
// loaded from its spec file (an issuer simulator speaking that dialect) —
// routes an ATM PIN change to each, and each issuer answers.
func TestTwoIssuersTwoDialects(t *testing.T) {
	bank, err := iso8583.LoadDialect("example-bank", exampleBankSpec)
	if err != nil {
		t.Fatal(err)
	}
	// example-bank holds 8-byte PIN blocks only: it gets format 0 under a
	// TDES zone PIN key (the development ATM ZPK, shared for the test).
	zpk, err := devkeys.Key(devkeys.ATMZPK)
	if err != nil {
		t.Fatal(err)
	}
	_, pvk, err := issuersim.DevelopmentKeys()
	if err != nil {
		t.Fatal(err)
	}
	pop := issuersim.Population{Seed: 11, BINs: []string{"67676700"}, PerBIN: 50}
	sim, err := issuersim.New(issuersim.Config{Population: pop, ZPK: zpk, PVK: pvk, Dialect: bank})
	if err != nil {
		t.Fatal(err)
	}
	addr := gatewaytest.ServeIssuer(t, sim)

	g := startTestGateway(t, func(c *gateway.Config) {
		c.Dialects = map[string]string{"example-bank": exampleBankSpec}
		c.Routing.Issuers = append(c.Routing.Issuers, routing.IssuerConfig{ID: "example-bank", Institution: "40000001",
			Hosts: []string{addr}, Dialect: "example-bank", PINFormat: 0, Key: devkeys.ATMZPK, KeyIndex: 1})
		c.Routing.Routes = append(c.Routing.Routes, routing.Route{Prefix: "67676700", Issuer: "example-bank"})
	})
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !g.SignedOn()["example-bank"]; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the example-bank link never signed on")
		}
	}
	sc := g.Config().IssuerSim
	devPop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	client, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tests := []struct {
		issuer string
		card   issuersim.Card
	}{
		{gateway.DevIssuer, devPop.Card(5)},
		{"example-bank", pop.Card(5)},
	}
	for _, tt := range tests {
		before := sim.Requests.Load()
		f, err := loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: "ATM00042", Proc: iso8583.ProcPINChange, PAN: tt.card.PAN,
			OldPIN: tt.card.PIN, NewPIN: "4826", Format: pinblock.Format0, KeyID: devkeys.ATMZPK}.Fields()
		if err != nil {
			t.Fatal(err)
		}
		ans, err := client.Do(ctx, f)
		if err != nil {
			t.Fatalf("PIN change to %s: %v", tt.issuer, err)
		}
		if ans.ResponseCode != iso8583.RCApproved {
			t.Errorf("PIN change to %s answered %s, want 00", tt.issuer, ans.ResponseCode)
		}
		got := sim.Requests.Load() - before
		if want := map[bool]int64{true: 1, false: 0}[tt.issuer == "example-bank"]; got != want {
			t.Errorf("PIN change to %s: the example-bank host saw %d requests, want %d", tt.issuer, got, want)
		}
	}
}

// TestCheckConfigDialects: check-config loads the spec files a config names,
// accepts a good one and names the field of a broken one.
func TestCheckConfigDialects(t *testing.T) {
	spec, err := os.ReadFile(exampleBankSpec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	config := func(specPath string, pinFormat string) string {
		return write("pingate-"+filepath.Base(specPath)+pinFormat+".yaml", `
security:
  dev_keys: true
dialects:
  example-bank: `+specPath+`
routing:
  institution: "999001"
  acquirers:
    - id: "100001"
      name: ATM network
      channel: atm
      terminals: ["*"]
      keys: {1: dev-atm-zpk}
      formats: [0]
  issuers:
    - id: example-bank
      institution: "40000001"
      hosts: ["127.0.0.1:9583"]
      dialect: example-bank
      pin_format: `+pinFormat+`
      key: dev-atm-zpk
      key_index: 1
  routes:
    - prefix: "67676700"
      issuer: example-bank
`)
	}
	good := write("example-bank.yaml", string(spec))
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", config(good, "0")}, &out, &errOut); code != 0 {
		t.Fatalf("check-config on the example dialect exited %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "ok") {
		t.Errorf("check-config printed %q, want ok", out.String())
	}

	tests := []struct {
		name      string
		from, to  string
		pinFormat string
		want      []string
	}{
		{"unknown encoder", "enc: pingate.ASCII.an\n", "enc: ASCII.alnum\n", "0",
			[]string{"dialects.example-bank", "field 37", `unknown enc "ASCII.alnum"`}},
		{"missing DE 39", "  39:\n", "  49:\n", "0", []string{"field 39", "missing"}},
		{"bad length", "length: 6\n    description: Systems Trace", "length: 4\n    description: Systems Trace", "0",
			[]string{"field 11", "length 4"}},
		{"8-byte blocks for format 4", "", "", "4", []string{"routing.issuers[0] (example-bank)", "only 8-byte PIN blocks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := strings.Replace(string(spec), tt.from, tt.to, 1)
			if tt.from != "" && broken == string(spec) {
				t.Fatal("the test's change did not apply")
			}
			p := write(strings.ReplaceAll(tt.name, " ", "-")+".yaml", broken)
			out.Reset()
			errOut.Reset()
			if code := run(context.Background(), []string{"check-config", config(p, tt.pinFormat)}, &out, &errOut); code != 1 {
				t.Fatalf("check-config exited %d, want 1", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("check-config does not say %q; it said %q", w, errOut.String())
				}
			}
		})
	}
}
