package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// ErrorLogInterval is the least time between two log lines about the SDK's
// errors: a collector that is down fails every export (several a second
// under load), and one warning a minute says as much.
const ErrorLogInterval = time.Minute

// errorLog is the OpenTelemetry error handler pingate installs: the SDK
// reports there what it cannot do in the background, chiefly a span export
// the collector did not take (the spans of that batch are dropped). Each
// error is counted in pingate.telemetry.errors; the first after a quiet
// ErrorLogInterval is logged at warn level with how many were not logged
// since the last line. Without it the SDK's default wrote every failed
// export through the standard log package, at info level.
type errorLog struct {
	log    *slog.Logger
	errors metric.Int64Counter
	now    func() time.Time

	mu         sync.Mutex
	last       time.Time // of the last line logged; zero: none yet
	suppressed int
}

// Handle implements otel.ErrorHandler.
func (h *errorLog) Handle(err error) {
	h.errors.Add(context.Background(), 1)
	h.mu.Lock()
	now := h.now()
	if !h.last.IsZero() && now.Sub(h.last) < ErrorLogInterval {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	suppressed := h.suppressed
	h.last, h.suppressed = now, 0
	h.mu.Unlock()
	h.log.Warn("telemetry: span export failed; the spans of the batch are dropped", "err", err,
		"not_logged_since_last", suppressed)
}
