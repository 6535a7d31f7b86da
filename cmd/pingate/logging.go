package main

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"pingate/iso8583"
)

// The structured log (log/slog). Every line written on a request's path
// carries the request's id ("request_id") and its trace ("trace_id",
// "span_id"), read from the context by contextHandler; the log calls on that
// path use the *Context variants of slog so the context reaches the handler.
// Attribute values are filtered on the way out (redactAttr): a PAN is masked
// to its first 6 and last 4 digits, and PIN blocks, PINs and any raw bytes are
// never written.

// newLogger builds the structured log described by c: JSON unless c.Format is
// "text", at c.Level (default info; an unknown level is refused by
// Config.Validate, here it falls back to info).
func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if c.Level != "" {
		_ = level.UnmarshalText([]byte(c.Level))
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}
	var h slog.Handler
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(contextHandler{h})
}

// requestIDKey is the context key of a request's id.
type requestIDKey struct{}

// withRequestID returns ctx carrying the request id id.
func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// requestIDFrom returns the request id ctx carries, or "".
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// contextHandler adds the request id and the trace and span ids of ctx to
// every record. Records logged without a context (slog's non-Context
// methods) get none: they do not belong to a request.
type contextHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := requestIDFrom(ctx); id != "" {
			r.AddAttrs(slog.String("request_id", id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// secretAttrKeys are attribute names whose values are never written, in any
// group: PINs, PIN blocks and key material.
var secretAttrKeys = map[string]bool{
	"pin": true, "old_pin": true, "new_pin": true, "pin_block": true, "pinblock": true,
	"old_block": true, "new_block": true, "new_pin_block": true, "block": true,
	"key_bytes": true, "component": true, "lmk": true, "password": true,
}

const redactedValue = "[redacted]"

// redactAttr is the ReplaceAttr of pingate's log handlers. Whatever a caller
// passes: an attribute named like a PIN, PIN block or key is replaced whole;
// a "pan" attribute is masked (first 6, last 4); a []byte value — the shape
// PIN blocks and keys have in memory — is never written.
func redactAttr(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	if secretAttrKeys[k] {
		return slog.String(a.Key, redactedValue)
	}
	v := a.Value.Resolve()
	if k == "pan" && v.Kind() == slog.KindString {
		return slog.String(a.Key, iso8583.MaskPAN(v.String()))
	}
	if v.Kind() == slog.KindAny {
		if _, isBytes := v.Any().([]byte); isBytes {
			return slog.String(a.Key, redactedValue)
		}
	}
	return a
}

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
	ctx = withRequestID(ctx, id)
	ctx, span := t.tracer.Start(ctx, "pingate.acquirer.frame", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("pingate.request_id", id)))
	defer span.End()
	t.next.ServeFrame(ctx, c, frame)
}
