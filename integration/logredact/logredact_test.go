package logredact

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"pingate/iso8583"
)

func TestLoggerRedactsAndAddsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := New(Config{}, &buf)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(WithRequestID(context.Background(), "req-1"),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	const pan = "6228481200000001234"
	log.With("part", "test").InfoContext(ctx, "a request line", "pan", pan, "pin_block", "0412AC89ABCDEF67",
		"data", []byte{0x04, 0x12}, slog.Group("req", "new_pin_block", "5931", "terminal", "ATM00001"))
	log.Info("a line outside any request")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("log line is not JSON: %v", err)
	}
	tests := []struct {
		give string
		want any
	}{
		{"request_id", "req-1"},
		{"trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"span_id", "00f067aa0ba902b7"},
		{"pan", iso8583.MaskPAN(pan)},
		{"pin_block", Redacted},
		{"data", Redacted},
		{"part", "test"},
	}
	for _, tt := range tests {
		if got[tt.give] != tt.want {
			t.Errorf("line[%q] = %v, want %v", tt.give, got[tt.give], tt.want)
		}
	}
	if req, _ := got["req"].(map[string]any); req["new_pin_block"] != Redacted || req["terminal"] != "ATM00001" {
		t.Errorf("group req = %v: want new_pin_block redacted and terminal kept", got["req"])
	}
	for _, secret := range []string{pan, "0412AC89ABCDEF67", "5931"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("log output shows a secret value (%d characters)", len(secret))
		}
	}
	var other map[string]any
	_ = json.Unmarshal([]byte(lines[1]), &other)
	if _, ok := other["request_id"]; ok {
		t.Errorf("a line outside a request carries a request id: %v", other)
	}
}
