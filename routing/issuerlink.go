package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"pingate/iso8583"
)

// FrameConn is the part of an ISO 8583 client connection the issuer links
// use: whole frames out, whole frames in through the callback given to Dial.
// Done must close only after the last onFrame call has returned (as
// iso8583.Conn's does), so that an answer read before the link ended is
// still taken.
type FrameConn interface {
	Send(frame []byte) error
	Close() error
	Done() <-chan struct{}
}

// DialFunc opens a framed connection to addr and delivers every frame read
// from it to onFrame, in order, from one goroutine.
type DialFunc func(ctx context.Context, addr string, framing string, onFrame func([]byte)) (FrameConn, error)

// IssuerCodec packs and unpacks the issuer dialect. The links need only the
// matching key of an answer and its response code.
type IssuerCodec interface {
	PackRequest(h MessageHeader, req *IssuerRequest) ([]byte, error)
	PackNetwork(h MessageHeader, nmi string) ([]byte, error)
	PackReversal(h MessageHeader, r *Reversal) ([]byte, error)
	// Unpack reads an answer: its MTI, the header fields used for matching, and DE 39.
	Unpack(frame []byte) (mti string, h MessageHeader, code string, err error)
}

// MessageHeader holds the fields that identify a message to the issuer.
type MessageHeader struct {
	STAN        string // DE 11, allocated by pingate per issuer message
	Transmit    string // DE 7, MMDDhhmmss (UTC)
	Institution string // DE 32: pingate's institution id
	Receiver    string // DE 100: issuer institution id
	Terminal    string // DE 41
	LocalTime   time.Time
}

// matchKey is MTI class + STAN + DE 7 + DE 32 + DE 41: STAN alone repeats
// within a day at a few thousand requests per second. Network management
// (0800/0810) is matched on STAN + DE 7 alone: it has no DE 41, the 0810's
// DE 32 is optional in its field use, and pingate sends a few a minute.
func matchKey(mti string, h MessageHeader) string {
	c := mtiClass(mti)
	if c == "080" {
		return c + "|" + h.STAN + "|" + h.Transmit
	}
	return c + "|" + h.STAN + "|" + h.Transmit + "|" + h.Institution + "|" + h.Terminal
}

// mtiClass pairs a request with its answer: version, class and the function
// digit rounded down to even, so 0100 and 0110 give "010", 0420 and 0430 "042".
func mtiClass(mti string) string {
	if len(mti) != 4 || mti[2] < '0' || mti[2] > '9' {
		return "xxx"
	}
	return mti[:2] + string('0'+(mti[2]-'0')&^1)
}

// IssuerLinks keeps persistent connections to every issuer host: it signs on
// when a connection opens, echoes when idle, reconnects with backoff, fails
// over between hosts, matches answers to requests, and owes a reversal advice
// for every request that timed out after it may have reached the issuer.
type IssuerLinks struct {
	institution string
	dial        DialFunc
	reversals   ReversalStore
	log         *slog.Logger
	// storeTimeout bounds each reversal-store write.
	storeTimeout time.Duration
	recorder     ReversalRecorder

	// held are the advices owed ahead whose request is in flight or whose
	// outcome is recorded but not yet deleted: the worker never sends them.
	// undeleted (a subset of held) are the ones to delete; unstored (also
	// held) are advices to store again before they are released (Reverse
	// after a failed write of the outcome with the advice's delete);
	// unrecorded are released advices the flow records itself. gone are
	// advices deleted from the store since the worker's last look: a worker
	// that listed the store before the delete must not take one for owed
	// once it is no longer held.
	heldMu     sync.Mutex
	held       map[string]struct{}
	undeleted  map[string]struct{}
	unstored   map[string]Reversal
	unrecorded map[string]struct{}
	gone       map[string]struct{}

	mu      sync.RWMutex
	issuers map[string]*issuerState

	stan atomic.Uint32
	wg   sync.WaitGroup
	stop chan struct{}
	kick chan struct{} // wakes the reversal worker
	once sync.Once

	linkUp   metric.Int64UpDownCounter
	timeouts metric.Int64Counter
	revs     metric.Int64Counter
}

