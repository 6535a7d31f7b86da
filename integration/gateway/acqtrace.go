package gateway

import (
	"context"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"pingate/integration/logredact"
	"pingate/iso8583"
)

// tracedFrames wraps the acquirer listener's handler: each frame gets a
// request id and a server span before routing sees it, so every log line and
// span of the request — and the outcome event's trace id — share them.
type tracedFrames struct {
	next   iso8583.Handler
	tracer trace.Tracer
}

// newTracedFrames wraps next; the tracer is resolved from the global provider
// when the wrapper is built (after telemetry.Setup).
func newTracedFrames(next iso8583.Handler) tracedFrames {
	return tracedFrames{next: next, tracer: otel.Tracer("pingate/cmd")}
}

// ServeFrame implements iso8583.Handler.
func (t tracedFrames) ServeFrame(ctx context.Context, c *iso8583.ServerConn, frame []byte) {
	id := uuid.NewString()
	ctx = logredact.WithRequestID(ctx, id)
	ctx, span := t.tracer.Start(ctx, "pingate.acquirer.frame", serverSpan)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("pingate.request_id", id))
	}
	defer span.End()
	t.next.ServeFrame(ctx, c, frame)
}

// serverSpan is the start option of an acquirer frame's span, made once.
var serverSpan = trace.WithSpanKind(trace.SpanKindServer)
