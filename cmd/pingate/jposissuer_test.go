package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// jposCard is one card of the jPOS issuer's ledger: a label (the only name
// the host prints), a PAN under the issuer's route, its PIN, and the fault
// the host plays on its first request (scripts/jpos issuerhost.IssuerHost).
type jposCard struct {
	label, pan, pin, mode string
}

// jposPAN is the Luhn-valid 16-digit PAN 411111 n… of card n.
func jposPAN(n int) string {
	body := fmt.Sprintf("411111%09d", 700000+n)
	sum := 0
	for i := 0; i < len(body); i++ {
		d := int(body[len(body)-1-i] - '0')
		if i%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return body + string(rune('0'+(10-sum%10)%10))
}

// jposIssuerConfig is the gateway's configuration: the ATM and branch
// acquirers of the development keys, one issuer (the jPOS host) on format 4
// under dev-issuer-zpk, key index 1, a 1 s timeout and a 1 s echo interval.
const jposIssuerConfig = `instance: jpos-issuer-test
acquirer_listener:
  addr: %s
http:
  addr: %s
admin:
  addr: %s
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
    - id: jposbank
      institution: "300009"
      hosts: ["%s"]
      pin_format: 4
      key: dev-issuer-zpk
      key_index: 1
      timeout: 1s
      echo_interval: 1s
  routes:
    - {prefix: "411111", issuer: jposbank}
events:
  journal_dir: %s
reversals:
  dir: %s
branch:
  enabled: false
`

// jposIssuer is the running jPOS issuer host.
type jposIssuer struct {
	addr string
	out  *pyOutput
}

// count is how many printed lines equal s.
func (o *pyOutput) count(s string) int {
	n := 0
	for _, l := range strings.Split(o.String(), "\n") {
		if l == s {
			n++
		}
	}
	return n
}

// startJPOSIssuer runs issuerhost.IssuerHost on a loopback port with cards
// and the extra arguments (startPeer: the test fails on any FAIL line the
// host prints).
func startJPOSIssuer(t *testing.T, java, cp string, cards []jposCard, extra ...string) *jposIssuer {
	t.Helper()
	keys, _ := filepath.Abs("../../docs/dev-keys.md")
	doc, _ := filepath.Abs(issuerDocPath)
	// The card table goes in a file: a process listing shows arguments.
	file := filepath.Join(t.TempDir(), "cards.txt")
	var table strings.Builder
	for _, c := range cards {
		fmt.Fprintf(&table, "%s %s %s %s\n", c.label, c.pan, c.pin, c.mode)
	}
	if err := os.WriteFile(file, []byte(table.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-cp", cp, "issuerhost.IssuerHost", "--keys", keys, "--doc", doc, "--listen", "127.0.0.1:0",
		"--institution", "999001", "--receiving", "300009", "--key-index", "1", "--cards", file}, extra...)
	addr, out := startPeer(t, "jPOS issuer", exec.Command(java, args...), 30*time.Second, true)
	return &jposIssuer{addr: addr, out: out}
}

// servedGateway is a `pingate serve` process.
type servedGateway struct {
	cmd                    *exec.Cmd
	acq, http, admin, logf string
	exited                 chan error
}

// startServe runs the built binary with jposIssuerConfig routed to
// issuerAddr and waits until /readyz is 200 (its issuer link signed on).
func startServe(t *testing.T, issuerAddr string) *servedGateway {
	t.Helper()
	bin := opsBinary(t)
	dir := t.TempDir()
	g := &servedGateway{acq: freeAddr(t), http: freeAddr(t), admin: freeAddr(t), logf: filepath.Join(dir, "pingate.log"),
		exited: make(chan error, 1)}
	path := filepath.Join(dir, "pingate.yaml")
	yaml := fmt.Sprintf(jposIssuerConfig, g.acq, g.http, g.admin, issuerAddr,
		filepath.Join(dir, "journal"), filepath.Join(dir, "reversals"))
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(g.logf)
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin, "serve", "--config", path)
	g.cmd.Dir = dir
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.exited <- g.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		g.stop(t)
		if t.Failed() {
			t.Logf("pingate serve's log:\n%s", tail(g.log(), 4000))
		}
	})
	g.waitReady(t)
	return g
}

