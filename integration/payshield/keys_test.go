package payshield_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pingate/integration/payshield"
	"pingate/pinblock"
)

// TestKeysPersist: with SetPersist, Add saves the key set it is about to
// hold, and a failing save leaves the set as it was; SaveKeyFile and
// LoadFile round-trip the versions.
func TestKeysPersist(t *testing.T) {
	keys := payshield.NewKeys(time.Hour)
	v1 := payshield.Key{ID: "zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Token: "U" + "11111111111111111111111111111111", KCV: "AAAAAA"}
	if _, err := keys.Add(v1, false); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hsm-keys.json")
	fail := errors.New("disk full")
	keys.SetPersist(func([]payshield.Key) error { return fail })
	v2 := v1
	v2.Token, v2.KCV = "U"+"22222222222222222222222222222222", "BBBBBB"
	if _, err := keys.Add(v2, true); !errors.Is(err, fail) {
		t.Fatalf("Add with a failing save = %v, want it", err)
	}
	if k, _ := keys.Lookup(pinblock.KeyRef{ID: "zpk"}); k.Version != 1 || !k.Until.IsZero() || len(keys.List()) != 1 {
		t.Fatalf("a failed save changed the set: current %v, %d versions", k, len(keys.List()))
	}
	keys.SetPersist(func(l []payshield.Key) error { return payshield.SaveKeyFile(path, l) })
	if _, err := keys.Add(v2, true); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	back := payshield.NewKeys(time.Hour)
	if err := back.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if k, err := back.Lookup(pinblock.KeyRef{ID: "zpk"}); err != nil || k.Version != 2 || k.KCV != "BBBBBB" || len(back.List()) != 2 {
		t.Errorf("loaded key file: current %v, %v, %d versions; want v2 BBBBBB of 2", k, err, len(back.List()))
	}
}
