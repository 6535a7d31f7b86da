package telemetry

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
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

// TestUnsampledChildren: under an unsampled parent a child span costs
// nothing (the parent stands in, no allocation) and keeps the trace id; under
// a sampled parent, and for the first span under a remote parent, a span of
// its own is started and, when sampled, exported with its parent.
func TestUnsampledChildren(t *testing.T) {
	ctx := context.Background()
	t.Run("unsampled", func(t *testing.T) {
		tel, err := Setup(ctx, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer tel.Shutdown(ctx)
		tr := otel.Tracer("test")
		pctx, parent := tr.Start(ctx, "parent")
		defer parent.End()
		cctx, child := tr.Start(pctx, "child")
		if !child.SpanContext().Equal(parent.SpanContext()) || cctx != pctx {
			t.Errorf("child of an unsampled parent: span context %v, want the parent's %v", child.SpanContext(), parent.SpanContext())
		}
		child.SetAttributes(attribute.String("k", "v"))
		child.End()
		if parent.IsRecording() {
			t.Error("the parent records after its stand-in child ended")
		}
		if n := testing.AllocsPerRun(100, func() { _, s := tr.Start(pctx, "child"); s.End() }); n != 0 {
			t.Errorf("a child of an unsampled parent allocates %v times, want 0", n)
		}
	})
	t.Run("sampled", func(t *testing.T) {
		exp := tracetest.NewInMemoryExporter()
		tel, err := Setup(ctx, Config{SpanExporter: exp})
		if err != nil {
			t.Fatal(err)
		}
		defer tel.Shutdown(ctx)
		tr := otel.Tracer("test")
		pctx, parent := tr.Start(ctx, "parent")
		_, child := tr.Start(pctx, "child")
		if child.SpanContext().SpanID() == parent.SpanContext().SpanID() || !child.IsRecording() {
			t.Errorf("child of a sampled parent: %v recording %v, want a recording span of its own", child.SpanContext(), child.IsRecording())
		}
		child.End()
		parent.End()
		got := exp.GetSpans()
		if len(got) != 2 || got[0].Name != "child" || got[0].Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("exported %d spans (%v), want the child under its parent and the parent", len(got), got.Snapshots())
		}
	})
	t.Run("remote unsampled parent", func(t *testing.T) {
		tel, err := Setup(ctx, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer tel.Shutdown(ctx)
		rctx := otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier{
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}) // W3C Trace Context's example ids
		remote := trace.SpanContextFromContext(rctx)
		_, span := otel.Tracer("test").Start(rctx, "server")
		defer span.End()
		sc := span.SpanContext()
		if sc.TraceID() != remote.TraceID() || sc.SpanID() == remote.SpanID() || sc.IsRemote() || sc.IsSampled() {
			t.Errorf("server span under a remote unsampled parent: %v, want a local unsampled span of its own in trace %s", sc, remote.TraceID())
		}
	})
}

// TestResourceNamesServiceAndInstance: spans and the Prometheus target_info
// series carry service.name "pingate" and the configured instance, so that
// an operator can tell the instances' telemetry apart.
func TestResourceNamesServiceAndInstance(t *testing.T) {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tel, err := Setup(ctx, Config{ServiceInstance: "gw-7", SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)

	_, span := otel.Tracer("test").Start(ctx, "op")
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported, want 1", len(spans))
	}
	attrs := map[attribute.Key]string{}
	for _, kv := range spans[0].Resource.Attributes() {
		attrs[kv.Key] = kv.Value.Emit()
	}
	for k, want := range map[attribute.Key]string{"service.name": "pingate", "service.instance.id": "gw-7"} {
		if attrs[k] != want {
			t.Errorf("span resource %s = %q, want %q", k, attrs[k], want)
		}
	}

	c, _ := otel.Meter("test").Int64Counter("pingate.test")
	c.Add(ctx, 1)
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var info string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, "target_info{") {
			info = l
		}
	}
	for _, want := range []string{`service_name="pingate"`, `service_instance_id="gw-7"`} {
		if !strings.Contains(info, want) {
			t.Errorf("/metrics target_info = %q, want it to carry %s", info, want)
		}
	}
}
