package branchapi

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"pingate/integration/redislimit"
	"pingate/iso8583"
	"pingate/routing"
)

const (
	pathChanges  = "/v1/pin/changes"
	pathResets   = "/v1/pin/resets"
	pathUnblocks = "/v1/pin/unblocks"
	tmplOp       = "/v1/operations/{id}"
	tmplApproval = "/v1/operations/{id}/approval"
)

func approve(decision string) map[string]any { return map[string]any{"decision": decision} }

func TestChange(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := card(10)
	tests := []struct {
		name               string
		give               map[string]any
		wantCode, wantOutc string
		wantReason         string
	}{
		{name: "approved", give: changeBody(t, c.PAN, c.PIN, "4826"), wantCode: "00", wantOutc: routing.OutcomeApproved, wantReason: "approved"},
		{name: "wrong current PIN", give: changeBody(t, c.PAN, "1357", "5931"), wantCode: "55", wantOutc: routing.OutcomeDeclined, wantReason: "incorrect_pin"},
		{name: "weak new PIN", give: changeBody(t, c.PAN, "4826", "1234"), wantCode: iso8583.RCNewPINRejected, wantOutc: routing.OutcomeDeclined, wantReason: "new_pin_rejected"},
		{name: "card unknown to the issuer", give: changeBody(t, "6228481299999998", "4826", "5931"), wantCode: "14", wantOutc: routing.OutcomeDeclined, wantReason: "no_such_card"},
		{name: "card range with no route", give: changeBody(t, "5555555555554444", "4826", "5931"), wantCode: "14", wantOutc: routing.OutcomeRejected, wantReason: "no_route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			r := e.post("teller", pathChanges, pathChanges, tt.give, nil)
			if r.status != http.StatusOK {
				t.Fatalf("POST %s = %d, want 200: %s", pathChanges, r.status, r.body)
			}
			res := r.result(t)
			if res.ResponseCode != tt.wantCode || res.Outcome != tt.wantOutc || res.Reason != tt.wantReason || res.Status != StatusCompleted {
				t.Errorf("POST %s (%s) = %s/%s/%s/%s, want completed/%s/%s/%s", pathChanges, tt.name,
					res.Status, res.Outcome, res.ResponseCode, res.Reason, tt.wantOutc, tt.wantCode, tt.wantReason)
			}
			ev, ok := e.eventByID(res.EventID)
			if !ok {
				t.Fatalf("no event %s in the journal", res.EventID)
			}
			if ev.Channel != routing.ChannelBranch || ev.Code != tt.wantCode || ev.Teller != "T0117-07" || ev.Acquirer != testAcquirer {
				t.Errorf("event = channel %s code %s teller %s acquirer %s, want branch %s T0117-07 %s", ev.Channel, ev.Code, ev.Teller, ev.Acquirer, tt.wantCode, testAcquirer)
			}
			pan := tt.give["pan"].(string)
			noSecret(t, "the answer", r.body, map[string]string{"PAN": pan, "old PIN block": tt.give["old_pin_block"].(string), "new PIN block": tt.give["new_pin_block"].(string)})
			// The lookup gives the same outcome.
			lr := e.do("teller2", http.MethodGet, "/v1/operations/"+res.OperationID, tmplOp, nil, nil)
			if got := lr.result(t); got.ResponseCode != res.ResponseCode || got.EventID != res.EventID || got.Status != StatusCompleted {
				t.Errorf("GET operation = %+v, want the POST's outcome", got)
			}
		})
	}
}