// waitReady waits until /readyz is 200.
func (g *servedGateway) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + g.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-g.exited:
			g.exited <- err
			t.Fatalf("pingate serve exited: %v\n%s", err, tail(g.log(), 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pingate serve not ready after 60 s:\n%s", tail(g.log(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *servedGateway) log() string {
	b, _ := os.ReadFile(g.logf)
	return string(b)
}

// stop sends SIGTERM and waits for the exit (at most once).
func (g *servedGateway) stop(t *testing.T) {
	t.Helper()
	if g.cmd.ProcessState != nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.exited:
		g.exited <- err
	case <-time.After(40 * time.Second):
		_ = g.cmd.Process.Kill()
		t.Errorf("pingate serve: no exit 40 s after SIGTERM")
	}
}

// events are the gateway's journaled events (GET /admin/events), by terminal.
func (g *servedGateway) events(t *testing.T) map[string][]gateway.EventLine {
	t.Helper()
	resp, err := http.Get("http://" + g.admin + "/admin/events?n=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []gateway.EventLine
	if err := json.NewDecoder(resp.Body).Decode(&lines); err != nil {
		t.Fatal(err)
	}
	out := map[string][]gateway.EventLine{}
	for _, l := range lines {
		out[l.Terminal] = append(out[l.Terminal], l)
	}
	return out
}

// TestJPOSIssuer runs the built `pingate serve` against scripts/jpos's
// issuerhost.IssuerHost, an issuer host on jPOS written from
// docs/iso8583-issuer.md and docs/dev-keys.md alone, which keeps its own PIN
// ledger and checks every element it receives against the document. Over
// the gateway's TCP acquirer listener it drives changes, resets and
// unblocks, each issuer response code of the document's table, and the
// issuer faults the document describes: an answer after the timeout, the
// link closed under a request, an 0110 without DE 39, answers that match
// nothing (DE 11 changed, DE 41 left out) or do not unpack, a duplicate
// answer, an advice answered 96 or not at all. It checks the acquirer's
// code, the journal's events (exactly the documented one per request) and
// the host's ledger (every change the gateway gave up on is undone once);
// and on the network side: a refused sign-on, the host's own 0800 (never
// answered), echo on an idle link and sign-off at shutdown.
func TestJPOSIssuer(t *testing.T) {
	java, mvn := needJavaMaven(t)
	cp := buildJPOSClient(t, mvn)

	type scenario struct {
		card   jposCard
		branch string // "" an ATM change; else the branch operation
		oldPIN string // "" the card's PIN
		newPIN string
		want   string // the acquirer's DE 39
		event  string // ce_type
		reason string
		undone bool // the issuer applied it and must undo it (an 0420)
		stands bool // the issuer's ledger holds the new PIN afterwards
	}
	n := 0
	card := func(label, mode string) jposCard {
		n++
		return jposCard{label: label, pan: jposPAN(n), pin: "4826", mode: mode}
	}
	const (
		changed  = "pingate.pin.changed.v1"
		declined = "pingate.pin.change.declined.v1"
		reversed = "pingate.pin.change.reversed.v1"
		failed   = "pingate.pin.change.failed.v1"
	)
	tests := []scenario{
		{card: card("approved", ""), newPIN: "6150", want: "00", event: changed, reason: "approved", stands: true},
		{card: card("wrong-old-pin", ""), oldPIN: "8402", newPIN: "6150", want: "55", event: declined, reason: "incorrect_pin"},
		{card: card("weak-at-issuer", ""), newPIN: "3719", want: "P6", event: declined, reason: "new_pin_rejected"},
		{card: card("reset", ""), branch: iso8583.ProcPINReset, newPIN: "8053", want: "00", event: "pingate.pin.reset.v1", reason: "approved", stands: true},
		{card: card("unblock", ""), branch: iso8583.ProcPINUnblock, want: "00", event: "pingate.pin.unblocked.v1", reason: "approved"},
		{card: card("code-14", "code=14"), newPIN: "6150", want: "14", event: declined, reason: "no_such_card"},
		{card: card("code-57", "code=57"), newPIN: "6150", want: "57", event: declined, reason: "not_permitted_to_cardholder"},
		{card: card("code-65", "code=65"), newPIN: "6150", want: "65", event: declined, reason: "issuer_frequency_limit"},
		{card: card("code-75", "code=75"), newPIN: "6150", want: "75", event: declined, reason: "pin_tries_exceeded"},
		{card: card("code-P6", "code=P6"), newPIN: "6150", want: "P6", event: declined, reason: "new_pin_rejected"},
		{card: card("code-91", "code=91"), newPIN: "6150", want: "91", event: failed, reason: "issuer_unavailable"},
		{card: card("code-96", "code=96"), newPIN: "6150", want: "96", event: failed, reason: "issuer_malfunction"},
		{card: card("code-30", "code=30"), newPIN: "6150", want: "96", event: failed, reason: "issuer_rejected_format"},
		{card: card("code-58", "code=58"), newPIN: "6150", want: "96", event: failed, reason: "issuer_unknown_code"},
		{card: card("code-61", "code=61"), newPIN: "6150", want: "96", event: failed, reason: "issuer_unknown_code"},
		{card: card("code-94", "code=94"), newPIN: "6150", want: "96", event: failed, reason: "issuer_unknown_code"},
		{card: card("duplicate-answer", "dup"), newPIN: "6150", want: "00", event: changed, reason: "approved", stands: true},
		{card: card("late", "late=2500"), newPIN: "6150", want: "91", event: reversed, reason: "issuer_timeout", undone: true},
		{card: card("link-closed", "close"), newPIN: "6150", want: "91", event: reversed, reason: "issuer_timeout", undone: true},
		{card: card("no-de39", "no39"), newPIN: "6150", want: "96", event: failed, reason: "issuer_message_error", undone: true},
		{card: card("wrong-de11", "wrong11"), newPIN: "6150", want: "91", event: reversed, reason: "issuer_timeout", undone: true},
		{card: card("no-de41", "no41"), newPIN: "6150", want: "91", event: reversed, reason: "issuer_timeout", undone: true},
		{card: card("unreadable", "garbage"), newPIN: "6150", want: "91", event: reversed, reason: "issuer_timeout", undone: true},
		{card: card("advice-96", "late=2500,rev96"), newPIN: "6150", want: "91", event: reversed, reason: "issuer_timeout", undone: true},
		{card: card("advice-lost", "late=2500,revnone"), newPIN: "6150", want: "91", event: reversed, reason: "issuer_timeout", undone: true},
	}
	cards := make([]jposCard, 0, len(tests))
	for _, tt := range tests {
		cards = append(cards, tt.card)
	}
	unknown := jposCard{label: "unknown", pan: jposPAN(99), pin: "4826"}
	iss := startJPOSIssuer(t, java, cp, cards, "--signon-refuse", "1", "--host-echo", "--weak", "3719")
	g := startServe(t, iss.addr)
	if !iss.out.waitFor("worked example deciphers to its PIN", time.Second) {
		t.Errorf("the jPOS issuer did not decipher the document's worked example")
	}
	if got := iss.out.count("got  0800 001 (sign-on)"); got < 2 {
		t.Errorf("sign-ons the issuer saw = %d, want at least 2 (the first refused with 91)", got)
	}

	ctx := context.Background()
	clients := map[string]*loadgen.Client{}
	send := func(term string, op loadgen.Op) string {
		t.Helper()
		c := clients[op.Acquirer]
		if c == nil {
			var err error
			if c, err = loadgen.Dial(ctx, g.acq); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			clients[op.Acquirer] = c
		}
		// After a link loss the gateway answers 91 issuer_unavailable
		// until a link signs on again (docs/design.md): wait for it.
		g.waitReady(t)
		op.Terminal = term
		code, err := opsDo(ctx, c, op)
		if err != nil {
			t.Fatalf("%s: %v", term, err)
		}
		return code
	}
	atm := func(term, pan, oldPIN, newPIN string) string {
		return send(term, loadgen.Op{Acquirer: "100001", Proc: iso8583.ProcPINChange, PAN: pan, OldPIN: oldPIN,
			NewPIN: newPIN, Format: pinblock.Format0, KeyID: devkeys.ATMZPK})
	}
	for i, tt := range tests {
		term := fmt.Sprintf("JPI%05d", i)
		var got string
		if tt.branch != "" {
			got = send(term, loadgen.Op{Acquirer: "200001", Proc: tt.branch, PAN: tt.card.pan, NewPIN: tt.newPIN,
				Format: pinblock.Format4, KeyID: devkeys.BranchZPK, Teller: "T1042", IDRef: "IDV-2026-000731"})
		} else {
			old := tt.oldPIN
			if old == "" {
				old = tt.card.pin
			}
			got = atm(term, tt.card.pan, old, tt.newPIN)
		}
		if got != tt.want {
			t.Errorf("%s: acquirer got %s, want %s", tt.card.label, got, tt.want)
		}
	}
	if got := atm("JPIUNKNW", unknown.pan, unknown.pin, "6150"); got != "14" {
		t.Errorf("card the issuer does not hold: acquirer got %s, want 14", got)
	}

	// Every advice is sent at once, again every 2 s until answered: wait
	// for each undo, then long enough for a repeat of an answered advice.
	for _, tt := range tests {
		if tt.undone && !iss.out.waitFor("undone change "+tt.card.label, 20*time.Second) {
			t.Errorf("%s: the issuer got no 0420 undoing the change", tt.card.label)
		}
	}
	time.Sleep(5 * time.Second)
	for _, tt := range tests {
		if got := iss.out.count("undone change " + tt.card.label); tt.undone && got != 1 {
			t.Errorf("%s: undone %d times, want 1", tt.card.label, got)
		}
		advices := iss.out.count("got  0420 700000 " + tt.card.label)
		switch {
		case tt.card.label == "advice-lost" && advices < 2:
			t.Errorf("%s: %d advices, want at least 2 (the first not answered)", tt.card.label, advices)
		case tt.card.label != "advice-lost" && tt.undone && advices != 1:
			t.Errorf("%s: %d advices after an 0430, want 1 (any 0430 acknowledges it)", tt.card.label, advices)
		case !tt.undone && advices != 0:
			t.Errorf("%s: %d advices, want none", tt.card.label, advices)
		}
	}

	// The ledger: a change the gateway gave up on holds the old PIN again;
	// a change from it goes through.
	for i, tt := range tests {
		if !tt.undone {
			continue
		}
		if got := atm(fmt.Sprintf("JPJ%05d", i), tt.card.pan, tt.card.pin, "2971"); got != "00" {
			t.Errorf("%s: change from the old PIN after the reversal = %s, want 00", tt.card.label, got)
		}
	}

	evs := g.events(t)
	for i, tt := range tests {
		term := fmt.Sprintf("JPI%05d", i)
		got := evs[term]
		if len(got) != 1 {
			var types []string
			for _, e := range got {
				types = append(types, e.Type+"/"+e.Reason)
			}
			t.Errorf("%s: events %v, want exactly one %s/%s", tt.card.label, types, tt.event, tt.reason)
			continue
		}
		e := got[0]
		if e.Type != tt.event || e.Reason != tt.reason || e.Code != tt.want || e.Issuer != "jposbank" {
			t.Errorf("%s: event %s/%s code %s issuer %s, want %s/%s code %s issuer jposbank",
				tt.card.label, e.Type, e.Reason, e.Code, e.Issuer, tt.event, tt.reason, tt.want)
		}
	}

	// Network management: echo on the idle link, the host's own 0800 never
	// answered (the host prints FAIL for an 0810), sign-off at shutdown.
	if !iss.out.waitFor("got  0800 301 (echo)", 5*time.Second) {
		t.Errorf("the issuer saw no echo (0800 301) on an idle link")
	}
	g.stop(t)
	if !iss.out.waitFor("got  0800 002 (sign-off)", 5*time.Second) {
		t.Errorf("the issuer saw no sign-off (0800 002) when the gateway stopped")
	}
}