type issuerState struct {
	cfg   IssuerConfig
	codec IssuerCodec // the issuer's dialect
	links []*link
	next  atomic.Uint32
}

type link struct {
	issuer  *issuerState
	addr    string
	mu      sync.Mutex
	conn    FrameConn
	up      atomic.Bool  // signed on
	pending sync.Map     // matchKey → chan answer
	last    atomic.Int64 // unix nanos of the last frame sent or received
}

type answer struct {
	code string
	err  error
}

// LinksConfig wires IssuerLinks.
type LinksConfig struct {
	Institution string // pingate's institution id (DE 32)
	Issuers     []IssuerConfig
	// Codec packs and reads the messages of every issuer not in Codecs.
	Codec IssuerCodec
	// Codecs are the codecs of issuers with a dialect of their own, by
	// issuer ID (IssuerConfig.Dialect; NewIssuerCodecs builds them).
	Codecs    map[string]IssuerCodec
	Dial      DialFunc
	Reversals ReversalStore
	// StoreTimeout bounds every reversal-store write; default 2s. A write
	// that fails or takes longer fails the request before the issuer is
	// involved (ErrReversalStore, answered 91).
	StoreTimeout time.Duration
	Logger       *slog.Logger
}

// DefaultStoreTimeout bounds a reversal-store write.
const DefaultStoreTimeout = 2 * time.Second

// NewIssuerLinks builds links; Start opens them.
func NewIssuerLinks(cfg LinksConfig) *IssuerLinks {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &IssuerLinks{
		institution: cfg.Institution, dial: cfg.Dial, reversals: cfg.Reversals, log: cfg.Logger,
		issuers: map[string]*issuerState{}, stop: make(chan struct{}), kick: make(chan struct{}, 1),
		storeTimeout: cfg.StoreTimeout,
		held:         map[string]struct{}{}, undeleted: map[string]struct{}{}, unrecorded: map[string]struct{}{},
		unstored: map[string]Reversal{}, gone: map[string]struct{}{},
	}
	if l.storeTimeout <= 0 {
		l.storeTimeout = DefaultStoreTimeout
	}
	l.stan.Store(uint32(rand.IntN(900000)))
	m := otel.Meter("pingate/routing")
	l.linkUp, _ = m.Int64UpDownCounter("pingate.issuer.links.up", metric.WithDescription("signed-on issuer links"))
	l.timeouts, _ = m.Int64Counter("pingate.issuer.timeouts", metric.WithDescription("issuer requests that timed out and were reversed"))
	l.revs, _ = m.Int64Counter("pingate.issuer.reversals", metric.WithDescription("reversal advices by result"))
	for _, ic := range cfg.Issuers {
		ic := ic
		st := &issuerState{cfg: ic, codec: cfg.Codec}
		if c, ok := cfg.Codecs[ic.ID]; ok {
			st.codec = c
		}
		for _, h := range ic.Hosts {
			for i := 0; i < max(ic.Connections, 1); i++ {
				st.links = append(st.links, &link{issuer: st, addr: h})
			}
		}
		l.issuers[ic.ID] = st
		// The series exists from the start at 0: an issuer never reached
		// shows as no link up, not as no series (which an alert on
		// pingate_issuer_links_up < 1 would never see).
		l.linkUp.Add(context.Background(), 0, metric.WithAttributes(attribute.String("issuer", ic.ID)))
	}
	return l
}

// Start opens every link and the reversal worker. They run until Shutdown.
func (l *IssuerLinks) Start() {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, st := range l.issuers {
		for _, lk := range st.links {
			l.wg.Add(1)
			go l.run(lk)
		}
	}
	l.wg.Add(1)
	go l.reversalWorker()
}

