package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pingate/iso8583"
)

// This file holds the in-memory issuer network the IssuerLinks unit tests
// dial through LinksConfig.Dial: unit tests only. The end-to-end tests in
// integration/issuersim run the links against the real simulator over TCP.

// waitLimit bounds every wait for something the tests expect to happen, so
// that a broken test fails instead of hanging. It is not a timing
// assertion: nothing checks how soon the event came.
const waitLimit = 10 * time.Second

// events is an append-only log of what a fake observed, which a test can
// wait on without sleeping.
type events[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced on every add
}

func (e *events[T]) add(v T) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.items = append(e.items, v)
	if e.changed != nil {
		close(e.changed)
	}
	e.changed = make(chan struct{})
}

// all returns what was observed so far.
func (e *events[T]) all() []T {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]T(nil), e.items...)
}

// count is the number of observations matching match.
func (e *events[T]) count(match func(T) bool) int {
	n := 0
	for _, v := range e.all() {
		if match(v) {
			n++
		}
	}
	return n
}

// wait returns the n-th observation (1-based) matching match, waiting for
// it; the test fails if it does not come within waitLimit.
func (e *events[T]) wait(t *testing.T, what string, n int, match func(T) bool) T {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		e.mu.Lock()
		seen := 0
		for _, v := range e.items {
			if match(v) {
				if seen++; seen == n {
					e.mu.Unlock()
					return v
				}
			}
		}
		if e.changed == nil {
			e.changed = make(chan struct{})
		}
		ch := e.changed
		e.mu.Unlock()
		select {
		case <-ch:
		case <-limit.C:
			t.Fatalf("gave up waiting for %s (#%d)", what, n)
		}
	}
}

// fakeNet is a set of in-memory issuer hosts by address; its dial is a
// DialFunc.
type fakeNet struct {
	mu    sync.Mutex
	hosts map[string]*fakeHost
}

func newFakeNet(t *testing.T, addrs ...string) *fakeNet {
	n := &fakeNet{hosts: map[string]*fakeHost{}}
	for _, a := range addrs {
		n.hosts[a] = &fakeHost{addr: a}
	}
	t.Cleanup(func() {
		for _, h := range n.hosts {
			h.closeConns()
		}
	})
	return n
}

func (n *fakeNet) host(addr string) *fakeHost {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hosts[addr]
}

func (n *fakeNet) dial(ctx context.Context, addr, framing string, onFrame func([]byte)) (FrameConn, error) {
	h := n.host(addr)
	if h == nil {
		return nil, fmt.Errorf("dial %s: no such host", addr)
	}
	return h.accept(onFrame)
}

// fakeHost is one issuer host. It reads pingate's messages with the real
// issuer dialect (iso8583.IssuerSpec) and answers each with the code its
// policy gives: by default 00 to everything.
type fakeHost struct {
	addr string

	mu        sync.Mutex
	refuse    bool // refuse dials
	failSends int
	// bareNetwork: answer 0800s without DE 32 and DE 100, which the
	// 0810's field use leaves optional.
	bareNetwork bool
	policy      func(f *iso8583.Fields) string // the DE 39 to answer f with; "" holds the answer
	conns       []*fakeConn

	dials events[struct{}]        // every dial attempt, accepted or not
	got   events[*iso8583.Fields] // every message received, in order
}

func (h *fakeHost) setPolicy(p func(f *iso8583.Fields) string) {
	h.mu.Lock()
	h.policy = p
	h.mu.Unlock()
}

func (h *fakeHost) setRefuse(refuse bool) {
	h.mu.Lock()
	h.refuse = refuse
	h.mu.Unlock()
}

func (h *fakeHost) accept(onFrame func([]byte)) (FrameConn, error) {
	h.mu.Lock()
	refuse := h.refuse
	var c *fakeConn
	if !refuse {
		c = &fakeConn{host: h, onFrame: onFrame, in: make(chan []byte), out: make(chan []byte), done: make(chan struct{})}
		h.conns = append(h.conns, c)
		c.wg.Add(1)
		go c.loop()
	}
	h.mu.Unlock()
	h.dials.add(struct{}{})
	if refuse {
		return nil, errors.New("connection refused")
	}
	return c, nil
}

