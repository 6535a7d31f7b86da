package branchapi

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisStoreConfig.
const (
	DefaultStoreKeyPrefix    = "pg"
	DefaultStorePollInterval = 100 * time.Millisecond
	DefaultStoreWaitLimit    = 25 * time.Second
	DefaultStoreCallTimeout  = 2 * time.Second
)

// heartbeatEvery is how often an instance marks itself alive in Redis and
// re-checks its pending resets for approvals that pub/sub did not deliver;
// heartbeatTTL is how long the mark lives: an instance whose mark is gone has
// stopped, and the PIN blocks it held are gone with it.
const (
	heartbeatEvery = time.Second
	heartbeatTTL   = 5 * time.Second
)

// fingerprintInfo separates the fingerprint key from every other use of the
// secret it is derived from (HKDF info, RFC 5869).
const fingerprintInfo = "pingate/branchapi idempotency fingerprint v1"

// RedisStoreConfig configures a RedisStore.
type RedisStoreConfig struct {
	// Instance names this gateway instance (cmd/pingate Config.Instance). A
	// random suffix makes this process's owner id unique, so two processes
	// with one name never take each other's pending resets.
	Instance string
	// KeyPrefix starts every key and channel (default "pg", the limiter's);
	// it must not contain '{' or '}'.
	KeyPrefix string
	// FingerprintSecret (at least 32 bytes) keys the request fingerprints
	// that instances compare: every instance must hold the same secret. It
	// is never written to Redis, so a fingerprint there does not reveal the
	// PAN of the body it was made from. Copied by NewRedisStore.
	FingerprintSecret []byte
	// PollInterval is how often a retry waiting for another instance's
	// first answer, or an approver waiting for the reset another instance
	// runs, reads Redis again (default 100ms).
	PollInterval time.Duration
	// WaitLimit bounds those waits (default 25s, below the branch API's
	// default write timeout). A retry that reaches it gets 408
	// request-timeout; an approver gets the operation as in_progress.
	WaitLimit time.Duration
	// CallTimeout bounds each Redis round trip of the store (default 2s);
	// the client's own read and write timeouts apply too.
	CallTimeout time.Duration
	// Logger receives the store's failures (never a PAN or a PIN block);
	// nil discards them.
	Logger *slog.Logger
}

// RedisStore shares the branch API's idempotency records, operation results
// and pending approvals between gateway instances through Redis (standalone,
// Sentinel or Cluster: every key has its own hash tag and every atomic step
// touches one key).
//
// What is in Redis: JSON documents holding the request fingerprint (an HMAC
// under a secret Redis never sees), the first answer to an idempotency key
// (the API's own JSON: masked PAN, codes, ids), operation results, and for a
// pending reset its submitter, teller, approval deadline and the id of the
// instance holding it. Never a PAN or a PIN block: a pending reset's PIN
// block (or generated-PIN request, with its PAN) stays in the memory of the
// instance that took it. An approval reaching another instance is recorded
// in Redis (WATCH/MULTI: exactly one approver wins) and published on the
// holder's channel; the holder, notified (or polling every second), runs the
// reset, and the approver's instance answers with the outcome once it is in
// Redis.
//
// Keys expire after the server's record TTL. Build it with NewRedisStore,
// hand it to NewWithStore, and Close it after the server's Shutdown.
type RedisStore struct {
	rdb   redis.UniversalClient
	cfg   RedisStoreConfig
	owner string
	fpKey []byte
	log   *slog.Logger

	// set by bind
	ttl    time.Duration
	max    int
	runner func(ctx context.Context, p *pendingReset, res OperationResult)
	// life is the context of the store's goroutines, cancelled by Close. It
	// is a field (against the usual rule) because beginIdem, called without
	// a context by the handlers, starts waiters that must outlive the call
	// and stop with the store.
	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	bound    bool
	closed   bool
	pending  map[string]*pendingReset // by operation id: this instance's PIN blocks
	inflight map[string]*idemRecord   // by key: first requests this instance runs, and answers not yet written to Redis
	waits    map[string]*idemRecord   // by key: first answers of other instances being waited for
	// unwritten are answers this instance gave that Redis did not take yet:
	// the claim to replace and the answer document, by key.
	unwritten map[string][2]string
	// claiming and adding count the beginIdem and add calls between their
	// check of max_records and their entry in inflight, waits or pending
	// (a Redis round trip): they hold a place, so that concurrent calls
	// cannot pass the bound together.
	claiming, adding int
}

