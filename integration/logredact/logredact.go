package logredact

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"pingate/iso8583"
)

// Config is the structured log (the log key of pingate's configuration).
type Config struct {
	Format string `yaml:"format"` // json (default) or text
	Level  string `yaml:"level"`  // debug, info (default), warn, error
}

// New builds the structured log described by c, written to w: JSON unless
// c.Format is "text", at c.Level (default info; an unknown level falls back
// to info: the gateway's Config.Validate refuses it first). Every attribute
// passes through ReplaceAttr, and every record logged with a context gets
// that context's request id and trace ids.
func New(c Config, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if c.Level != "" {
		_ = level.UnmarshalText([]byte(c.Level))
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: ReplaceAttr}
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

// WithRequestID returns ctx carrying the request id id: lines logged with
// ctx carry it as "request_id".
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the request id ctx carries, or "".
func RequestIDFrom(ctx context.Context) string {
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
		if id := RequestIDFrom(ctx); id != "" {
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

// Redacted is what a secret attribute's value is replaced with.
const Redacted = "[redacted]"

// ReplaceAttr is the slog.HandlerOptions.ReplaceAttr of pingate's log
// handlers. Whatever a caller
// passes: an attribute named like a PIN, PIN block or key is replaced whole;
// a "pan" attribute is masked (first 6, last 4); a []byte value — the shape
// PIN blocks and keys have in memory — is never written.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	if secretAttrKeys[k] {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	if k == "pan" && v.Kind() == slog.KindString {
		return slog.String(a.Key, iso8583.MaskPAN(v.String()))
	}
	if v.Kind() == slog.KindAny {
		if _, isBytes := v.Any().([]byte); isBytes {
			return slog.String(a.Key, Redacted)
		}
	}
	return a
}