func TestResetUnderDualControl(t *testing.T) {
	e := newEnv(t, envOptions{dualControl: true})
	c := card(20)
	before := e.sim.Requests.Load()
	r := e.post("teller", pathResets, pathResets, resetBody(t, c.PAN, "3917"), nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST reset under dual control = %d, want 202: %s", r.status, r.body)
	}
	res := r.result(t)
	if res.Status != StatusPendingApproval || res.ApproveBy == nil || r.header.Get("Location") != "/v1/operations/"+res.OperationID {
		t.Fatalf("pending reset = %+v, Location %q", res, r.header.Get("Location"))
	}
	if got := e.sim.Requests.Load(); got != before {
		t.Fatalf("a reset pending approval reached the issuer")
	}
	opPath := "/v1/operations/" + res.OperationID
	if got := e.do("teller", http.MethodGet, opPath, tmplOp, nil, nil).result(t); got.Status != StatusPendingApproval {
		t.Errorf("GET pending = %s, want pending_approval", got.Status)
	}

	refusals := []struct {
		name, who string
		wantType  string
	}{
		{name: "a teller cannot approve", who: "teller2", wantType: "role-not-permitted"},
		{name: "a supervisor of another branch", who: "supervisor-br0200", wantType: "branch-not-permitted"},
		{name: "another institution cannot see it", who: "teller-other-inst", wantType: "role-not-permitted"},
	}
	for _, tt := range refusals {
		r := e.post(tt.who, opPath+"/approval", tmplApproval, approve(DecisionApprove), nil)
		if p := r.problem(t); p.Type != ProblemTypeBase+tt.wantType {
			t.Errorf("approval (%s) = %d %s, want %s", tt.name, r.status, p.Type, tt.wantType)
		}
	}
	if got := e.sim.Requests.Load(); got != before {
		t.Fatalf("a refused approval let the reset reach the issuer")
	}

	r = e.post("supervisor", opPath+"/approval", tmplApproval, approve(DecisionApprove), nil)
	if r.status != http.StatusOK {
		t.Fatalf("supervisor approval = %d: %s", r.status, r.body)
	}
	done := r.result(t)
	if done.Status != StatusCompleted || done.ResponseCode != "00" || done.Supervisor != "S0117-01" {
		t.Fatalf("approved reset = %s/%s supervisor %q, want completed/00 S0117-01", done.Status, done.ResponseCode, done.Supervisor)
	}
	ev, ok := e.eventByID(done.EventID)
	if !ok {
		t.Fatal("the approved reset has no event")
	}
	if ev.Supervisor != "S0117-01" || ev.Teller != "T0117-07" || ev.Type != "pingate.pin.reset.v1" || ev.Channel != routing.ChannelBranch {
		t.Errorf("event = %s supervisor %q teller %q channel %s, want the approval recorded", ev.Type, ev.Supervisor, ev.Teller, ev.Channel)
	}
	// The reset PIN works at the issuer.
	if got := e.post("teller", pathChanges, pathChanges, changeBody(t, c.PAN, "3917", "5820"), nil).result(t); got.ResponseCode != "00" {
		t.Errorf("change from the reset PIN = %s, want 00", got.ResponseCode)
	}
	// A second approval is refused: the reset ran once.
	r = e.post("supervisor", opPath+"/approval", tmplApproval, approve(DecisionApprove), nil)
	if p := r.problem(t); r.status != http.StatusConflict || p.Type != ProblemTypeBase+"not-pending" || p.OperationID != res.OperationID {
		t.Errorf("second approval = %d %s, want 409 not-pending", r.status, p.Type)
	}
}

