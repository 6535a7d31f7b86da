package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"pingate/iso8583"
)

// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLoggerRedactsAndAddsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(LogConfig{}, &buf)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(withRequestID(context.Background(), "req-1"),
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
		{"pin_block", redactedValue},
		{"data", redactedValue},
		{"part", "test"},
	}
	for _, tt := range tests {
		if got[tt.give] != tt.want {
			t.Errorf("line[%q] = %v, want %v", tt.give, got[tt.give], tt.want)
		}
	}
	if req, _ := got["req"].(map[string]any); req["new_pin_block"] != redactedValue || req["terminal"] != "ATM00001" {
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

// TestRequestPathLogLines: the lines pingate writes while handling acquirer
// frames carry a request id and a trace id (each frame its own), and the
// whole log shows no full PAN and no PIN block.
func TestRequestPathLogLines(t *testing.T) {
	dir := t.TempDir()
	cfg := embeddedConfig()
	cfg.Instance = "ops-log"
	cfg.Acquirer.Addr, cfg.HTTP.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Events.JournalDir, cfg.Reversals.Dir = filepath.Join(dir, "journal"), filepath.Join(dir, "reversals")
	off := false
	cfg.Branch.Enabled = &off
	var buf lockedBuffer
	g, err := startGateway(context.Background(), cfg, newLogger(LogConfig{Level: "debug"}, &buf))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	}()
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	pop := opsPopulation(g.cfg.IssuerSim)
	var blocks []string
	for i := 0; i < 2; i++ {
		// An acquirer pingate does not know: refused and logged.
		op := opsChange(pop, 8000+i, "4826")
		op.acquirer = "777777"
		f, err := op.fields()
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, strings.ToUpper(hex.EncodeToString(f.PINBlock)), strings.ToUpper(hex.EncodeToString(f.NewPINBlock)))
		c, err := dialATM(ctx, g.acqAddr)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ans, err := c.Do(rctx, f)
		cancel()
		c.Close()
		if err != nil || ans.ResponseCode != iso8583.RCNotPermittedTerm {
			t.Fatalf("unknown acquirer: %v %v", ans, err)
		}
	}
	if _, err := rawExchange(ctx, g.acqAddr, []byte("0100GARBAGE")); err != nil {
		t.Fatal(err)
	}

	reqIDs, traceIDs := map[string]bool{}, map[string]bool{}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v", err)
		}
		msg, _ := m["msg"].(string)
		if msg != "unknown acquirer refused" && msg != "malformed acquirer message" {
			continue
		}
		n++
		rid, _ := m["request_id"].(string)
		tid, _ := m["trace_id"].(string)
		if rid == "" || len(tid) != 32 {
			t.Errorf("request-path line %q: request_id %q trace_id %q", msg, rid, tid)
		}
		reqIDs[rid], traceIDs[tid] = true, true
	}
	if n != 3 || len(reqIDs) != 3 || len(traceIDs) != 3 {
		t.Errorf("%d request-path lines with %d request ids and %d trace ids, want 3 of each", n, len(reqIDs), len(traceIDs))
	}
	out := strings.ToUpper(buf.String())
	for i := 0; i < 2; i++ {
		if strings.Contains(out, pop.Card(8000+i).PAN) {
			t.Error("the log shows a full PAN")
		}
	}
	for _, b := range blocks {
		if strings.Contains(out, b) {
			t.Error("the log shows a PIN block")
		}
	}
}
