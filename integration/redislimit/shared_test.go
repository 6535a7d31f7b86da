package redislimit_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/integration/redislimit"
	"pingate/integration/testservers"
	"pingate/pinblock"
	"pingate/routing"
)

func sealerFor(t *testing.T, secret string) *pinblock.DataSealer {
	t.Helper()
	s, err := pinblock.DataSealerFromSecret([]byte(secret), "approvals")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRealRedisApprovalsAcrossInstances: an approval one instance keeps is
// recalled by another sharing the data key, with the PAN it needs for the
// issuer's advice, while Redis holds no clear PAN; the reversal is claimed
// once across both; an instance with another data key cannot read it.
func TestRealRedisApprovalsAcrossInstances(t *testing.T) {
	addr, _ := testservers.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	const secret = "0123456789abcdef0123456789abcdef"
	a, err := redislimit.NewApprovals(rdb, "it", sealerFor(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := redislimit.NewApprovals(rdb, "it", sealerFor(t, secret))
	other, _ := redislimit.NewApprovals(rdb, "it", sealerFor(t, "another-secret-another-secret-xx"))
	ctx := context.Background()
	const pan = "4761739001010119"
	give := routing.Approval{Sent: routing.Reversal{ID: "r1", Issuer: "ssbank", PAN: pan, STAN: "000123", Transmit: "1203061500"},
		EventID: "ev1", Operation: routing.OpChange, Acquirer: "100001", Terminal: "ATM00001", MaskedPAN: "476173******0119", CardToken: "tok"}
	key := "100001|ATM00001|000042|1203061459"
	if err := a.Keep(ctx, key, give, time.Minute); err != nil {
		t.Fatalf("Keep: %v", err)
	}

	got, found, err := b.Recall(ctx, key)
	if err != nil || !found {
		t.Fatalf("Recall on the other instance = %v, %v; want the approval", found, err)
	}
	if got.Sent.PAN != pan || got.Sent.STAN != give.Sent.STAN || got.EventID != give.EventID || got.CardToken != give.CardToken {
		t.Errorf("Recall returned another approval: event %q STAN %q", got.EventID, got.Sent.STAN)
	}
	if _, found, err := b.Recall(ctx, "100001|ATM00001|000043|1203061459"); err != nil || found {
		t.Errorf("Recall of an unknown request = %v, %v; want not found", found, err)
	}
	if _, _, err := other.Recall(ctx, key); !errors.Is(err, redislimit.ErrApprovalUnreadable) {
		t.Errorf("Recall under another data key = %v, want ErrApprovalUnreadable", err)
	}

	// Nothing in Redis holds the PAN, its last digits, or the request's fields in clear.
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, _ := rdb.Get(ctx, k).Bytes()
		for _, secret := range []string{pan, pan[6:], "ATM00001", "000042"} {
			if bytes.Contains([]byte(k), []byte(secret)) || bytes.Contains(v, []byte(secret)) {
				t.Errorf("Redis key %s or its value holds %d clear characters of the request", k, len(secret))
			}
		}
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("Redis key %s has TTL %v, want the window (1m)", k, ttl)
		}
	}

	if ok, err := a.Claim(ctx, key, time.Minute); err != nil || !ok {
		t.Fatalf("first Claim = %v, %v; want true", ok, err)
	}
	if ok, err := b.Claim(ctx, key, time.Minute); err != nil || ok {
		t.Fatalf("Claim on the other instance = %v, %v; want false (claimed once)", ok, err)
	}
	if err := a.Release(ctx, key); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Claim(ctx, key, time.Minute); err != nil || !ok {
		t.Fatalf("Claim after Release = %v, %v; want true", ok, err)
	}
}

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
