package branchapi

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"
)

// single is e's own server as an instance, for env.send from goroutines.
func (e *env) single() *instance { return &instance{name: "single", srv: e.srv, addr: e.addr} }

// sendAll starts send(0) … send(n-1) at once; wait returns their answers,
// failing the test on a transport error.
func (e *env) sendAll(n int, send func(i int) (response, error)) (wait func() []response) {
	out := make([]response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i], errs[i] = send(i) })
	}
	return func() []response {
		e.t.Helper()
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				e.t.Fatalf("request %d: %v", i, errs[i])
			}
		}
		return out
	}
}

// withSecondSupervisor adds "supervisor2" (S0117-02), a second supervisor
// of branch BR0117.
func withSecondSupervisor(o envOptions) envOptions {
	name := pkix.Name{CommonName: "supervisor-0117-02", OrganizationalUnit: []string{DevBranch}, Organization: []string{devOrganization}}
	o.clientCA = func(e *env) {
		now := time.Now()
		e.addClient("supervisor2", e.ca, name, now, now.Add(time.Hour))
	}
	o.mutate = func(c *Config) {
		c.Clients = append(c.Clients, Client{Subject: name.String(), ID: "S0117-02", Institution: testAcquirer, Branch: DevBranch, Roles: []Role{RoleSupervisor}})
	}
	return o
}

