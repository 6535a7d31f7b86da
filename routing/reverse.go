package routing

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"pingate/iso8583"
)

// ReversalAdvice is an acquirer's 0420: it gave up on a request it sent
// (most often because the answer came too late for the terminal) and the
// cardholder was told it failed.
type ReversalAdvice struct {
	Acquirer, Terminal string
	// STAN and Transmit identify the original request (DE 90).
	STAN, Transmit string
	// PAN is DE 2 of the advice (mandatory in an 0420): its card token is
	// part of the original's identity in the duplicate window, this
	// instance's and the shared one. Secret, like Request.PAN.
	PAN string
	// Reason is the acquirer's DE 39, if it gave one.
	Reason string
}

// Reverse takes an acquirer's reversal advice. When a gateway instance
// approved the original request within the duplicate window — this one, or,
// with a shared window (WindowReversals) and Deps.ApprovalSealer, any
// instance — the approval is undone: the issuer is owed a 0420 for the
// message it approved (persisted and sent by this instance's issuer links),
// and the reversal is recorded as an outcome event — outcome reversed, reason
// acquirer_reversal, the code the acquirer gave (68 when none: ResponseFor
// of an *AcquirerReversal), and the approved event's id in Reverses — so the
// back office sees the operation did not stand. In a shared window the
// reversal is claimed once across instances (ClaimReversal), so a repeated
// advice to another instance changes nothing. A nil error means the advice is
// taken (answered 00), also when there is nothing to undo (the original was
// not approved, is unknown, or was reversed already); an error wraps
// ErrReversalFailed when the reversal could not be looked up, claimed, owed
// or recorded, or when the original is still in flight on another instance
// (ErrOriginalInFlight): answered 96, so the acquirer sends the advice again.
func (f *Flow) Reverse(ctx context.Context, adv ReversalAdvice) error {
	return f.reverse(ctx, adv, false)
}

// reverse is Reverse; again is set when it looks up the original a second
// time, because the original came while the first look marked it reversed.
func (f *Flow) reverse(ctx context.Context, adv ReversalAdvice, again bool) error {
	ctx, span := f.tracer.Start(ctx, "pingate.pin.reversal", trace.WithAttributes(
		attribute.String("pingate.acquirer", adv.Acquirer)))
	defer span.End()
	result := func(r string) {
		span.SetAttributes(attribute.String("pingate.reversal.result", r))
		f.m.acqReversals.Add(ctx, 1, metric.WithAttributes(attribute.String("result", r)))
	}
	failed := func(err error) error {
		span.RecordError(err)
		result("failed")
		return fmt.Errorf("%w: %w", ErrReversalFailed, err)
	}
	card := f.deps.Tokenizer.Token(adv.PAN) // DE 2 is mandatory in an 0420
	key := dedupeKey(adv.Acquirer, adv.Terminal, adv.STAN, adv.Transmit, card)
	now := f.deps.Now()
	o, local, err := f.dups.lookup(ctx, key, now)
	if err != nil {
		return failed(fmt.Errorf("look up the original: %w", err))
	}
	if local && o.undo == nil {
		result("nothing_to_undo")
		return nil
	}
	// The shared window's record, when there is one to read.
	wr, _ := f.deps.Limiter.(WindowReversals)
	if f.deps.ApprovalSealer == nil || adv.PAN == "" {
		wr = nil
	}
	var (
		id     WindowID
		rec    WindowRecord
		shared bool
	)
	if wr != nil {
		id = WindowID{CardToken: card, Acquirer: adv.Acquirer, Terminal: adv.Terminal, STAN: adv.STAN, Transmit: adv.Transmit}
		rec, shared, err = wr.Lookup(ctx, id)
		if err != nil {
			return failed(fmt.Errorf("look up the original in the shared window: %w", err))
		}
	}
	a := o.undo
	switch {
	case shared && rec.Reversed:
		result("already_reversed")
		return nil
	case local:
		// This instance approved it. Another may reverse it too only once
		// the shared record is done; then the claim there decides.
		shared = shared && rec.Done
	case !shared:
		// Unknown: sent on another connection and not read yet, or never
		// received. Marked reversed in the shared window, then in this
		// instance's, so that the request is refused wherever it comes;
		// one that came since the lookups is looked up again, once.
		window := f.state.Load().cfg.DuplicateWindow
		marked := true
		if wr != nil {
			if marked, err = wr.Forbid(ctx, id, window); err != nil {
				return failed(fmt.Errorf("mark the original reversed in the shared window: %w", err))
			}
		}
		if marked && f.dups.forbid(key, now, window) {
			result("original_unknown")
			return nil
		}
		if again {
			return failed(ErrOriginalInFlight)
		}
		return f.reverse(ctx, adv, true)
	case !rec.Done:
		return failed(ErrOriginalInFlight)
	case rec.Reversal == nil:
		result("nothing_to_undo")
		return nil
	default:
		if a, err = openApproval(f.deps.ApprovalSealer, id, rec.Reversal); err != nil {
			return failed(err)
		}
	}
	if local && !f.dups.claimReversal(key, now) {
		result("already_reversed")
		return nil
	}
	if shared {
		claimed, err := wr.ClaimReversal(ctx, id)
		if err != nil || !claimed {
			if local && err != nil {
				f.dups.releaseReversal(key, now)
			}
			if err != nil {
				return failed(fmt.Errorf("claim the reversal: %w", err))
			}
			// Another instance took it; the local claim stays, it is reversed.
			result("already_reversed")
			return nil
		}
	}
	if err := f.undoApproved(ctx, a, adv.Reason); err != nil {
		if local {
			f.dups.releaseReversal(key, now)
		}
		if shared {
			_ = wr.ReleaseReversal(context.WithoutCancel(ctx), id)
		}
		return failed(err)
	}
	result("reversed")
	return nil
}