// NewRedisStore validates cfg and returns a store over rdb, which the caller
// owns and closes after Close. It does not contact Redis: a Redis that is
// down is met request by request (idempotent requests fail closed with 503).
func NewRedisStore(rdb redis.UniversalClient, cfg RedisStoreConfig) (*RedisStore, error) {
	if rdb == nil {
		return nil, errors.New("branch api store: no redis client")
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultStoreKeyPrefix
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultStorePollInterval
	}
	if cfg.WaitLimit == 0 {
		cfg.WaitLimit = DefaultStoreWaitLimit
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultStoreCallTimeout
	}
	var errs []error
	if strings.ContainsAny(cfg.KeyPrefix, "{}") {
		errs = append(errs, fmt.Errorf("key prefix %q: must not contain '{' or '}'", cfg.KeyPrefix))
	}
	if len(cfg.FingerprintSecret) < 32 {
		errs = append(errs, fmt.Errorf("fingerprint secret: %d bytes, want at least 32", len(cfg.FingerprintSecret)))
	}
	if cfg.PollInterval < 0 || cfg.WaitLimit < 0 || cfg.CallTimeout < 0 {
		errs = append(errs, errors.New("poll interval, wait limit and call timeout must be > 0"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("branch api store: %w", err)
	}
	fpKey, err := hkdf.Key(sha256.New, cfg.FingerprintSecret, nil, fingerprintInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("branch api store: fingerprint key: %w", err)
	}
	cfg.FingerprintSecret = nil // not kept: only the derived key is needed
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RedisStore{
		rdb: rdb, cfg: cfg, fpKey: fpKey, log: log,
		owner:     keyPart(cfg.Instance) + "-" + hex.EncodeToString(suffix[:]),
		pending:   map[string]*pendingReset{},
		inflight:  map[string]*idemRecord{},
		waits:     map[string]*idemRecord{},
		unwritten: map[string][2]string{},
	}, nil
}

// keyPart keeps letters, digits, '.', '_' and '-' of s (others become '_'),
// so a name can sit inside a key's hash tag.
func keyPart(s string) string {
	if s == "" {
		s = "pingate"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// Owner is this process's id in Redis: the instance name and a random suffix.
func (s *RedisStore) Owner() string { return s.owner }

// Keys and channels.
func (s *RedisStore) opKey(id string) string { return s.cfg.KeyPrefix + ":{bo:" + keyPart(id) + "}" }
func (s *RedisStore) idemKey(scope, key string) string {
	h := sha256.Sum256([]byte(scope + "\x00" + key))
	return s.cfg.KeyPrefix + ":{bi:" + hex.EncodeToString(h[:16]) + "}"
}
func (s *RedisStore) beatKey(owner string) string { return s.cfg.KeyPrefix + ":{bn:" + owner + "}" }
func (s *RedisStore) channel(owner string) string {
	return s.cfg.KeyPrefix + ":branch:approvals:" + owner
}

func (s *RedisStore) fingerprintKey() []byte { return s.fpKey }

// bind attaches the store to srv: it takes the server's record TTL and
// limit, runs approved resets through srv, and starts the store's goroutine
// (heartbeat, approval notifications), which Close stops.
func (s *RedisStore) bind(srv *Server) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bound || s.closed {
		return errors.New("branch api store: already bound to a server or closed")
	}
	s.bound = true
	s.ttl, s.max = srv.cfg.RecordTTL, srv.cfg.MaxRecords
	s.runner = func(ctx context.Context, p *pendingReset, res OperationResult) {
		p.req.Supervisor = res.Supervisor
		srv.run(ctx, p.req, res)
		p.clear()
	}
	s.life, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.loop(s.life)
	return nil
}

// Close stops the store's goroutines, waits for the approved resets it is
// running to reach their outcome, and marks the pending resets this process
// still holds expired in Redis (their PIN blocks die with it; the teller
// submits again). Waiting retries get 503. It does not close the Redis
// client. Call it after the server's Shutdown.
func (s *RedisStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()

	s.mu.Lock()
	held := s.pending
	s.pending = map[string]*pendingReset{}
	s.mu.Unlock()
	now := time.Now()
	for id, p := range held {
		p.clear()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CallTimeout)
		_, _ = s.updateOp(ctx, id, func(d *opDoc) (bool, error) {
			if d.Pending == nil || d.Pending.Owner != s.owner {
				return false, nil
			}
			d.expire(now)
			return true, nil
		})
		cancel()
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), s.cfg.CallTimeout)
	defer cancel2()
	_ = s.rdb.Del(ctx, s.beatKey(s.owner)).Err()
	return nil
}

// call is the context of one round trip.
func (s *RedisStore) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.CallTimeout)
}

