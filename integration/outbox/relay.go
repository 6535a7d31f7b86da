package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"pingate/integration/events"
)

// Relay drains the journal to Kafka in sequence order, one WriteMessages call
// per batch, and records its progress in the journal after each acknowledged
// batch. While Kafka is unreachable it retries with exponential backoff,
// forever: the journal holds the events, and its depth and lag are reported.
type Relay struct {
	j         *Journal
	cfg       RelayConfig
	w         *kafka.Writer
	transport *kafka.Transport

	cancel   context.CancelFunc // cuts an in-flight call short (Shutdown's ctx ended)
	draining chan struct{}      // closed by stop: final drain, then exit
	stopOnce sync.Once
	exited   chan struct{}

	sent      atomic.Uint64 // records acknowledged
	failures  atomic.Uint64 // failed WriteMessages calls
	lastError atomic.Pointer[string]
	run       func() // started by Open

	// testHookAfterWrite, when set, runs after Kafka acknowledged a batch
	// and before the progress is recorded (crash-window tests).
	testHookAfterWrite func(lastSeq uint64)

	// A batch part of which Kafka refused: only the refused records are
	// sent again, so the records it acknowledged are not duplicated. kafka-go
	// writes each partition's records in one request, so a partition's
	// records succeed or fail together and per-card order holds. The
	// journal's progress moves past the batch only when all of it is in.
	// Owned by the relay loop's goroutine.
	retry     []kafka.Message
	retryLast uint64 // the batch's last sequence number
	retryN    int    // the batch's size
}

func newRelay(j *Journal, cfg RelayConfig) *Relay {
	tr := &kafka.Transport{
		ClientID:    cfg.ClientID,
		DialTimeout: cfg.ReadTimeout,
		IdleTimeout: time.Minute,
		MetadataTTL: 10 * time.Second,
	}
	r := &Relay{
		j: j, cfg: cfg, transport: tr,
		w: &kafka.Writer{
			Addr:  kafka.TCP(cfg.Brokers...),
			Topic: cfg.Topic,
			// Hash (FNV-1a of the key, Sarama-compatible): every event of a
			// card goes to one partition, in order.
			Balancer: &kafka.Hash{},
			// Every in-sync replica has the record before it counts as sent.
			RequiredAcks: kafka.RequireAll,
			// One relay batch is one writer batch per partition: BatchSize
			// entries at most, read to half of BatchBytes at most.
			BatchSize:       cfg.BatchSize,
			BatchBytes:      cfg.BatchBytes,
			BatchTimeout:    cfg.BatchTimeout,
			MaxAttempts:     cfg.MaxAttempts,
			WriteBackoffMin: 20 * time.Millisecond,
			WriteBackoffMax: 500 * time.Millisecond,
			WriteTimeout:    cfg.WriteTimeout,
			ReadTimeout:     cfg.ReadTimeout,
			// A missing topic is an operator error to surface (relay
			// errors, growing lag), not something to paper over with a
			// topic of default settings.
			AllowAutoTopicCreation: false,
			Transport:              tr,
		},
		draining: make(chan struct{}),
		exited:   make(chan struct{}),
	}
	// The relay's lifetime belongs to the Journal, not to any caller's
	// request, hence a context of its own, cut by cancel in stop.
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.run = func() {
		defer close(r.exited)
		r.loop(ctx)
	}
	return r
}

// loop sends batches until stopped. After stop it keeps sending while
// batches succeed and entries remain, and exits on the first failure.
func (r *Relay) loop(ctx context.Context) {
	j := r.j
	backoff := r.cfg.BackoffMin
	stopping := false
	for {
		if !stopping {
			select {
			case <-r.draining:
				stopping = true
			default:
			}
		}
		if j.relayed.Load() >= j.last.Load() {
			if stopping {
				return
			}
			select {
			case <-j.wake:
			case <-r.draining:
				stopping = true
			case <-ctx.Done():
				return
			}
			continue
		}
		if !stopping && r.retry == nil {
			if r.linger(ctx) {
				stopping = true
			}
		}
		err := r.sendBatch(ctx)
		if err == nil {
			backoff = r.cfg.BackoffMin
			continue
		}
		r.failures.Add(1)
		msg := err.Error()
		r.lastError.Store(&msg)
		j.m.relayError(ctx)
		if stopping || ctx.Err() != nil {
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.draining:
			stopping = true // final attempt now
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, r.cfg.BackoffMax)
	}
}