// undoApproved owes the issuer the reversal of the approval a and records it.
// With a RecordingReverser the advice is sent only once the reversal's event
// is in the journal (a process that dies in between sends it at the next
// start and records its acknowledgement): the issuer never undoes a recorded
// approval without a record of the reversal.
func (f *Flow) undoApproved(ctx context.Context, a *Approval, reason string) error {
	r, ok := f.deps.Issuers.(Reverser)
	if !ok {
		return errors.New("routing: the issuer sender cannot send reversals")
	}
	sent := a.Sent
	rsp := ResponseFor(&AcquirerReversal{Code: reason})
	now := f.deps.Now()
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	ev := Event{
		ID: eventID(a.EventID + "/reversal"), Type: EventType(a.Operation, rsp.Outcome), Time: now,
		Operation: a.Operation, Outcome: rsp.Outcome, Code: rsp.Code, Reason: rsp.Reason,
		Channel: a.Channel, Acquirer: a.Acquirer, Terminal: a.Terminal, Issuer: a.Issuer,
		MaskedPAN: a.MaskedPAN, CardToken: a.CardToken, Teller: a.Teller, Supervisor: a.Supervisor,
		Received: now, Completed: now, TraceParent: carrier.Get("traceparent"), Reverses: a.EventID,
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		ev.TraceID = sc.TraceID().String()
	}
	record := func(ctx context.Context) error { return f.deps.Sink.Publish(ctx, ev) }
	if rr, ok := r.(RecordingReverser); ok {
		return rr.ReverseRecorded(ctx, &IssuerRequest{sent: &sent}, record)
	}
	if err := r.Reverse(ctx, &IssuerRequest{sent: &sent}); err != nil {
		return err
	}
	return record(ctx)
}

// RecordReversal records r, a reversal the issuer acknowledged, as an outcome
// event: outcome reversed, reason outcome_not_recorded, code 91 (what the
// acquirer was answered, if it was answered at all), and the operation's
// event id in Reverses. The event id derives from the operation's, so a
// second recording of the same reversal (after a restart) carries the same
// id and consumers dedupe it. It is the ReversalRecorder the gateway gives
// its issuer links.
func (f *Flow) RecordReversal(ctx context.Context, r Reversal) error {
	rsp := ResponseFor(ErrReversedNotRecorded)
	now := f.deps.Now()
	ev := Event{
		ID: eventID(r.EventID + "/" + ReasonOutcomeNotRecorded), Type: EventType(r.Operation, rsp.Outcome), Time: now,
		Operation: r.Operation, Outcome: rsp.Outcome, Code: rsp.Code, Reason: rsp.Reason,
		Channel: r.Channel, Acquirer: r.Acquirer, Terminal: r.Terminal, Issuer: r.Issuer,
		MaskedPAN: iso8583.MaskPAN(r.PAN), CardToken: f.deps.Tokenizer.Token(r.PAN), Teller: r.Teller, Supervisor: r.Supervisor,
		Received: r.Created, Completed: now, Reverses: r.EventID,
	}
	if r.EventID == "" {
		ev.ID = eventID(r.ID + "/" + ReasonOutcomeNotRecorded)
	}
	return f.deps.Sink.Publish(ctx, ev)
}