func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrStoreUnavailable, what, err)
}

// idemDoc is an idempotency key in Redis: claimed (running) by an instance,
// then answered (done).
type idemDoc struct {
	Fingerprint string `json:"fp"` // hex HMAC of route and canonical body
	Owner       string `json:"owner"`
	State       string `json:"state"` // running or done
	Status      int    `json:"status,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Location    string `json:"location,omitempty"`
	Body        string `json:"body,omitempty"` // the answer body: the API's JSON, never a PAN or PIN block
}

const (
	idemRunning = "running"
	idemDone    = "done"
)

// casScript replaces (or, with an empty new value, deletes) KEYS[1] if it
// still holds ARGV[1], keeping its TTL.
var casScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1`)

func (s *RedisStore) beginIdem(ctx context.Context, scope, key string, fp [32]byte, now time.Time) (*idemRecord, bool, error) {
	k := s.idemKey(scope, key)
	claim, _ := json.Marshal(idemDoc{Fingerprint: hex.EncodeToString(fp[:]), Owner: s.owner, State: idemRunning})
	unclaim := func() {
		s.mu.Lock()
		s.claiming--
		s.mu.Unlock()
	}
	for range 3 { // a key released or expired between SET NX and GET is claimed again
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, false, unavailable("begin idempotency", errors.New("store closed"))
		}
		if len(s.inflight)+len(s.waits)+s.claiming >= s.max {
			s.mu.Unlock()
			return nil, false, errStoreFull
		}
		s.claiming++
		s.mu.Unlock()
		cctx, cancel := s.call(ctx)
		ok, err := s.rdb.SetNX(cctx, k, claim, s.ttl).Result()
		cancel()
		if err != nil {
			unclaim()
			return nil, false, unavailable("claim idempotency key", err)
		}
		if ok {
			r := &idemRecord{key: k, fingerprint: fp, done: make(chan struct{}), expires: now.Add(s.ttl), claim: string(claim)}
			s.mu.Lock()
			s.claiming--
			s.inflight[k] = r
			s.mu.Unlock()
			return r, true, nil
		}
		r, err := s.joinIdem(ctx, k, fp)
		unclaim()
		if errors.Is(err, redis.Nil) {
			continue
		}
		return r, false, err
	}
	return nil, false, unavailable("claim idempotency key", errors.New("key keeps changing"))
}