func TestDualControlRefusals(t *testing.T) {
	e := newEnv(t, envOptions{dualControl: true})
	c := card(21)
	submit := func(who string, body map[string]any) string {
		t.Helper()
		r := e.post(who, pathResets, pathResets, body, nil)
		if r.status != http.StatusAccepted {
			t.Fatalf("submit = %d: %s", r.status, r.body)
		}
		return r.result(t).OperationID
	}
	before := e.sim.Requests.Load()

	t.Run("self-approval by the submitting identity", func(t *testing.T) {
		e.t = t
		body := resetBody(t, c.PAN, "3917")
		body["teller"] = "S0117-01"
		id := submit("supervisor", body)
		r := e.post("supervisor", "/v1/operations/"+id+"/approval", tmplApproval, approve(DecisionApprove), nil)
		if p := r.problem(t); r.status != http.StatusForbidden || p.Type != ProblemTypeBase+"self-approval" {
			t.Errorf("self-approval = %d %s, want 403 self-approval", r.status, p.Type)
		}
	})
	t.Run("a reset naming the supervisor as its teller", func(t *testing.T) {
		e.t = t
		body := resetBody(t, c.PAN, "3917")
		body["teller"] = "S0117-01"
		r := e.post("teller", pathResets, pathResets, body, nil)
		if p := r.problem(t); r.status != http.StatusForbidden || p.Type != ProblemTypeBase+"teller-not-permitted" {
			t.Errorf("reset by T0117-07 naming teller S0117-01 = %d %s, want 403 teller-not-permitted", r.status, p.Type)
		}
	})
	t.Run("refused", func(t *testing.T) {
		e.t = t
		id := submit("teller", resetBody(t, c.PAN, "3917"))
		r := e.post("supervisor", "/v1/operations/"+id+"/approval", tmplApproval, approve(DecisionRefuse), nil)
		if res := r.result(t); res.Status != StatusRefused || res.EventID != "" || res.Supervisor != "S0117-01" {
			t.Errorf("refusal = %+v, want refused without an event", res)
		}
	})
	t.Run("window passed", func(t *testing.T) {
		e.t = t
		id := submit("teller", resetBody(t, c.PAN, "3917"))
		e.srv.now = func() time.Time { return time.Now().Add(DefaultApprovalWindow + time.Second) }
		defer func() { e.srv.now = time.Now }()
		r := e.post("supervisor", "/v1/operations/"+id+"/approval", tmplApproval, approve(DecisionApprove), nil)
		if p := r.problem(t); r.status != http.StatusConflict || p.Type != ProblemTypeBase+"approval-expired" {
			t.Errorf("late approval = %d %s, want 409 approval-expired", r.status, p.Type)
		}
		if got := e.do("teller", http.MethodGet, "/v1/operations/"+id, tmplOp, nil, nil).result(t); got.Status != StatusExpired {
			t.Errorf("GET expired = %s, want expired", got.Status)
		}
	})
	if got := e.sim.Requests.Load(); got != before {
		t.Errorf("%d refused, expired or self-approved resets reached the issuer", got-before)
	}
	if n := len(e.events()); n != 0 {
		t.Errorf("%d events for resets that never ran, want 0", n)
	}
}

var mailerPIN = regexp.MustCompile(`(?m)^Your new PIN: ([0-9]+)$`)

// TestGeneratedPINOnlyInTheMailer: a reset with a generated PIN prints its
// mailer; the PIN is in the mailer file and in no log line, event, span or
// HTTP answer; and the issuer took it (a change from it is approved).
func TestGeneratedPINOnlyInTheMailer(t *testing.T) {
	e := newEnv(t, envOptions{dualControl: true})
	c := card(30)
	spans.Reset()
	r := e.post("teller", pathResets, pathResets, generatedBody(c.PAN, 12), map[string]string{"Idempotency-Key": "gen-1"})
	id := r.result(t).OperationID
	if len(e.mailerFiles()) != 0 {
		t.Fatal("a mailer was printed before the approval")
	}
	r = e.post("supervisor", "/v1/operations/"+id+"/approval", tmplApproval, approve(DecisionApprove), nil)
	res := r.result(t)
	if res.ResponseCode != "00" || res.Mailer == nil || !res.Mailer.Printed || res.Mailer.Reference != id || res.Mode != ModeGenerated {
		t.Fatalf("generated reset = %+v, want approved with a printed mailer", res)
	}
	files := e.mailerFiles()
	text, ok := files[id+".mailer"]
	if len(files) != 1 || !ok {
		t.Fatalf("spool holds %d files, want the one mailer %s.mailer", len(files), id)
	}
	m := mailerPIN.FindStringSubmatch(text)
	if m == nil || len(m[1]) != 12 {
		t.Fatalf("mailer has no 12-digit PIN line")
	}
	pin := m[1]
	for _, want := range []string{"Card: 622848******" + c.PAN[len(c.PAN)-4:], "Development Bank, Branch 0117", "Reference: " + id} {
		if !strings.Contains(text, want) {
			t.Errorf("mailer lacks %q", want)
		}
	}
	if strings.Contains(text, c.PAN) {
		t.Errorf("mailer shows the full PAN")
	}

	// The issuer has the generated PIN: a change from it is approved.
	if got := e.post("teller", pathChanges, pathChanges, changeBody(t, c.PAN, pin, "5820"), nil).result(t); got.ResponseCode != "00" {
		t.Fatalf("change from the generated PIN = %s, want 00", got.ResponseCode)
	}
	// The same reset retried with its key replays and prints nothing more.
	e.post("teller", pathResets, pathResets, generatedBody(c.PAN, 12), map[string]string{"Idempotency-Key": "gen-1"})
	if n := len(e.mailerFiles()); n != 1 {
		t.Errorf("a retried generated reset printed %d mailers, want 1", n)
	}

	// Nowhere else: logs, journal, answers, spans.
	secrets := map[string]string{"generated PIN": pin}
	noSecret(t, "the log", []byte(e.logs.String()), secrets)
	noSecret(t, "the journal", e.journalBytes(), secrets)
	e.mu.Lock()
	for i, b := range e.bodies {
		noSecret(t, fmt.Sprintf("HTTP answer %d", i), b, secrets)
	}
	e.mu.Unlock()
	got := spans.GetSpans()
	names := map[string]bool{}
	for _, s := range got {
		names[s.Name] = true
		text := s.Name
		for _, a := range s.Attributes {
			text += " " + string(a.Key) + "=" + a.Value.Emit()
		}
		for _, ev := range s.Events {
			text += " " + ev.Name
			for _, a := range ev.Attributes {
				text += " " + a.Value.Emit()
			}
		}
		text += " " + s.Status.Description
		noSecret(t, "span "+s.Name, []byte(text), secrets)
		noSecret(t, "span "+s.Name, []byte(text), map[string]string{"PAN": c.PAN})
	}
	for _, want := range []string{"pingate.hsm.generate_pin", "pingate.hsm.print_mailer", "pingate.pin.reset", "POST " + tmplApproval} {
		if !names[want] {
			t.Errorf("no span %q was recorded (the span check would see nothing)", want)
		}
	}
}

