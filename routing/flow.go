package routing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"pingate/iso8583"
	"pingate/pinblock"
)

// IssuerRequest is a PIN operation as sent to an issuer: the PIN blocks are
// already under the issuer's key and in its format.
type IssuerRequest struct {
	Operation                       Operation
	PAN                             string
	OldBlock, NewBlock              []byte
	Format                          int
	KeyIndex                        int
	Acquirer, Terminal, Merchant    string
	RRN                             string
	Teller, Supervisor, IdentityRef string

	// pins backs OldBlock and NewBlock when the flow translated them, so a
	// translation allocates nothing.
	pins [pinblock.BufferSize]byte
	// sent is set by a sender that wrote the request to the issuer: what a
	// reversal of it must name.
	sent *Reversal
	// eventID and channel are the operation's, for the reversal owed ahead
	// (Reversal.EventID, Reversal.Channel).
	eventID string
	channel Channel
	// dischargeTried: the write of the outcome event with the delete of
	// sent's advice failed (DischargingSink), and may land later.
	dischargeTried bool
}

// KeyImporter takes a key enciphered under a zone master key: an acquirer's
// new zone PIN key from an online key change. The security module is one; a
// gateway with a key store wraps it, so the key is also kept under the LMK
// and the handover recorded in the custody log.
type KeyImporter interface {
	Import(ctx context.Context, req pinblock.ImportRequest) (pinblock.KeyInfo, error)
}

// IssuerSender delivers operations to issuers. Send returns the issuer's DE 39.
// Errors: ErrIssuerUnavailable when the request was never sent (no signed-on
// link); ErrIssuerTimeout when it may have reached the issuer and no answer
// came in time (the sender has queued a reversal advice); ErrIssuerMalformed
// when the answer could not be read.
type IssuerSender interface {
	Send(ctx context.Context, issuer string, req *IssuerRequest) (code string, err error)
}

// Reverser is implemented by an IssuerSender that can undo a request the
// issuer approved: the flow asks for it when the outcome cannot be recorded,
// so the issuer's change does not stand without a record, and for an
// acquirer's reversal of an approval. Reverse returns once the reversal is
// owed durably (or is already: a reversal owed ahead is only released to be
// sent).
type Reverser interface {
	Reverse(ctx context.Context, req *IssuerRequest) error
}

// RecordingReverser is implemented by a Reverser that can hold a reversal
// advice until its event is recorded (IssuerLinks). ReverseRecorded owes
// the reversal of req, a request whose approval is recorded, calls record
// to write the reversal's own event, and lets the advice go to the issuer
// only then; a process that dies before record returns sends the advice at
// its next start and records the acknowledgement as an event
// (outcome_not_recorded). When record fails the advice is sent all the same
// and its acknowledgement recorded; record's error is returned.
type RecordingReverser interface {
	ReverseRecorded(ctx context.Context, req *IssuerRequest, record func(context.Context) error) error
}

// RecordedReleaser is implemented by an IssuerSender that holds the
// reversal advice of a request left without a readable answer (a timeout)
// until the flow has recorded that request's outcome (IssuerLinks): Recorded
// says the outcome is in the journal, and the advice is sent without a
// record of its own. When the record fails the flow calls Reverse instead,
// and the acknowledgement is recorded. A process that dies before either
// sends the advice at its next start and records the acknowledgement.
type RecordedReleaser interface {
	Recorded(ctx context.Context, req *IssuerRequest)
}

// Discharger is implemented by an IssuerSender that owes the reversal of
// every request ahead of writing it to the issuer (IssuerLinks): once the
// flow has the outcome event of an approved request in the journal, it
// discharges that reversal. Discharge does not fail: a reversal it could not
// delete stays held (never sent by this process) and is deleted later.
//
// With a DischargingSink the sink deletes the advice itself, in the outcome
// entry's own write, and the flow tells the Discharger with Discharged.
type Discharger interface {
	Discharge(ctx context.Context, req *IssuerRequest)
	// Discharged: req's advice was deleted with its outcome event
	// (DischargingSink); forget it. When that write failed the flow calls
	// Reverse instead, which owes the advice again.
	Discharged(req *IssuerRequest)
}

// DischargingSink is implemented by an OutcomeSink that keeps the reversal
// advices owed ahead in its own store (the gateway's journal, which holds
// the Discharger's ReversalStore): PublishDischarging makes ev durable and
// deletes advice adviceID in one atomic synced write, so an approval is
// never recorded with its advice still owed, nor its advice deleted without
// the record. An error before the write leaves neither done; a write whose
// fate is unknown (stalled, or a storage failure once it began) may still
// land whole. Wire it only with a Discharger whose store is the sink's.
type DischargingSink interface {
	PublishDischarging(ctx context.Context, ev Event, adviceID string) error
}