// joinIdem returns the record of a key another request claimed: answered,
// run here, or run by another instance (a waiter polls Redis for it).
func (s *RedisStore) joinIdem(ctx context.Context, k string, fp [32]byte) (*idemRecord, error) {
	doc, err := s.getIdem(ctx, k)
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, err
		}
		return nil, unavailable("read idempotency key", err)
	}
	stored, err := hex.DecodeString(doc.Fingerprint)
	if err != nil || !hmac.Equal(stored, fp[:]) {
		return nil, errKeyReused
	}
	if doc.State == idemDone {
		r := &idemRecord{key: k, fingerprint: fp, done: make(chan struct{})}
		r.setAnswer(doc.Status, doc.ContentType, doc.Location, []byte(doc.Body))
		return r, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.inflight[k]; ok && doc.Owner == s.owner {
		return r, nil
	}
	if r, ok := s.waits[k]; ok {
		return r, nil
	}
	if s.closed {
		return nil, unavailable("wait for idempotency key", errors.New("store closed"))
	}
	r := &idemRecord{key: k, fingerprint: fp, done: make(chan struct{})}
	s.waits[k] = r
	s.wg.Add(1)
	go s.await(s.life, r, doc.Owner)
	return r, nil
}

func (s *RedisStore) getIdem(ctx context.Context, k string) (idemDoc, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	b, err := s.rdb.Get(cctx, k).Bytes()
	if err != nil {
		return idemDoc{}, err
	}
	var doc idemDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return idemDoc{}, fmt.Errorf("idempotency record: %w", err)
	}
	return doc, nil
}

// await waits for the first answer to r's key, which instance owner runs,
// and sets it on r: the answer once it is in Redis; 503 if the key was
// released (nothing ran), the owner stopped before answering (its outcome
// is unknown: no second operation is run) or the store closes; 408 after
// WaitLimit.
func (s *RedisStore) await(ctx context.Context, r *idemRecord, owner string) {
	defer s.wg.Done()
	finish := func(a answer) {
		s.mu.Lock()
		delete(s.waits, r.key)
		s.mu.Unlock()
		r.setAnswer(a.status, a.contentType, a.location, a.body)
	}
	deadline := time.Now().Add(s.cfg.WaitLimit)
	nextBeat := time.Now().Add(heartbeatEvery)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			finish(problemAnswer(probUnavailable.problem("The server is stopping; retry with the same Idempotency-Key.")))
			return
		case <-t.C:
		}
		doc, err := s.getIdem(ctx, r.key)
		switch {
		case errors.Is(err, redis.Nil):
			finish(problemAnswer(probUnavailable.problem("The first request with this Idempotency-Key was not taken; retry with the same key.")))
			return
		case err == nil && doc.State == idemDone:
			finish(answer{status: doc.Status, contentType: doc.ContentType, location: doc.Location, body: []byte(doc.Body)})
			return
		}
		if now := time.Now(); now.After(nextBeat) {
			nextBeat = now.Add(heartbeatEvery)
			if alive, err := s.alive(ctx, owner); err == nil && !alive {
				finish(problemAnswer(probUnavailable.problem("The instance that took the first request with this Idempotency-Key stopped before answering; its outcome is unknown. Look the card up before using a new key.")))
				return
			}
		}
		if time.Now().After(deadline) {
			finish(problemAnswer(probTimeout.problem("The first request with this Idempotency-Key is still running.")))
			return
		}
	}
}

// alive reports whether instance owner's heartbeat is in Redis.
func (s *RedisStore) alive(ctx context.Context, owner string) (bool, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	n, err := s.rdb.Exists(cctx, s.beatKey(owner)).Result()
	return n == 1, err
}

