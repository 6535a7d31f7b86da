package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pingate/integration/issuersim"
	"pingate/integration/payshield/hsmsim"
	"pingate/iso8583"
	"pingate/pinblock"
)

// startHSMSim runs a payShield simulator on a loopback port.
func startHSMSim(t *testing.T) (*hsmsim.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := hsmsim.New(hsmsim.Config{HeaderLen: 4})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, ln.Addr().String()
}

// payShieldMode is the embedded default with security.module payshield on
// the given HSMs: the ATM network and an issuer on TDES zone keys (a
// variant-LMK payShield holds no AES keys), development keys under the test
// LMK.
func payShieldMode(hosts ...string) func(*Config) {
	return func(c *Config) {
		c.Security.Module = "payshield"
		c.Security.PayShield = PayShieldConfig{Hosts: hosts}
		c.Routing.Acquirers = c.Routing.Acquirers[:1] // the ATM network (TDES); the branch front end is AES
		c.Routing.Issuers[0].PINFormat = 3
		c.Routing.Issuers[0].Key = pinblock.DevATMZPK
		c.IssuerSim.ZPK = pinblock.DevATMZPK
	}
}

// TestPayShieldModeATMChange: with security.module payshield the ATM PIN
// change, a wrong current PIN and a reversal run over real TCP through the
// payShield simulator, each answered request with its event.
func TestPayShieldModeATMChange(t *testing.T) {
	_, addr := startHSMSim(t)
	g := startTestGateway(t, payShieldMode(addr))
	if _, ok := g.sm.(*pinblock.SoftwareModule); ok {
		t.Fatal("security.module payshield runs the software module")
	}
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	sc := g.cfg.IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	a, b, c := pop.Card(0), pop.Card(1), pop.Card(2)
	atm := func(i int, pan, oldPIN, newPIN string) pinOp {
		return pinOp{acquirer: devATMAcquirer, terminal: fmt.Sprintf("ATM%05d", 100+i), proc: iso8583.ProcPINChange, pan: pan,
			oldPIN: oldPIN, newPIN: newPIN, format: pinblock.Format0, keyID: pinblock.DevATMZPK}
	}
	client, err := dialATM(ctx, g.acqAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	steps := []demoStep{
		{what: "change PIN", op: atm(1, a.PAN, a.PIN, "4826"), want: "00"},
		{what: "change the changed PIN", op: atm(2, a.PAN, "4826", "5937"), want: "00"},
		{what: "wrong current PIN", op: atm(3, b.PAN, "0007", "5931"), want: "55"},
		{what: "change, then the ATM reverses it", op: atm(4, c.PAN, c.PIN, "7204"), reverse: true, want: "00"},
		{what: "the reversed change left the old PIN", op: atm(5, c.PAN, c.PIN, "7205"), want: "00"},
	}
	for _, st := range steps {
		r, err := playStep(ctx, g, client, st)
		if err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		if r.ResponseCode != st.want {
			t.Errorf("%s: answered %s, want %s", st.what, r.ResponseCode, st.want)
		}
	}
	evs, err := journalEvents(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < len(steps) {
		t.Errorf("%d events for %d answered steps", len(evs), len(steps))
	}
	// Each change is two CC commands (old and new block) in the HSM.
	if st := g.ps.Stats(); st[0].Commands < uint64(2*len(steps)) {
		t.Errorf("the HSM saw %d commands for %d PIN changes", st[0].Commands, len(steps))
	}
}

// TestPayShieldModeFailover: two HSMs, one killed while PIN changes are in
// flight. Every change is answered 00 (the issuer verified the translated
// current PIN, so no answer is wrong) and every one has its event.
func TestPayShieldModeFailover(t *testing.T) {
	a, addrA := startHSMSim(t)
	_, addrB := startHSMSim(t)
	g := startTestGateway(t, payShieldMode(addrA, addrB))
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	sc := g.cfg.IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	const n = 24
	var wg sync.WaitGroup
	codes := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			card := pop.Card(10 + i)
			client, err := dialATM(ctx, g.acqAddr)
			if err != nil {
				errs[i] = err
				return
			}
			defer client.Close()
			op := pinOp{acquirer: devATMAcquirer, terminal: fmt.Sprintf("ATM%05d", 200+i), proc: iso8583.ProcPINChange, pan: card.PAN,
				oldPIN: card.PIN, newPIN: fmt.Sprintf("%04d", 3000+i), format: pinblock.Format0, keyID: pinblock.DevATMZPK}
			r, err := playStep(ctx, g, client, demoStep{what: "change", op: op, want: "00"})
			codes[i], errs[i] = r.ResponseCode, err
		}()
		if i == n/2 {
			close(start)
			a.Close() // HSM A dies with requests in flight
		}
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || codes[i] != "00" {
			t.Errorf("change %d with an HSM killed: %q, %v; want 00", i, codes[i], errs[i])
		}
	}
	evs, err := journalEvents(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Errorf("%d events for %d changes", len(evs), n)
	}
	if st := g.ps.Stats(); st[1].Commands == 0 {
		t.Error("the surviving HSM took no command")
	}
}

// TestCheckConfigPayShield: check-config validates security.module and
// security.payshield, naming each bad value, and accepts a good setup.
func TestCheckConfigPayShield(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	routingYAML := `
routing:
  institution: "999001"
  acquirers:
    - id: "100001"
      name: ATM network
      channel: atm
      terminals: ["*"]
      keys: {1: atm-zpk}
      formats: [0]
  issuers:
    - id: ssbank
      institution: "300001"
      hosts: ["127.0.0.1:9583"]
      pin_format: 3
      key: iss-zpk
      key_index: 1
  routes:
    - prefix: "62284812"
      issuer: ssbank
`
	bad := write("bad.yaml", `
security:
  module: payshield
  key_store: /tmp/ks.json
  lmk_file: /tmp/lmk
  payshield:
    hosts: ["hsm-without-port"]
    header_length: 40
    tls:
      cert_file: /tmp/c.pem
`+routingYAML)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", bad}, &out, &errOut); code != 1 {
		t.Fatalf("check-config on a bad payshield setup exited %d, want 1", code)
	}
	for _, want := range []string{"hsm-without-port", "security.key_store", "cert_file and key_file"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("check-config does not name %q; it said %q", want, errOut.String())
		}
	}
	errOut.Reset()
	unknown := write("unknown.yaml", "security:\n  module: thales\n  dev_keys: true\n"+routingYAML)
	if code := run(context.Background(), []string{"check-config", unknown}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), `security.module "thales"`) {
		t.Errorf("check-config on module thales: exit %d, %q", code, errOut.String())
	}
	good := write("good.yaml", `
security:
  module: payshield
  payshield:
    hosts: ["127.0.0.1:1500", "127.0.0.1:1501"]
    header_length: 4
    connections: 4
    timeout: 500ms
    key_file: /etc/pingate/hsm-keys.json
`+routingYAML)
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"check-config", good}, &out, &errOut); code != 0 {
		t.Errorf("check-config on a good payshield setup exited %d: %s", code, errOut.String())
	}
}
