package branchapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/integration/testservers"
	"pingate/iso8583"
)

// testClock is a server clock a test moves forward (instanceOptions.now).
type testClock struct{ ahead atomic.Int64 }

func (c *testClock) now() time.Time       { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *testClock) jump(d time.Duration) { c.ahead.Add(int64(d)) }

// eventsOf counts the outcome events of the card with pan.
func (e *env) eventsOf(pan string) int {
	e.t.Helper()
	n := 0
	for _, ev := range e.events() {
		if ev.MaskedPAN == iso8583.MaskPAN(pan) {
			n++
		}
	}
	return n
}

// submitReset submits a reset of pan to in as the teller and returns the
// pending operation.
func (e *env) submitReset(in *instance, pan string) OperationResult {
	e.t.Helper()
	r := e.at(in, "teller", http.MethodPost, pathResets, pathResets, mustJSON(e.t, resetBody(e.t, pan, "3917")), nil)
	res := r.result(e.t)
	if r.status != http.StatusAccepted || res.Status != StatusPendingApproval {
		e.t.Fatalf("reset on %s = %d %s, want 202 pending_approval", in.name, r.status, res.Status)
	}
	return res
}

// resetAtDeadline submits a reset of pan to in and moves clk to the reset's
// approval deadline plus offset.
func (e *env) resetAtDeadline(in *instance, clk *testClock, pan string, offset time.Duration) OperationResult {
	e.t.Helper()
	pend := e.submitReset(in, pan)
	clk.jump(pend.ApproveBy.Sub(clk.now()) + offset)
	return pend
}

// checkDecided checks that the answer r to an approval of operation id is
// true, and agrees with the issuer, the journal and every instance's lookup:
// either the reset ran once (200 completed, one issuer request since before,
// one event, found completed everywhere) or it never ran (409
// approval-expired, nothing at the issuer, no event, found expired
// everywhere). It reports which.
func (e *env) checkDecided(r response, id, pan string, before int64, ins ...*instance) (ran bool) {
	t := e.t
	t.Helper()
	issuer := e.sim.Requests.Load() - before
	events := e.eventsOf(pan)
	want := ""
	switch {
	case r.status == http.StatusOK:
		res := r.result(t)
		if res.Status != StatusCompleted || res.EventID == "" {
			t.Errorf("approval = 200 %s (event %q), want completed with its event, or 409 approval-expired; the issuer saw %d requests, the journal has %d events",
				res.Status, res.EventID, issuer, events)
			return false
		}
		if issuer != 1 || events != 1 {
			t.Errorf("approval = 200 completed; the issuer saw %d requests and the journal has %d events, want 1 and 1", issuer, events)
		}
		want, ran = StatusCompleted, true
	case r.status == http.StatusConflict && r.problem(t).Type == ProblemTypeBase+"approval-expired":
		if issuer != 0 || events != 0 {
			t.Errorf("approval = 409 approval-expired; the issuer saw %d requests and the journal has %d events, want none", issuer, events)
		}
		want = StatusExpired
	default:
		t.Errorf("approval = %d %s, want 200 completed or 409 approval-expired", r.status, r.body)
		return false
	}
	for _, in := range ins {
		got := e.at(in, "teller", http.MethodGet, "/v1/operations/"+id, tmplOp, nil, nil)
		if res := got.result(t); got.status != http.StatusOK || res.Status != want {
			t.Errorf("GET on %s = %d %s, want %s as the approval answered", in.name, got.status, res.Status, want)
		}
	}
	return ran
}

// TestSharedStoreApprovalAfterTheHoldersSweep: the instance holding a
// pending reset (a) finds its window passed on its own clock and sweeps,
// while the approval reaching b reads b's clock, just before the deadline.
// The approval must either run the reset or be refused as expired: never
// be recorded in Redis for a PIN block a has already dropped, which left
// the reset in_progress for good and answered 200 without running it.
func TestSharedStoreApprovalAfterTheHoldersSweep(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	// A record TTL of 10 s makes the sweeper run every second.
	e := newEnv(t, envOptions{dualControl: true, mutate: func(c *Config) { c.RecordTTL = 10 * time.Second }})
	var clk testClock
	a := startInstanceWith(t, e, redisAddr, "a", instanceOptions{now: clk.now})
	b := startInstanceWith(t, e, redisAddr, "b", instanceOptions{waitLimit: 3 * time.Second})
	c := card(44)
	before := e.sim.Requests.Load()

	pend := e.submitReset(a, c.PAN)
	clk.jump(pend.ApproveBy.Sub(clk.now()) + time.Second)
	time.Sleep(1500 * time.Millisecond) // a's sweeper runs at least once past the deadline

	r := e.at(b, "supervisor", http.MethodPost, "/v1/operations/"+pend.OperationID+"/approval", tmplApproval, mustJSON(t, approve(DecisionApprove)), nil)
	e.checkDecided(r, pend.OperationID, c.PAN, before, a, b)
}