func TestUnblock(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := card(40)
	for i, want := range []string{"55", "55", "75"} {
		got := e.post("teller", pathChanges, pathChanges, changeBody(t, c.PAN, fmt.Sprintf("90%02d", i+13), "5931"), nil).result(t)
		if got.ResponseCode != want {
			t.Fatalf("wrong PIN %d = %s, want %s", i+1, got.ResponseCode, want)
		}
	}
	if got := e.post("teller", pathChanges, pathChanges, changeBody(t, c.PAN, c.PIN, "5931"), nil).result(t); got.ResponseCode != "75" {
		t.Fatalf("locked card with the right PIN = %s, want 75", got.ResponseCode)
	}
	res := e.post("teller", pathUnblocks, pathUnblocks, unblockBody(c.PAN), nil).result(t)
	if res.ResponseCode != "00" || res.Operation != "unblock" {
		t.Fatalf("unblock = %s %s, want unblock 00", res.Operation, res.ResponseCode)
	}
	if ev, ok := e.eventByID(res.EventID); !ok || ev.Type != "pingate.pin.unblocked.v1" {
		t.Errorf("unblock event = %v %s, want pingate.pin.unblocked.v1", ok, ev.Type)
	}
	if got := e.post("teller", pathChanges, pathChanges, changeBody(t, c.PAN, c.PIN, "5931"), nil).result(t); got.ResponseCode != "00" {
		t.Errorf("change after the unblock = %s, want 00", got.ResponseCode)
	}
}

func TestResetWithoutDualControlAndKiosk(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := card(50)
	res := e.post("teller", pathResets, pathResets, resetBody(t, c.PAN, "3917"), nil).result(t)
	if res.Status != StatusCompleted || res.ResponseCode != "00" || res.Supervisor != "" {
		t.Errorf("reset without dual control = %+v, want completed 00 at once", res)
	}
	body := unblockBody(card(51).PAN)
	body["teller"] = "K0117-01"
	res = e.post("kiosk", pathUnblocks, pathUnblocks, body, nil).result(t)
	if res.Channel != "kiosk" || res.ResponseCode != "00" {
		t.Errorf("kiosk unblock = channel %s code %s, want kiosk 00", res.Channel, res.ResponseCode)
	}
	if ev, _ := e.eventByID(res.EventID); ev.Channel != routing.ChannelKiosk {
		t.Errorf("kiosk event channel = %s, want kiosk", ev.Channel)
	}
}

