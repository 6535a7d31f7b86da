package telemetry

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
)

// TestErrorLogOneLinePerInterval: a collector that fails every export gets
// one warning per ErrorLogInterval, the next one saying how many it did not
// log.
func TestErrorLogOneLinePerInterval(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1_800_000_000, 0)
	errs, _ := noop.NewMeterProvider().Meter("test").Int64Counter("errors")
	h := &errorLog{log: slog.New(slog.NewTextHandler(&buf, nil)), errors: errs, now: func() time.Time { return now }}
	fail := errors.New("connection refused")
	for i := 0; i < 10; i++ {
		h.Handle(fail)
		now = now.Add(time.Second)
	}
	if n := strings.Count(buf.String(), "span export failed"); n != 1 {
		t.Fatalf("10 failures within %s logged %d lines, want 1:\n%s", ErrorLogInterval, n, buf.String())
	}
	now = now.Add(ErrorLogInterval)
	h.Handle(fail)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "level=WARN") || !strings.Contains(lines[1], "not_logged_since_last=9") {
		t.Fatalf("after the interval: %q, want a second WARN line counting 9 not logged", lines)
	}
}