// TestSharedStoreApprovalRacesALookupAtTheDeadline: a lookup on the holder
// (a), whose clock is past the deadline, and an approval on b, whose clock
// is not, sent at once, many times. Whichever Redis takes first decides:
// the reset runs once, or it expires; the lookup that found it due must not
// drop the PIN block of an approval recorded in between.
func TestSharedStoreApprovalRacesALookupAtTheDeadline(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, envOptions{dualControl: true})
	var clk testClock
	a := startInstanceWith(t, e, redisAddr, "a", instanceOptions{now: clk.now})
	b := startInstanceWith(t, e, redisAddr, "b", instanceOptions{waitLimit: 2 * time.Second})

	const trials = 30
	ran := 0
	for i := range trials {
		c := card(100 + i)
		before := e.sim.Requests.Load()
		pend := e.resetAtDeadline(a, &clk, c.PAN, 10*time.Millisecond)
		path := "/v1/operations/" + pend.OperationID
		var (
			wg            sync.WaitGroup
			appr, look    response
			apprErr, lErr error
		)
		wg.Go(func() {
			appr, apprErr = e.send(b, "supervisor", http.MethodPost, path+"/approval", mustJSON(t, approve(DecisionApprove)), nil)
		})
		wg.Go(func() {
			time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
			look, lErr = e.send(a, "teller", http.MethodGet, path, nil, nil)
		})
		wg.Wait()
		if apprErr != nil || lErr != nil {
			t.Fatalf("trial %d: %v %v", i, apprErr, lErr)
		}
		checkContract(t, http.MethodPost, tmplApproval, appr)
		checkContract(t, http.MethodGet, tmplOp, look)
		if e.checkDecided(appr, pend.OperationID, c.PAN, before, a, b) {
			ran++
		}
		if t.Failed() {
			t.Fatalf("trial %d of %d failed (%d ran before it)", i, trials, ran)
		}
	}
	t.Logf("%d of %d approvals ran, %d expired", ran, trials, trials-ran)
}

// TestSharedStoreApprovalWhileTheHolderShutsDown: the instance holding a
// pending reset shuts down (Shutdown, then Close) while the approval
// reaches another instance, many times. The reset either ran before the
// holder stopped (200 completed) or never will (409 approval-expired):
// never a 200 that says expired.
func TestSharedStoreApprovalWhileTheHolderShutsDown(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, envOptions{dualControl: true})
	b := startInstanceWith(t, e, redisAddr, "b", instanceOptions{waitLimit: 3 * time.Second})
	const trials = 20
	ran := 0
	for i := range trials {
		a := startInstance(t, e, redisAddr, fmt.Sprintf("a%d", i))
		c := card(140 + i)
		before := e.sim.Requests.Load()
		pend := e.submitReset(a, c.PAN)
		var wg sync.WaitGroup
		var r response
		var err error
		wg.Go(func() {
			r, err = e.send(b, "supervisor", http.MethodPost, "/v1/operations/"+pend.OperationID+"/approval", mustJSON(t, approve(DecisionApprove)), nil)
		})
		wg.Go(func() {
			time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = a.srv.Shutdown(ctx)
			_ = a.st.Close()
		})
		wg.Wait()
		if err != nil {
			t.Fatalf("trial %d: %v", i, err)
		}
		checkContract(t, http.MethodPost, tmplApproval, r)
		if e.checkDecided(r, pend.OperationID, c.PAN, before, b) {
			ran++
		}
		if t.Failed() {
			t.Fatalf("trial %d of %d failed (%d ran before it)", i, trials, ran)
		}
	}
	t.Logf("%d of %d approvals ran, %d expired", ran, trials, trials-ran)
}

