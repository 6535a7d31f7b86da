package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// issuerDocPath is the issuer dialect's document, the only source of
// scripts/pyiso8583_issuer.py besides the development keys.
const issuerDocPath = "../../docs/iso8583-issuer.md"

// pyIssuerCard is one card of the Python issuer's table: a published test
// PAN (Luhn-valid) and a PIN off the weak-PIN list.
type pyIssuerCard struct {
	name, pan, pin string
}

var pyIssuerCards = []pyIssuerCard{
	{"card A", "4111111111111111", "4826"},
	{"card B", "4012888888881881", "5937"},
	{"card C", "4000056655665556", "7391"}, // answered late once: its change is reversed
}

// pyIssuerUnknown is a card the gateway routes to the Python issuer but the
// issuer's table does not hold.
var pyIssuerUnknown = pyIssuerCard{"card U", "4000050000000007", ""}

// pyIssuerConfig is a gateway configuration as docs/configuration.md
// describes it: one ATM acquirer (format 0 under dev-atm-zpk, key index 1)
// and one issuer, the Python host at addr, with the issuer side as
// docs/dev-keys.md has it (format 4 under dev-issuer-zpk).
const pyIssuerConfig = `instance: pyissuer-test
acquirer_listener:
  addr: 127.0.0.1:0
http:
  addr: 127.0.0.1:0
admin:
  addr: 127.0.0.1:0
security:
  dev_keys: true
routing:
  institution: "999001"
  acquirers:
    - id: "100001"
      name: test ATM network
      channel: atm
      terminals: ["*"]
      keys: {1: dev-atm-zpk}
      formats: [0]
    - id: "200001"
      name: test branch front end
      channel: branch
      terminals: ["*"]
      keys: {1: dev-branch-zpk}
      formats: [4]
  issuers:
    - id: pybank
      institution: "300009"
      hosts: ["%s"]
      pin_format: 4
      key: dev-issuer-zpk
      key_index: 1
      timeout: 1s
      echo_interval: 1s
  routes:
    - {prefix: "411111", issuer: pybank}
    - {prefix: "401288", issuer: pybank}
    - {prefix: "400005", issuer: pybank}
events:
  journal_dir: %s
reversals:
  dir: %s
branch:
  enabled: false
`

// pyOutput collects the lines a Python program prints.
type pyOutput struct {
	mu    sync.Mutex
	lines []string
}

func (o *pyOutput) add(l string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lines = append(o.lines, l)
}

func (o *pyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.lines, "\n")
}

// waitFor waits up to d for a printed line containing s.
func (o *pyOutput) waitFor(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(o.String(), s) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// startPyIssuer runs scripts/pyiso8583_issuer.py on a loopback port with the
// cards of pyIssuerCards and returns its address and output. In t.Cleanup,
// after the gateway has stopped (it is started later, so its clean-up runs
// first), the issuer gets SIGTERM, and the test fails on a FAIL line or a
// non-zero exit status.
func startPyIssuer(t *testing.T, py string) (string, *pyOutput) {
	t.Helper()
	script, _ := filepath.Abs("../../scripts/pyiso8583_issuer.py")
	doc, _ := filepath.Abs(issuerDocPath)
	keys, _ := filepath.Abs("../../docs/dev-keys.md")
	args := []string{script, "--doc", doc, "--keys", keys, "--listen", "127.0.0.1:0",
		"--institution", "999001", "--receiving", "300009", "--pin-format", "4", "--key-index", "1",
		"--delay", pyIssuerCards[2].pan[len(pyIssuerCards[2].pan)-4:] + ":2.5"}
	// The card table goes in a file, not on the command line: a process
	// listing shows arguments, and these are PANs and PINs (test ones).
	cards := filepath.Join(t.TempDir(), "cards.txt")
	var table strings.Builder
	for _, c := range pyIssuerCards {
		fmt.Fprintf(&table, "%s:%s\n", c.pan, c.pin)
	}
	if err := os.WriteFile(cards, []byte(table.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append(args, "--cards", cards)
	cmd := exec.Command(py, args...)
	cmd.Dir = t.TempDir() // not the repo: its iso8583/ directory would shadow the library
	return startPeer(t, "pyiso8583 issuer", cmd, 20*time.Second, false)
}

// startPeer starts cmd, an independent peer of the gateway that prints
// "listening ADDR" once it listens, and returns ADDR and what it prints
// (stdout and stderr, line by line). In t.Cleanup, after the gateway has
// stopped (it is started later, so its clean-up runs first), the peer gets
// SIGTERM (SIGKILL 10 s later), its output is logged, and the test fails on
// a line starting "FAIL " and, unless killedOK (a JVM exits 143 on SIGTERM),
// on a non-zero exit status.
func startPeer(t *testing.T, what string, cmd *exec.Cmd, within time.Duration, killedOK bool) (string, *pyOutput) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out := &pyOutput{}
	addr := make(chan string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l := sc.Text()
			out.add(l)
			if a, ok := strings.CutPrefix(l, "listening "); ok {
				addr <- a
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { <-read; exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			err = errors.Join(errors.New("no exit 10 s after SIGTERM"), <-exited)
		}
		t.Logf("%s:\n%s", what, out)
		var exit *exec.ExitError
		if err != nil && !(killedOK && errors.As(err, &exit)) {
			t.Errorf("%s: %v", what, err)
		}
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "FAIL ") {
				t.Errorf("%s: %s", what, l)
			}
		}
	})
	select {
	case a := <-addr:
		return a, out
	case err := <-exited:
		t.Fatalf("%s exited before listening: %v\n%s", what, err, out)
	case <-time.After(within):
		t.Fatalf("%s not listening after %s:\n%s", what, within, out)
	}
	return "", nil
}

