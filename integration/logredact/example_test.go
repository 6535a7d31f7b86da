package logredact_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"pingate/integration/logredact"
)

// Whatever a caller passes, the log shows no PIN block, no key bytes and no
// full PAN: the PAN is masked to its first 6 and last 4 digits, secrets are
// replaced whole, and a line logged with a request's context carries its id.
func Example() {
	log := logredact.New(logredact.Config{Format: "text"}, os.Stdout)
	// Drop the time so that the output is the same on every run.
	log = slog.New(dropTime{log.Handler()})
	ctx := logredact.WithRequestID(context.Background(), "req-42")
	log.InfoContext(ctx, "pin change", "pan", "6228481200000001234", "pin_block", "0412AC89ABCDEF67",
		"key", []byte{0x01, 0x23, 0x45, 0x67}, slog.Group("req", "new_pin", "4826", "terminal", "ATM00001"))
	// Output:
	// level=INFO msg="pin change" pan=622848*********1234 pin_block=[redacted] key=[redacted] req.new_pin=[redacted] req.terminal=ATM00001 request_id=req-42
}

// dropTime removes the record's time, which slog's text handler then omits.
type dropTime struct{ slog.Handler }

func (h dropTime) Handle(ctx context.Context, r slog.Record) error {
	r.Time = time.Time{}
	return h.Handler.Handle(ctx, r)
}