// ReversalRecorder records a reversal the issuer acknowledged as an outcome
// event (Flow.RecordReversal); IssuerLinks calls it for every acknowledged
// advice with Reversal.Record set.
type ReversalRecorder func(ctx context.Context, r Reversal) error

// ErrNothingToReverse: the request never reached the issuer.
var ErrNothingToReverse = errors.New("routing: request was never sent to the issuer")

// Admitter is implemented by an OutcomeSink that can refuse work up front, e.g.
// a journal past its depth limit: the flow then answers 91 before the issuer
// is involved, instead of changing a PIN whose record might be lost.
type Admitter interface {
	Admit() error
}

// Deps are the flow's collaborators. Limiter may be nil (no limits).
type Deps struct {
	HSM pinblock.SecurityModule
	// Keys takes acquirers' online key changes (0800/161); nil means HSM,
	// which holds the new key in memory only.
	Keys      KeyImporter
	Limiter   Limiter
	Sink      OutcomeSink
	Issuers   IssuerSender
	Tokenizer *Tokenizer
	// ApprovalSealer seals what reverses an approval (the issuer's message,
	// with the PAN) into the shared duplicate window's record, so that an
	// acquirer's 0420 reaching any instance undoes it (Flow.Reverse); nil
	// means only the approving instance can undo its approvals. It takes
	// effect with a Limiter that is a SharedWindow.
	ApprovalSealer Sealer
	// Source names this instance in events (CloudEvents source); optional.
	Source string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Flow runs PIN operations. It is safe for concurrent use; Reload swaps its
// configuration atomically while requests are in flight.
type Flow struct {
	state  atomic.Pointer[flowState]
	deps   Deps
	dups   *dedupe
	tracer trace.Tracer
	m      flowMetrics
}

type flowState struct {
	cfg       Config
	acquirers map[string]*AcquirerConfig
	issuers   map[string]*IssuerConfig
	table     *BINTable
	// translators holds a prepared pinblock.Translator per pinblock.Route
	// used since this configuration took effect; a reload starts afresh.
	translators sync.Map
}

// translator returns the prepared translator of r, preparing it on first
// use. A route that fails to prepare is not remembered: its error is the
// one a translation would give, and the next request tries again.
func (f *Flow) translator(ctx context.Context, st *flowState, r pinblock.Route) (pinblock.Translator, error) {
	if t, ok := st.translators.Load(r); ok {
		return t.(pinblock.Translator), nil
	}
	t, err := f.deps.HSM.Prepare(ctx, r)
	if err != nil {
		return nil, err
	}
	actual, _ := st.translators.LoadOrStore(r, t)
	return actual.(pinblock.Translator), nil
}

// NewFlow validates cfg and builds a flow.
func NewFlow(cfg Config, deps Deps) (*Flow, error) {
	if deps.HSM == nil || deps.Sink == nil || deps.Issuers == nil || deps.Tokenizer == nil {
		return nil, errors.New("routing: flow needs a security module, an outcome sink, issuers and a tokenizer")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	f := &Flow{deps: deps, tracer: otel.Tracer("pingate/routing")}
	f.m = newFlowMetrics()
	if err := f.Reload(cfg); err != nil {
		return nil, err
	}
	f.dups = newDedupe()
	return f, nil
}

// Reload validates cfg and, only if it is valid, swaps it in atomically.
func (f *Flow) Reload(cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	table, err := NewBINTable(cfg.Routes)
	if err != nil {
		return err
	}
	cfg.Routes = nil // the table holds them: a million ranges are not kept twice
	st := &flowState{cfg: cfg, table: table, acquirers: map[string]*AcquirerConfig{}, issuers: map[string]*IssuerConfig{}}
	for i := range cfg.Acquirers {
		st.acquirers[cfg.Acquirers[i].ID] = &cfg.Acquirers[i]
	}
	for i := range cfg.Issuers {
		st.issuers[cfg.Issuers[i].ID] = &cfg.Issuers[i]
	}
	f.state.Store(st)
	return nil
}

// reverseApproved owes the issuer a reversal of req when it approved it.
func (f *Flow) reverseApproved(ctx context.Context, req *Request) {
	r, ok := f.deps.Issuers.(Reverser)
	if req.approved == nil || !ok {
		return
	}
	span := trace.SpanFromContext(ctx)
	if err := r.Reverse(ctx, req.approved); err != nil {
		span.RecordError(fmt.Errorf("reverse approved request: %w", err))
		return
	}
	span.AddEvent("pingate.reversal_owed")
	f.m.reversals.Add(ctx, 1)
}

// Config returns the configuration in force. Its Routes are read back from
// the BIN table, in prefix order: the flow keeps no list beside the table.
func (f *Flow) Config() Config {
	st := f.state.Load()
	cfg := st.cfg
	cfg.Routes = st.table.Routes()
	return cfg
}

// BINTable is the BIN table in force.
func (f *Flow) BINTable() *BINTable { return f.state.Load().table }

// Acquirer returns the configuration of acquirer id.
func (f *Flow) Acquirer(id string) (AcquirerConfig, bool) {
	a, ok := f.state.Load().acquirers[id]
	if !ok {
		return AcquirerConfig{}, false
	}
	return *a, true
}

// Handle runs one PIN operation to its final outcome. It never panics on bad
// input and always returns an outcome with a response code; the outcome event
// has been made durable by the sink before Handle returns (or the code is 91).
func (f *Flow) Handle(ctx context.Context, req *Request) Outcome {
	start := f.deps.Now()
	st := f.state.Load()
	if req.ID == "" {
		req.ID = uuid.NewString()
	}
	if req.Received.IsZero() {
		req.Received = start
	}
	ctx, cancel := context.WithTimeout(ctx, st.cfg.RequestTimeout)
	defer cancel()
	ctx, span := f.tracer.Start(ctx, "pingate.pin."+string(req.Operation))
	// Attributes only on a span that records them (the samplers here decide
	// without attributes): an unsampled request builds none.
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("pingate.operation", string(req.Operation)),
			attribute.String("pingate.acquirer", req.Acquirer),
			attribute.String("pingate.operation_id", req.ID),
		)
		if req.Channel != "" { // else process sets it from the acquirer's
			span.SetAttributes(attribute.String("pingate.channel", string(req.Channel)))
		}
	}
	defer span.End()
	f.m.inflight.Add(ctx, 1)
	defer f.m.inflight.Add(ctx, -1)

	var key string
	if req.STAN != "" && req.Transmit != "" {
		req.CardToken = f.deps.Tokenizer.Token(req.PAN)
		key = dedupeKey(req.Acquirer, req.Terminal, req.STAN, req.Transmit, req.CardToken)
		first, reversedFirst, prev, err := f.dups.begin(ctx, key, start)
		// Registered (or found a duplicate): an 0420 read behind this 0100
		// on its connection may now be taken (iso8583.WaitEarlierFrames).
		iso8583.FramePassed(ctx)
		if err != nil {
			r := ResponseFor(err)
			return Outcome{Code: r.Code, Outcome: r.Outcome, Reason: r.Reason}
		}
		if !first {
			span.SetAttributes(attribute.Bool("pingate.duplicate", true))
			f.m.duplicates.Add(ctx, 1)
			return prev
		}
		req.reversedFirst = reversedFirst
	}
	iso8583.FramePassed(ctx) // without an identity there is nothing to register

	issuer, err := f.process(ctx, st, req)
	if dup := (*duplicateError)(nil); errors.As(err, &dup) {
		// The shared window knew it: another instance answered it first.
		span.SetAttributes(attribute.Bool("pingate.duplicate", true))
		f.m.duplicates.Add(ctx, 1)
		if key != "" {
			f.dups.finish(key, dup.first, f.deps.Now(), st.cfg.DuplicateWindow)
		}
		return dup.first
	}
	rsp := ResponseFor(err)
	if f.deps.Limiter != nil && req.CardToken != "" && rsp.Outcome != OutcomeLimited && !req.claimed {
		// The limiter learns every final code of a card (a wrong PIN counts,
		// an approved unblock or reset clears the count) and ignores the rest
		// without a round trip. A failure to record is the limiter's to
		// report; the cardholder's answer does not change.
		_ = f.deps.Limiter.Record(ctx, req, rsp.Code)
	}
	out := Outcome{Code: rsp.Code, Outcome: rsp.Outcome, Reason: rsp.Reason, Issuer: issuer}
	out.EventID = eventID(req.ID)
	ev, discharged, err := f.publish(ctx, req, &out)
	if err == nil && req.approved != nil && out.Outcome != OutcomeApproved {
		// The issuer took the change, but the operation failed after it (its
		// PIN mailer did not print): the PIN the issuer holds is on no
		// mailer, and the record says failed. The reversal owed ahead is
		// sent, so that the card's previous PIN stands again; its
		// acknowledgement is recorded as the failed event's reversal.
		f.reverseApproved(ctx, req)
	} else if err == nil && req.approved != nil && req.approved.sent != nil {
		out.undo = approvalOf(req.approved.sent, ev)
		// The outcome is in the journal: the reversal owed ahead of the
		// issuer call is no longer owed.
		if d, ok := f.deps.Issuers.(Discharger); ok {
			if discharged {
				d.Discharged(req.approved)
			} else {
				d.Discharge(ctx, req.approved)
			}
		}
	}
	if req.unanswered != nil {
		// The issuer may have taken it: the reversal held since the issuer
		// call goes now, after the outcome (reversed) is recorded, so that
		// no reversal reaches the issuer before its record; when the record
		// failed, the acknowledgement is recorded instead (Reverse).
		if rl, ok := f.deps.Issuers.(RecordedReleaser); ok && err == nil {
			rl.Recorded(ctx, req.unanswered)
		} else if r, ok := f.deps.Issuers.(Reverser); ok {
			_ = r.Reverse(ctx, req.unanswered)
		}
	}
	if err != nil {
		// The outcome could not be recorded: the acquirer must not believe in
		// an outcome the back office will never see, and a change the issuer
		// made must not stand without a record: it is reversed.
		err = fmt.Errorf("%w: %w", ErrNotRecorded, err)
		rsp := ResponseFor(err)
		out.Code, out.Outcome, out.Reason = rsp.Code, rsp.Outcome, rsp.Reason
		span.RecordError(err)
		f.reverseApproved(ctx, req)
	}
	out.Duration = f.deps.Now().Sub(start)
	if req.claimed {
		f.finishShared(ctx, st, req, out, rsp)
	}
	span.SetAttributes(
		attribute.String("iso8583.response_code", out.Code),
		attribute.String("pingate.outcome", out.Outcome),
		attribute.String("pingate.reason", out.Reason),
		attribute.String("pingate.issuer", out.Issuer),
	)
	if out.Outcome == OutcomeFailed {
		span.SetStatus(codes.Error, out.Reason)
	}
	f.m.record(ctx, req, &out)
	if key != "" {
		f.dups.finish(key, out, f.deps.Now(), st.cfg.DuplicateWindow)
	}
	return out
}

