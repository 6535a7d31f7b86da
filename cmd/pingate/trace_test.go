package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"pingate/integration/gateway"
	"pingate/integration/loadgen"
)

// TestOneTracePerRequest: a PIN change over TCP makes one trace from the
// acquirer frame through the limiter, the security module, the issuer round
// trip and the journal, with iso8583.* attributes and no PAN or PIN block in
// any attribute.
func TestOneTracePerRequest(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	// Without an OTLP endpoint spans are not recorded by default
	// (telemetry.Config.SampleRatio); this gateway records every trace.
	one := 1.0
	g := startTestGateway(t, func(c *gateway.Config) { c.Telemetry.SampleRatio = &one })
	// startGateway installed the SDK; add the in-memory exporter to it.
	tel := g.Telemetry()
	if tel == nil {
		t.Fatal("no SDK tracer provider installed")
	}
	tel.Tracer.RegisterSpanProcessor(sdktrace.NewSimpleSpanProcessor(exp))
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	c, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	card := embeddedPopulation().Card(77)
	op := atmChange(card.PAN, "ATMTRACE", card.PIN, "4826")
	f, err := op.Fields()
	if err != nil {
		t.Fatal(err)
	}
	blocks := []string{strings.ToUpper(hexOf(f.PINBlock)), strings.ToUpper(hexOf(f.NewPINBlock))}
	if code := do(t, c, op); code != "00" {
		t.Fatalf("change answered %s", code)
	}
	time.Sleep(100 * time.Millisecond)
	spans := exp.GetSpans()
	var root *tracetest.SpanStub
	for i := range spans {
		if spans[i].Name == "pingate.acquirer.frame" {
			root = &spans[i]
		}
	}
	if root == nil {
		t.Fatal("no pingate.acquirer.frame span")
	}
	want := map[string]bool{"pingate.acquirer.message": false, "pingate.pin.change": false, "pingate.limiter": false, "pingate.hsm.translate": false,
		"pingate.issuer.roundtrip": false, "pingate.journal.append": false}
	for _, s := range spans {
		if s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			continue
		}
		if _, ok := want[s.Name]; ok {
			want[s.Name] = true
		}
		for _, kv := range s.Attributes {
			v := strings.ToUpper(kv.Value.Emit())
			if strings.Contains(v, card.PAN) || strings.Contains(v, blocks[0]) || strings.Contains(v, blocks[1]) {
				t.Errorf("span %s attribute %s carries a PAN or PIN block", s.Name, kv.Key)
			}
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("trace lacks span %s", name)
		}
	}
	attrs := map[string]string{}
	for _, s := range spans {
		if s.Name == "pingate.acquirer.message" && s.SpanContext.TraceID() == root.SpanContext.TraceID() {
			for _, kv := range s.Attributes {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
		}
	}
	if attrs["iso8583.mti"] != "0100" || attrs["iso8583.processing_code"] != "700000" || attrs["iso8583.response_code"] != "00" {
		t.Errorf("message span attributes = %v", attrs)
	}
	// The attributes set only on a recording span are there on a sampled one.
	for name, keys := range map[string][]string{
		"pingate.acquirer.frame":   {"pingate.request_id"},
		"pingate.pin.change":       {"pingate.operation", "pingate.channel", "pingate.acquirer", "pingate.operation_id"},
		"pingate.issuer.roundtrip": {"pingate.issuer", "iso8583.response_code"},
	} {
		for _, s := range spans {
			if s.Name != name || s.SpanContext.TraceID() != root.SpanContext.TraceID() {
				continue
			}
			have := map[string]string{}
			for _, kv := range s.Attributes {
				have[string(kv.Key)] = kv.Value.Emit()
			}
			for _, k := range keys {
				if have[k] == "" {
					t.Errorf("span %s lacks attribute %s or has it empty (has %v)", name, k, have)
				}
			}
			// An ISO 8583 request names no channel: the acquirer's is the span's.
			if name == "pingate.pin.change" && have["pingate.channel"] != "atm" {
				t.Errorf("span %s: pingate.channel = %q, want the ATM acquirer's channel atm", name, have["pingate.channel"])
			}
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestStageMetrics: a PIN change over TCP is timed in every stage it goes
// through, each under its own stage label on /metrics.
func TestStageMetrics(t *testing.T) {
	g := startTestGateway(t, nil)
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	c, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	card := embeddedPopulation().Card(78)
	if code := do(t, c, atmChange(card.PAN, "ATMSTAGE", card.PIN, "4826")); code != "00" {
		t.Fatalf("change answered %s", code)
	}
	resp, err := http.Get("http://" + g.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"limiter", "hsm", "issuer", "journal"} {
		re := regexp.MustCompile(`(?m)^pingate_stage_duration_seconds_count\{[^}]*stage="` + stage + `"[^}]*\} [1-9]`)
		if !re.Match(body) {
			t.Errorf("/metrics has no pingate_stage_duration_seconds_count for stage %q", stage)
		}
	}
}
