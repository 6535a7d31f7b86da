package branchapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"
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

// Errors of the in-memory stores.
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
// new PIN block (under the branch key): they stay in memory, are never
// written anywhere, and are cleared when the reset leaves this state.
type pendingReset struct {
	req       *routing.Request
	submitter string // certificate subject of the submitting identity
	approveBy time.Time
}

func (p *pendingReset) clear() {
	clear(p.req.NewBlock)
	p.req.PAN = ""
}

// idemRecord is the first answer to an idempotency key.
type idemRecord struct {
	fingerprint [32]byte
	done        chan struct{} // closed when the answer below is set
	status      int
	contentType string
	location    string
	body        []byte
	expires     time.Time
}

// store keeps operations and idempotency records in memory, per instance
// (docs/branch-api.md explains what that means behind a load balancer).
// Every method is safe for concurrent use.
type store struct {
	ttl   time.Duration
	max   int
	fpKey [32]byte // HMAC key of request fingerprints: a fingerprint of a body with a PAN reveals nothing

	mu   sync.Mutex
	ops  map[string]*record
	idem map[string]*idemRecord
}

func newStore(ttl time.Duration, max int) *store {
	s := &store{ttl: ttl, max: max, ops: map[string]*record{}, idem: map[string]*idemRecord{}}
	_, _ = rand.Read(s.fpKey[:]) // never fails (Go 1.24+)
	return s
}

// fingerprint keys a request for idempotency: its route and canonical body.
func (s *store) fingerprint(route string, body []byte) [32]byte {
	m := hmac.New(sha256.New, s.fpKey[:])
	m.Write([]byte(route))
	m.Write([]byte{0})
	m.Write(body)
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// beginIdem looks up key in scope. The first request with it gets a new
// record (first true) and must call finishIdem; a retry gets the record to
// wait on; a different request with the same key gets errKeyReused.
func (s *store) beginIdem(scope, key string, fp [32]byte, now time.Time) (*idemRecord, bool, error) {
	k := scope + "\x00" + key
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.idem[k]; ok && now.Before(r.expires) {
		if !hmac.Equal(r.fingerprint[:], fp[:]) {
			return nil, false, errKeyReused
		}
		return r, false, nil
	}
	if len(s.idem) >= s.max {
		return nil, false, errStoreFull
	}
	r := &idemRecord{fingerprint: fp, done: make(chan struct{}), expires: now.Add(s.ttl)}
	s.idem[k] = r
	return r, true, nil
}

func (s *store) finishIdem(r *idemRecord, status int, contentType, location string, body []byte) {
	s.mu.Lock()
	r.status, r.contentType, r.location, r.body = status, contentType, location, body
	s.mu.Unlock()
	close(r.done)
}

// add stores a new operation.
func (s *store) add(r *record, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ops) >= s.max {
		return errStoreFull
	}
	r.expires = now.Add(s.ttl)
	s.ops[r.id] = r
	return nil
}

// get returns a copy of the result of operation id of institution inst,
// expiring a pending reset whose window has passed.
func (s *store) get(id, inst string, now time.Time) (OperationResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.ops[id]
	if !ok || r.institution != inst {
		return OperationResult{}, errNotFound
	}
	s.expireLocked(r, now)
	return r.result, nil
}

// set replaces the result of operation id.
func (s *store) set(id string, res OperationResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.ops[id]; ok {
		r.result = res
	}
}

// takePending moves a pending reset to in_progress (approve) or refused
// (refuse) for the approver, and returns it. Only one caller can take a
// pending reset. The approver must be another identity than the submitter,
// and not the teller named in the reset.
func (s *store) takePending(id, inst, approver, approverID string, approve bool, now time.Time) (*pendingReset, OperationResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.ops[id]
	if !ok || r.institution != inst {
		return nil, OperationResult{}, errNotFound
	}
	s.expireLocked(r, now)
	switch {
	case r.result.Status == StatusExpired:
		return nil, r.result, errExpired
	case r.pending == nil:
		return nil, r.result, errNotPending
	case r.pending.submitter == approver || r.pending.req.Teller == approverID:
		return nil, r.result, errSelfApproval
	}
	p := r.pending
	r.pending = nil
	r.result.Supervisor = approverID
	if approve {
		r.result.Status = StatusInProgress
		return p, r.result, nil
	}
	r.result.Status = StatusRefused
	c := now.UTC()
	r.result.Completed = &c
	p.clear()
	return nil, r.result, nil
}

// expireLocked ends a pending reset whose window has passed.
func (s *store) expireLocked(r *record, now time.Time) {
	if r.pending != nil && !now.Before(r.pending.approveBy) {
		r.pending.clear()
		r.pending = nil
		r.result.Status = StatusExpired
		c := now.UTC()
		r.result.Completed = &c
	}
}

// sweep drops records past their TTL and expires pending resets.
func (s *store) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.ops {
		s.expireLocked(r, now)
		if !now.Before(r.expires) {
			delete(s.ops, id)
		}
	}
	for k, r := range s.idem {
		if !now.Before(r.expires) {
			select {
			case <-r.done:
				delete(s.idem, k)
			default: // still being answered: dropped on a later sweep
			}
		}
	}
}