// waitIssuer waits until the issuer has seen n requests since before.
func (e *env) waitIssuer(before, n int64) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.sim.Requests.Load()-before < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("the issuer saw %d requests, want %d", e.sim.Requests.Load()-before, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConcurrentIdempotencyKeyWhileAtTheIssuer: while the first request
// with a key is at the issuer, retries with the same key and body (N at
// once) wait for and replay its answer, the same key with another body is
// refused, and the issuer sees one request; a retry of a declined request
// replays the decline.
func TestConcurrentIdempotencyKeyWhileAtTheIssuer(t *testing.T) {
	e := newEnv(t, envOptions{issuerLatency: 300 * time.Millisecond})
	in := e.single()
	c, other := card(220), card(221)
	key := map[string]string{"Idempotency-Key": "race-idem-1"}
	same, diff := mustJSON(t, unblockBody(c.PAN)), mustJSON(t, unblockBody(other.PAN))
	before := e.sim.Requests.Load()

	waitFirst := e.sendAll(1, func(int) (response, error) { return e.send(in, "teller", http.MethodPost, pathUnblocks, same, key) })
	e.waitIssuer(before, 1)
	const n = 8
	out := e.sendAll(2*n, func(i int) (response, error) {
		body := same
		if i%2 == 1 {
			body = diff
		}
		return e.send(in, "teller", http.MethodPost, pathUnblocks, body, key)
	})()
	first := waitFirst()[0]
	if res := first.result(t); first.status != http.StatusOK || res.Status != StatusCompleted || res.ResponseCode != "00" {
		t.Fatalf("first request = %d %s/%s, want 200 completed 00", first.status, res.Status, res.ResponseCode)
	}
	for i := range 2 * n {
		checkContract(t, http.MethodPost, pathUnblocks, out[i])
		if i%2 == 0 && (out[i].status != first.status || string(out[i].body) != string(first.body)) {
			t.Errorf("retry %d with the same body = %d, want the first answer byte for byte", i, out[i].status)
		}
		if i%2 == 1 {
			if p := out[i].problem(t); out[i].status != http.StatusUnprocessableEntity || p.Type != ProblemTypeBase+"idempotency-key-reused" {
				t.Errorf("retry %d with another body = %d %s, want 422 idempotency-key-reused", i, out[i].status, p.Type)
			}
		}
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d requests for one key, want 1", got)
	}
	if got, other := e.eventsOf(c.PAN), e.eventsOf(other.PAN); got != 1 || other != 0 {
		t.Errorf("%d events for the operation and %d for the refused body, want 1 and 0", got, other)
	}

	// A declined first request: its retry replays the decline.
	d := card(222)
	key = map[string]string{"Idempotency-Key": "race-idem-declined"}
	body := mustJSON(t, changeBody(t, d.PAN, "0000", "4826"))
	if d.PIN == "0000" {
		t.Fatal("test card has PIN 0000")
	}
	before = e.sim.Requests.Load()
	r1 := e.at(in, "teller", http.MethodPost, pathChanges, pathChanges, body, key)
	if res := r1.result(t); res.Status != StatusCompleted || res.ResponseCode == "00" {
		t.Fatalf("change with a wrong old PIN = %s/%s, want completed and declined", res.Status, res.ResponseCode)
	}
	r2 := e.at(in, "teller", http.MethodPost, pathChanges, pathChanges, body, key)
	if r2.status != r1.status || string(r2.body) != string(r1.body) {
		t.Errorf("retry of the declined request = %d, want the decline replayed", r2.status)
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d requests for a declined request and its retry, want 1", got)
	}
}

// TestConcurrentDecisionsOnOneReset: two supervisors approve and refuse one
// pending reset at once (with and without keys), many times. Exactly one
// decision wins; the rest are 409 not-pending; the issuer, the journal and
// the lookup agree with the winner.
func TestConcurrentDecisionsOnOneReset(t *testing.T) {
	e := newEnv(t, withSecondSupervisor(envOptions{dualControl: true, issuerLatency: 50 * time.Millisecond}))
	in := e.single()
	type decision struct{ who, decision, key string }
	approved := 0
	const trials = 10
	for i := range trials {
		c := card(230 + i)
		before := e.sim.Requests.Load()
		pend := e.submitReset(in, c.PAN)
		ds := []decision{
			{"supervisor", DecisionApprove, ""}, {"supervisor2", DecisionApprove, ""},
			{"supervisor", DecisionRefuse, ""}, {"supervisor2", DecisionRefuse, ""},
			{"supervisor", DecisionApprove, fmt.Sprintf("race-appr-%d", i)}, {"supervisor2", DecisionApprove, fmt.Sprintf("race-appr2-%d", i)},
		}
		rand.Shuffle(len(ds), func(a, b int) { ds[a], ds[b] = ds[b], ds[a] })
		out := e.sendAll(len(ds), func(j int) (response, error) {
			var hdr map[string]string
			if ds[j].key != "" {
				hdr = map[string]string{"Idempotency-Key": ds[j].key}
			}
			return e.send(in, ds[j].who, http.MethodPost, "/v1/operations/"+pend.OperationID+"/approval", mustJSON(t, approve(ds[j].decision)), hdr)
		})()
		var win *OperationResult
		for j := range ds {
			checkContract(t, http.MethodPost, tmplApproval, out[j])
			switch {
			case out[j].status == http.StatusOK && win == nil:
				res := out[j].result(t)
				win = &res
			case out[j].status == http.StatusOK:
				t.Errorf("trial %d: two decisions answered 200", i)
			case out[j].problem(t).Type != ProblemTypeBase+"not-pending":
				t.Errorf("trial %d: losing decision = %d %s, want 409 not-pending", i, out[j].status, out[j].body)
			}
		}
		if win == nil {
			t.Fatalf("trial %d: no decision won", i)
		}
		issuer, events := e.sim.Requests.Load()-before, e.eventsOf(c.PAN)
		switch win.Status {
		case StatusCompleted:
			approved++
			if issuer != 1 || events != 1 || win.ResponseCode != "00" {
				t.Errorf("trial %d: approval won (%s), the issuer saw %d requests, %d events, want 00, 1, 1", i, win.ResponseCode, issuer, events)
			}
		case StatusRefused:
			if issuer != 0 || events != 0 {
				t.Errorf("trial %d: refusal won, the issuer saw %d requests, %d events, want none", i, issuer, events)
			}
		default:
			t.Errorf("trial %d: the winning decision = %s, want completed or refused", i, win.Status)
		}
		if got := e.at(in, "teller", http.MethodGet, "/v1/operations/"+pend.OperationID, tmplOp, nil, nil).result(t); got.Status != win.Status || got.Supervisor != win.Supervisor {
			t.Errorf("trial %d: GET = %s by %s, want %s by %s", i, got.Status, got.Supervisor, win.Status, win.Supervisor)
		}
	}
	t.Logf("%d of %d resets approved, the rest refused", approved, trials)
}

// TestLookupWhileTheResetIsAtTheIssuer: GET /v1/operations/{id} polled
// while an approved reset is at the issuer never shows an outcome before
// the journal has its event, and ends as the approval's answer.
func TestLookupWhileTheResetIsAtTheIssuer(t *testing.T) {
	e := newEnv(t, envOptions{dualControl: true, issuerLatency: 300 * time.Millisecond})
	in := e.single()
	c := card(250)
	before := e.sim.Requests.Load()
	pend := e.submitReset(in, c.PAN)
	path := "/v1/operations/" + pend.OperationID

	var appr response
	var apprErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		appr, apprErr = e.send(in, "supervisor", http.MethodPost, path+"/approval", mustJSON(t, approve(DecisionApprove)), nil)
	}()
	seen := map[string]int{}
	for polling := true; polling; {
		select {
		case <-done:
			polling = false
		default:
		}
		r, err := e.send(in, "teller", http.MethodGet, path, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		res := r.result(t)
		seen[res.Status]++
		switch res.Status {
		case StatusPendingApproval:
			if e.sim.Requests.Load() != before {
				t.Errorf("GET = pending_approval after the reset reached the issuer")
			}
		case StatusInProgress:
			if res.Outcome != "" || res.ResponseCode != "" || res.EventID != "" {
				t.Errorf("GET in_progress carries an outcome %q/%q/%q", res.Outcome, res.ResponseCode, res.EventID)
			}
		case StatusCompleted:
			if _, ok := e.eventByID(res.EventID); !ok || e.sim.Requests.Load()-before != 1 {
				t.Errorf("GET = completed (event %q) before the journal had the event or the issuer the request", res.EventID)
			}
		default:
			t.Errorf("GET = %s while approved", res.Status)
		}
	}
	if apprErr != nil {
		t.Fatal(apprErr)
	}
	final := appr.result(t)
	if appr.status != http.StatusOK || final.Status != StatusCompleted {
		t.Fatalf("approval = %d %s, want 200 completed", appr.status, final.Status)
	}
	got := e.at(in, "teller", http.MethodGet, path, tmplOp, nil, nil).result(t)
	if got.Status != final.Status || got.EventID != final.EventID || got.ResponseCode != final.ResponseCode {
		t.Errorf("GET after = %s/%s/%s, want the approval's %s/%s/%s", got.Status, got.ResponseCode, got.EventID, final.Status, final.ResponseCode, final.EventID)
	}
	if seen[StatusInProgress] == 0 {
		t.Errorf("no GET saw the reset in_progress (seen %v): the probe did not overlap the issuer", seen)
	}
}

// TestMaxRecordsReachedConcurrently: more operations than max_records at
// once, half with keys: each is either run and answered 200 with its event,
// or refused 503 with nothing at the issuer; a refused key's retry is
// refused again without running.
func TestMaxRecordsReachedConcurrently(t *testing.T) {
	const max = 4
	e := newEnv(t, envOptions{issuerLatency: 100 * time.Millisecond, mutate: func(c *Config) { c.MaxRecords = max }})
	in := e.single()
	before := e.sim.Requests.Load()
	const n = 12
	hdrs := make([]map[string]string, n)
	for i := 0; i < n; i += 2 {
		hdrs[i] = map[string]string{"Idempotency-Key": fmt.Sprintf("race-full-%d", i)}
	}
	out := e.sendAll(n, func(i int) (response, error) {
		return e.send(in, "teller", http.MethodPost, pathUnblocks, mustJSON(t, unblockBody(card(260+i).PAN)), hdrs[i])
	})()
	ok := 0
	for i := range n {
		checkContract(t, http.MethodPost, pathUnblocks, out[i])
		events := e.eventsOf(card(260 + i).PAN)
		switch out[i].status {
		case http.StatusOK:
			ok++
			if res := out[i].result(t); res.Status != StatusCompleted || events != 1 {
				t.Errorf("request %d = 200 %s with %d events, want completed with 1", i, res.Status, events)
			}
		case http.StatusServiceUnavailable:
			if p := out[i].problem(t); p.Type != ProblemTypeBase+"service-unavailable" || events != 0 {
				t.Errorf("request %d = 503 %s with %d events, want service-unavailable with none", i, p.Type, events)
			}
		default:
			t.Errorf("request %d = %d, want 200 or 503", i, out[i].status)
		}
	}
	if ok != max {
		t.Errorf("%d operations ran, want max_records = %d", ok, max)
	}
	if got := e.sim.Requests.Load() - before; got != int64(ok) {
		t.Errorf("the issuer saw %d requests for %d operations answered 200", got, ok)
	}
	for i := range n {
		if hdrs[i] == nil || out[i].status != http.StatusServiceUnavailable {
			continue
		}
		r := e.at(in, "teller", http.MethodPost, pathUnblocks, pathUnblocks, mustJSON(t, unblockBody(card(260+i).PAN)), hdrs[i])
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("retry of refused key %d while full = %d, want 503", i, r.status)
		}
	}
	if got := e.sim.Requests.Load() - before; got != int64(ok) {
		t.Errorf("the issuer saw %d requests after the retries, want %d", got, ok)
	}
}

