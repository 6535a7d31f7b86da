package branchapi

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"pingate/routing"
)

var testFingerprintSecret = []byte("branchapi-test-fingerprint-secret-0123456789")

// storeRunner stands in for the flow: it counts the resets an instance
// runs and records their outcome as the server would.
type storeRunner struct {
	runs atomic.Int32
	mu   sync.Mutex
	seen []string // supervisor of each run
}

// newTestRedisStore is one instance's store over addr, bound to a server
// stub whose runner is r.
func newTestRedisStore(t *testing.T, addr, instance string, r *storeRunner) *RedisStore {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := NewRedisStore(rdb, RedisStoreConfig{Instance: instance, FingerprintSecret: testFingerprintSecret,
		PollInterval: 5 * time.Millisecond, WaitLimit: 5 * time.Second, CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.bind(&Server{cfg: Config{RecordTTL: time.Hour, MaxRecords: 100}}); err != nil {
		t.Fatal(err)
	}
	st.runner = func(ctx context.Context, p *pendingReset, res OperationResult) {
		r.runs.Add(1)
		r.mu.Lock()
		r.seen = append(r.seen, res.Supervisor)
		r.mu.Unlock()
		p.clear() // as Server.run does, before the outcome is visible
		res.Status, res.ResponseCode = StatusCompleted, "00"
		st.set(ctx, p.req.ID, res)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func testFP(s string) [32]byte {
	st := &store{fpKey: []byte("k")}
	return st.fingerprint("/v1/pin/resets", []byte(s))
}

// waitDone waits for r's answer.
func waitDone(t *testing.T, r *idemRecord) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s")
	}
}

func TestRedisStoreIdempotencyAcrossInstances(t *testing.T) {
	mr := miniredis.RunT(t)
	var run storeRunner
	a := newTestRedisStore(t, mr.Addr(), "a", &run)
	b := newTestRedisStore(t, mr.Addr(), "b", &run)
	ctx, now := context.Background(), time.Now()
	fp := testFP(`{"pan":"x"}`)

	ra, first, err := a.beginIdem(ctx, "teller", "k1", fp, now)
	if err != nil || !first {
		t.Fatalf("a.beginIdem = %v, %v, want the first claim", first, err)
	}
	rb, first, err := b.beginIdem(ctx, "teller", "k1", fp, now)
	if err != nil || first {
		t.Fatalf("b.beginIdem while a runs = %v, %v, want a record to wait on", first, err)
	}
	select {
	case <-rb.done:
		t.Fatal("b's record is done before a answered")
	default:
	}
	if _, _, err := b.beginIdem(ctx, "teller", "k1", testFP(`{"pan":"y"}`), now); !errors.Is(err, errKeyReused) {
		t.Errorf("b.beginIdem with another body = %v, want errKeyReused", err)
	}
	if _, first, err := b.beginIdem(ctx, "supervisor", "k1", fp, now); err != nil || !first {
		t.Errorf("same key of another identity = %v, %v, want a claim of its own", first, err)
	}
	body := []byte(`{"operation_id":"1"}` + "\n")
	a.finishIdem(ctx, ra, http.StatusOK, "application/json", "/v1/operations/1", body, false)
	waitDone(t, rb)
	if rb.status != http.StatusOK || !bytes.Equal(rb.body, body) || rb.location != "/v1/operations/1" || rb.contentType != "application/json" {
		t.Errorf("b's replay = %d %q %q %s, want a's answer", rb.status, rb.contentType, rb.location, rb.body)
	}
	rb2, first, err := b.beginIdem(ctx, "teller", "k1", fp, now)
	if err != nil || first {
		t.Fatalf("b.beginIdem after the answer = %v, %v", first, err)
	}
	waitDone(t, rb2)
	if !bytes.Equal(rb2.body, body) {
		t.Errorf("b's later replay = %s, want a's answer", rb2.body)
	}
	if ttl := mr.TTL(a.idemKey("teller", "k1")); ttl <= 0 || ttl > time.Hour {
		t.Errorf("idempotency key TTL %v, want the record TTL (1h)", ttl)
	}
}

func TestRedisStoreReleaseOn503(t *testing.T) {
	mr := miniredis.RunT(t)
	var run storeRunner
	a := newTestRedisStore(t, mr.Addr(), "a", &run)
	b := newTestRedisStore(t, mr.Addr(), "b", &run)
	ctx, now, fp := context.Background(), time.Now(), testFP("body")
	ra, _, _ := a.beginIdem(ctx, "teller", "k", fp, now)
	rb, first, err := b.beginIdem(ctx, "teller", "k", fp, now)
	if err != nil || first {
		t.Fatalf("b.beginIdem = %v, %v", first, err)
	}
	a.finishIdem(ctx, ra, http.StatusServiceUnavailable, "application/problem+json", "", []byte("{}"), true)
	waitDone(t, rb)
	if rb.status != http.StatusServiceUnavailable {
		t.Errorf("waiter after a release got %d, want 503", rb.status)
	}
	if _, first, err := b.beginIdem(ctx, "teller", "k", fp, now); err != nil || !first {
		t.Errorf("claim after a release = %v, %v, want a new first claim", first, err)
	}
}

func TestRedisStoreDownFailsClosed(t *testing.T) {
	mr := miniredis.RunT(t)
	var run storeRunner
	a := newTestRedisStore(t, mr.Addr(), "a", &run)
	mr.Close()
	_, _, err := a.beginIdem(context.Background(), "teller", "k", testFP("b"), time.Now())
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("beginIdem with Redis down = %v, want ErrStoreUnavailable", err)
	}
	rec := &record{id: "6f1c2a8e-0000-4000-8000-000000000001", institution: "200001", result: OperationResult{Status: StatusInProgress}}
	if err := a.add(context.Background(), rec, time.Now()); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("add with Redis down = %v, want ErrStoreUnavailable", err)
	}
}