func (s *RedisStore) finishIdem(ctx context.Context, r *idemRecord, status int, contentType, location string, body []byte, release bool) {
	next := ""
	if !release {
		b, _ := json.Marshal(idemDoc{Fingerprint: hex.EncodeToString(r.fingerprint[:]), Owner: s.owner, State: idemDone,
			Status: status, ContentType: contentType, Location: location, Body: string(body)})
		next = string(b)
	}
	r.setAnswer(status, contentType, location, body)
	err := s.writeAnswer(ctx, r.key, r.claim, next)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && !release:
		// Kept: retries here get the answer from inflight, and tick writes
		// it again.
		s.unwritten[r.key] = [2]string{r.claim, next}
		s.log.Error("branch api store: idempotency answer not written to redis; retries on other instances wait for it", "err", err)
		return
	case err != nil:
		// The claim stays in Redis: retries would wait on it as on a
		// running request until it expires. Kept: retries here get the 503
		// from inflight, and tick deletes the claim once Redis takes it.
		s.unwritten[r.key] = [2]string{r.claim, ""}
		s.log.Error("branch api store: idempotency key not released in redis; retries wait until it is", "err", err)
		return
	}
	delete(s.inflight, r.key)
}

// writeAnswer replaces claim at key in Redis with next (or deletes it).
func (s *RedisStore) writeAnswer(ctx context.Context, key, claim, next string) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	return casScript.Run(cctx, s.rdb, []string{key}, claim, next).Err()
}

// opDoc is an operation in Redis.
type opDoc struct {
	Institution string          `json:"institution"`
	Result      OperationResult `json:"result"`
	Pending     *pendingDoc     `json:"pending,omitempty"`
}

// pendingDoc is what Redis knows of a pending reset: who may not approve it,
// until when, and which instance holds its PIN block.
type pendingDoc struct {
	Submitter string    `json:"submitter"` // certificate subject
	Teller    string    `json:"teller"`
	ApproveBy time.Time `json:"approve_by"`
	Owner     string    `json:"owner"`
	// Approved is set by the winning approval; the owner then runs the
	// reset (status in_progress) and replaces the document with its outcome.
	Approved bool `json:"approved,omitempty"`
}

// expire ends a pending reset that will never run.
func (d *opDoc) expire(now time.Time) {
	d.Pending = nil
	d.Result.Status = StatusExpired
	c := now.UTC()
	d.Result.Completed = &c
}

// due reports whether d is a pending reset, not approved, whose window has
// passed at now.
func (d *opDoc) due(now time.Time) bool {
	return d.Pending != nil && !d.Pending.Approved && !now.Before(d.Pending.ApproveBy)
}

func (s *RedisStore) add(ctx context.Context, r *record, now time.Time) error {
	p := r.pending
	if p == nil {
		return s.write(ctx, r, now)
	}
	s.mu.Lock()
	full, closed := len(s.pending)+s.adding >= s.max, s.closed
	if !full && !closed {
		s.adding++ // the place of this reset, held across the write
	}
	s.mu.Unlock()
	if full {
		return errStoreFull
	}
	if closed {
		return unavailable("add operation", errors.New("store closed"))
	}
	err := s.write(ctx, r, now)
	s.mu.Lock()
	s.adding--
	if err == nil {
		s.pending[r.id] = p
	}
	s.mu.Unlock()
	return err
}

// write puts the new operation r in Redis (with this instance's heartbeat,
// for a pending reset).
func (s *RedisStore) write(ctx context.Context, r *record, now time.Time) error {
	doc := opDoc{Institution: r.institution, Result: r.result}
	ttl := s.ttl
	if p := r.pending; p != nil {
		doc.Pending = &pendingDoc{Submitter: p.submitter, Teller: p.req.Teller, ApproveBy: p.approveBy, Owner: s.owner}
		ttl = max(ttl, p.approveBy.Sub(now)+time.Minute)
	}
	b, _ := json.Marshal(doc)
	cctx, cancel := s.call(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	set := pipe.SetNX(cctx, s.opKey(r.id), b, ttl)
	if r.pending != nil {
		pipe.Set(cctx, s.beatKey(s.owner), "1", heartbeatTTL)
	}
	if _, err := pipe.Exec(cctx); err != nil {
		return unavailable("add operation", err)
	}
	if !set.Val() {
		return unavailable("add operation", errors.New("operation id taken"))
	}
	r.expires = now.Add(s.ttl)
	return nil
}

func (s *RedisStore) getOp(ctx context.Context, id string) (opDoc, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	b, err := s.rdb.Get(cctx, s.opKey(id)).Bytes()
	if err != nil {
		return opDoc{}, err
	}
	var doc opDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return opDoc{}, fmt.Errorf("operation record: %w", err)
	}
	return doc, nil
}