// linger waits cfg.Linger before a batch that is not full yet, so that a
// call carries the entries of those milliseconds rather than the one or two
// appended since the last call. It does not listen to the journal's wake-ups
// meanwhile (a wake-up per append would cost a goroutine switch per event);
// a batch that is full when the relay looks is sent at once. It reports
// whether the relay was asked to stop meanwhile: the final drain does not
// linger.
func (r *Relay) linger(ctx context.Context) (stopping bool) {
	j := r.j
	if r.cfg.Linger <= 0 || j.last.Load()-min(j.relayed.Load(), j.last.Load()) >= uint64(r.cfg.BatchSize) {
		return false
	}
	t := time.NewTimer(r.cfg.Linger)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-r.draining:
		return true
	case <-ctx.Done():
		return false
	}
}

// sendBatch sends the next batch of entries and records the progress. On a
// partial failure only the refused records are sent again, by the next calls,
// and the progress moves past the batch once Kafka holds all of it: a record
// goes to Kafka twice only when the relay stops (a crash, a shutdown with
// Kafka down) between Kafka's acknowledgement and the recorded progress.
func (r *Relay) sendBatch(ctx context.Context) error {
	if r.retry != nil {
		return r.resend(ctx)
	}
	j := r.j
	var entries []Entry
	err := j.read(func(db *pebble.DB) (err error) {
		entries, err = readEntries(db, j.relayed.Load()+1, j.last.Load(), r.cfg.BatchSize, r.cfg.BatchBytes/2)
		return err
	})
	if err != nil || len(entries) == 0 {
		return err
	}
	msgs := make([]kafka.Message, len(entries))
	for i, e := range entries {
		hs := make([]kafka.Header, len(e.Message.Headers))
		for k, h := range e.Message.Headers {
			hs[k] = kafka.Header{Key: h.Key, Value: h.Value}
		}
		msgs[i] = kafka.Message{Key: e.Message.Key, Value: e.Message.Value, Headers: hs, Time: e.Appended}
	}
	spans := r.publishSpans(ctx, entries)
	err = r.write(ctx, msgs)
	endSpans(spans, err)
	if err != nil {
		var werr kafka.WriteErrors
		if errors.As(err, &werr) {
			r.retry, r.retryLast, r.retryN = refused(msgs, werr), entries[len(entries)-1].Seq, len(entries)
			return fmt.Errorf("relay to kafka: %d of %d records failed: %w", werr.Count(), len(msgs), firstErr(werr))
		}
		return fmt.Errorf("relay to kafka: %w", err)
	}
	return r.batchDone(ctx, entries[len(entries)-1].Seq, len(entries))
}

// resend sends the refused part of the last batch again.
func (r *Relay) resend(ctx context.Context) error {
	err := r.write(ctx, r.retry)
	if err != nil {
		var werr kafka.WriteErrors
		if errors.As(err, &werr) {
			r.retry = refused(r.retry, werr)
		}
		return fmt.Errorf("relay to kafka: resending %d records: %w", len(r.retry), err)
	}
	last, n := r.retryLast, r.retryN
	r.retry = nil
	return r.batchDone(ctx, last, n)
}

// write makes one WriteMessages call of msgs, within CallTimeout.
//
// The writer's BatchSize is set to len(msgs) first (at most cfg.BatchSize,
// as the relay reads): kafka-go hands a partition's batch to its producer
// as soon as it holds BatchSize messages, else only after BatchTimeout, and
// allocates room for BatchSize messages in every batch it starts. A call's
// batch is complete once its messages are in it, so with the call's own
// size a one-partition batch leaves at once, and a small call does not
// allocate room for 500 (see docs/optimisation-log.md). kafka-go reads the
// field only inside WriteMessages, and the relay loop is the writer's only
// caller.
func (r *Relay) write(ctx context.Context, msgs []kafka.Message) error {
	r.w.BatchSize = max(1, len(msgs))
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	return r.w.WriteMessages(cctx, msgs...)
}