// pendingRecord is a reset under dual control held by the caller's store.
func pendingRecord(id, pan string, block []byte, now time.Time) *record {
	req := &routing.Request{ID: id, Operation: routing.OpReset, PAN: pan, NewBlock: block, Teller: "T1"}
	res := OperationResult{OperationID: id, Status: StatusPendingApproval, Institution: "200001", MaskedPAN: "622848******0017", Teller: "T1"}
	return &record{id: id, institution: "200001", result: res,
		pending: &pendingReset{req: req, submitter: "CN=teller", approveBy: now.Add(time.Minute)}}
}

func TestRedisStoreNoSecretInRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	var run storeRunner
	a := newTestRedisStore(t, mr.Addr(), "a", &run)
	ctx, now := context.Background(), time.Now()
	pan := "6228480000000000017"
	block := bytes.Repeat([]byte{0xA7, 0x3C}, 8)
	body := `{"pan":"` + pan + `","new_pin_block":"` + hex.EncodeToString(block) + `"}`
	rec := pendingRecord("6f1c2a8e-0000-4000-8000-000000000002", pan, block, now)
	if err := a.add(ctx, rec, now); err != nil {
		t.Fatal(err)
	}
	r, _, err := a.beginIdem(ctx, "teller", "k", testFP(body), now)
	if err != nil {
		t.Fatal(err)
	}
	a.finishIdem(ctx, r, http.StatusAccepted, "application/json", "", []byte(`{"masked_pan":"622848******0017"}`), false)
	var all strings.Builder
	for _, k := range mr.Keys() {
		all.WriteString(k)
		if v, err := mr.Get(k); err == nil {
			all.WriteString(v)
		}
	}
	dump := strings.ToUpper(all.String())
	for kind, v := range map[string]string{"PAN": pan, "PIN block": hex.EncodeToString(block)} {
		if strings.Contains(dump, strings.ToUpper(v)) {
			t.Errorf("Redis holds the %s", kind)
		}
	}
	if !strings.Contains(dump, "622848******0017") || !strings.Contains(dump, strings.ToUpper(a.Owner())) {
		t.Errorf("Redis lacks the masked PAN or the holder's id of the pending reset")
	}
	raw := testFP(body)
	if !strings.Contains(dump, strings.ToUpper(hex.EncodeToString(raw[:]))) {
		t.Errorf("the idempotency record does not hold the request fingerprint")
	}
}

