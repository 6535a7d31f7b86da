package outbox

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"pingate/integration/events"
)

// The traceparent values are the W3C Trace Context Recommendation's own
// examples (section 3.2.2.x, "traceparent" header examples), with the flags
// byte set to 01 (sampled) and 00 (not sampled).
const (
	w3cSampled   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	w3cUnsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
)

func TestUnsampledTraceParent(t *testing.T) {
	for _, c := range []struct {
		tp   string
		want bool
	}{
		{w3cSampled, false},
		{w3cUnsampled, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02", true}, // a flag other than sampled
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", false},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", false}, // another version: the propagator decides
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false},
		{"", false},
	} {
		if got := unsampledTraceParent(c.tp); got != c.want {
			t.Errorf("unsampledTraceParent(%q) = %v, want %v", c.tp, got, c.want)
		}
	}
}

// TestPublishSpans checks the producer spans through the SDK's parent-based
// sampler (every new root sampled): a record of a sampled trace gets a span
// in that trace, a record of an unsampled trace gets none, a record with no
// traceparent starts its own trace.
func TestPublishSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	entry := func(id, traceparent string) Entry {
		m := events.Message{Headers: []events.Header{{Key: events.HeaderID, Value: []byte(id)}}}
		if traceparent != "" {
			m.Headers = append(m.Headers, events.Header{Key: events.HeaderTraceParent, Value: []byte(traceparent)})
		}
		return Entry{Message: m}
	}
	r := &Relay{cfg: RelayConfig{Topic: "t"}}
	spans := r.publishSpans(context.Background(), []Entry{
		entry("sampled", w3cSampled), entry("unsampled", w3cUnsampled), entry("root", ""),
	})
	if len(spans) != 3 {
		t.Fatalf("%d spans for 3 records", len(spans))
	}
	if spans[1].IsRecording() {
		t.Error("a record of an unsampled trace got a recording span")
	}
	endSpans(spans, nil)
	got := exp.GetSpans()
	if len(got) != 2 {
		t.Fatalf("%d spans exported, want 2 (the sampled record's and the root record's)", len(got))
	}
	if id := got[0].SpanContext.TraceID().String(); id != "4bf92f3577b34da6a3ce929d0e0e4736" || got[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("the sampled record's span is in trace %s under %s, want the record's trace and parent", id, got[0].Parent.SpanID())
	}
	if got[1].Parent.IsValid() || got[1].SpanContext.TraceID() == got[0].SpanContext.TraceID() {
		t.Error("the record with no traceparent did not start its own trace")
	}
	if got[0].Name != "pingate.kafka.publish" {
		t.Errorf("span name %q", got[0].Name)
	}
}
