package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func ratio(v float64) *float64 { return &v }

// TestSampling: without an exporter spans are not recorded by default, yet
// each still has a trace id that propagates; with one, or with an explicit
// ratio, they are recorded.
func TestSampling(t *testing.T) {
	tests := []struct {
		name      string
		give      Config
		recording bool
	}{
		{"no exporter: ids only", Config{}, false},
		{"exporter: every trace", Config{SpanExporter: tracetest.NewInMemoryExporter()}, true},
		{"explicit 1 without exporter", Config{SampleRatio: ratio(1)}, true},
		{"explicit 0 with exporter", Config{SampleRatio: ratio(0), SpanExporter: tracetest.NewInMemoryExporter()}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			tel, err := Setup(ctx, tt.give)
			if err != nil {
				t.Fatal(err)
			}
			defer tel.Shutdown(ctx)
			sctx, span := otel.Tracer("test").Start(ctx, "op")
			defer span.End()
			if got := span.IsRecording(); got != tt.recording {
				t.Errorf("IsRecording() = %v, want %v", got, tt.recording)
			}
			sc := span.SpanContext()
			if !sc.HasTraceID() || !sc.HasSpanID() || sc.IsSampled() != tt.recording {
				t.Errorf("span context %v: want valid ids, sampled %v", sc, tt.recording)
			}
			c := propagation.MapCarrier{}
			otel.GetTextMapPropagator().Inject(sctx, c)
			if tp := c.Get("traceparent"); len(tp) != 55 || tp[3:35] != sc.TraceID().String() {
				t.Errorf("traceparent %q does not carry trace id %s", tp, sc.TraceID())
			}
		})
	}
}

func TestValidateRatio(t *testing.T) {
	for _, r := range []float64{-0.1, 1.5} {
		if err := (Config{SampleRatio: ratio(r)}).Validate(); err == nil {
			t.Errorf("Validate(sample_ratio %v) = nil, want an error", r)
		}
	}
}
