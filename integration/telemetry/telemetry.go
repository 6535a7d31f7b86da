// Package telemetry sets up OpenTelemetry for pingate: a tracer provider
// (W3C trace context; OTLP/HTTP export when configured) and a meter provider
// whose metrics are served in the Prometheus text format. Instrumented
// packages use only the OTel API (otel.Tracer, otel.Meter); this package
// installs the SDK behind it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// Config selects exporters.
type Config struct {
	// ServiceInstance names this gateway instance (service.instance.id).
	ServiceInstance string
	// OTLPEndpoint is host:port of an OTLP/HTTP trace collector; empty: no
	// span is exported.
	OTLPEndpoint string
	// OTLPInsecure sends OTLP without TLS (a collector on loopback).
	OTLPInsecure bool
	// SampleRatio is the share of new traces sampled (recorded and
	// exported), 0–1; a trace an upstream caller sampled is sampled too.
	// nil means 1 when a span exporter is configured (OTLPEndpoint or
	// SpanExporter) and 0 when none is: with nothing to export them to,
	// recording spans costs CPU on every request for nothing. An unsampled
	// request still gets a trace id and span ids (non-recording spans), so
	// its trace id reaches the logs, the events and the traceparent it sends
	// on; only the span data is not kept.
	SampleRatio *float64
	// SpanExporter, if set, receives spans too (tests use an in-memory one).
	SpanExporter sdktrace.SpanExporter
	// Logger, if set, receives the SDK's background errors (a failed span
	// export) at warn level, at most one line per ErrorLogInterval; each is
	// counted in pingate.telemetry.errors either way.
	Logger *slog.Logger
}

// Validate names bad values.
func (c Config) Validate() error {
	if r := c.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		return fmt.Errorf("telemetry.sample_ratio %v: want 0–1", *r)
	}
	return nil
}

// Ratio is the share of new traces sampled: SampleRatio, or its default.
func (c Config) Ratio() float64 {
	switch {
	case c.SampleRatio != nil:
		return *c.SampleRatio
	case c.OTLPEndpoint != "" || c.SpanExporter != nil:
		return 1
	}
	return 0
}

// Telemetry is the installed SDK.
type Telemetry struct {
	Tracer   *sdktrace.TracerProvider
	Meter    *sdkmetric.MeterProvider
	Registry *prometheus.Registry
}

// Setup installs global tracer and meter providers and the W3C propagator.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ratio := cfg.Ratio()
	// Schemaless: the default resource carries the SDK's semconv schema
	// URL, and Merge refuses a resource under any other (the semconv import
	// here is older than the SDK's).
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName("pingate"), semconv.ServiceInstanceID(cfg.ServiceInstance)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	}
	if cfg.OTLPEndpoint != "" {
		eopts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.OTLPEndpoint)}
		if cfg.OTLPInsecure {
			eopts = append(eopts, otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(ctx, eopts...)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if cfg.SpanExporter != nil {
		opts = append(opts, sdktrace.WithSyncer(cfg.SpanExporter))
	}
	tp := sdktrace.NewTracerProvider(opts...)

	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))

	errs, _ := mp.Meter("pingate/telemetry").Int64Counter("pingate.telemetry.errors",
		metric.WithDescription("errors the OpenTelemetry SDK reported in the background, chiefly span exports the collector did not take (their spans are dropped)"))
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	otel.SetErrorHandler(&errorLog{log: log, errors: errs, now: time.Now})
	otel.SetTracerProvider(unsampledProvider{sdk: tp})
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Telemetry{Tracer: tp, Meter: mp, Registry: reg}, nil
}

// MetricsHandler serves the metrics in the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{})
}

// Shutdown flushes and stops both providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.Tracer.Shutdown(ctx), t.Meter.Shutdown(ctx))
}
