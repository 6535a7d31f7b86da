package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/loadgen"
	"pingate/integration/logredact"
	"pingate/iso8583"
)

// TestRequestPathLogLines: the lines pingate writes while handling acquirer
// frames carry a request id and a trace id (each frame its own), and the
// whole log shows no full PAN and no PIN block.
func TestRequestPathLogLines(t *testing.T) {
	var buf syncBuffer
	g := gatewaytest.Start(t, func(cfg *gateway.Config) {
		cfg.Instance = "ops-log"
		off := false
		cfg.Branch.Enabled = &off
	}, gatewaytest.WithLogger(logredact.New(logredact.Config{Level: "debug"}, &buf)))
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	pop := opsPopulation(g.Config().IssuerSim)
	var blocks []string
	for i := 0; i < 2; i++ {
		// An acquirer pingate does not know: refused and logged.
		op := opsChange(pop, 8000+i, "4826")
		op.Acquirer = "777777"
		f, err := op.Fields()
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, strings.ToUpper(hex.EncodeToString(f.PINBlock)), strings.ToUpper(hex.EncodeToString(f.NewPINBlock)))
		c, err := loadgen.Dial(ctx, g.AcquirerAddr())
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
	if _, err := rawExchange(ctx, g.AcquirerAddr(), []byte("0100GARBAGE")); err != nil {
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