// Shutdown signs off and closes every link and waits for their goroutines.
func (l *IssuerLinks) Shutdown(ctx context.Context) error {
	l.once.Do(func() {
		l.mu.RLock()
		for _, st := range l.issuers {
			for _, lk := range st.links {
				if lk.up.Load() {
					sctx, cancel := context.WithTimeout(ctx, time.Second)
					_, _ = l.network(sctx, lk, iso8583.NMISignOff)
					cancel()
				}
			}
		}
		l.mu.RUnlock()
		close(l.stop)
	})
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		// A discharged reversal whose delete failed (a storage fault since
		// healed) would be sent by the next start, reversing a change that
		// is recorded and was answered 00: one more try before stopping.
		l.deleteDischarged(ctx)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SignedOn reports, per issuer, whether at least one link is signed on.
func (l *IssuerLinks) SignedOn() map[string]bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make(map[string]bool, len(l.issuers))
	for id, st := range l.issuers {
		for _, lk := range st.links {
			if lk.up.Load() {
				out[id] = true
				break
			}
		}
		if !out[id] {
			out[id] = false
		}
	}
	return out
}

func (l *IssuerLinks) nextHeader(terminal, receiver string) MessageHeader {
	n := l.stan.Add(1)%999999 + 1
	now := time.Now().UTC()
	return MessageHeader{
		STAN:        fmt.Sprintf("%06d", n),
		Transmit:    now.Format("0102150405"),
		Institution: l.institution,
		Receiver:    receiver,
		Terminal:    terminal,
		LocalTime:   now,
	}
}

// Send implements IssuerSender.
//
// Before the request is written to a link, the reversal advice that would
// undo it is owed ahead: persisted in the reversal store (bounded by
// LinksConfig.StoreTimeout; a store that fails or does not answer in time
// fails the request with ErrReversalStore before the issuer is involved) and
// held while the request is in flight. A decline discharges it at once; a
// request never written discards it; a timeout or an unreadable answer
// leaves it held until the flow has recorded the outcome (Recorded; Reverse
// when the record failed), then it is sent. An approval leaves it held: the flow discharges it
// once the outcome event is in the journal (Discharge) or releases it when
// the journal cannot take the event (Reverse). A process that dies holding it
// sends it at the next start.
func (l *IssuerLinks) Send(ctx context.Context, issuer string, req *IssuerRequest) (string, error) {
	l.mu.RLock()
	st := l.issuers[issuer]
	l.mu.RUnlock()
	if st == nil {
		return "", fmt.Errorf("%w: %s not configured", ErrIssuerUnavailable, issuer)
	}
	lk := st.pick()
	if lk == nil {
		if lk = st.waitLink(ctx); lk == nil {
			return "", fmt.Errorf("%w: %s has no signed-on link", ErrIssuerUnavailable, issuer)
		}
	}
	h := l.nextHeader(req.Terminal, st.cfg.Institution)
	frame, err := st.codec.PackRequest(h, req)
	if err != nil {
		return "", fmt.Errorf("pack issuer request: %w", err)
	}
	rev := &Reversal{
		ID: uuid.NewString(), Issuer: issuer, Operation: req.Operation, PAN: req.PAN,
		STAN: h.STAN, Transmit: h.Transmit, Terminal: req.Terminal, Merchant: req.Merchant, RRN: req.RRN,
		Created: time.Now().UTC(), Record: true, EventID: req.eventID, Channel: req.channel,
		Acquirer: req.Acquirer, Teller: req.Teller, Supervisor: req.Supervisor,
	}
	// Held before it is stored: the reversal worker must never see it
	// unheld while the request may still be on its way.
	l.hold(rev.ID)
	if err := l.put(ctx, *rev); err != nil {
		l.unhold(rev.ID)
		l.forget(ctx, rev.ID) // a Put cut short may still land: delete it
		return "", fmt.Errorf("%w: %v", ErrReversalStore, err)
	}
	ctx, cancel := context.WithTimeout(ctx, st.cfg.Timeout)
	defer cancel()
	code, sent, err := l.roundTrip(ctx, lk, iso8583.MTIAuthRequest, h, frame)
	if !sent {
		l.unhold(rev.ID)
		l.forget(ctx, rev.ID)
		return "", fmt.Errorf("%w: %v", ErrIssuerUnavailable, err)
	}
	// What a reversal of this request names: the message the issuer got.
	req.sent = rev
	if err == nil && !validCode(code) {
		// An answer without a readable DE 39 is no decline: it may be an
		// approval we cannot read.
		err = fmt.Errorf("%w: answer without a valid response code", ErrIssuerMalformed)
	}
	if err == nil {
		if code != iso8583.RCApproved {
			// Declined: nothing stands at the issuer.
			l.Discharge(ctx, req)
		}
		return code, nil
	}
	if errors.Is(err, ErrIssuerMalformed) {
		// The answer may have been an approval we cannot read: the reversal
		// owed ahead stays held until the flow records the outcome
		// (Recorded) or cannot (Reverse).
		return "", err
	}
	// It may have reached the issuer: the reversal owed ahead is sent once
	// the flow has recorded this outcome (reversed, issuer_timeout): it
	// stays held until Recorded, or Reverse when the record failed.
	l.timeouts.Add(ctx, 1, metric.WithAttributes(attribute.String("issuer", issuer)))
	return "", fmt.Errorf("%w: %v", ErrIssuerTimeout, err)
}