// updateOp changes operation id atomically (WATCH/MULTI/EXEC): change says
// whether to write its changes, and its error is returned. A concurrent
// change makes it read again. It returns the document as left in Redis;
// redis.Nil when there is none.
func (s *RedisStore) updateOp(ctx context.Context, id string, change func(*opDoc) (bool, error)) (opDoc, error) {
	key := s.opKey(id)
	var doc opDoc
	var changeErr error
	for range 10 {
		cctx, cancel := s.call(ctx)
		err := s.rdb.Watch(cctx, func(tx *redis.Tx) error {
			b, err := tx.Get(cctx, key).Bytes()
			if err != nil {
				return err
			}
			doc = opDoc{}
			if err := json.Unmarshal(b, &doc); err != nil {
				return fmt.Errorf("operation record: %w", err)
			}
			write, err := change(&doc)
			changeErr = err
			if !write {
				return nil
			}
			nb, _ := json.Marshal(doc)
			_, err = tx.TxPipelined(cctx, func(p redis.Pipeliner) error {
				p.SetArgs(cctx, key, nb, redis.SetArgs{Mode: "XX", KeepTTL: true})
				return nil
			})
			return err
		}, key)
		cancel()
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return doc, err
		}
		return doc, changeErr
	}
	return doc, errors.New("operation record keeps changing")
}

func (s *RedisStore) get(ctx context.Context, id, inst string, now time.Time) (OperationResult, error) {
	doc, err := s.getOp(ctx, id)
	switch {
	case errors.Is(err, redis.Nil):
		return OperationResult{}, errNotFound
	case err != nil:
		return OperationResult{}, unavailable("read operation", err)
	case doc.Institution != inst:
		return OperationResult{}, errNotFound
	case !doc.due(now):
		return doc.Result, nil
	}
	doc, err = s.updateOp(ctx, id, func(d *opDoc) (bool, error) {
		if !d.due(now) {
			return false, nil
		}
		d.expire(now)
		return true, nil
	})
	if err != nil {
		return OperationResult{}, unavailable("expire operation", err)
	}
	if doc.Pending == nil || doc.Pending.Owner != s.owner {
		// Expired (here or elsewhere), refused or not ours: the PIN block
		// will never run. An approval that Redis took between our read
		// and our update is still pending here: the loop runs it.
		s.dropPending(id)
	}
	return doc.Result, nil
}

// dropPending clears and forgets the PIN block of operation id, if held.
func (s *RedisStore) dropPending(id string) {
	s.mu.Lock()
	p := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if p != nil {
		p.clear()
	}
}

// set writes the outcome of an operation this instance ran. The document
// keeps its TTL; a failure is logged (the answer itself still reaches the
// client and the idempotency record).
func (s *RedisStore) set(ctx context.Context, id string, res OperationResult) {
	b, _ := json.Marshal(opDoc{Institution: res.Institution, Result: res})
	var err error
	for range 3 {
		cctx, cancel := s.call(ctx)
		err = s.rdb.SetArgs(cctx, s.opKey(id), b, redis.SetArgs{Mode: "XX", KeepTTL: true}).Err()
		cancel()
		if err == nil || errors.Is(err, redis.Nil) {
			return
		}
	}
	s.log.Error("branch api store: operation outcome not written to redis", "operation_id", id, "err", err)
}