// allow asks the limiter about req: through its shared duplicate window when
// it keeps one and req can have duplicates (SharedWindow.Claim), else Allow.
// A request the window knows comes back as a *duplicateError.
func (f *Flow) allow(ctx context.Context, st *flowState, req *Request) (Decision, error) {
	sw, ok := f.deps.Limiter.(SharedWindow)
	if !ok || req.STAN == "" || req.Transmit == "" {
		return f.deps.Limiter.Allow(ctx, req)
	}
	c, err := sw.Claim(ctx, req, st.cfg.DuplicateWindow)
	if err != nil {
		return Decision{}, err
	}
	if !c.First {
		return Decision{}, &duplicateError{first: c.Previous}
	}
	req.claimed = true
	return c.Decision, nil
}

// windowFinishTimeout bounds storing an outcome in the shared window, which
// runs on a context of its own: the request's may have expired at the issuer.
const windowFinishTimeout = time.Second

// finishShared stores out, the final answer to the claimed req, in the shared
// window, and feeds the limits with the result rsp (nothing for a refusal by
// a limit). A failure leaves the window's record in flight: duplicates then
// get 94 once the first's deadline has passed, never a second issuer request.
func (f *Flow) finishShared(ctx context.Context, st *flowState, req *Request, out Outcome, rsp Response) {
	entry := WindowEntry{Outcome: out}
	if rsp.Outcome != OutcomeLimited {
		entry.LimitCode = rsp.Code
	}
	if out.undo != nil && f.deps.ApprovalSealer != nil {
		sealed, err := sealApproval(f.deps.ApprovalSealer, WindowIDOf(req), out.undo)
		if err != nil {
			// The approval stands; only this instance can undo it.
			trace.SpanFromContext(ctx).RecordError(fmt.Errorf("seal the approval for the shared window: %w", err))
			f.m.unshared.Add(ctx, 1)
		}
		entry.Reversal = sealed
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), windowFinishTimeout)
	defer cancel()
	if err := f.deps.Limiter.(SharedWindow).Finish(fctx, req, entry, st.cfg.DuplicateWindow); err != nil {
		trace.SpanFromContext(ctx).RecordError(fmt.Errorf("store the outcome in the shared window: %w", err))
		if entry.Reversal != nil {
			f.m.unshared.Add(ctx, 1)
		}
	}
}