func TestRateLimitedLikeTheISOChannel(t *testing.T) {
	// One terminal may send one request, then one per 1000 s.
	e := newEnv(t, envOptions{limits: redislimit.Config{TerminalRPS: 0.001, TerminalBurst: 1}})
	c := card(60)
	first := e.post("teller", pathUnblocks, pathUnblocks, unblockBody(c.PAN), nil).result(t)
	second := e.post("teller", pathUnblocks, pathUnblocks, unblockBody(c.PAN), nil).result(t)
	if first.ResponseCode != "00" || second.Outcome != routing.OutcomeLimited || second.Reason != "terminal_rate_limit" {
		t.Fatalf("two unblocks from a terminal with a burst of 1 = %s, %s/%s; want 00 then limited terminal_rate_limit",
			first.ResponseCode, second.Outcome, second.Reason)
	}
	ev, ok := e.eventByID(second.EventID)
	if !ok || ev.Channel != routing.ChannelBranch || ev.Type != "pingate.pin.unblock.limited.v1" {
		t.Errorf("limited event = %v %s %s, want a branch pingate.pin.unblock.limited.v1", ok, ev.Channel, ev.Type)
	}
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := card(70)
	key := map[string]string{"Idempotency-Key": "op-7f3a"}
	before := e.sim.Requests.Load()
	first := e.post("teller", pathUnblocks, pathUnblocks, unblockBody(c.PAN), key)
	again := e.post("teller", pathUnblocks, pathUnblocks, unblockBody(c.PAN), key)
	if first.status != again.status || string(first.body) != string(again.body) {
		t.Errorf("retry answered %d %s, want the first answer %d %s", again.status, again.body, first.status, first.body)
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("a retried request reached the issuer %d times, want once", got)
	}
	// Concurrent retries: still one operation.
	key2 := map[string]string{"Idempotency-Key": "op-concurrent"}
	var wg sync.WaitGroup
	bodies := make([]string, 6)
	for i := range bodies {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			bodies[i] = string(e.post("teller", pathUnblocks, pathUnblocks, unblockBody(card(71).PAN), key2).body)
		}(i)
	}
	wg.Wait()
	for i := range bodies {
		if bodies[i] != bodies[0] {
			t.Errorf("concurrent retry %d answered differently", i)
		}
	}
	if got := e.sim.Requests.Load() - before; got != 2 {
		t.Errorf("issuer saw %d requests for two idempotency keys, want 2", got)
	}
	// Same key, another request.
	r := e.post("teller", pathUnblocks, pathUnblocks, unblockBody(card(72).PAN), key)
	if p := r.problem(t); r.status != http.StatusUnprocessableEntity || p.Type != ProblemTypeBase+"idempotency-key-reused" {
		t.Errorf("same key, other body = %d %s, want 422 idempotency-key-reused", r.status, p.Type)
	}
	// Keys belong to an identity: another client's same key is a new operation.
	body := unblockBody(card(72).PAN)
	body["teller"] = "T0117-08"
	r = e.post("teller2", pathUnblocks, pathUnblocks, body, key)
	if res := r.result(t); res.ResponseCode != "00" {
		t.Errorf("another identity's key = %s, want a new operation 00", res.ResponseCode)
	}
	// Same body with other spacing and field order is the same request.
	raw := fmt.Sprintf(`{ "teller":"T0117-07", "identity_check_ref":"IDCHK-2026-000125", "terminal":"BR0117T1","branch":"BR0117","pan":"%s" }`, c.PAN)
	r = e.do("teller", http.MethodPost, pathUnblocks, pathUnblocks, []byte(raw), key)
	if string(r.body) != string(first.body) {
		t.Errorf("a reformatted retry answered %d %s, want the first answer", r.status, r.body)
	}
	if n := len(e.events()); n != 3 {
		t.Errorf("%d events, want 3 (one per operation)", n)
	}
}