func (s *RedisStore) takePending(ctx context.Context, id, inst, approver, approverID string, approve bool, now time.Time) (*pendingReset, OperationResult, error) {
	// Learn the holder first: an approval for a reset whose holder has
	// stopped expires it (its PIN block is gone).
	doc, err := s.getOp(ctx, id)
	switch {
	case errors.Is(err, redis.Nil):
		return nil, OperationResult{}, errNotFound
	case err != nil:
		// The handler knows no "unavailable" here: not found is the answer
		// that records nothing and runs nothing.
		s.log.Error("branch api store: approval not recorded", "operation_id", id, "err", err)
		return nil, OperationResult{}, errNotFound
	}
	holderGone := false
	var p *pendingReset
	if doc.Pending != nil && doc.Pending.Owner == s.owner {
		// Reserve the held reset, so that the loop does not run it between
		// our commit and our return; put back unless this call decides it.
		s.mu.Lock()
		p = s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
	} else if approve && doc.Pending != nil {
		alive, err := s.alive(ctx, doc.Pending.Owner)
		if err != nil {
			s.log.Error("branch api store: approval not recorded", "operation_id", id, "err", err)
			return nil, OperationResult{}, errNotFound
		}
		holderGone = !alive
	}
	var owner string
	doc, err = s.updateOp(ctx, id, func(d *opDoc) (bool, error) {
		switch {
		case d.Institution != inst:
			return false, errNotFound
		case d.due(now):
			d.expire(now)
			return true, errExpired
		case d.Result.Status == StatusExpired:
			return false, errExpired
		case d.Pending == nil || d.Pending.Approved:
			return false, errNotPending
		case d.Pending.Submitter == approver || d.Pending.Teller == approverID:
			return false, errSelfApproval
		case holderGone && d.Pending.Owner != s.owner:
			d.expire(now)
			return true, errExpired
		}
		owner = d.Pending.Owner
		d.Result.Supervisor = approverID
		if approve {
			d.Result.Status = StatusInProgress
			d.Pending.Approved = true
			return true, nil
		}
		d.Result.Status = StatusRefused
		c := now.UTC()
		d.Result.Completed = &c
		d.Pending = nil
		return true, nil
	})
	if err != nil {
		switch {
		case errors.Is(err, errExpired):
			if p != nil {
				p.clear()
			}
		case p != nil: // not decided here: the reset stays held
			s.mu.Lock()
			s.pending[id] = p
			s.mu.Unlock()
		}
		switch {
		case errors.Is(err, redis.Nil), errors.Is(err, errNotFound):
			return nil, OperationResult{}, errNotFound
		case errors.Is(err, errExpired), errors.Is(err, errNotPending), errors.Is(err, errSelfApproval):
			return nil, doc.Result, err
		}
		s.log.Error("branch api store: approval not recorded", "operation_id", id, "err", err)
		return nil, OperationResult{}, errNotFound
	}
	switch {
	case !approve && p != nil:
		p.clear()
		return nil, doc.Result, nil
	case !approve:
		s.notify(ctx, owner, id) // the holder clears the PIN block now rather than at the deadline
		return nil, doc.Result, nil
	case p != nil:
		return p, doc.Result, nil
	}
	// Another instance holds the reset (or another call here reserved it
	// and will put it back): its holder runs it; wait for the outcome.
	s.notify(ctx, owner, id)
	res := s.awaitOutcome(ctx, id, doc.Result)
	if res.Status == StatusExpired {
		// The holder shut down before it saw the approval and marked the
		// reset expired (Close): it never ran, and the answer says so.
		return nil, res, errExpired
	}
	return nil, res, nil
}

// notify tells instance owner that operation id was decided. A lost
// message is made up for by the owner's poll.
func (s *RedisStore) notify(ctx context.Context, owner, id string) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	if err := s.rdb.Publish(cctx, s.channel(owner), id).Err(); err != nil {
		s.log.Warn("branch api store: approval notice not published; the holder finds it by polling", "operation_id", id, "err", err)
	}
}

// awaitOutcome polls operation id until it leaves in_progress or WaitLimit
// passes, and returns the last result read (res if none).
func (s *RedisStore) awaitOutcome(ctx context.Context, id string, res OperationResult) OperationResult {
	deadline := time.Now().Add(s.cfg.WaitLimit)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return res
		case <-t.C:
		}
		if doc, err := s.getOp(ctx, id); err == nil {
			res = doc.Result
			if res.Status != StatusInProgress {
				return res
			}
		}
	}
	return res
}