// process runs the steps up to the issuer's answer; a nil error is approval.
func (f *Flow) process(ctx context.Context, st *flowState, req *Request) (issuer string, err error) {
	acq, ok := st.acquirers[req.Acquirer]
	if !ok {
		return "", ErrUnknownAcquirer
	}
	if req.Channel == "" {
		req.Channel = acq.Channel
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(attribute.String("pingate.channel", string(req.Channel)))
		}
	}
	if !slices.Contains(acq.Terminals, "*") && !slices.Contains(acq.Terminals, req.Terminal) {
		return "", ErrTerminalRefused
	}
	if !slices.Contains(acq.Operations, req.Operation) {
		return "", ErrOperationRefused
	}
	if err := validateRequest(req, acq.PINAlgorithm); err != nil {
		return "", err
	}
	if req.OldBlock != nil || req.NewBlock != nil {
		label, err := acq.BlockKey(req.Format, req.KeyIndex)
		if err != nil {
			return "", err
		}
		req.AcquirerKey = label
	}
	if req.CardToken == "" { // Handle sets it for a request it keeps in the window
		req.CardToken = f.deps.Tokenizer.Token(req.PAN)
	}
	if req.reversedFirst {
		return "", ErrReversedBeforeReceived
	}

	issuer, err = st.table.Lookup(req.PAN)
	if err != nil {
		return "", err
	}
	is := st.issuers[issuer]
	if a, ok := f.deps.Sink.(Admitter); ok {
		if err := a.Admit(); err != nil {
			if errors.Is(err, ErrSinkFull) || errors.Is(err, ErrSinkUnavailable) {
				return issuer, fmt.Errorf("admit: %w", err)
			}
			return issuer, fmt.Errorf("%w: %v", ErrSinkFull, err)
		}
	}
	if f.deps.Limiter != nil {
		t := f.deps.Now()
		lctx, span := f.tracer.Start(ctx, "pingate.limiter")
		dec, err := f.allow(lctx, st, req)
		var refused error
		var dup *duplicateError
		switch {
		case errors.As(err, &dup), errors.Is(err, ErrDuplicateInFlight):
			// Answered by the first request: its outcome, or 94.
			refused = err
		case err != nil:
			// The limiter could not decide: refused (fail closed).
			span.RecordError(err)
			refused = &LimitError{Limit: "limiter", Err: fmt.Errorf("%w: %w", ErrLimiterUnavailable, err)}
		case !dec.Allowed && errors.Is(dec.Refusal, ErrReversedBeforeReceived):
			refused = dec.Refusal // by the shared window, not a limit
		case !dec.Allowed:
			refused = &LimitError{Limit: dec.Limit, Err: dec.Refusal}
		}
		span.SetAttributes(attribute.Bool("pingate.limit.allowed", refused == nil))
		if dup != nil {
			span.SetAttributes(attribute.Bool("pingate.duplicate", true))
		} else if refused != nil {
			span.SetAttributes(attribute.String("pingate.limit.reason", ResponseFor(refused).Reason))
		}
		span.End()
		f.m.stage(ctx, "limiter", t, f.deps.Now())
		if refused != nil {
			return issuer, refused
		}
	}

	ireq := &IssuerRequest{
		Operation: req.Operation, PAN: req.PAN, Format: is.PINFormat, KeyIndex: is.KeyIndex,
		Acquirer: req.Acquirer, Terminal: req.Terminal, Merchant: req.Merchant, RRN: req.RRN,
		Teller: req.Teller, Supervisor: req.Supervisor, IdentityRef: req.IdentityRef,
		eventID: eventID(req.ID), channel: req.Channel,
	}
	var sealed []byte // a generated PIN, sealed in the security module for its mailer
	defer clear(sealed)
	if req.Generate != nil {
		t := f.deps.Now()
		hctx, span := f.tracer.Start(ctx, "pingate.hsm.generate_pin")
		var g pinblock.GeneratedPIN
		g, err = f.deps.HSM.GeneratePIN(hctx, pinblock.GeneratePINRequest{
			PAN: req.PAN, Length: req.Generate.Length,
			To: pinblock.KeyRef{ID: is.Key}, ToFormat: is.pinFormat(),
		})
		span.End()
		f.m.stage(ctx, "hsm", t, f.deps.Now())
		if err != nil {
			return issuer, fmt.Errorf("generate pin for issuer %s: %w", issuer, err)
		}
		ireq.NewBlock, sealed = g.Block, g.Sealed
	} else if req.OldBlock != nil || req.NewBlock != nil {
		t := f.deps.Now()
		hctx, span := f.tracer.Start(ctx, "pingate.hsm.translate")
		translate := func() error {
			tr, err := f.translator(hctx, st, pinblock.Route{
				From: pinblock.KeyRef{ID: req.AcquirerKey}, FromFormat: blockFormat(req.Format, acq.PINAlgorithm),
				To: pinblock.KeyRef{ID: is.Key}, ToFormat: is.pinFormat(),
			})
			if err == nil {
				ireq.OldBlock, ireq.NewBlock, err = tr.TranslatePair(hctx, ireq.pins[:0], pinblock.PairBlocks{
					PAN: req.PAN, Old: req.OldBlock, New: req.NewBlock, CheckNewPIN: req.NewBlock != nil,
				})
			}
			return err
		}
		err = translate()
		if (errors.Is(err, pinblock.ErrInvalidPINBlock) || errors.Is(err, pinblock.ErrInvalidPIN)) && iso8583.EarlierFramesPending(ctx) {
			// A key change read before this request on its connection may
			// not be in force yet (frames are handled concurrently): the
			// blocks are tried again once the frames before it have passed.
			if iso8583.WaitEarlierFrames(ctx) == nil {
				err = translate()
			}
		}
		span.End()
		f.m.stage(ctx, "hsm", t, f.deps.Now())
		if err != nil {
			return issuer, fmt.Errorf("translate for issuer %s: %w", issuer, err)
		}
	}

	t := f.deps.Now()
	ictx, span := f.tracer.Start(ctx, "pingate.issuer.roundtrip", clientSpan)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("pingate.issuer", issuer))
	}
	code, err := f.deps.Issuers.Send(ictx, issuer, ireq)
	span.SetAttributes(attribute.String("iso8583.response_code", code))
	if err != nil {
		// No answer (no signed-on link, a timeout): the client span is an
		// error, named by the stable reason rather than the error's text.
		span.SetStatus(codes.Error, ResponseFor(err).Reason)
	}
	span.End()
	f.m.stage(ctx, "issuer", t, f.deps.Now())
	clear(ireq.OldBlock)
	clear(ireq.NewBlock)
	if err != nil {
		if ireq.sent != nil {
			req.unanswered = ireq // its advice is held for the outcome's record
		}
		return issuer, fmt.Errorf("issuer %s: %w", issuer, err)
	}
	if code != iso8583.RCApproved {
		return issuer, &IssuerDecline{Code: code}
	}
	req.approved = ireq
	if sealed != nil {
		// Printed only now: no mailer carries a PIN the issuer did not take.
		t := f.deps.Now()
		mctx, span := f.tracer.Start(ctx, "pingate.hsm.print_mailer")
		err = f.deps.HSM.PrintMailer(mctx, pinblock.MailerRequest{
			PAN: req.PAN, Sealed: sealed, Reference: req.ID, AddressLines: req.Generate.MailerAddress,
		})
		span.End()
		f.m.stage(ctx, "hsm", t, f.deps.Now())
		if err != nil {
			return issuer, fmt.Errorf("pin mailer: %w", err)
		}
	}
	return issuer, nil
}