// TestPyISO8583Issuer runs scripts/pyiso8583_issuer.py, an issuer host built
// on pyiso8583 and psec from docs/iso8583-issuer.md and docs/dev-keys.md
// alone, as the only issuer of a gateway configured from a YAML file as
// docs/configuration.md describes: the gateway signs on to it, a PIN change
// with the right old PIN is approved and the host holds the new PIN (a
// second change from it is approved), a wrong old PIN is 55, a change the
// host answers after the issuer timeout is reversed by an 0420 that the host
// takes (the card's old PIN holds again), a card the host does not hold is
// 14, a branch reset and unblock are approved (the reset's PIN holds), the
// idle link echoes, and the host found no field that differs from the
// document. scripts/test-deps.sh installs the libraries; without python3 or
// them the test skips, and fails under CI=true.
func TestPyISO8583Issuer(t *testing.T) {
	py := needPyISO8583(t)
	addr, out := startPyIssuer(t, py)

	dir := t.TempDir()
	path := filepath.Join(dir, "pingate.yaml")
	yaml := fmt.Sprintf(pyIssuerConfig, addr, filepath.Join(dir, "journal"), filepath.Join(dir, "reversals"))
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("configuration: %v", err)
	}
	g := gatewaytest.Start(t, func(c *gateway.Config) { *c = cfg })
	gatewaytest.WaitSignedOn(t, g)
	if !out.waitFor("got  0800 001 (sign-on)", 5*time.Second) {
		t.Errorf("the Python issuer saw no sign-on (0800 001)")
	}

	ctx := context.Background()
	clients := map[string]*loadgen.Client{} // acquirer → its connection (a connection belongs to one acquirer)
	terminal := 0
	send := func(c pyIssuerCard, op loadgen.Op) string {
		t.Helper()
		client := clients[op.Acquirer]
		if client == nil {
			var err error
			if client, err = loadgen.Dial(ctx, g.AcquirerAddr()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			clients[op.Acquirer] = client
		}
		terminal++
		op.Terminal, op.PAN = fmt.Sprintf("PYISS%03d", terminal), c.pan
		code, err := opsDo(ctx, client, op)
		if err != nil {
			t.Fatalf("%s: %s: %v", c.name, op.Proc, err)
		}
		return code
	}
	change := func(c pyIssuerCard, oldPIN, newPIN string) string {
		t.Helper()
		return send(c, loadgen.Op{Acquirer: "100001", Proc: iso8583.ProcPINChange, OldPIN: oldPIN, NewPIN: newPIN,
			Format: pinblock.Format0, KeyID: devkeys.ATMZPK})
	}
	// A branch reset (DE 125 only) and unblock (no PIN block), DE 48 with
	// the teller and the identity-check reference.
	branch := func(c pyIssuerCard, proc, newPIN string) string {
		t.Helper()
		return send(c, loadgen.Op{Acquirer: "200001", Proc: proc, NewPIN: newPIN, Format: pinblock.Format4,
			KeyID: devkeys.BranchZPK, Teller: "T1042", IDRef: "IDV-2026-000731"})
	}

	a, b, c := pyIssuerCards[0], pyIssuerCards[1], pyIssuerCards[2]
	tests := []struct {
		what         string
		card         pyIssuerCard
		give1, give2 string // old PIN, new PIN
		want         string
	}{
		{"change from the right old PIN", a, a.pin, "6150", "00"},
		{"change from the PIN the issuer now holds", a, "6150", "3094", "00"},
		{"change from the card's first PIN, replaced", a, a.pin, "2716", "55"},
		{"change from a wrong old PIN", b, "8402", "6150", "55"},
		{"change from the right old PIN after a wrong one", b, b.pin, "6150", "00"},
	}
	for _, tt := range tests {
		if got := change(tt.card, tt.give1, tt.give2); got != tt.want {
			t.Errorf("%s (%s) = %s, want %s", tt.what, tt.card.name, got, tt.want)
		}
	}
	if got := change(pyIssuerUnknown, "4826", "6150"); got != "14" {
		t.Errorf("change of a card the issuer does not hold (%s) = %s, want 14", pyIssuerUnknown.name, got)
	}
	if got := branch(b, iso8583.ProcPINReset, "8053"); got != iso8583.RCApproved {
		t.Errorf("branch reset (%s) = %s, want 00", b.name, got)
	}
	if got := change(b, "8053", "2971"); got != iso8583.RCApproved {
		t.Errorf("change from the PIN a reset set (%s) = %s, want 00", b.name, got)
	}
	if got := branch(b, iso8583.ProcPINUnblock, ""); got != iso8583.RCApproved {
		t.Errorf("branch unblock (%s) = %s, want 00", b.name, got)
	}
	// With echo_interval 1s an idle link echoes (0800 301).
	if !out.waitFor("got  0800 301 (echo)", 5*time.Second) {
		t.Errorf("the Python issuer saw no echo (0800 301) on an idle link")
	}

	// Card C's first answer comes 2.5 s late, past the issuer's 1 s timeout:
	// the acquirer gets 91 (issuer_timeout), the gateway owes the issuer an
	// 0420, and the host undoes the change it made.
	if got := change(c, c.pin, "6150"); got != "91" {
		t.Errorf("change answered after the issuer timeout (%s) = %s, want 91", c.name, got)
	}
	if !out.waitFor("original undone", 20*time.Second) {
		t.Fatalf("the Python issuer got no 0420 undoing %s's change", c.name)
	}
	if got := change(c, c.pin, "6150"); got != iso8583.RCApproved {
		t.Errorf("change from %s's PIN after the reversal = %s, want 00", c.name, got)
	}
}