func TestRedisStoreTakePendingOneWinner(t *testing.T) {
	mr := miniredis.RunT(t)
	var run storeRunner
	a := newTestRedisStore(t, mr.Addr(), "a", &run)
	b := newTestRedisStore(t, mr.Addr(), "b", &run)
	c := newTestRedisStore(t, mr.Addr(), "c", &run)
	ctx, now := context.Background(), time.Now()
	id := "6f1c2a8e-0000-4000-8000-000000000003"
	if err := a.add(ctx, pendingRecord(id, "6228480000000000017", []byte{1, 2, 3, 4, 5, 6, 7, 8}, now), now); err != nil {
		t.Fatal(err)
	}
	type result struct {
		p   *pendingReset
		res OperationResult
		err error
	}
	stores := []*RedisStore{a, b, c, b, c}
	out := make([]result, len(stores))
	var wg sync.WaitGroup
	for i, st := range stores {
		wg.Go(func() {
			p, res, err := st.takePending(ctx, id, "200001", "CN=supervisor", "S1", true, now)
			out[i] = result{p, res, err}
		})
	}
	wg.Wait()
	wins := 0
	for i, o := range out {
		switch {
		case o.err == nil:
			wins++
			if o.p != nil && stores[i] != a {
				t.Errorf("store %d got the PIN block of a reset another instance holds", i)
			}
			if o.p != nil { // the holder won: the handler runs it
				run.runs.Add(1)
			}
		case !errors.Is(o.err, errNotPending):
			t.Errorf("losing approval %d = %v, want errNotPending", i, o.err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d approvals won, want exactly 1", wins)
	}
	deadline := time.Now().Add(5 * time.Second)
	for run.runs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a second run, if there were one, would show now
	if n := run.runs.Load(); n != 1 {
		t.Errorf("the reset ran %d times, want 1", n)
	}
}

func TestRedisStoreApprovalOnAnotherInstance(t *testing.T) {
	mr := miniredis.RunT(t)
	var run storeRunner
	a := newTestRedisStore(t, mr.Addr(), "a", &run)
	b := newTestRedisStore(t, mr.Addr(), "b", &run)
	ctx, now := context.Background(), time.Now()
	id := "6f1c2a8e-0000-4000-8000-000000000004"
	block := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	rec := pendingRecord(id, "6228480000000000017", block, now)
	if err := a.add(ctx, rec, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.takePending(ctx, id, "200001", "CN=teller", "S1", true, now); !errors.Is(err, errSelfApproval) {
		t.Errorf("approval by the submitter = %v, want errSelfApproval", err)
	}
	if _, _, err := b.takePending(ctx, id, "200001", "CN=supervisor", "T1", true, now); !errors.Is(err, errSelfApproval) {
		t.Errorf("approval by the reset's teller = %v, want errSelfApproval", err)
	}
	if _, _, err := b.takePending(ctx, id, "200002", "CN=supervisor", "S1", true, now); !errors.Is(err, errNotFound) {
		t.Errorf("approval from another institution = %v, want errNotFound", err)
	}
	p, res, err := b.takePending(ctx, id, "200001", "CN=supervisor", "S1", true, now)
	if err != nil || p != nil {
		t.Fatalf("approval on b = %v, %v, want the outcome and no PIN block", p != nil, err)
	}
	if res.Status != StatusCompleted || res.ResponseCode != "00" || res.Supervisor != "S1" {
		t.Errorf("approval on b answered %+v, want a's completed outcome with its supervisor", res)
	}
	if n := run.runs.Load(); n != 1 {
		t.Errorf("a ran the reset %d times, want 1", n)
	}
	if !bytes.Equal(block, make([]byte, len(block))) || rec.pending.req.PAN != "" {
		t.Errorf("a did not clear the PIN block and PAN after the run")
	}
	if got, err := b.get(ctx, id, "200001", now); err != nil || got.Status != StatusCompleted {
		t.Errorf("get on b = %s, %v, want completed", got.Status, err)
	}
}

func TestRedisStoreRefusalAndExpiry(t *testing.T) {
	mr := miniredis.RunT(t)
	var run storeRunner
	a := newTestRedisStore(t, mr.Addr(), "a", &run)
	b := newTestRedisStore(t, mr.Addr(), "b", &run)
	ctx, now := context.Background(), time.Now()

	id := "6f1c2a8e-0000-4000-8000-000000000005"
	block := []byte{9, 9, 9, 9, 9, 9, 9, 9}
	if err := a.add(ctx, pendingRecord(id, "6228480000000000017", block, now), now); err != nil {
		t.Fatal(err)
	}
	_, res, err := b.takePending(ctx, id, "200001", "CN=supervisor", "S1", false, now)
	if err != nil || res.Status != StatusRefused {
		t.Fatalf("refusal on b = %s, %v, want refused", res.Status, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Equal(block, make([]byte, 8)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !bytes.Equal(block, make([]byte, 8)) {
		t.Errorf("a still holds the PIN block of a refused reset")
	}

	id2 := "6f1c2a8e-0000-4000-8000-000000000006"
	if err := a.add(ctx, pendingRecord(id2, "6228480000000000017", []byte{1}, now), now); err != nil {
		t.Fatal(err)
	}
	late := now.Add(2 * time.Minute)
	if got, err := b.get(ctx, id2, "200001", late); err != nil || got.Status != StatusExpired {
		t.Errorf("get after the window = %s, %v, want expired", got.Status, err)
	}
	if _, _, err := b.takePending(ctx, id2, "200001", "CN=supervisor", "S1", true, late); !errors.Is(err, errExpired) {
		t.Errorf("late approval = %v, want errExpired", err)
	}
	if n := run.runs.Load(); n != 0 {
		t.Errorf("%d refused or expired resets ran", n)
	}
}

func TestRedisStoreHolderStopped(t *testing.T) {
	mr := miniredis.RunT(t)
	var run storeRunner
	a := newTestRedisStore(t, mr.Addr(), "a", &run)
	b := newTestRedisStore(t, mr.Addr(), "b", &run)
	ctx, now := context.Background(), time.Now()
	id := "6f1c2a8e-0000-4000-8000-000000000007"
	if err := a.add(ctx, pendingRecord(id, "6228480000000000017", []byte{1}, now), now); err != nil {
		t.Fatal(err)
	}
	ra, _, err := a.beginIdem(ctx, "teller", "k", testFP("x"), now)
	if err != nil {
		t.Fatal(err)
	}
	_ = ra
	rb, _, err := b.beginIdem(ctx, "teller", "k", testFP("x"), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := b.get(ctx, id, "200001", now); err != nil || got.Status != StatusExpired {
		t.Errorf("pending reset of a stopped instance = %s, %v, want expired", got.Status, err)
	}
	waitDone(t, rb)
	if rb.status != http.StatusServiceUnavailable {
		t.Errorf("retry of a request whose instance stopped = %d, want 503", rb.status)
	}
	if n := run.runs.Load(); n != 0 {
		t.Errorf("%d resets ran", n)
	}
}

func TestNewRedisStoreValidates(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	tests := []struct {
		name string
		give RedisStoreConfig
	}{
		{"short secret", RedisStoreConfig{FingerprintSecret: []byte("short")}},
		{"brace in prefix", RedisStoreConfig{FingerprintSecret: testFingerprintSecret, KeyPrefix: "p{x}"}},
		{"negative wait", RedisStoreConfig{FingerprintSecret: testFingerprintSecret, WaitLimit: -time.Second}},
	}
	for _, tt := range tests {
		if _, err := NewRedisStore(rdb, tt.give); err == nil {
			t.Errorf("NewRedisStore(%s) = nil error, want one", tt.name)
		}
	}
	if _, err := NewRedisStore(nil, RedisStoreConfig{FingerprintSecret: testFingerprintSecret}); err == nil {
		t.Error("NewRedisStore(nil client) = nil error")
	}
	a, _ := NewRedisStore(rdb, RedisStoreConfig{FingerprintSecret: testFingerprintSecret})
	b, _ := NewRedisStore(rdb, RedisStoreConfig{FingerprintSecret: testFingerprintSecret})
	if !bytes.Equal(a.fingerprintKey(), b.fingerprintKey()) || bytes.Contains(a.fingerprintKey(), testFingerprintSecret[:16]) {
		t.Error("two stores of one secret derive different fingerprint keys, or the key is the secret")
	}
	if a.Owner() == b.Owner() {
		t.Error("two stores share an owner id")
	}
}