// publish records out's event in the sink. The event of an approval whose advice is owed ahead goes with the delete
// of that advice when the sink can write both at once (DischargingSink);
// discharged says it did. A failed write of both marks the request
// (IssuerRequest.dischargeTried): its Reverse owes the advice again, since
// the write may still land and delete it.
func (f *Flow) publish(ctx context.Context, req *Request, out *Outcome) (ev Event, discharged bool, err error) {
	t := f.deps.Now()
	ctx, span := f.tracer.Start(ctx, "pingate.journal.append")
	defer span.End()
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	// A request refused before validateRequest read its PAN (an unknown
	// acquirer or terminal, say) may carry one no event can show: its event
	// has no card, as one refused for that PAN has.
	pan, token := req.PAN, req.CardToken
	if !eventPAN(pan) {
		pan, token = "", ""
	}
	ev = Event{
		ID:          out.EventID,
		Type:        EventType(req.Operation, out.Outcome),
		Time:        t,
		Operation:   req.Operation,
		Outcome:     out.Outcome,
		Code:        out.Code,
		Reason:      out.Reason,
		Channel:     req.Channel,
		Acquirer:    req.Acquirer,
		Terminal:    req.Terminal,
		Issuer:      out.Issuer,
		MaskedPAN:   iso8583.MaskPAN(pan),
		CardToken:   token,
		Teller:      req.Teller,
		Supervisor:  req.Supervisor,
		Received:    req.Received,
		Completed:   t,
		TraceParent: carrier.Get("traceparent"),
	}
	if ev.CardToken == "" && pan != "" {
		ev.CardToken = f.deps.Tokenizer.Token(pan)
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		ev.TraceID = sc.TraceID().String()
	}
	ds, dischargeable := f.deps.Sink.(DischargingSink)
	if _, ok := f.deps.Issuers.(Discharger); !ok || req.approved == nil || req.approved.sent == nil || out.Outcome != OutcomeApproved {
		dischargeable = false
	}
	if dischargeable {
		err = ds.PublishDischarging(ctx, ev, req.approved.sent.ID)
		req.approved.dischargeTried = err != nil
	} else {
		err = f.deps.Sink.Publish(ctx, ev)
	}
	f.m.stage(ctx, "journal", t, f.deps.Now())
	return ev, dischargeable && err == nil, err
}