// Recorded implements RecordedReleaser: the outcome of req, a request left
// without a readable answer, is in the journal; its held advice is sent,
// without a record of its own.
func (l *IssuerLinks) Recorded(ctx context.Context, req *IssuerRequest) {
	if req.sent != nil {
		l.releaseRecordedByFlow(ctx, *req.sent)
	}
}

var _ RecordedReleaser = (*IssuerLinks)(nil)

// releaseRecordedByFlow releases r, held, whose outcome the flow recorded
// itself (a timeout, an unreadable answer, an acquirer's reversal). The stored advice is rewritten
// without Record first: otherwise a restart before the issuer acknowledges
// it would record the same reversal a second time (outcome_not_recorded
// beside the flow's event). Only these rare paths pay the write. If it
// fails the advice is still released; a restart may then record it twice,
// which duplicates a record but loses none.
func (l *IssuerLinks) releaseRecordedByFlow(ctx context.Context, r Reversal) {
	r.Record = false
	if err := l.put(ctx, r); err != nil {
		l.log.WarnContext(ctx, "reversal not marked recorded by the flow", "issuer", r.Issuer, "err", err)
	}
	l.release(r.ID, false)
}

// Reverse owes the issuer a reversal advice (0420) for req, a request Send
// wrote to it. A reversal still held (owed ahead, the outcome not yet
// recorded) is released to the reversal worker and recorded as an event once
// acknowledged; otherwise (the acquirer reverses a recorded approval) a new
// advice is persisted before Reverse returns. The worker sends it until the
// issuer answers. It does not depend on ctx's deadline, which has often
// passed. A request never written needs no reversal (ErrNothingToReverse).
func (l *IssuerLinks) Reverse(ctx context.Context, req *IssuerRequest) error {
	if req.sent == nil {
		return ErrNothingToReverse
	}
	if req.dischargeTried && l.isHeld(req.sent.ID) {
		return l.restore(ctx, *req.sent)
	}
	if l.release(req.sent.ID, true) {
		return nil
	}
	rev := *req.sent
	rev.ID, rev.Created, rev.Record, rev.Attempts = uuid.NewString(), time.Now().UTC(), false, 0
	if err := l.put(context.WithoutCancel(ctx), rev); err != nil {
		l.forget(ctx, rev.ID)
		return fmt.Errorf("persist reversal for issuer %s: %w", rev.Issuer, err)
	}
	l.kickWorker()
	return nil
}

// ReverseRecorded implements RecordingReverser: a new advice for req (an
// acquirer reverses a recorded approval) is stored held, with Record set, so
// that the worker does not send it before record has written the
// reversal's event, and a restart that finds it sends it and records the
// acknowledgement. Once record succeeds the advice is rewritten without
// Record (the flow recorded it) and released; if record fails it is
// released as stored, to be recorded when acknowledged.
func (l *IssuerLinks) ReverseRecorded(ctx context.Context, req *IssuerRequest, record func(context.Context) error) error {
	if req.sent == nil {
		return ErrNothingToReverse
	}
	rev := *req.sent
	rev.ID, rev.Created, rev.Record, rev.Attempts = uuid.NewString(), time.Now().UTC(), true, 0
	l.hold(rev.ID)
	if err := l.put(context.WithoutCancel(ctx), rev); err != nil {
		l.unhold(rev.ID)
		l.forget(ctx, rev.ID) // a Put cut short may still land: delete it
		return fmt.Errorf("persist reversal for issuer %s: %w", rev.Issuer, err)
	}
	if err := record(ctx); err != nil {
		l.release(rev.ID, true)
		return err
	}
	l.releaseRecordedByFlow(ctx, rev)
	return nil
}