// TestShutdownWithRequestsInFlight: Shutdown while operations are at the
// issuer and a reset waits for its approval. Every in-flight operation is
// answered with its outcome and has its event, whether Shutdown's context
// outlasts them or not; only the pending reset is lost, never having
// reached the issuer.
func TestShutdownWithRequestsInFlight(t *testing.T) {
	for _, grace := range []time.Duration{10 * time.Second, 50 * time.Millisecond} {
		t.Run(grace.String(), func(t *testing.T) {
			e := newEnv(t, envOptions{dualControl: true, issuerLatency: 400 * time.Millisecond})
			in := e.single()
			pc := card(280)
			e.submitReset(in, pc.PAN)
			before := e.sim.Requests.Load()
			const n = 4
			wait := e.sendAll(n, func(i int) (response, error) {
				return e.send(in, "teller", http.MethodPost, pathUnblocks, mustJSON(t, unblockBody(card(281+i).PAN)),
					map[string]string{"Idempotency-Key": fmt.Sprintf("race-shutdown-%d", i)})
			})
			e.waitIssuer(before, n)
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			err := e.srv.Shutdown(ctx)
			cancel()
			if grace > time.Second && err != nil {
				t.Errorf("Shutdown() = %v, want nil", err)
			}
			out := wait()
			for i := range n {
				res := out[i].result(t)
				if out[i].status != http.StatusOK || res.Status != StatusCompleted || res.EventID == "" {
					t.Errorf("request %d in flight at Shutdown = %d %s, want 200 completed with its event", i, out[i].status, res.Status)
				}
				if got := e.eventsOf(card(281 + i).PAN); got != 1 {
					t.Errorf("request %d: %d events, want 1", i, got)
				}
			}
			if got := e.sim.Requests.Load() - before; got != n {
				t.Errorf("the issuer saw %d requests, want %d", got, n)
			}
			if got := e.eventsOf(pc.PAN); got != 0 {
				t.Errorf("the pending reset has %d events, want none", got)
			}
			if _, err := e.send(in, "teller", http.MethodPost, pathUnblocks, mustJSON(t, unblockBody(card(290).PAN)), nil); err == nil {
				t.Errorf("a request after Shutdown was answered")
			}
		})
	}
}

