package branchapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/integration/testservers"
	"pingate/iso8583"
)

// instance is one branch API server of a multi-instance test: its own
// listener and RedisStore, over the test environment's flow.
type instance struct {
	name string
	srv  *Server
	addr string
	st   *RedisStore
}

// startInstance starts a branch API over e's flow and configuration, its
// operations and idempotency records in the Redis at redisAddr.
func startInstance(t *testing.T, e *env, redisAddr, name string) *instance {
	t.Helper()
	return startInstanceWith(t, e, redisAddr, name, instanceOptions{})
}

// instanceOptions change one instance of a multi-instance test.
type instanceOptions struct {
	now       func() time.Time // the server's clock (nil: time.Now); set before it serves
	waitLimit time.Duration    // RedisStoreConfig.WaitLimit (0: 20s)
}

// startInstanceWith is startInstance with o.
func startInstanceWith(t *testing.T, e *env, redisAddr, name string, o instanceOptions) *instance {
	t.Helper()
	if o.waitLimit == 0 {
		o.waitLimit = 20 * time.Second
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, DialTimeout: 250 * time.Millisecond, ReadTimeout: 250 * time.Millisecond,
		WriteTimeout: 250 * time.Millisecond, MaxRetries: 1, DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := NewRedisStore(rdb, RedisStoreConfig{Instance: name, FingerprintSecret: testFingerprintSecret,
		PollInterval: 10 * time.Millisecond, WaitLimit: o.waitLimit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	srv, err := NewWithStore(e.srv.cfg, e.srv.flow, e.srv.log.With("instance", name), st)
	if err != nil {
		t.Fatal(err)
	}
	if o.now != nil {
		srv.now = o.now
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown(%s) = %v", name, err)
		}
		<-served
	})
	return &instance{name: name, srv: srv, addr: ln.Addr().String(), st: st}
}

// send is one request to in as who; safe to call from any goroutine (it
// returns errors instead of failing the test).
func (e *env) send(in *instance, who, method, path string, body []byte, hdr map[string]string) (response, error) {
	req, err := http.NewRequest(method, "https://"+in.addr+path, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client(who).Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s on %s: %w", method, path, in.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// at is send for the test goroutine, with the contract check of env.do.
func (e *env) at(in *instance, who, method, path, template string, body []byte, hdr map[string]string) response {
	e.t.Helper()
	r, err := e.send(in, who, method, path, body, hdr)
	if err != nil {
		e.t.Fatal(err)
	}
	checkContract(e.t, method, template, r)
	return r
}

// TestSharedStoreRetryOnAnotherInstance: two instances share one real
// Redis. A retry with the same Idempotency-Key on the other instance gets
// the first answer byte for byte and the issuer sees one request; the
// operation is found on either instance; the same key with another body is
// refused on the other instance too.
func TestSharedStoreRetryOnAnotherInstance(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, envOptions{})
	a, b := startInstance(t, e, redisAddr, "a"), startInstance(t, e, redisAddr, "b")
	c := card(40)
	body := mustJSON(t, changeBody(t, c.PAN, c.PIN, "4826"))
	key := map[string]string{"Idempotency-Key": "shared-retry-1"}

	before := e.sim.Requests.Load()
	first := e.at(a, "teller", http.MethodPost, pathChanges, pathChanges, body, key)
	res := first.result(t)
	if first.status != http.StatusOK || res.ResponseCode != "00" {
		t.Fatalf("first request on a = %d %+v, want 200 approved", first.status, res)
	}
	retry := e.at(b, "teller", http.MethodPost, pathChanges, pathChanges, body, key)
	if retry.status != first.status || !bytes.Equal(retry.body, first.body) {
		t.Errorf("retry on b = %d %s, want a's answer %d %s", retry.status, retry.body, first.status, first.body)
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d requests for one operation and its retry, want 1", got)
	}
	for _, in := range []*instance{a, b} {
		got := e.at(in, "teller", http.MethodGet, "/v1/operations/"+res.OperationID, tmplOp, nil, nil).result(t)
		if got.Status != StatusCompleted || got.ResponseCode != "00" || got.EventID != res.EventID {
			t.Errorf("GET on %s = %+v, want the completed operation", in.name, got)
		}
	}
	other := mustJSON(t, changeBody(t, c.PAN, "4826", "5931"))
	r := e.at(b, "teller", http.MethodPost, pathChanges, pathChanges, other, key)
	if p := r.problem(t); r.status != http.StatusUnprocessableEntity || p.Type != ProblemTypeBase+"idempotency-key-reused" {
		t.Errorf("same key, other body on b = %d %s, want 422 idempotency-key-reused", r.status, p.Type)
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d requests, want 1", got)
	}
	noSecret(t, "the answers", bytes.Join(e.bodies, nil), map[string]string{"PAN": c.PAN})
}

// TestSharedStoreConcurrentRetries: the same request with the same key sent
// at once to both instances, several times: one PIN operation, one event,
// and every answer is its answer.
func TestSharedStoreConcurrentRetries(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, envOptions{})
	ins := []*instance{startInstance(t, e, redisAddr, "a"), startInstance(t, e, redisAddr, "b")}
	c := card(41)
	body := mustJSON(t, unblockBody(c.PAN))
	key := map[string]string{"Idempotency-Key": "shared-concurrent-1"}
	before := e.sim.Requests.Load()

	const n = 8
	out := make([]response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i], errs[i] = e.send(ins[i%2], "teller", http.MethodPost, pathUnblocks, body, key) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		checkContract(t, http.MethodPost, pathUnblocks, out[i])
		if out[i].status != http.StatusOK || !bytes.Equal(out[i].body, out[0].body) {
			t.Errorf("answer %d (instance %s) = %d %s, want the one answer %d %s", i, ins[i%2].name, out[i].status, out[i].body, out[0].status, out[0].body)
		}
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d requests for %d concurrent retries, want 1", got, n)
	}
	count := 0
	for _, ev := range e.events() {
		if ev.MaskedPAN == iso8583.MaskPAN(c.PAN) {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d events for the operation, want 1", count)
	}
}

// TestSharedStoreApprovalOnAnotherInstance: a teller submits a reset under
// dual control to a; the supervisor's approval reaches b, which records it
// in Redis; a, which holds the PIN block, runs the reset, and b answers with
// its outcome. A second approval on either instance is refused, and the
// issuer saw one request.
func TestSharedStoreApprovalOnAnotherInstance(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	e := newEnv(t, envOptions{dualControl: true})
	a, b := startInstance(t, e, redisAddr, "a"), startInstance(t, e, redisAddr, "b")
	c := card(42)
	before := e.sim.Requests.Load()

	r := e.at(a, "teller", http.MethodPost, pathResets, pathResets, mustJSON(t, resetBody(t, c.PAN, "3917")), map[string]string{"Idempotency-Key": "shared-reset-1"})
	pend := r.result(t)
	if r.status != http.StatusAccepted || pend.Status != StatusPendingApproval {
		t.Fatalf("reset on a = %d %s, want 202 pending_approval", r.status, pend.Status)
	}
	if got := e.at(b, "teller", http.MethodGet, "/v1/operations/"+pend.OperationID, tmplOp, nil, nil).result(t); got.Status != StatusPendingApproval {
		t.Errorf("GET on b = %s, want pending_approval", got.Status)
	}
	path := "/v1/operations/" + pend.OperationID + "/approval"
	r = e.at(b, "supervisor", http.MethodPost, path, tmplApproval, mustJSON(t, approve(DecisionApprove)), nil)
	res := r.result(t)
	if r.status != http.StatusOK || res.Status != StatusCompleted || res.ResponseCode != "00" || res.Supervisor != "S0117-01" {
		t.Fatalf("approval on b = %d %+v, want 200 completed 00 by S0117-01", r.status, res)
	}
	ev, ok := e.eventByID(res.EventID)
	if !ok || ev.Supervisor != "S0117-01" || ev.Teller != "T0117-07" {
		t.Errorf("event of the approved reset = %+v (found %v), want teller and supervisor", ev, ok)
	}
	for _, in := range []*instance{a, b} {
		r := e.at(in, "supervisor", http.MethodPost, path, tmplApproval, mustJSON(t, approve(DecisionApprove)), nil)
		if p := r.problem(t); r.status != http.StatusConflict || p.Type != ProblemTypeBase+"not-pending" {
			t.Errorf("second approval on %s = %d %s, want 409 not-pending", in.name, r.status, p.Type)
		}
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d requests, want 1", got)
	}
	// The new PIN is the card's now: a change from it is approved.
	if got := e.at(b, "teller", http.MethodPost, pathChanges, pathChanges, mustJSON(t, changeBody(t, c.PAN, "3917", "5820")), nil).result(t); got.ResponseCode != "00" {
		t.Errorf("change from the reset PIN = %s, want 00", got.ResponseCode)
	}
}

// TestSharedStoreRedisDown: with Redis down, an idempotent request and a
// lookup are refused with 503 service-unavailable and reach nothing; once Redis is
// back, the same request with the same key runs.
func TestSharedStoreRedisDown(t *testing.T) {
	rs := testservers.StartRedisServer(t)
	e := newEnv(t, envOptions{})
	a := startInstance(t, e, rs.Addr, "a")
	c := card(43)
	body := mustJSON(t, unblockBody(c.PAN))
	key := map[string]string{"Idempotency-Key": "shared-down-1"}
	before := e.sim.Requests.Load()

	rs.Stop()
	r := e.at(a, "teller", http.MethodPost, pathUnblocks, pathUnblocks, body, key)
	if p := r.problem(t); r.status != http.StatusServiceUnavailable || p.Type != ProblemTypeBase+"service-unavailable" {
		t.Errorf("idempotent request with Redis down = %d %s, want 503 service-unavailable", r.status, p.Type)
	}
	if got := e.sim.Requests.Load() - before; got != 0 {
		t.Errorf("the issuer saw %d requests while the store was down, want 0", got)
	}
	// A lookup cannot tell "unknown" from "unreachable" then: it says 503.
	r = e.at(a, "teller", http.MethodGet, "/v1/operations/00000000-0000-4000-8000-000000000000", tmplOp, nil, nil)
	if p := r.problem(t); r.status != http.StatusServiceUnavailable || p.Type != ProblemTypeBase+"service-unavailable" {
		t.Errorf("lookup with Redis down = %d %s, want 503 service-unavailable", r.status, p.Type)
	}
	rs.Start()
	r = e.at(a, "teller", http.MethodPost, pathUnblocks, pathUnblocks, body, key)
	if res := r.result(t); r.status != http.StatusOK || res.Status != StatusCompleted {
		t.Errorf("the same request once Redis is back = %d %s, want 200 completed", r.status, res.Status)
	}
	if got := e.sim.Requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d requests, want 1", got)
	}
}