// eventNamespace derives event ids from operation ids (UUID v5), so a retried
// publication of the same outcome always carries the same event id.
var eventNamespace = uuid.MustParse("6f1c8a52-8d0e-4f7e-9d55-5e4d1a0c2b7a")

func eventID(operationID string) string {
	return uuid.NewSHA1(eventNamespace, []byte(operationID)).String()
}

// blockFormat is the PIN block format that DE 53 format number n means
// under an acquirer's or issuer's pin_algorithm (pinblock.FormatFor); a
// number the algorithm has no form of stays as it is, for the acquirer's
// format list to refuse.
func blockFormat(n int, alg pinblock.Algorithm) pinblock.Format {
	if f, err := pinblock.FormatFor(n, alg); err == nil {
		return f
	}
	return pinblock.Format(n)
}

// pinFormat is the format of the blocks the issuer receives.
func (is IssuerConfig) pinFormat() pinblock.Format { return blockFormat(is.PINFormat, is.PINAlgorithm) }

// BlockKey is the label of the zone PIN key under which the acquirer's PIN
// blocks of DE 53 format n and key index idx are enciphered. Errors:
// ErrFormatRefused when the acquirer may not send format n,
// ErrUnknownKeyIndex when it has no key at idx. The branch API asks it
// before it takes an operation; the flow again for every operation.
func (a *AcquirerConfig) BlockKey(n, idx int) (string, error) {
	if !slices.Contains(a.Formats, n) {
		return "", ErrFormatRefused
	}
	label, ok := a.Keys[idx]
	if !ok {
		return "", ErrUnknownKeyIndex
	}
	return label, nil
}