// TestApprovalRacesTheWindowsEnd: approvals, lookups and the sweeper at
// the end of the approval window, at once, many times. Each reset either
// ran once (200 completed) or expired (409 approval-expired, nothing at
// the issuer), and the lookup agrees.
func TestApprovalRacesTheWindowsEnd(t *testing.T) {
	var clk testClock
	e := newEnv(t, envOptions{dualControl: true, now: clk.now})
	in := e.single()
	const trials = 30
	ran := 0
	for i := range trials {
		c := card(320 + i)
		before := e.sim.Requests.Load()
		pend := e.resetAtDeadline(in, &clk, c.PAN, -time.Duration(rand.IntN(3000))*time.Microsecond)
		path := "/v1/operations/" + pend.OperationID
		out := e.sendAll(2, func(j int) (response, error) {
			if j == 0 {
				return e.send(in, "supervisor", http.MethodPost, path+"/approval", mustJSON(t, approve(DecisionApprove)), nil)
			}
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			e.srv.st.sweep(e.srv.now())
			return e.send(in, "teller", http.MethodGet, path, nil, nil)
		})()
		checkContract(t, http.MethodGet, tmplOp, out[1])
		checkContract(t, http.MethodPost, tmplApproval, out[0])
		if e.checkDecided(out[0], pend.OperationID, c.PAN, before, in) {
			ran++
		}
		if t.Failed() {
			t.Fatalf("trial %d of %d failed (%d ran before it)", i, trials, ran)
		}
	}
	t.Logf("%d of %d approvals ran, %d expired", ran, trials, trials-ran)
}
