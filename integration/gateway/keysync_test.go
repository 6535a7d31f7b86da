package gateway

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"pingate/integration/redislimit"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// TestKeySyncTakesOnlyNewerVersions: a notice of a version the instance
// holds, or an older one, changes nothing; a newer one is imported as the
// next version under the ZMK; the same notice twice is imported once; one
// whose import failed is tried again. (The
// Redis side is tested in integration/redislimit, the whole path across
// three gateways in cmd/pingate TestKeyChangeOnEveryInstance.)
func TestKeySyncTakesOnlyNewerVersions(t *testing.T) {
	ring := pinblock.NewKeyring(time.Hour)
	if err := devkeys.Load(ring); err != nil {
		t.Fatal(err)
	}
	sm := pinblock.NewSoftwareModule(ring, pinblock.DefaultPINPolicy(), nil)
	current := func(id string) (int, string, error) {
		k, err := ring.Lookup(pinblock.KeyRef{ID: id}, time.Now())
		if err != nil {
			return 0, "", err
		}
		return k.Version(), k.KCV(), nil
	}
	ks := newKeySync(nil, sm, current, "gw-2", time.Second, slog.New(slog.DiscardHandler))
	zmk, err := devkeys.Key(devkeys.ATMZMK)
	if err != nil {
		t.Fatal(err)
	}
	next := func(version int, hexKey string) (pinblock.Key, redislimit.KeyChange) {
		t.Helper()
		k, err := pinblock.ParseHexKey(devkeys.ATMZPK, pinblock.UsageZPK, pinblock.TDES, version, hexKey)
		if err != nil {
			t.Fatal(err)
		}
		h, err := pinblock.NewKeyBlockHeader(k, zmk)
		if err != nil {
			t.Fatal(err)
		}
		block, err := pinblock.WrapKeyBlock(zmk, h, k)
		if err != nil {
			t.Fatal(err)
		}
		return k, redislimit.KeyChange{ID: devkeys.ATMZPK, Usage: string(pinblock.UsageZPK), ZMK: devkeys.ATMZMK, KeyBlock: block,
			Version: version, NewKCV: k.KCV(), Instance: "gw-1", At: time.Now()}
	}
	ctx := context.Background()
	v1, kcv1, _ := current(devkeys.ATMZPK)

	_, stale := next(1, "0F1E2D3C4B5A69788796A5B4C3D2E1F0") // another key at the version held
	ks.take(ctx, stale)
	if v, kcv, _ := current(devkeys.ATMZPK); v != v1 || kcv != kcv1 {
		t.Fatalf("after a notice of the version held: v%d %s, want v%d %s unchanged", v, kcv, v1, kcv1)
	}

	k2, fresh := next(v1+1, "2A2A2A2A2A2A2A2A5B5B5B5B5B5B5B5B")
	ks.take(ctx, fresh)
	if v, kcv, _ := current(devkeys.ATMZPK); v != v1+1 || kcv != k2.KCV() {
		t.Fatalf("after a newer notice: v%d %s, want v%d %s", v, kcv, v1+1, k2.KCV())
	}
	ks.take(ctx, fresh)
	if v, _, _ := current(devkeys.ATMZPK); v != v1+1 {
		t.Fatalf("the same notice again made v%d, want v%d", v, v1+1)
	}
	// A notice whose import fails (its ZMK is not loaded here yet) is
	// tried again at the next sync, and taken once the ZMK is there.
	k3, late := next(v1+2, "1C587F1C13924FEF0101010101010101")
	late.ZMK = "zmk-late"
	ks.take(ctx, late)
	if v, _, _ := current(devkeys.ATMZPK); v != v1+1 {
		t.Fatalf("a notice under a ZMK not held made v%d, want v%d unchanged", v, v1+1)
	}
	lateZMK, err := pinblock.ParseHexKey("zmk-late", pinblock.UsageZMK, pinblock.TDES, 1, "89E88CF7931444F334BD7547FC3F380C") // devkeys.ATMZMK's value
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Add(lateZMK); err != nil {
		t.Fatal(err)
	}
	ks.take(ctx, late)
	if v, kcv, _ := current(devkeys.ATMZPK); v != v1+2 || kcv != k3.KCV() {
		t.Fatalf("the failed notice tried again: v%d %s, want v%d %s", v, kcv, v1+2, k3.KCV())
	}
	// The previous versions still decipher (grace window).
	if got, err := sm.KCV(ctx, pinblock.KeyRef{ID: devkeys.ATMZPK, Version: v1}); err != nil || got != kcv1 {
		t.Errorf("previous version after the sync: %s, %v; want %s", got, err, kcv1)
	}
}