// eventPAN reports whether an event can show pan: 13 to 19 digits, so that
// its first 6 and last 4 show with some hidden between.
func eventPAN(pan string) bool { return len(pan) >= 13 && len(pan) <= 19 && isDigits(pan) }

func validateRequest(r *Request, alg pinblock.Algorithm) error {
	// A refused PAN is dropped with its token, so the refusal's event
	// (without a card) can be recorded.
	if !eventPAN(r.PAN) {
		r.PAN, r.CardToken = "", ""
		return fmt.Errorf("%w: PAN must be 13–19 digits", ErrFormat)
	}
	if r.Terminal == "" {
		return fmt.Errorf("%w: terminal id missing", ErrFormat)
	}
	// The outcome event refuses an identifier that looks like a PAN or a PIN
	// block: refuse it here, before the issuer, and drop it so that the
	// refusal itself can be recorded.
	for _, id := range []*string{&r.Terminal, &r.Teller, &r.Supervisor} {
		if LooksSecret(*id) {
			*id = ""
			return fmt.Errorf("%w: an identifier (terminal, teller or supervisor) looks like a PAN or PIN block", ErrFormat)
		}
	}
	switch r.Operation {
	case OpChange:
		if r.OldBlock == nil || r.NewBlock == nil || r.Generate != nil {
			return fmt.Errorf("%w: a PIN change needs the current and the new PIN block", ErrFormat)
		}
	case OpReset:
		if r.Generate != nil {
			if r.OldBlock != nil || r.NewBlock != nil {
				return fmt.Errorf("%w: a reset with a generated PIN carries no PIN block", ErrFormat)
			}
		} else if r.OldBlock != nil || r.NewBlock == nil {
			return fmt.Errorf("%w: a reset carries the new PIN block only", ErrFormat)
		}
		if r.IdentityRef == "" || r.Teller == "" {
			return fmt.Errorf("%w: a reset needs the teller and the identity-check reference", ErrFormat)
		}
	case OpUnblock:
		if r.OldBlock != nil || r.NewBlock != nil || r.Generate != nil {
			return fmt.Errorf("%w: an unblock carries no PIN block", ErrFormat)
		}
		if r.IdentityRef == "" || r.Teller == "" {
			return fmt.Errorf("%w: an unblock needs the teller and the identity-check reference", ErrFormat)
		}
	default:
		return fmt.Errorf("%w: unknown operation", ErrFormat)
	}
	for _, b := range [][]byte{r.OldBlock, r.NewBlock} {
		if b == nil {
			continue
		}
		want := blockFormat(r.Format, alg).BlockSize()
		if len(b) != want {
			return fmt.Errorf("%w: PIN block of %d bytes for format %d", pinblock.ErrInvalidPINBlock, len(b), r.Format)
		}
	}
	return nil
}

type flowMetrics struct {
	requests   metric.Int64Counter
	duration   metric.Float64Histogram
	stages     metric.Float64Histogram
	inflight   metric.Int64UpDownCounter
	duplicates metric.Int64Counter
	reversals  metric.Int64Counter
	// acqReversals counts acquirers' reversal advices by result.
	acqReversals metric.Int64Counter
	// unshared counts approvals the shared window could not keep.
	unshared metric.Int64Counter
	// refusals counts the acquirer messages answered before the flow (no
	// event records them), by code and reason.
	refusals metric.Int64Counter
	// requestAttrs are the attribute sets of requests and duration.
	requestAttrs *requestAttrCache
}