// closeConns closes every connection, as a host that restarts.
func (h *fakeHost) closeConns() {
	h.mu.Lock()
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// connections are the host's open connections, oldest first.
func (h *fakeHost) connections() []*fakeConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*fakeConn(nil), h.conns...)
}

// conn is the host's newest connection.
func (h *fakeHost) conn(t *testing.T) *fakeConn {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) == 0 {
		t.Fatalf("host %s has no connection", h.addr)
	}
	return h.conns[len(h.conns)-1]
}

func (h *fakeHost) answer(f *iso8583.Fields) string {
	h.mu.Lock()
	p := h.policy
	h.mu.Unlock()
	if p == nil {
		return iso8583.RCApproved
	}
	return p(f)
}

// waitMsg returns the n-th message of type mti (and, for 0800, network code
// nmi) the host received.
func (h *fakeHost) waitMsg(t *testing.T, n int, mti, nmi string) *iso8583.Fields {
	t.Helper()
	return h.got.wait(t, fmt.Sprintf("%s %s at %s", mti, nmi, h.addr), n, isMsg(mti, nmi))
}

func (h *fakeHost) countMsg(mti, nmi string) int { return h.got.count(isMsg(mti, nmi)) }

func isMsg(mti, nmi string) func(*iso8583.Fields) bool {
	return func(f *iso8583.Fields) bool { return f.MTI == mti && (nmi == "" || f.NetworkCode == nmi) }
}

// reply is the issuer's answer to f with code.
func reply(t *testing.T, f *iso8583.Fields, code string) []byte {
	t.Helper()
	b, err := iso8583.Pack(iso8583.IssuerSpec, replyFields(f, code))
	if err != nil {
		t.Fatalf("pack the issuer's answer: %v", err)
	}
	return b
}

func replyFields(f *iso8583.Fields, code string) *iso8583.Fields {
	return &iso8583.Fields{
		MTI: iso8583.ResponseMTI(f.MTI), ProcessingCode: f.ProcessingCode, TransmissionTime: f.TransmissionTime,
		STAN: f.STAN, AcquirerID: f.AcquirerID, RRN: f.RRN, ResponseCode: code, TerminalID: f.TerminalID,
		CardAcceptorID: f.CardAcceptorID, NetworkCode: f.NetworkCode, OriginalData: f.OriginalData,
		ReceivingInstitution: f.ReceivingInstitution,
	}
}

// fakeConn is one connection to a fakeHost. Like iso8583.ClientConn, it
// delivers every frame from the host to onFrame, in order, from one
// goroutine, which Close stops and waits for.
type fakeConn struct {
	host    *fakeHost
	onFrame func([]byte)
	in      chan []byte // frames pingate sent
	out     chan []byte // frames the test makes the host send
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	got     atomic.Int32 // PIN operations (0100) received on this connection
}

var errConnClosed = errors.New("fake issuer connection closed")

func (c *fakeConn) Send(frame []byte) error {
	select {
	case <-c.done:
		return errConnClosed
	default:
	}
	c.host.mu.Lock()
	fail := c.host.failSends > 0
	if fail {
		c.host.failSends--
	}
	c.host.mu.Unlock()
	if fail {
		return errors.New("write: broken pipe")
	}
	select {
	case c.in <- append([]byte(nil), frame...):
		return nil
	case <-c.done:
		return errConnClosed
	}
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.done) })
	c.wg.Wait()
	return nil
}

func (c *fakeConn) Done() <-chan struct{} { return c.done }

// deliver makes the host send frame, whatever pingate asked.
func (c *fakeConn) deliver(t *testing.T, frame []byte) {
	t.Helper()
	select {
	case c.out <- frame:
	case <-c.done:
		t.Fatal("deliver on a closed connection")
	}
}

