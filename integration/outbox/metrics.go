package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of the outbox metrics.
const MeterName = "pingate/outbox"

// Metric names. Gauges are observed at collection time.
const (
	MetricJournalDepth = "pingate.outbox.journal.depth"      // gauge {entry}: entries held
	MetricAppends      = "pingate.outbox.journal.appends"    // counter {entry}, attribute result=ok|full|invalid|canceled|error
	MetricSyncs        = "pingate.outbox.journal.syncs"      // counter {sync}: WAL fsyncs (appends/syncs = group-commit size)
	MetricRelayLag     = "pingate.outbox.relay.lag"          // gauge {entry}: appended, not yet acknowledged
	MetricRelayLagAge  = "pingate.outbox.relay.lag.age"      // gauge s: age of the oldest unacknowledged entry
	MetricRelayBatch   = "pingate.outbox.relay.batch.size"   // histogram {entry}: entries per acknowledged call
	MetricRelayErrors  = "pingate.outbox.relay.errors"       // counter {call}: failed calls
	MetricRecoveries   = "pingate.outbox.journal.recoveries" // counter {reopen}: store reopened after a fatal storage error
)

type metrics struct {
	appends    metric.Int64Counter
	relayBatch metric.Int64Histogram
	relayErrs  metric.Int64Counter
	reg        metric.Registration
}

var (
	attrOK = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "ok")))
	// resultAttrs are the append counter's options by result, each a slice
	// made once: a variadic option would make one per append.
	resultAttrs  = map[string][]metric.AddOption{"ok": {attrOK}}
	batchBuckets = metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
)

func init() {
	for _, r := range []string{"full", "invalid", "canceled", "error"} {
		resultAttrs[r] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))}
	}
}

func newMetrics(mp metric.MeterProvider, j *Journal) (*metrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(MeterName)
	var x metrics
	var err error
	wrap := func(e error) error { return fmt.Errorf("outbox metrics: %w", e) }
	if x.appends, err = m.Int64Counter(MetricAppends, metric.WithUnit("{entry}"),
		metric.WithDescription("Events offered to the journal, by result")); err != nil {
		return nil, wrap(err)
	}
	if x.relayBatch, err = m.Int64Histogram(MetricRelayBatch, metric.WithUnit("{entry}"),
		metric.WithDescription("Entries acknowledged by Kafka per relay call"), batchBuckets); err != nil {
		return nil, wrap(err)
	}
	if x.relayErrs, err = m.Int64Counter(MetricRelayErrors, metric.WithUnit("{call}"),
		metric.WithDescription("Relay calls to Kafka that failed (retried with backoff)")); err != nil {
		return nil, wrap(err)
	}
	depth, err := m.Int64ObservableGauge(MetricJournalDepth, metric.WithUnit("{entry}"),
		metric.WithDescription("Entries held in the journal"))
	if err != nil {
		return nil, wrap(err)
	}
	lag, err := m.Int64ObservableGauge(MetricRelayLag, metric.WithUnit("{entry}"),
		metric.WithDescription("Entries appended but not yet acknowledged by Kafka"))
	if err != nil {
		return nil, wrap(err)
	}
	lagAge, err := m.Float64ObservableGauge(MetricRelayLagAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest entry not yet acknowledged by Kafka"))
	if err != nil {
		return nil, wrap(err)
	}
	syncs, err := m.Int64ObservableCounter(MetricSyncs, metric.WithUnit("{sync}"),
		metric.WithDescription("WAL fsyncs of the journal store; appends per sync is the group-commit size"))
	if err != nil {
		return nil, wrap(err)
	}
	recoveries, err := m.Int64ObservableCounter(MetricRecoveries, metric.WithUnit("{reopen}"),
		metric.WithDescription("Reopens of the journal store after a fatal storage error (ENOSPC, EIO), without a restart"))
	if err != nil {
		return nil, wrap(err)
	}
	x.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := j.Stats()
		o.ObserveInt64(depth, int64(s.Depth))
		o.ObserveInt64(syncs, int64(s.Syncs))
		o.ObserveInt64(recoveries, int64(j.store.Recoveries()))
		if j.cfg.JournalOnly() {
			return nil
		}
		o.ObserveInt64(lag, int64(s.Lag))
		o.ObserveFloat64(lagAge, j.lagAge(s).Seconds())
		return nil
	}, depth, syncs, recoveries, lag, lagAge)
	if err != nil {
		return nil, wrap(err)
	}
	return &x, nil
}

// lagAge is the age of the oldest entry not yet acknowledged, 0 if none. It
// must not race with Close: the metrics callback is unregistered first.
func (j *Journal) lagAge(s Stats) time.Duration {
	if s.Lag == 0 {
		return 0
	}
	var age time.Duration
	_ = j.read(func(db *pebble.DB) error {
		v, c, err := db.Get(entryKey(s.Relayed + 1))
		if err != nil {
			return err
		}
		defer c.Close()
		e, err := decodeEntry(s.Relayed+1, v)
		if err == nil {
			age = time.Since(e.Appended)
		}
		return err
	})
	return age
}

func (m *metrics) appended(ctx context.Context, result string) {
	m.appends.Add(ctx, 1, resultAttrs[result]...)
}

func (m *metrics) relayed(ctx context.Context, n int) {
	m.relayBatch.Record(ctx, int64(n))
}

func (m *metrics) relayError(ctx context.Context) {
	m.relayErrs.Add(ctx, 1)
}

func (m *metrics) close() {
	_ = m.reg.Unregister()
}
