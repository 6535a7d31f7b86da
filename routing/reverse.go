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
	// Reason is the acquirer's DE 39, if it gave one.
	Reason string
}

// Reverse takes an acquirer's reversal advice. When this instance approved
// the original request within the duplicate window, the approval is undone:
// the issuer is owed a 0420 for the message it approved (persisted and sent
// by the issuer links), and the reversal is recorded as an outcome event —
// outcome reversed, reason acquirer_reversal, the code the acquirer gave (68
// when none: ResponseFor of an *AcquirerReversal), and the approved event's
// id in Reverses — so the back office sees the operation did not stand. A
// nil error means the advice is taken (answered 00), also when there is
// nothing to undo (the original was not approved, is unknown here, or was
// reversed already); an error wraps ErrReversalFailed when the reversal could
// not be owed or recorded (answered 96, so the acquirer sends the advice
// again).
func (f *Flow) Reverse(ctx context.Context, adv ReversalAdvice) error {
	ctx, span := f.tracer.Start(ctx, "pingate.pin.reversal", trace.WithAttributes(
		attribute.String("pingate.acquirer", adv.Acquirer)))
	defer span.End()
	result := func(r string) {
		span.SetAttributes(attribute.String("pingate.reversal.result", r))
		f.m.acqReversals.Add(ctx, 1, metric.WithAttributes(attribute.String("result", r)))
	}
	key := adv.Acquirer + "|" + adv.Terminal + "|" + adv.STAN + "|" + adv.Transmit
	o, found, err := f.dups.lookup(ctx, key)
	switch {
	case err != nil:
		result("failed")
		return fmt.Errorf("%w: look up the original: %w", ErrReversalFailed, err)
	case !found:
		result("original_unknown")
		return nil
	case o.undo == nil:
		result("nothing_to_undo")
		return nil
	case !f.dups.claimReversal(key):
		result("already_reversed")
		return nil
	}
	if err := f.undoApproved(ctx, o.undo, adv.Reason); err != nil {
		f.dups.releaseReversal(key)
		span.RecordError(err)
		result("failed")
		return fmt.Errorf("%w: %w", ErrReversalFailed, err)
	}
	result("reversed")
	return nil
}

// undoApproved owes the issuer the reversal of u and records it.
func (f *Flow) undoApproved(ctx context.Context, u *undo, reason string) error {
	r, ok := f.deps.Issuers.(Reverser)
	if !ok {
		return errors.New("routing: the issuer sender cannot send reversals")
	}
	if err := r.Reverse(ctx, &IssuerRequest{sent: u.sent}); err != nil {
		return err
	}
	rsp := ResponseFor(&AcquirerReversal{Code: reason})
	now := f.deps.Now()
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	ev := Event{
		ID: eventID(u.eventID + "/reversal"), Type: EventType(u.operation, rsp.Outcome), Time: now,
		Operation: u.operation, Outcome: rsp.Outcome, Code: rsp.Code, Reason: rsp.Reason,
		Channel: u.channel, Acquirer: u.acquirer, Terminal: u.terminal, Issuer: u.issuer,
		MaskedPAN: u.maskedPAN, CardToken: u.cardToken, Teller: u.teller, Supervisor: u.supervisor,
		Received: now, Completed: now, TraceParent: carrier.Get("traceparent"), Reverses: u.eventID,
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		ev.TraceID = sc.TraceID().String()
	}
	return f.deps.Sink.Publish(ctx, ev)
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