var _ RecordingReverser = (*IssuerLinks)(nil)

// Discharge implements Discharger: req's outcome is recorded, its reversal
// owed ahead is deleted. If the delete fails the advice stays held (this
// process never sends it) and the reversal worker retries the delete, as
// Shutdown does once more; a crash before that leaves it to the next start,
// which sends it, and the acknowledged reversal is recorded as an event, so
// the record stays complete.
func (l *IssuerLinks) Discharge(ctx context.Context, req *IssuerRequest) {
	if req.sent == nil {
		return
	}
	id := req.sent.ID
	if err := l.del(context.WithoutCancel(ctx), id); err != nil {
		l.heldMu.Lock()
		l.undeleted[id] = struct{}{}
		l.heldMu.Unlock()
		l.log.ErrorContext(ctx, "discharged reversal not deleted; retrying", "issuer", req.sent.Issuer, "err", err)
		return
	}
	l.unhold(id)
}

// Discharged implements Discharger: req's advice was deleted from the
// store with its outcome event (DischargingSink); it is forgotten, and
// marked gone for a worker that listed the store before the delete.
func (l *IssuerLinks) Discharged(req *IssuerRequest) {
	if req.sent != nil {
		l.unhold(req.sent.ID)
	}
}

// restore owes r, a held advice, again after the write of its operation's
// outcome with the advice's delete failed: that write may land later (or
// be replayed when the store reopens) and delete the advice, so the advice
// is stored once more — a write the store orders after it — and only then
// released. If the store does not take it, the advice stays held (never
// sent without its record) and the worker stores it again before it
// releases it; a crash before that leaves either the advice (the write did
// not land: a start sends it) or the approval recorded and standing.
func (l *IssuerLinks) restore(ctx context.Context, r Reversal) error {
	if err := l.put(ctx, r); err != nil {
		l.heldMu.Lock()
		l.unstored[r.ID] = r
		l.heldMu.Unlock()
		l.kickWorker()
		return fmt.Errorf("persist reversal for issuer %s again: %w", r.Issuer, err)
	}
	l.release(r.ID, true)
	return nil
}

func (l *IssuerLinks) isHeld(id string) bool {
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	_, ok := l.held[id]
	return ok
}

// SetRecorder sets the function that records acknowledged reversals owed
// ahead (Reversal.Record) as outcome events; call it before Start. Without a
// recorder they are acknowledged without an event.
func (l *IssuerLinks) SetRecorder(r ReversalRecorder) { l.recorder = r }

func (l *IssuerLinks) hold(id string) {
	l.heldMu.Lock()
	l.held[id] = struct{}{}
	l.heldMu.Unlock()
}

// unhold forgets id once the store has deleted it: marked gone, so a
// worker holding an older listing of the store does not send it.
func (l *IssuerLinks) unhold(id string) {
	l.heldMu.Lock()
	delete(l.held, id)
	delete(l.undeleted, id)
	delete(l.unstored, id)
	l.gone[id] = struct{}{}
	l.heldMu.Unlock()
}

// release lets the reversal worker send the held advice id; record says
// whether its acknowledgement is to be recorded as an event (the flow
// records timeouts itself). It reports whether id was held.
func (l *IssuerLinks) release(id string, record bool) bool {
	l.heldMu.Lock()
	_, ok := l.held[id]
	delete(l.held, id)
	if ok && !record {
		l.unrecorded[id] = struct{}{}
	}
	l.heldMu.Unlock()
	if ok {
		l.kickWorker()
	}
	return ok
}

func (l *IssuerLinks) kickWorker() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// put, del and forget bound every reversal-store write by StoreTimeout,
// whatever ctx says: a store that does not answer fails the write, it never
// holds a request.
func (l *IssuerLinks) put(ctx context.Context, r Reversal) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.storeTimeout)
	defer cancel()
	return l.reversals.Put(pctx, r)
}

