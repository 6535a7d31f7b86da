package redislimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/integration/redislimit"
	"pingate/integration/testservers"
)

// TestRealRedisKeyChanges: the latest key change of each key is shared; a
// notice older than the one held does not replace it.
func TestRealRedisKeyChanges(t *testing.T) {
	addr, stop := testservers.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	kc, err := redislimit.NewKeyChanges(rdb, "it")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	for _, c := range []redislimit.KeyChange{
		{ID: "zpk-a", Version: 2, NewKCV: "AAAAAA", KeyBlock: "B1", ZMK: "zmk", Instance: "gw-1", At: t0},
		{ID: "zpk-a", Version: 3, NewKCV: "BBBBBB", KeyBlock: "B2", ZMK: "zmk", Instance: "gw-2", At: t0.Add(time.Minute)},
		{ID: "zpk-a", Version: 2, NewKCV: "AAAAAA", KeyBlock: "B1", ZMK: "zmk", Instance: "gw-1", At: t0}, // a late retry
		{ID: "zpk-b", Version: 5, NewKCV: "CCCCCC", KeyBlock: "B3", ZMK: "zmk", Instance: "gw-1", At: t0.Add(2 * time.Minute)},
	} {
		if err := kc.Publish(ctx, c); err != nil {
			t.Fatalf("Publish(%s v%d): %v", c.ID, c.Version, err)
		}
	}
	got, err := kc.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "zpk-a" || got[0].NewKCV != "BBBBBB" || got[0].KeyBlock != "B2" || got[1].ID != "zpk-b" || got[1].Version != 5 {
		t.Fatalf("Latest = %+v, want zpk-a v3 (BBBBBB) and zpk-b v5", got)
	}
	stop()
	if _, err := kc.Latest(ctx); err == nil {
		t.Error("Latest with Redis down = nil error")
	}
}