// loop is the store's goroutine: it keeps this instance's heartbeat, and
// runs the resets it holds once another instance records their approval
// (told through pub/sub, checked every heartbeat as well).
func (s *RedisStore) loop(ctx context.Context) {
	defer s.wg.Done()
	ps := s.rdb.Subscribe(ctx, s.channel(s.owner))
	defer ps.Close()
	msgs := ps.Channel()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	s.tick(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			s.checkPending(ctx, m.Payload, time.Now())
		case <-t.C:
			s.tick(ctx)
		}
	}
}

// tick renews the heartbeat, writes answers that could not be written
// before, and checks every held reset.
func (s *RedisStore) tick(ctx context.Context) {
	cctx, cancel := s.call(ctx)
	if err := s.rdb.Set(cctx, s.beatKey(s.owner), "1", heartbeatTTL).Err(); err != nil {
		s.log.Warn("branch api store: heartbeat not written", "err", err)
	}
	cancel()
	s.mu.Lock()
	var ids []string
	for id := range s.pending {
		ids = append(ids, id)
	}
	unwritten := make(map[string][2]string, len(s.unwritten))
	for k, w := range s.unwritten {
		unwritten[k] = w
	}
	s.mu.Unlock()
	for k, w := range unwritten {
		if err := s.writeAnswer(ctx, k, w[0], w[1]); err == nil {
			s.mu.Lock()
			delete(s.unwritten, k)
			delete(s.inflight, k)
			s.mu.Unlock()
		}
	}
	now := time.Now()
	for _, id := range ids {
		s.checkPending(ctx, id, now)
	}
}

// checkPending looks at held reset id in Redis: approved, it runs it (once:
// it leaves the held set first); refused, expired or gone, its PIN block is
// cleared.
func (s *RedisStore) checkPending(ctx context.Context, id string, now time.Time) {
	s.mu.Lock()
	_, held := s.pending[id]
	s.mu.Unlock()
	if !held {
		return
	}
	doc, err := s.getOp(ctx, id)
	switch {
	case errors.Is(err, redis.Nil):
		s.dropPending(id)
		return
	case err != nil:
		return // Redis unavailable: checked again next tick
	case doc.due(now):
		_, _ = s.get(ctx, id, doc.Institution, now) // expires it in Redis and here
		return
	case doc.Pending == nil || doc.Pending.Owner != s.owner:
		s.dropPending(id)
		return
	case !doc.Pending.Approved:
		return
	}
	s.mu.Lock()
	p := s.pending[id]
	if p == nil || s.closed {
		// Taken by a concurrent check; or the store is closing (sweep
		// runs outside the store's goroutine) and Close expires it.
		s.mu.Unlock()
		return
	}
	delete(s.pending, id)
	s.wg.Add(1) // under mu, before Close (which sets closed under mu) waits
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.runner(ctx, p, doc.Result)
	}()
}

// sweep settles the held resets whose window has passed at now with Redis,
// which decides: one that Redis still has pending is expired there, and its
// PIN block cleared; one whose approval Redis took before the deadline (on
// another instance's clock, or an instant before this sweep) runs. A held
// reset is never dropped on this clock alone: an approval recorded in Redis
// for a dropped PIN block would stay in_progress for good. While Redis
// cannot be read, the PIN block stays held (it is checked every heartbeat).
func (s *RedisStore) sweep(now time.Time) {
	s.mu.Lock()
	if s.closed || s.life == nil {
		s.mu.Unlock()
		return
	}
	ctx := s.life
	var due []string
	for id, p := range s.pending {
		if !now.Before(p.approveBy) {
			due = append(due, id)
		}
	}
	s.mu.Unlock()
	for _, id := range due {
		s.checkPending(ctx, id, now)
	}
}