func (l *IssuerLinks) del(ctx context.Context, id string) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.storeTimeout)
	defer cancel()
	return l.reversals.Delete(dctx, id)
}

// forget deletes an advice that is not owed (its request was never
// written); if that fails it is left for the worker, which deletes advices
// marked so instead of sending them.
func (l *IssuerLinks) forget(ctx context.Context, id string) {
	if err := l.del(ctx, id); err != nil {
		l.heldMu.Lock()
		l.held[id] = struct{}{}
		l.undeleted[id] = struct{}{}
		l.heldMu.Unlock()
	}
}

// pick returns a signed-on link, round-robin, preferring the issuer's first
// host and failing over to the next ones in order.
// linkWait is how long a request that finds no signed-on link of its
// issuer waits for one (a link the issuer closed is redialled after about
// 100 ms and signs on one round trip later): a bounce of the issuer's
// connections is waited out, an issuer that stays down refuses requests
// (91) after this long.
const linkWait = 500 * time.Millisecond

// waitLink waits up to linkWait, and no longer than ctx, for a signed-on
// link (pick); nil when none came.
func (st *issuerState) waitLink(ctx context.Context) *link {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	end := time.NewTimer(linkWait)
	defer end.Stop()
	for {
		select {
		case <-t.C:
			if lk := st.pick(); lk != nil {
				return lk
			}
		case <-end.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func (st *issuerState) pick() *link {
	n := len(st.links)
	if n == 0 {
		return nil
	}
	// Links of the first reachable host, in configured order.
	var primary string
	for _, lk := range st.links {
		if lk.up.Load() {
			primary = lk.addr
			break
		}
	}
	if primary == "" {
		return nil
	}
	start := int(st.next.Add(1))
	for i := 0; i < n; i++ {
		lk := st.links[(start+i)%n]
		if lk.addr == primary && lk.up.Load() {
			return lk
		}
	}
	return nil
}

// roundTrip sends frame on lk and waits for the matching answer. sent reports
// whether the frame may have reached the issuer.
func (l *IssuerLinks) roundTrip(ctx context.Context, lk *link, mti string, h MessageHeader, frame []byte) (code string, sent bool, err error) {
	key := matchKey(mti, h)
	ch := make(chan answer, 1)
	if _, dup := lk.pending.LoadOrStore(key, ch); dup {
		return "", false, errors.New("duplicate match key in flight")
	}
	defer lk.pending.Delete(key)
	lk.mu.Lock()
	conn := lk.conn
	lk.mu.Unlock()
	if conn == nil {
		return "", false, errors.New("link down")
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up before the frame was written: it never
		// reaches the issuer, so nothing is owed for it.
		return "", false, err
	}
	if err := conn.Send(frame); err != nil {
		// A failed write may still have put bytes on the wire.
		return "", true, fmt.Errorf("send: %w", err)
	}
	lk.last.Store(time.Now().UnixNano())
	select {
	case a := <-ch:
		return a.code, true, a.err
	case <-ctx.Done():
		return "", true, ctx.Err()
	case <-conn.Done():
		// Done closes only after the last frame read has been through
		// onFrame (DialFunc): an answer that came before the link ended
		// is in ch, and select chooses at random among ready cases.
		select {
		case a := <-ch:
			return a.code, true, a.err
		default:
		}
		return "", true, errors.New("link closed while waiting for the answer")
	}
}

// onFrame matches an answer from the issuer to its request.
func (l *IssuerLinks) onFrame(lk *link, frame []byte) {
	lk.last.Store(time.Now().UnixNano())
	mti, h, code, err := lk.issuer.codec.Unpack(frame)
	if err != nil {
		l.log.Warn("unreadable issuer message", "issuer", lk.issuer.cfg.ID, "host", lk.addr, "err", err)
		return
	}
	// Only a response (function digit odd: 0110, 0430, 0810) answers: a
	// request or advice from the issuer, or our own request reflected back,
	// has the same match key as the answer it is not.
	if isResponse(mti) {
		if v, ok := lk.pending.Load(matchKey(mti, h)); ok {
			select {
			case v.(chan answer) <- answer{code: code}:
			default:
			}
			return
		}
	}
	l.log.Warn("unmatched issuer answer (late or unknown)", "issuer", lk.issuer.cfg.ID, "mti", mti, "stan", h.STAN)
}

// isResponse reports whether mti is an answer: its function digit is odd.
func isResponse(mti string) bool {
	return len(mti) == 4 && mti[2] >= '0' && mti[2] <= '9' && (mti[2]-'0')%2 == 1
}

// network sends an 0800 with the given network management code and waits for the 0810.
func (l *IssuerLinks) network(ctx context.Context, lk *link, nmi string) (string, error) {
	h := l.nextHeader("", lk.issuer.cfg.Institution)
	frame, err := lk.issuer.codec.PackNetwork(h, nmi)
	if err != nil {
		return "", err
	}
	code, _, err := l.roundTrip(ctx, lk, iso8583.MTINetworkRequest, h, frame)
	return code, err
}

// run keeps one link open: dial, sign on, echo when idle, and on loss
// reconnect with capped exponential backoff and jitter.
func (l *IssuerLinks) run(lk *link) {
	defer l.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), lk.issuer.cfg.Timeout)
		conn, err := l.dial(ctx, lk.addr, lk.issuer.cfg.Framing, func(f []byte) { l.onFrame(lk, f) })
		cancel()
		if err == nil {
			lk.mu.Lock()
			lk.conn = conn
			lk.mu.Unlock()
			ctx, cancel = context.WithTimeout(context.Background(), lk.issuer.cfg.Timeout)
			code, serr := l.network(ctx, lk, iso8583.NMISignOn)
			cancel()
			if serr == nil && code == iso8583.RCApproved {
				backoff = 100 * time.Millisecond
				lk.up.Store(true)
				l.linkUp.Add(context.Background(), 1, metric.WithAttributes(attribute.String("issuer", lk.issuer.cfg.ID)))
				l.log.Info("issuer link signed on", "issuer", lk.issuer.cfg.ID, "host", lk.addr)
				select {
				case l.kick <- struct{}{}:
				default:
				}
				l.serve(lk, conn)
				lk.up.Store(false)
				l.linkUp.Add(context.Background(), -1, metric.WithAttributes(attribute.String("issuer", lk.issuer.cfg.ID)))
				l.log.Warn("issuer link down", "issuer", lk.issuer.cfg.ID, "host", lk.addr)
			} else {
				l.log.Warn("issuer sign-on refused", "issuer", lk.issuer.cfg.ID, "host", lk.addr, "code", code, "err", serr)
			}
			lk.mu.Lock()
			lk.conn = nil
			lk.mu.Unlock()
			_ = conn.Close()
		}
		wait := backoff + time.Duration(rand.Int64N(int64(backoff/2)+1))
		backoff = min(backoff*2, 10*time.Second)
		select {
		case <-l.stop:
			return
		case <-time.After(wait):
		}
	}
}

