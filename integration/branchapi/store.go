package branchapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"pingate/routing"
)

// Operation statuses, as OperationResult.Status shows them.
const (
	StatusPendingApproval = "pending_approval" // a reset under dual control, waiting for a supervisor
	StatusInProgress      = "in_progress"      // in the flow now
	StatusCompleted       = "completed"        // the flow answered: see outcome and response_code
	StatusRefused         = "refused"          // a supervisor refused the reset; it never reached the issuer
	StatusExpired         = "expired"          // no approval came within the window; it never reached the issuer
)

// ErrStoreUnavailable is wrapped by the errors of a shared Store that could
// not reach its backend (Redis down, timed out). Idempotent requests then
// fail closed: the handler answers 503 service-unavailable and runs nothing.
var ErrStoreUnavailable = errors.New("branch api: shared store unavailable")

// Errors of the stores.
var (
	errStoreFull    = errors.New("branch api: operation store full")
	errNotFound     = errors.New("branch api: no such operation")
	errNotPending   = errors.New("branch api: operation not pending approval")
	errExpired      = errors.New("branch api: approval window passed")
	errKeyReused    = errors.New("branch api: idempotency key reused with another request")
	errSelfApproval = errors.New("branch api: self-approval")
)

// record is one operation the API has taken.
type record struct {
	id          string
	institution string
	result      OperationResult
	pending     *pendingReset // while StatusPendingApproval
	expires     time.Time     // when the record is dropped
}

// pendingReset is a reset held for its approval. req holds the PAN and the
// new PIN block (under the branch key): they stay in memory of the instance
// that took the reset, are never written anywhere (not to Redis either), and
// are cleared when the reset leaves this state.
type pendingReset struct {
	req       *routing.Request
	submitter string // certificate subject of the submitting identity
	approveBy time.Time
}

func (p *pendingReset) clear() {
	clear(p.req.NewBlock)
	p.req.PAN = ""
}

// idemRecord is the first answer to an idempotency key. A caller that gets
// it waits for done; the answer fields are set before done is closed and
// never change afterwards.
type idemRecord struct {
	key         string // the store's key of (scope, idempotency key)
	fingerprint [32]byte
	done        chan struct{} // closed when the answer below is set
	status      int
	contentType string
	location    string
	body        []byte
	expires     time.Time
	claim       string // RedisStore: the claim value this instance wrote
}

// setAnswer fills r and closes done; it is called once per record.
func (r *idemRecord) setAnswer(status int, contentType, location string, body []byte) {
	r.status, r.contentType, r.location, r.body = status, contentType, location, body
	close(r.done)
}

// Store keeps what the branch API must remember between requests:
// idempotency records, operation results and pending dual-control
// approvals. There are two: the in-memory store New uses (one instance; the
// embedded default and unit tests) and *RedisStore (shared by every
// instance behind a load balancer), which NewWithStore takes.
//
// The methods are unexported, so the set of stores is closed; each states
// its contract:
//
//   - beginIdem claims (scope, key) for the request fingerprint fp. The first
//     request gets first true and must call finishIdem; a retry with the same
//     fp gets a record to wait on (done), whichever instance runs the first;
//     another fp gets errKeyReused. A shared store that cannot be reached
//     returns an error wrapping ErrStoreUnavailable.
//   - finishIdem records the first answer. With release, the key is freed
//     instead (the answer says nothing ran: a later retry may run).
//   - add stores a new operation (and, for a pending reset, its PIN block in
//     this process only); get returns its result for its institution,
//     expiring a pending reset whose window has passed; set replaces it.
//   - takePending moves a pending reset to in_progress (approve) or refused
//     for the approver; exactly one caller, on any instance, wins. It returns
//     the reset to run when this process holds it; otherwise the instance
//     that holds it runs it, and the returned result is its outcome (or
//     in_progress, if it did not finish within the store's wait).
//   - sweep drops records past their TTL and clears expired PIN blocks.
type Store interface {
	fingerprintKey() []byte
	bind(s *Server) error
	beginIdem(ctx context.Context, scope, key string, fp [32]byte, now time.Time) (*idemRecord, bool, error)
	finishIdem(ctx context.Context, r *idemRecord, status int, contentType, location string, body []byte, release bool)
	add(ctx context.Context, r *record, now time.Time) error
	get(ctx context.Context, id, inst string, now time.Time) (OperationResult, error)
	set(ctx context.Context, id string, res OperationResult)
	takePending(ctx context.Context, id, inst, approver, approverID string, approve bool, now time.Time) (*pendingReset, OperationResult, error)
	sweep(now time.Time)
}