// TestResetsAreForCounterStaff: a reset follows an identity check at a
// counter. A kiosk cannot submit one, in either mode, even where the
// institution runs without dual control; and an institution that does not
// say is under dual control.
func TestResetsAreForCounterStaff(t *testing.T) {
	t.Run("kiosk without dual control", func(t *testing.T) {
		e := newEnv(t, envOptions{dualControl: false})
		before := e.sim.Requests.Load()
		for _, body := range []map[string]any{resetBody(t, card(80).PAN, "3917"), generatedBody(card(81).PAN, 0)} {
			body["teller"] = "K0117-01"
			r := e.post("kiosk", pathResets, pathResets, body, nil)
			if p := r.problem(t); r.status != http.StatusForbidden || p.Type != ProblemTypeBase+"role-not-permitted" {
				t.Errorf("kiosk reset (mode %s) = %d %s, want 403 role-not-permitted", body["mode"], r.status, p.Type)
			}
		}
		if got := e.sim.Requests.Load(); got != before {
			t.Errorf("a kiosk's reset reached the issuer %d times", got-before)
		}
		if n := len(e.mailerFiles()); n != 0 {
			t.Errorf("a kiosk's generated reset printed %d mailers", n)
		}
		if n := len(e.events()); n != 0 {
			t.Errorf("%d events for refused kiosk resets, want 0", n)
		}
		// A teller's reset still runs at once there.
		if res := e.post("teller", pathResets, pathResets, resetBody(t, card(82).PAN, "3917"), nil).result(t); res.Status != StatusCompleted || res.ResponseCode != "00" {
			t.Errorf("teller reset without dual control = %s/%s, want completed 00", res.Status, res.ResponseCode)
		}
	})
	t.Run("dual control unset is on", func(t *testing.T) {
		e := newEnv(t, envOptions{mutate: func(c *Config) { c.Institutions[0].DualControl = nil }})
		before := e.sim.Requests.Load()
		r := e.post("teller", pathResets, pathResets, resetBody(t, card(83).PAN, "3917"), nil)
		if res := r.result(t); r.status != http.StatusAccepted || res.Status != StatusPendingApproval {
			t.Errorf("reset with dual_control unset = %d %s, want 202 pending_approval", r.status, res.Status)
		}
		if got := e.sim.Requests.Load(); got != before {
			t.Errorf("a reset with dual_control unset reached the issuer before any approval")
		}
	})
}

// TestTellerIsTheCertificateIdentity: the event and DE 48 name the identity
// of the client certificate; a body naming another teller is refused before
// anything happens, and a change without a teller records the certificate's.
func TestTellerIsTheCertificateIdentity(t *testing.T) {
	e := newEnv(t, envOptions{dualControl: true})
	before := e.sim.Requests.Load()
	refusals := []struct {
		name, who, path string
		give            map[string]any
	}{
		{name: "unblock by T0117-07 naming T0117-08", who: "teller", path: pathUnblocks, give: unblockBody(card(90).PAN)},
		{name: "change by T0117-07 naming T0117-08", who: "teller", path: pathChanges, give: changeBody(t, card(91).PAN, card(91).PIN, "4826")},
		{name: "reset by T0117-07 naming T0117-08", who: "teller", path: pathResets, give: resetBody(t, card(92).PAN, "3917")},
		{name: "unblock by T0117-07 naming its supervisor", who: "teller", path: pathUnblocks, give: unblockBody(card(90).PAN)},
		{name: "kiosk unblock naming a teller", who: "kiosk", path: pathUnblocks, give: unblockBody(card(90).PAN)},
	}
	refusals[0].give["teller"], refusals[1].give["teller"], refusals[2].give["teller"] = "T0117-08", "T0117-08", "T0117-08"
	refusals[3].give["teller"] = "S0117-01"
	for _, tt := range refusals {
		r := e.post(tt.who, tt.path, tt.path, tt.give, nil)
		if p := r.problem(t); r.status != http.StatusForbidden || p.Type != ProblemTypeBase+"teller-not-permitted" {
			t.Errorf("%s = %d %s, want 403 teller-not-permitted", tt.name, r.status, p.Type)
		}
	}
	if got := e.sim.Requests.Load(); got != before {
		t.Fatalf("%d refused requests reached the issuer", got-before)
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events for refused requests, want 0", n)
	}

	checks := []struct {
		name, who, path string
		give            map[string]any
		wantTeller      string
	}{
		{name: "unblock by T0117-08", who: "teller2", path: pathUnblocks, give: unblockBody(card(93).PAN), wantTeller: "T0117-08"},
		{name: "change without a teller by T0117-08", who: "teller2", path: pathChanges, give: changeBody(t, card(94).PAN, card(94).PIN, "4826"), wantTeller: "T0117-08"},
		{name: "kiosk change without a teller", who: "kiosk", path: pathChanges, give: changeBody(t, card(95).PAN, card(95).PIN, "4826"), wantTeller: "K0117-01"},
	}
	checks[0].give["teller"] = "T0117-08"
	delete(checks[1].give, "teller")
	delete(checks[2].give, "teller")
	for _, tt := range checks {
		res := e.post(tt.who, tt.path, tt.path, tt.give, nil).result(t)
		if res.ResponseCode != "00" || res.Teller != tt.wantTeller {
			t.Errorf("%s = %s teller %q, want 00 %s", tt.name, res.ResponseCode, res.Teller, tt.wantTeller)
		}
		if ev, ok := e.eventByID(res.EventID); !ok || ev.Teller != tt.wantTeller {
			t.Errorf("%s: event teller = %q, want %s", tt.name, ev.Teller, tt.wantTeller)
		}
		if a, ok := e.lastDE48(); !ok || a.TellerID != tt.wantTeller {
			t.Errorf("%s: DE 48.01 sent to the issuer = %q, want %s", tt.name, a.TellerID, tt.wantTeller)
		}
	}

	// Under dual control: the submitter is the teller, the approver the supervisor.
	pend := e.post("teller2", pathResets, pathResets, func() map[string]any {
		b := resetBody(t, card(96).PAN, "3917")
		b["teller"] = "T0117-08"
		return b
	}(), nil).result(t)
	res := e.post("supervisor", "/v1/operations/"+pend.OperationID+"/approval", tmplApproval, approve(DecisionApprove), nil).result(t)
	ev, ok := e.eventByID(res.EventID)
	if !ok || ev.Teller != "T0117-08" || ev.Supervisor != "S0117-01" {
		t.Errorf("approved reset event teller %q supervisor %q, want T0117-08 and S0117-01", ev.Teller, ev.Supervisor)
	}
	if a, _ := e.lastDE48(); a.TellerID != "T0117-08" || a.SupervisorID != "S0117-01" {
		t.Errorf("approved reset DE 48 = teller %q supervisor %q, want T0117-08 and S0117-01", a.TellerID, a.SupervisorID)
	}
}