// TestSharedStoreMaxRecordsReachedConcurrently: with max_records 4, twelve
// pending resets and twelve keyed operations sent at once to one instance:
// it holds at most 4 of each, refuses the rest with 503 before anything
// runs, and every 200 or 202 is an operation it holds or ran.
func TestSharedStoreMaxRecordsReachedConcurrently(t *testing.T) {
	const max, n = 4, 12
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, envOptions{dualControl: true, issuerLatency: 200 * time.Millisecond, mutate: func(c *Config) { c.MaxRecords = max }})
	a := startInstance(t, e, redisAddr, "a")

	resets := e.sendAll(n, func(i int) (response, error) {
		return e.send(a, "teller", http.MethodPost, pathResets, mustJSON(t, resetBody(t, card(160+i).PAN, "3917")), nil)
	})()
	held := 0
	for i, r := range resets {
		checkContract(t, http.MethodPost, pathResets, r)
		switch r.status {
		case http.StatusAccepted:
			held++
		case http.StatusServiceUnavailable:
		default:
			t.Errorf("reset %d = %d, want 202 or 503", i, r.status)
		}
	}
	if held != max {
		t.Errorf("%d resets of %d sent at once held, want max_records = %d", held, n, max)
	}

	before := e.sim.Requests.Load()
	ops := e.sendAll(n, func(i int) (response, error) {
		return e.send(a, "teller", http.MethodPost, pathUnblocks, mustJSON(t, unblockBody(card(180+i).PAN)),
			map[string]string{"Idempotency-Key": fmt.Sprintf("shared-full-%d", i)})
	})()
	ran := 0
	for i, r := range ops {
		checkContract(t, http.MethodPost, pathUnblocks, r)
		events := e.eventsOf(card(180 + i).PAN)
		switch {
		case r.status == http.StatusOK && events == 1:
			ran++
		case r.status == http.StatusServiceUnavailable && events == 0:
		default:
			t.Errorf("keyed operation %d = %d with %d events, want 200 with 1 or 503 with none", i, r.status, events)
		}
	}
	if ran != max {
		t.Errorf("%d keyed operations of %d sent at once ran, want max_records = %d", ran, n, max)
	}
	if got := e.sim.Requests.Load() - before; got != int64(ran) {
		t.Errorf("the issuer saw %d requests for %d operations answered 200", got, ran)
	}
}

// TestSharedStoreKeyRetriedWhileAtTheIssuer: while the first request with
// a key is at the issuer on a, the same key is sent at once to both
// instances, with the same body and with another: one issuer request, one
// event, every same-body answer the first one byte for byte, every other
// body 422.
func TestSharedStoreKeyRetriedWhileAtTheIssuer(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, envOptions{issuerLatency: 300 * time.Millisecond})
	ins := []*instance{startInstance(t, e, redisAddr, "a"), startInstance(t, e, redisAddr, "b")}
	c, other := card(190), card(191)
	key := map[string]string{"Idempotency-Key": "shared-race-1"}
	same, diff := mustJSON(t, unblockBody(c.PAN)), mustJSON(t, unblockBody(other.PAN))
	before := e.sim.Requests.Load()

	waitFirst := e.sendAll(1, func(int) (response, error) { return e.send(ins[0], "teller", http.MethodPost, pathUnblocks, same, key) })
	e.waitIssuer(before, 1)
	const n = 12
	out := e.sendAll(n, func(i int) (response, error) {
		body := same
		if i%3 == 2 {
			body = diff
		}
		return e.send(ins[i%2], "teller", http.MethodPost, pathUnblocks, body, key)
	})()
	first := waitFirst()[0]
	if res := first.result(t); first.status != http.StatusOK || res.ResponseCode != "00" {
		t.Fatalf("first request = %d %s, want 200 00", first.status, res.ResponseCode)
	}
	for i, r := range out {
		checkContract(t, http.MethodPost, pathUnblocks, r)
		if i%3 != 2 && (r.status != first.status || string(r.body) != string(first.body)) {
			t.Errorf("retry %d on %s = %d %s, want the first answer byte for byte", i, ins[i%2].name, r.status, r.body)
		}
		if i%3 == 2 {
			if p := r.problem(t); r.status != http.StatusUnprocessableEntity || p.Type != ProblemTypeBase+"idempotency-key-reused" {
				t.Errorf("other body %d on %s = %d %s, want 422 idempotency-key-reused", i, ins[i%2].name, r.status, p.Type)
			}
		}
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d requests for one key, want 1", got)
	}
	if got, o := e.eventsOf(c.PAN), e.eventsOf(other.PAN); got != 1 || o != 0 {
		t.Errorf("%d events for the operation and %d for the other body, want 1 and 0", got, o)
	}
}

