package branchapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"sync"
	"time"
)

// memStore keeps operations and idempotency records in memory, per instance
// (docs/branch-api.md explains what that means behind a load balancer): the
// store of New, the embedded default and the unit tests. Every method is
// safe for concurrent use; the contexts are unused.
type memStore struct {
	ttl   time.Duration
	max   int
	fpKey [32]byte // random per process: fingerprints are compared here only

	mu   sync.Mutex
	ops  map[string]*record
	idem map[string]*idemRecord
}

func newMemStore(ttl time.Duration, max int) *memStore {
	s := &memStore{ttl: ttl, max: max, ops: map[string]*record{}, idem: map[string]*idemRecord{}}
	_, _ = rand.Read(s.fpKey[:]) // never fails (Go 1.24+)
	return s
}

func (s *memStore) fingerprintKey() []byte { return s.fpKey[:] }

func (s *memStore) bind(srv *Server) error {
	s.ttl, s.max = srv.cfg.RecordTTL, srv.cfg.MaxRecords
	return nil
}

func (s *memStore) beginIdem(_ context.Context, scope, key string, fp [32]byte, now time.Time) (*idemRecord, bool, error) {
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
	r := &idemRecord{key: k, fingerprint: fp, done: make(chan struct{}), expires: now.Add(s.ttl)}
	s.idem[k] = r
	return r, true, nil
}

func (s *memStore) finishIdem(_ context.Context, r *idemRecord, status int, contentType, location string, body []byte, release bool) {
	s.mu.Lock()
	if release && s.idem[r.key] == r {
		delete(s.idem, r.key)
	}
	r.setAnswer(status, contentType, location, body)
	s.mu.Unlock()
}

func (s *memStore) add(_ context.Context, r *record, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ops) >= s.max {
		return errStoreFull
	}
	r.expires = now.Add(s.ttl)
	s.ops[r.id] = r
	return nil
}

func (s *memStore) get(_ context.Context, id, inst string, now time.Time) (OperationResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.ops[id]
	if !ok || r.institution != inst {
		return OperationResult{}, errNotFound
	}
	s.expireLocked(r, now)
	return r.result, nil
}

func (s *memStore) set(_ context.Context, id string, res OperationResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.ops[id]; ok {
		r.result = res
	}
}

// takePending: the approver must be another identity than the submitter,
// and not the teller named in the reset.
func (s *memStore) takePending(_ context.Context, id, inst, approver, approverID string, approve bool, now time.Time) (*pendingReset, OperationResult, error) {
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
func (s *memStore) expireLocked(r *record, now time.Time) {
	if r.pending != nil && !now.Before(r.pending.approveBy) {
		r.pending.clear()
		r.pending = nil
		r.result.Status = StatusExpired
		c := now.UTC()
		r.result.Completed = &c
	}
}

func (s *memStore) sweep(now time.Time) {
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
