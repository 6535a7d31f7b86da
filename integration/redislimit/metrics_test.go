package redislimit

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"pingate/routing"
)

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	cfg := wide
	cfg.CardOpsPerDay = 1
	l, m := newTestLimiter(t, cfg)
	mustAllow(t, l, req(routing.OpChange, "m1", "acq1", "T1"))
	mustRefuse(t, l, req(routing.OpChange, "m1", "acq1", "T1"), wantDaily)
	m.Close()
	l.Allow(context.Background(), req(routing.OpChange, "m2", "acq1", "T1"))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	got := map[string]int64{} // "<metric> <attr>=<v>,..." -> value
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != "pingate/redislimit" {
			continue
		}
		for _, mt := range sm.Metrics {
			sum, ok := mt.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T, want a Sum[int64]", mt.Name, mt.Data)
			}
			for _, dp := range sum.DataPoints {
				got[mt.Name+" "+attrs(dp.Attributes)] += dp.Value
			}
		}
	}
	want := map[string]int64{
		"pingate.limiter.decisions result=allowed":                            1,
		"pingate.limiter.decisions reason=card_daily_limit,result=refused":    1,
		"pingate.limiter.decisions reason=limiter_unavailable,result=refused": 1,
		"pingate.limiter.fallbacks limit=terminal":                            1,
		"pingate.limiter.fallbacks limit=acquirer":                            1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func attrs(s attribute.Set) string {
	out := ""
	for i, kv := range s.ToSlice() {
		if i > 0 {
			out += ","
		}
		out += string(kv.Key) + "=" + kv.Value.Emit()
	}
	return out
}
