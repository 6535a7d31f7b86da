package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// unsampledProvider is the tracer provider instrumented packages get from
// otel.Tracer: the SDK's, except that a span started under an unsampled,
// non-recording parent is not created at all. Under the ParentBased sampler
// such a child could only be non-recording too, so it would cost an id, a
// span and a context for nothing; the parent stands in for it instead (its
// End, SetAttributes, RecordError are no-ops). The trace id — what the
// logs, the events and an outgoing traceparent carry — is the same either
// way; only the span id an unsampled trace sends on is its parent's.
type unsampledProvider struct {
	embedded.TracerProvider
	sdk trace.TracerProvider
}

func (p unsampledProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return unsampledTracer{next: p.sdk.Tracer(name, opts...)}
}

type unsampledTracer struct {
	embedded.Tracer
	next trace.Tracer
}

func (t unsampledTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if parent := trace.SpanFromContext(ctx); unsampledParent(parent) {
		return ctx, parent
	}
	return t.next.Start(ctx, name, opts...)
}

// unsampledParent reports whether a child of p can only be a non-recording
// span: p has a valid, unsampled span context and records nothing. A new
// root (no valid parent) and a remote parent go to the sampler as before.
func unsampledParent(p trace.Span) bool {
	sc := p.SpanContext()
	return sc.IsValid() && !sc.IsSampled() && !sc.IsRemote() && !p.IsRecording()
}