// TestIdentifiersAnEventRefuses: a teller id the outcome event would refuse
// (a run of 12 or more digits, or 16 or more hex digits: a possible PAN or
// PIN block) is refused with 422 before the issuer is involved; and an
// outcome that cannot be recorded is logged and names no event.
func TestIdentifiersAnEventRefuses(t *testing.T) {
	e := newEnv(t, envOptions{dualControl: true})
	before := e.sim.Requests.Load()
	for _, teller := range []string{"123456789012", "T-1234567890123", "DEADBEEF01234567", "0123456789abcdef"} {
		for _, tt := range []struct {
			path string
			give map[string]any
		}{
			{pathUnblocks, unblockBody(card(100).PAN)},
			{pathChanges, changeBody(t, card(101).PAN, card(101).PIN, "4826")},
			{pathResets, resetBody(t, card(102).PAN, "3917")},
		} {
			tt.give["teller"] = teller
			r := e.post("teller", tt.path, tt.path, tt.give, nil)
			p := r.problem(t)
			if r.status != http.StatusUnprocessableEntity || p.Type != ProblemTypeBase+"invalid-request" || len(p.Errors) != 1 || p.Errors[0].Pointer != "/teller" {
				t.Errorf("POST %s with a teller of %d characters = %d %s %+v, want 422 invalid-request at /teller", tt.path, len(teller), r.status, p.Type, p.Errors)
			}
			noSecret(t, "the problem", r.body, map[string]string{"teller id": teller})
		}
	}
	if got := e.sim.Requests.Load(); got != before {
		t.Fatalf("%d requests with refused teller ids reached the issuer", got-before)
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events, want 0", n)
	}

	// Nothing can be recorded: the outcome is logged, and the answer names
	// no event.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.journal.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	res := e.post("teller", pathUnblocks, pathUnblocks, unblockBody(card(103).PAN), nil).result(t)
	if res.Outcome != routing.OutcomeFailed || res.Reason != "journal_unavailable" || res.EventID != "" {
		t.Errorf("unblock with the journal closed = %s/%s event %q, want failed/journal_unavailable and no event id", res.Outcome, res.Reason, res.EventID)
	}
	if !strings.Contains(e.logs.String(), `"msg":"branch api outcome not recorded"`) || !strings.Contains(e.logs.String(), res.OperationID) {
		t.Errorf("the unrecorded outcome of %s was not logged", res.OperationID)
	}
}