func newFlowMetrics() flowMetrics {
	m := otel.Meter("pingate/routing")
	fm := flowMetrics{requestAttrs: new(requestAttrCache)}
	// Instrument creation fails only for invalid names, which are static here.
	fm.requests, _ = m.Int64Counter("pingate.requests", metric.WithDescription("PIN operations by operation, channel, outcome and response code"))
	fm.duration, _ = m.Float64Histogram("pingate.request.duration", metric.WithUnit("s"), metric.WithDescription("time from request to answer"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	fm.stages, _ = m.Float64Histogram("pingate.stage.duration", metric.WithUnit("s"), metric.WithDescription("time spent per stage: limiter, hsm, issuer, journal"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5))
	fm.inflight, _ = m.Int64UpDownCounter("pingate.requests.inflight", metric.WithDescription("PIN operations in progress"))
	fm.duplicates, _ = m.Int64Counter("pingate.requests.duplicates", metric.WithDescription("duplicate requests answered with the first outcome"))
	fm.reversals, _ = m.Int64Counter("pingate.requests.reversed", metric.WithDescription("issuer-approved requests reversed because their outcome could not be recorded"))
	fm.acqReversals, _ = m.Int64Counter("pingate.acquirer.reversals", metric.WithDescription("acquirers' reversal advices (0420) by result: reversed, nothing_to_undo, original_unknown, already_reversed, failed"))
	fm.refusals, _ = m.Int64Counter("pingate.acquirer.refusals", metric.WithDescription("acquirer messages refused before the flow, so recorded in no event, by code and reason: a frame that does not unpack or breaks the field use (30), an unknown or mismatched acquirer (58), a request before sign-on (91)"))
	fm.unshared, _ = m.Int64Counter("pingate.approvals.unshared", metric.WithDescription("approvals the shared duplicate window (Redis) could not keep: an acquirer's 0420 for them is undone only by the instance that approved"))
	return fm
}

// stageAttrs are the options of each stage's measurement, built once:
// building a set sorts and copies its attributes, and a variadic option
// makes a slice, four times a request otherwise.
var stageAttrs = func() map[string][]metric.RecordOption {
	m := map[string][]metric.RecordOption{}
	for _, n := range []string{"limiter", "hsm", "issuer", "journal"} {
		m[n] = []metric.RecordOption{metric.WithAttributes(attribute.String("stage", n))}
	}
	return m
}()

func (m flowMetrics) stage(ctx context.Context, name string, from, to time.Time) {
	opts, ok := stageAttrs[name]
	if !ok {
		opts = []metric.RecordOption{metric.WithAttributes(attribute.String("stage", name))}
	}
	m.stages.Record(ctx, to.Sub(from).Seconds(), opts...)
}

func (m flowMetrics) record(ctx context.Context, req *Request, out *Outcome) {
	o := m.requestAttrs.of(requestLabels{req.Operation, req.Channel, out.Outcome, out.Code})
	m.requests.Add(ctx, 1, o.add...)
	m.duration.Record(ctx, out.Duration.Seconds(), o.record...)
}

// requestLabels are the attributes of pingate.requests and
// pingate.request.duration.
type requestLabels struct {
	operation Operation
	channel   Channel
	outcome   string
	code      string
}

// maxRequestAttrSets bounds requestAttrCache: the operations, channels and
// outcomes are few, but an issuer may answer any two-character code.
const maxRequestAttrSets = 512

// requestAttrCache keeps the measurement options of each combination of
// request labels seen: building a set sorts and copies its attributes, and a
// variadic option makes a slice, twice a request otherwise. Past
// maxRequestAttrSets combinations, new ones are built per call and not kept.
type requestAttrCache struct {
	sets sync.Map // requestLabels → *requestOpts
	n    atomic.Int32
}

// requestOpts are one label combination's options, as the counter's Add
// and the histogram's Record take them.
type requestOpts struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func (c *requestAttrCache) of(l requestLabels) *requestOpts {
	if o, ok := c.sets.Load(l); ok {
		return o.(*requestOpts)
	}
	attrs := metric.WithAttributes(
		attribute.String("operation", string(l.operation)),
		attribute.String("channel", string(l.channel)),
		attribute.String("outcome", l.outcome),
		attribute.String("code", l.code),
	)
	o := &requestOpts{add: []metric.AddOption{attrs}, record: []metric.RecordOption{attrs}}
	if c.n.Load() < maxRequestAttrSets {
		if _, loaded := c.sets.LoadOrStore(l, o); !loaded {
			c.n.Add(1)
		}
	}
	return o
}

// clientSpan is the start option of an issuer round trip's span, made once.
var clientSpan = trace.WithSpanKind(trace.SpanKindClient)