func (c *fakeConn) loop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case frame := <-c.out:
			c.onFrame(frame)
		case frame := <-c.in:
			f, err := iso8583.Unpack(iso8583.IssuerSpec, frame)
			if err != nil {
				// What pingate sends must always unpack: record a
				// message no test expects.
				f = &iso8583.Fields{MTI: "unreadable"}
			}
			c.host.got.add(f)
			if f.MTI == iso8583.MTIAuthRequest {
				c.got.Add(1)
			}
			if err != nil {
				continue
			}
			if code := c.host.answer(f); code != "" {
				r := replyFields(f, code)
				c.host.mu.Lock()
				if c.host.bareNetwork && f.MTI == iso8583.MTINetworkRequest {
					r.AcquirerID, r.ReceivingInstitution = "", ""
				}
				c.host.mu.Unlock()
				b, err := iso8583.Pack(iso8583.IssuerSpec, r)
				if err == nil {
					c.onFrame(b)
				}
			}
		}
	}
}

// logLines records what the links log, as "message key=value ...", so that
// tests can wait for an event only the log shows and check that no secret
// is logged.
type logLines struct {
	events[string]
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }

func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.add(b.String())
	return nil
}

func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

// waitLine returns the n-th log line starting with prefix.
func (l *logLines) waitLine(t *testing.T, n int, prefix string) string {
	t.Helper()
	return l.wait(t, "log line "+prefix, n, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

// storeOp is one call on a watchedStore.
type storeOp struct {
	op  string // put, delete, pending
	rev Reversal
	id  string
	err error
}

// watchedStore is a MemoryReversalStore that records every call and can be
// told to fail.
type watchedStore struct {
	*MemoryReversalStore
	ops events[storeOp]

	mu         sync.Mutex
	putErr     error
	putBlocks  bool // Put waits for its context to end
	deleteErrs int  // the next deleteErrs Deletes fail
	pendingErr error
	// afterList, when set, runs once after a listing was taken and before
	// it is returned: a change to the store while the worker walks it.
	afterList func()
}

func newWatchedStore() *watchedStore {
	return &watchedStore{MemoryReversalStore: NewMemoryReversalStore()}
}

func (s *watchedStore) Put(ctx context.Context, r Reversal) error {
	s.mu.Lock()
	err, blocks := s.putErr, s.putBlocks
	s.mu.Unlock()
	if blocks {
		<-ctx.Done()
		err = ctx.Err()
	}
	if err == nil {
		err = s.MemoryReversalStore.Put(ctx, r)
	}
	s.ops.add(storeOp{op: "put", rev: r, id: r.ID, err: err})
	return err
}

func (s *watchedStore) Delete(ctx context.Context, id string) error {
	s.mu.Lock()
	var err error
	if s.deleteErrs > 0 {
		s.deleteErrs--
		err = errors.New("store disk failed")
	}
	s.mu.Unlock()
	if err == nil {
		err = s.MemoryReversalStore.Delete(ctx, id)
	}
	s.ops.add(storeOp{op: "delete", id: id, err: err})
	return err
}

func (s *watchedStore) Pending(ctx context.Context) ([]Reversal, error) {
	s.mu.Lock()
	err := s.pendingErr
	s.mu.Unlock()
	s.ops.add(storeOp{op: "pending", err: err})
	if err != nil {
		return nil, err
	}
	p, err := s.MemoryReversalStore.Pending(ctx)
	s.mu.Lock()
	hook := s.afterList
	s.afterList = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return p, err
}

// waitDeleted waits until id is deleted from the store.
func (s *watchedStore) waitDeleted(t *testing.T, id string) {
	t.Helper()
	s.ops.wait(t, "delete of reversal "+id, 1, func(o storeOp) bool { return o.op == "delete" && o.id == id && o.err == nil })
}

func (s *watchedStore) pending(t *testing.T) []Reversal {
	t.Helper()
	p, err := s.MemoryReversalStore.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expiring is a context whose deadline passes when the test says so: the
// fake clock of an issuer timeout.
type expiring struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiring() *expiring {
	return &expiring{Context: context.Background(), done: make(chan struct{})}
}

func (c *expiring) Done() <-chan struct{} { return c.done }

func (c *expiring) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *expiring) expire() { c.once.Do(func() { close(c.done) }) }