// batchDone records that Kafka holds every record of a batch up to last.
func (r *Relay) batchDone(ctx context.Context, last uint64, n int) error {
	if h := r.testHookAfterWrite; h != nil {
		h(last)
	}
	if err := r.j.markRelayed(last); err != nil {
		return err
	}
	r.sent.Add(uint64(n))
	r.j.m.relayed(ctx, n)
	return nil
}

// refused returns the messages Kafka did not acknowledge.
func refused(msgs []kafka.Message, werr kafka.WriteErrors) []kafka.Message {
	var out []kafka.Message
	for i, e := range werr {
		if e != nil && i < len(msgs) {
			out = append(out, msgs[i])
		}
	}
	return out
}

// publishSpans starts one producer span per record, as a child of the
// request's trace (the record's traceparent header), so a request's trace
// runs from the acquirer frame to the Kafka acknowledgement.
func (r *Relay) publishSpans(ctx context.Context, entries []Entry) []trace.Span {
	tracer := otel.Tracer("pingate/outbox")
	spans := make([]trace.Span, len(entries))
	for i, e := range entries {
		tp, ok := e.Message.Header(events.HeaderTraceParent)
		if ok && unsampledTraceParent(tp) {
			// Under the parent-based sampler a child of an unsampled
			// remote parent records nothing: skip making one.
			spans[i] = noSpan
			continue
		}
		carrier := propagation.MapCarrier{}
		if ok {
			carrier["traceparent"] = tp
		}
		id, _ := e.Message.Header("ce_id")
		pctx := propagation.TraceContext{}.Extract(context.WithoutCancel(ctx), carrier)
		_, spans[i] = tracer.Start(pctx, "pingate.kafka.publish", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.destination.name", r.cfg.Topic),
				attribute.String("messaging.message.id", id),
			))
	}
	return spans
}

// noSpan stands in for the span of a record whose trace is not sampled.
var noSpan = trace.SpanFromContext(context.Background())

// unsampledTraceParent reports whether a W3C traceparent of version 00
// ("00-" trace id "-" parent id "-" flags) has its sampled flag clear.
// Anything else (another version, a malformed value) is left to the
// propagator and the sampler.
func unsampledTraceParent(tp string) bool {
	const n = len("00-") + 32 + 1 + 16 + 1 + 2
	if len(tp) != n || tp[:3] != "00-" || tp[n-3] != '-' {
		return false
	}
	flags, err := strconv.ParseUint(tp[n-2:], 16, 8)
	return err == nil && flags&1 == 0
}

func endSpans(spans []trace.Span, err error) {
	var werr kafka.WriteErrors
	errors.As(err, &werr)
	for i, sp := range spans {
		switch {
		case werr != nil && i < len(werr) && werr[i] != nil:
			sp.SetStatus(codes.Error, "not acknowledged")
		case werr == nil && err != nil:
			sp.SetStatus(codes.Error, "not acknowledged")
		}
		sp.End()
	}
}

func firstErr(errs kafka.WriteErrors) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// stop asks for a final drain and waits for the loop to exit; if ctx ends
// first, the call in flight is cut short and ctx.Err() returned.
func (r *Relay) stop(ctx context.Context) error {
	r.stopOnce.Do(func() { close(r.draining) })
	defer r.cancel()
	select {
	case <-r.exited:
		return nil
	case <-ctx.Done():
		r.cancel()
		<-r.exited
		return ctx.Err()
	}
}

// close releases the writer and its connections.
func (r *Relay) close() {
	_ = r.w.Close()
	r.transport.CloseIdleConnections()
}

// RelayStats is a snapshot of the relay's counters.
type RelayStats struct {
	Sent      uint64 // records acknowledged since Open
	Failures  uint64 // failed WriteMessages calls since Open
	LastError string // the most recent failure, "" if none
}

// Stats returns a snapshot of the relay's counters.
func (r *Relay) Stats() RelayStats {
	s := RelayStats{Sent: r.sent.Load(), Failures: r.failures.Load()}
	if p := r.lastError.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// Relay returns the journal's relay, or nil in journal-only mode.
func (j *Journal) Relay() *Relay { return j.relay }
