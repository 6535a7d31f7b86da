package payshield

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names, per HSM (attribute "hsm", its host:port). On /metrics they
// read pingate_hsm_command_duration_seconds (histogram, also by "command"),
// pingate_hsm_commands_in_flight, pingate_hsm_errors_total (by "command"
// and "code": the HSM's error code, or "transport") and pingate_hsm_up.
const (
	MetricCommandDuration = "pingate.hsm.command.duration"
	MetricInFlight        = "pingate.hsm.commands.in_flight"
	MetricErrors          = "pingate.hsm.errors"
	MetricUp              = "pingate.hsm.up"
)

// metrics are a Client's OTel instruments, from the global MeterProvider
// (the gateway's telemetry setup; a no-op without one).
type metrics struct {
	duration metric.Float64Histogram
	inFlight metric.Int64UpDownCounter
	errors   metric.Int64Counter
	reg      metric.Registration
}

func newMetrics(c *Client) *metrics {
	m := otel.Meter("pingate/payshield")
	var ms metrics
	// Instrument creation fails only for invalid names, which are static here.
	ms.duration, _ = m.Float64Histogram(MetricCommandDuration, metric.WithUnit("s"),
		metric.WithDescription("time from sending a host command to an HSM to its response, by hsm and command"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 2))
	ms.inFlight, _ = m.Int64UpDownCounter(MetricInFlight, metric.WithDescription("host commands sent to an HSM and not yet answered, by hsm"))
	ms.errors, _ = m.Int64Counter(MetricErrors, metric.WithDescription("failed host commands by hsm, command and code (the HSM's error code, or transport)"))
	up, _ := m.Int64ObservableGauge(MetricUp, metric.WithDescription("1 while an HSM is in the pool (its last command or NC health check succeeded), 0 while removed"))
	ms.reg, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, h := range c.hosts {
			v := int64(0)
			if h.healthy.Load() {
				v = 1
			}
			o.ObserveInt64(up, v, metric.WithAttributes(attribute.String("hsm", h.addr)))
		}
		return nil
	}, up)
	return &ms
}

func (m *metrics) close() {
	if m.reg != nil {
		_ = m.reg.Unregister()
	}
}
