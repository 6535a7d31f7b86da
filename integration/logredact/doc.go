// Package logredact builds pingate's structured log (log/slog) and owns what
// may reach it.
//
// Every line written on a request's path carries the request's id
// ("request_id") and its trace ("trace_id", "span_id"), read from the context
// by the handler New returns; the log calls on that path use the *Context
// variants of slog so the context reaches the handler. Attribute values are
// filtered on the way out (ReplaceAttr): a PAN is masked to its first 6 and
// last 4 digits (iso8583.MaskPAN), and PIN blocks, PINs, key material and any
// raw bytes are never written, whatever group they are in. STYLE.md §2 is the
// rule this package enforces: a clear PIN, PIN block, full PAN or key never
// leaves the process through a log line.
package logredact
