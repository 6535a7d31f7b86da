package records

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the service's Prometheus metrics, on their own registry.
type Metrics struct {
	Registry   *prometheus.Registry
	applied    prometheus.Counter
	duplicates prometheus.Counter
	unknown    *prometheus.CounterVec
	reversals  prometheus.Counter
	batches    *prometheus.CounterVec
	lag        *prometheus.GaugeVec
	statements prometheus.Counter
}

// NewMetrics registers the metrics:
//
//	pingate_records_events_applied_total        new events stored
//	pingate_records_duplicates_skipped_total    events whose ce_id was stored already
//	pingate_records_unknown_events_total{type}  events kept verbatim: unknown ce_type or malformed
//	pingate_records_reversals_applied_total     operations marked reversed
//	pingate_records_batches_total{result}       transactions: ok, fenced, error
//	pingate_records_consumer_lag{partition}     records on the partition not yet applied
//	pingate_records_statements_written_total    statements written by "records statements"
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "pingate_records_events_applied_total",
			Help: "Events stored in the records database (first occurrence of each ce_id)."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "pingate_records_duplicates_skipped_total",
			Help: "Events skipped because their ce_id was already stored."}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pingate_records_unknown_events_total",
			Help: "Events of an unknown ce_type or malformed, kept verbatim."}, []string{"type"}),
		reversals: prometheus.NewCounter(prometheus.CounterOpts{Name: "pingate_records_reversals_applied_total",
			Help: "Operations marked reversed by an acquirer's reversal event."}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pingate_records_batches_total",
			Help: "Batch transactions by result (ok, fenced, error)."}, []string{"result"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pingate_records_consumer_lag",
			Help: "Records on the partition after the last one applied (high watermark - next offset)."}, []string{"partition"}),
		statements: prometheus.NewCounter(prometheus.CounterOpts{Name: "pingate_records_statements_written_total",
			Help: "Statements written."}),
	}
	m.Registry.MustRegister(m.applied, m.duplicates, m.unknown, m.reversals, m.batches, m.lag, m.statements,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) batch(res ApplyResult) {
	m.applied.Add(float64(res.Applied))
	m.duplicates.Add(float64(res.Duplicates))
	m.reversals.Add(float64(res.Reversals))
	for _, t := range res.UnknownTypes {
		m.unknown.WithLabelValues(typeLabel(t)).Inc()
	}
	m.batches.WithLabelValues("ok").Inc()
}

func (m *Metrics) setLag(partition int, lag int64) {
	if lag < 0 {
		lag = 0
	}
	m.lag.WithLabelValues(strconv.Itoa(partition)).Set(float64(lag))
}

// typeLabel bounds the label values of unknown types: a well-formed type of
// at most 64 characters is its own label, anything else "other", a missing
// one "none".
func typeLabel(t string) string {
	if t == "" {
		return "none"
	}
	if len(t) > 64 {
		return "other"
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "other"
		}
	}
	return t
}