var (
	_ Store = (*memStore)(nil)
	_ Store = (*RedisStore)(nil)
)

// NewWithStore is New with the given store of operations and idempotency
// records: a *RedisStore shares them between instances. st may be bound to
// one server only; nil means the in-memory store of New.
func NewWithStore(cfg Config, flow Flow, logger *slog.Logger, st Store) (*Server, error) {
	s, err := New(cfg, flow, logger)
	if err != nil || st == nil {
		return s, err
	}
	if err := st.bind(s); err != nil {
		return nil, err
	}
	s.st = &store{b: st, fpKey: st.fingerprintKey()}
	return s, nil
}

// storeCallTimeout bounds each store call of a handler. The handlers' store
// calls do not carry the request's context (they predate a shared store), so
// the store bounds its own round trips; a shared store's client timeouts
// (redislimit.Config.ReadTimeout) are shorter still.
const storeCallTimeout = 5 * time.Second

// store is what the handlers call: it computes request fingerprints and
// hands every call to its Store with a bounded context.
type store struct {
	b     Store
	fpKey []byte // HMAC key of request fingerprints: a fingerprint of a body with a PAN reveals nothing without it
}

func newStore(ttl time.Duration, max int) *store {
	m := newMemStore(ttl, max)
	return &store{b: m, fpKey: m.fingerprintKey()}
}

// callCtx is the context of one store call. context.Background is used
// here, outside main and tests, because the handlers pass no context (see
// storeCallTimeout).
func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeCallTimeout)
}

// fingerprint keys a request for idempotency: its route and canonical body.
func (s *store) fingerprint(route string, body []byte) [32]byte {
	m := hmac.New(sha256.New, s.fpKey)
	m.Write([]byte(route))
	m.Write([]byte{0})
	m.Write(body)
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

func (s *store) beginIdem(scope, key string, fp [32]byte, now time.Time) (*idemRecord, bool, error) {
	ctx, cancel := callCtx()
	defer cancel()
	return s.b.beginIdem(ctx, scope, key, fp, now)
}

// finishIdem records the first answer to r's key. A 503 answer (the store
// or the server could not take the operation: nothing ran) releases the key
// instead, so that the client's "retry later" can succeed; requests already
// waiting on r still get the 503.
func (s *store) finishIdem(r *idemRecord, status int, contentType, location string, body []byte) {
	ctx, cancel := callCtx()
	defer cancel()
	s.b.finishIdem(ctx, r, status, contentType, location, body, status == http.StatusServiceUnavailable)
}

func (s *store) add(r *record, now time.Time) error {
	ctx, cancel := callCtx()
	defer cancel()
	return s.b.add(ctx, r, now)
}

func (s *store) get(id, inst string, now time.Time) (OperationResult, error) {
	ctx, cancel := callCtx()
	defer cancel()
	return s.b.get(ctx, id, inst, now)
}

func (s *store) set(id string, res OperationResult) {
	ctx, cancel := callCtx()
	defer cancel()
	s.b.set(ctx, id, res)
}

// takePending may wait for another instance to run the approved reset; its
// Store bounds that wait, so its context is not storeCallTimeout's.
func (s *store) takePending(id, inst, approver, approverID string, approve bool, now time.Time) (*pendingReset, OperationResult, error) {
	return s.b.takePending(context.Background(), id, inst, approver, approverID, approve, now)
}

func (s *store) sweep(now time.Time) { s.b.sweep(now) }