// TestSharedStoreDecisionsOnTwoInstances: two supervisors approve and
// refuse one pending reset at once on both instances (with and without
// keys), many times, the reset held by either. Exactly one decision wins;
// the rest are 409 not-pending; the issuer, the journal and both lookups
// agree with the winner.
func TestSharedStoreDecisionsOnTwoInstances(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, withSecondSupervisor(envOptions{dualControl: true, issuerLatency: 50 * time.Millisecond}))
	ins := []*instance{startInstance(t, e, redisAddr, "a"), startInstance(t, e, redisAddr, "b")}
	type decision struct {
		who, decision string
		keyed         bool
	}
	const trials = 10
	approved := 0
	for i := range trials {
		c := card(300 + i)
		before := e.sim.Requests.Load()
		pend := e.submitReset(ins[i%2], c.PAN)
		ds := []decision{
			{"supervisor", DecisionApprove, false}, {"supervisor2", DecisionApprove, false},
			{"supervisor", DecisionRefuse, false}, {"supervisor2", DecisionRefuse, false},
			{"supervisor", DecisionApprove, true}, {"supervisor2", DecisionApprove, true},
		}
		rand.Shuffle(len(ds), func(a, b int) { ds[a], ds[b] = ds[b], ds[a] })
		out := e.sendAll(len(ds), func(j int) (response, error) {
			var hdr map[string]string
			if ds[j].keyed {
				hdr = map[string]string{"Idempotency-Key": fmt.Sprintf("shared-decide-%d-%d", i, j)}
			}
			return e.send(ins[j%2], ds[j].who, http.MethodPost, "/v1/operations/"+pend.OperationID+"/approval", mustJSON(t, approve(ds[j].decision)), hdr)
		})()
		wins := 0
		var win response
		for j, r := range out {
			checkContract(t, http.MethodPost, tmplApproval, r)
			switch {
			case r.status == http.StatusOK:
				wins++
				win = r
			case r.problem(t).Type != ProblemTypeBase+"not-pending":
				t.Errorf("trial %d: losing decision %d = %d %s, want 409 not-pending", i, j, r.status, r.body)
			}
		}
		if wins != 1 {
			t.Fatalf("trial %d: %d decisions answered 200, want 1", i, wins)
		}
		res := win.result(t)
		if res.Status == StatusRefused {
			if issuer, events := e.sim.Requests.Load()-before, e.eventsOf(c.PAN); issuer != 0 || events != 0 {
				t.Errorf("trial %d: refusal won, the issuer saw %d requests, %d events, want none", i, issuer, events)
			}
			for _, in := range ins {
				if got := e.at(in, "teller", http.MethodGet, "/v1/operations/"+pend.OperationID, tmplOp, nil, nil).result(t); got.Status != StatusRefused {
					t.Errorf("trial %d: GET on %s = %s, want refused", i, in.name, got.Status)
				}
			}
			continue
		}
		if e.checkDecided(win, pend.OperationID, c.PAN, before, ins...) {
			approved++
		}
	}
	t.Logf("%d of %d resets approved, the rest refused", approved, trials)
}

// TestSharedStoreReleaseRedisMissed: Redis takes a key's claim and then
// fails the request's other writes (its operation record, so the answer
// is 503, and the claim's release), as when it goes away between them.
// Once Redis is back, a retry with the same key on either instance is
// answered 503 (retry later) or runs the operation, once: never a
// "still running" 408 for a request that ran nothing.
func TestSharedStoreReleaseRedisMissed(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, envOptions{})
	ins := []*instance{
		startInstanceWith(t, e, redisAddr, "a", instanceOptions{waitLimit: 2 * time.Second}),
		startInstanceWith(t, e, redisAddr, "b", instanceOptions{waitLimit: 2 * time.Second}),
	}
	admin := redis.NewClient(&redis.Options{Addr: redisAddr, DisableIdentity: true})
	t.Cleanup(func() { _ = admin.Close() })
	acl := func(rules ...any) {
		t.Helper()
		if err := admin.Do(context.Background(), append([]any{"ACL", "SETUSER", "default"}, rules...)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c := card(195)
	body := mustJSON(t, unblockBody(c.PAN))
	key := map[string]string{"Idempotency-Key": "shared-release-missed"}
	before := e.sim.Requests.Load()

	// Keys of idempotency claims and heartbeats only, and no scripts: the
	// operation record and the release (a script) fail.
	acl("resetkeys", "~"+DefaultStoreKeyPrefix+":{bi:*", "~"+DefaultStoreKeyPrefix+":{bn:*", "-eval", "-evalsha")
	r := e.at(ins[0], "teller", http.MethodPost, pathUnblocks, pathUnblocks, body, key)
	if p := r.problem(t); r.status != http.StatusServiceUnavailable || p.Type != ProblemTypeBase+"service-unavailable" {
		t.Fatalf("request while its record cannot be written = %d %s, want 503 service-unavailable", r.status, p.Type)
	}
	acl("allkeys", "+@all")

	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		in := ins[i%2]
		r := e.at(in, "teller", http.MethodPost, pathUnblocks, pathUnblocks, body, key)
		if r.status == http.StatusOK {
			if res := r.result(t); res.Status != StatusCompleted {
				t.Errorf("retry %d on %s = 200 %s, want completed", i, in.name, res.Status)
			}
			break
		}
		if p := r.problem(t); r.status != http.StatusServiceUnavailable {
			t.Fatalf("retry %d on %s once Redis is back = %d %s, want 503 or 200: the first request ran nothing", i, in.name, r.status, p.Type)
		}
		if time.Now().After(deadline) {
			t.Fatalf("retries once Redis is back still answered 503 after 10 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got, events := e.sim.Requests.Load()-before, e.eventsOf(c.PAN); got != 1 || events != 1 {
		t.Errorf("the issuer saw %d requests and the journal has %d events, want 1 and 1", got, events)
	}
}
