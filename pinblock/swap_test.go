package pinblock

import (
	"errors"
	"testing"
	"time"
)

func swapKey(t *testing.T, id string, version int, fill byte) Key {
	t.Helper()
	m := make([]byte, 16)
	for i := range m {
		m[i] = fill + byte(i)
	}
	k, err := NewKey(id, UsageZPK, TDES, version, m)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyringReplace(t *testing.T) {
	now := time.Now()
	running := NewKeyring(time.Hour)
	for _, k := range []Key{swapKey(t, "kept-same", 1, 0x10), swapKey(t, "dropped", 1, 0x20), swapKey(t, "online", 1, 0x30)} {
		if err := running.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	// "online" was changed online to v2 after the store was written.
	if err := running.Rotate(swapKey(t, "online", 2, 0x31), now); err != nil {
		t.Fatal(err)
	}
	oldSame, _ := running.Lookup(KeyRef{ID: "kept-same"}, now)
	oldDropped, _ := running.Lookup(KeyRef{ID: "dropped"}, now)

	next := NewKeyring(time.Hour)
	for _, k := range []Key{swapKey(t, "kept-same", 1, 0x40), swapKey(t, "online", 1, 0x30), swapKey(t, "new", 1, 0x50)} {
		if err := next.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := next.Rotate(swapKey(t, "kept-same", 2, 0x41), now); err != nil {
		t.Fatal(err)
	}
	wantSame, _ := next.Lookup(KeyRef{ID: "kept-same"}, now)

	retired := running.Replace(next)

	tests := []struct {
		give        string
		wantVersion int
		wantKCV     string
	}{
		{"kept-same", 2, wantSame.KCV()},
		{"online", 2, swapKey(t, "online", 2, 0x31).KCV()},
		{"new", 1, swapKey(t, "new", 1, 0x50).KCV()},
	}
	for _, tt := range tests {
		k, err := running.Lookup(KeyRef{ID: tt.give}, now)
		if err != nil {
			t.Errorf("after Replace, Lookup(%q): %v", tt.give, err)
			continue
		}
		if k.Version() != tt.wantVersion || k.KCV() != tt.wantKCV {
			t.Errorf("after Replace, %s = v%d %s, want v%d %s", tt.give, k.Version(), k.KCV(), tt.wantVersion, tt.wantKCV)
		}
	}
	if _, err := running.Lookup(KeyRef{ID: "dropped"}, now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("after Replace, Lookup(dropped) = %v, want ErrUnknownKey", err)
	}
	if len(next.List()) != 0 {
		t.Errorf("next still holds %d keys", len(next.List()))
	}
	// The replaced keys are held by the retired ring, still usable until it
	// is zeroized: a translation that looked them up before the swap works.
	if !oldSame.Valid() || !oldDropped.Valid() {
		t.Fatal("Replace zeroized keys a request may still use")
	}
	ids := map[string]bool{}
	for _, k := range retired.List() {
		ids[k.ID] = true
	}
	for _, id := range []string{"kept-same", "dropped", "online"} {
		if !ids[id] {
			t.Errorf("retired ring does not hold the replaced %s", id)
		}
	}
	retired.Zeroize()
	if oldSame.Valid() || oldDropped.Valid() {
		t.Error("zeroizing the retired ring left replaced keys usable")
	}
	if k, err := running.Lookup(KeyRef{ID: "kept-same"}, now); err != nil || !k.Valid() {
		t.Errorf("zeroizing the retired ring broke a running key: %v", err)
	}
}