// serve watches a signed-on link until it closes or Shutdown, echoing when idle.
func (l *IssuerLinks) serve(lk *link, conn FrameConn) {
	interval := lk.issuer.cfg.EchoInterval
	t := time.NewTicker(max(interval/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-conn.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, lk.last.Load())) < interval {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), lk.issuer.cfg.Timeout)
			code, err := l.network(ctx, lk, iso8583.NMIEcho)
			cancel()
			if err != nil || code != iso8583.RCApproved {
				l.log.Warn("issuer echo failed; reconnecting", "issuer", lk.issuer.cfg.ID, "host", lk.addr, "code", code, "err", err)
				return
			}
		}
	}
}

// reversalWorker sends every stored reversal advice until the issuer
// acknowledges it: at start (reversals left by an earlier run), whenever one is
// added or a link signs on, and every few seconds.
func (l *IssuerLinks) reversalWorker() {
	defer l.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		l.sendReversals()
		select {
		case <-l.stop:
			return
		case <-l.kick:
		case <-t.C:
		}
	}
}

func (l *IssuerLinks) sendReversals() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.deleteDischarged(ctx)
	// What was deleted before this listing is not in it and cannot come
	// back: forget it after the listing. What is deleted while the listing
	// is walked is skipped below.
	l.heldMu.Lock()
	goneBefore := make([]string, 0, len(l.gone))
	for id := range l.gone {
		goneBefore = append(goneBefore, id)
	}
	l.heldMu.Unlock()
	pending, err := l.reversals.Pending(ctx)
	if err != nil {
		l.log.Error("reversal store unreadable", "err", err)
		return
	}
	listed := make(map[string]struct{}, len(pending))
	for _, r := range pending {
		listed[r.ID] = struct{}{}
	}
	l.heldMu.Lock()
	for _, id := range goneBefore {
		if _, ok := listed[id]; !ok {
			delete(l.gone, id)
		}
	}
	l.heldMu.Unlock()
	for _, r := range pending {
		select {
		case <-l.stop:
			return
		default:
		}
		l.heldMu.Lock()
		_, held := l.held[r.ID]
		_, unrecorded := l.unrecorded[r.ID]
		_, gone := l.gone[r.ID]
		l.heldMu.Unlock()
		if held || gone {
			continue
		}
		l.mu.RLock()
		st := l.issuers[r.Issuer]
		l.mu.RUnlock()
		if st == nil {
			continue
		}
		lk := st.pick()
		if lk == nil {
			continue
		}
		h := l.nextHeader(r.Terminal, st.cfg.Institution)
		frame, err := st.codec.PackReversal(h, &r)
		if err != nil {
			l.log.Error("reversal unpackable", "issuer", r.Issuer, "err", err)
			continue
		}
		rctx, rcancel := context.WithTimeout(ctx, st.cfg.Timeout)
		code, _, err := l.roundTrip(rctx, lk, iso8583.MTIReversalAdvice, h, frame)
		rcancel()
		attr := metric.WithAttributes(attribute.String("issuer", r.Issuer))
		if err != nil {
			r.Attempts++
			if unrecorded {
				// The listing may predate Send's rewrite: keep it.
				r.Record = false
			}
			_ = l.put(ctx, r)
			l.revs.Add(ctx, 1, attr, metric.WithAttributes(attribute.String("result", "retry")))
			continue
		}
		// Any answer is an acknowledgement: the issuer has the advice. An
		// advice owed ahead is recorded before it is deleted; if the journal
		// does not take the record, the advice stays and is sent again (the
		// issuer takes a repeated advice as one).
		if r.Record && !unrecorded && l.recorder != nil {
			if err := l.recorder(ctx, r); err != nil {
				l.log.Error("acknowledged reversal not recorded; it stays owed", "issuer", r.Issuer, "err", err)
				l.revs.Add(ctx, 1, attr, metric.WithAttributes(attribute.String("result", "unrecorded")))
				continue
			}
		}
		if err := l.del(ctx, r.ID); err != nil {
			l.log.Error("acknowledged reversal not deleted", "issuer", r.Issuer, "err", err)
		} else {
			l.heldMu.Lock()
			delete(l.unrecorded, r.ID)
			l.heldMu.Unlock()
		}
		l.revs.Add(ctx, 1, attr, metric.WithAttributes(attribute.String("result", "acknowledged"), attribute.String("code", code)))
	}
}

// deleteDischarged retries the deletes Discharge and forget could not make,
// and the writes restore could not make (those advices are then released).
func (l *IssuerLinks) deleteDischarged(ctx context.Context) {
	l.heldMu.Lock()
	ids := make([]string, 0, len(l.undeleted))
	for id := range l.undeleted {
		ids = append(ids, id)
	}
	again := make([]Reversal, 0, len(l.unstored))
	for _, r := range l.unstored {
		again = append(again, r)
	}
	l.heldMu.Unlock()
	for _, id := range ids {
		if err := l.del(ctx, id); err == nil {
			l.unhold(id)
		}
	}
	for _, r := range again {
		if err := l.put(ctx, r); err == nil {
			l.heldMu.Lock()
			delete(l.unstored, r.ID)
			l.heldMu.Unlock()
			l.release(r.ID, true)
		}
	}
}
