package pinblock

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKey makes a random key for tests; it fails the test, never printing bytes.
func testKey(t testing.TB, id string, usage Usage, alg Algorithm, version, length int) Key {
	t.Helper()
	m := make([]byte, length)
	if _, err := rand.Read(m); err != nil {
		t.Fatal(err)
	}
	defer clear(m)
	k, err := NewKey(id, usage, alg, version, m)
	if err != nil {
		t.Fatalf("NewKey(%s) = %v", id, err)
	}
	return k
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestKeyringAddLookup(t *testing.T) {
	r := NewKeyring(time.Hour)
	k := testKey(t, "zpk-a", UsageZPK, TDES, 1, 16)
	if err := r.Add(k); err != nil {
		t.Fatalf("Add = %v", err)
	}
	got, err := r.Lookup(KeyRef{ID: "zpk-a"}, t0)
	if err != nil || got.KCV() != k.KCV() || got.Version() != 1 {
		t.Fatalf("Lookup(zpk-a) = %v, %v, want %v", got, err, k)
	}
	got, err = r.Lookup(KeyRef{ID: "zpk-a", Version: 1}, t0)
	if err != nil || got.KCV() != k.KCV() {
		t.Fatalf("Lookup(zpk-a v1) = %v, %v, want %v", got, err, k)
	}
}

func TestKeyringErrors(t *testing.T) {
	r := NewKeyring(time.Hour)
	if err := r.Add(testKey(t, "a", UsageZPK, TDES, 1, 16)); err != nil {
		t.Fatal(err)
	}
	zeroized := testKey(t, "z", UsageZPK, TDES, 1, 16)
	zeroized.Zeroize()
	tests := []struct {
		name string
		give func() error
		want error
	}{
		{"add duplicate", func() error { return r.Add(testKey(t, "a", UsageZPK, TDES, 1, 16)) }, ErrKeyExists},
		{"add zero key", func() error { return r.Add(Key{}) }, ErrInvalidKey},
		{"add zeroized", func() error { return r.Add(zeroized) }, ErrInvalidKey},
		{"add version 0", func() error { return r.Add(testKey(t, "v0", UsageZPK, TDES, 0, 16)) }, ErrKeyVersion},
		{"rotate unknown", func() error { return r.Rotate(testKey(t, "nope", UsageZPK, TDES, 2, 16), t0) }, ErrUnknownKey},
		{"rotate skip version", func() error { return r.Rotate(testKey(t, "a", UsageZPK, TDES, 3, 16), t0) }, ErrKeyVersion},
		{"rotate same version", func() error { return r.Rotate(testKey(t, "a", UsageZPK, TDES, 1, 16), t0) }, ErrKeyVersion},
		{"rotate other usage", func() error { return r.Rotate(testKey(t, "a", UsageTPK, TDES, 2, 16), t0) }, ErrKeyUsage},
		{"rotate other alg", func() error { return r.Rotate(testKey(t, "a", UsageZPK, AES, 2, 16), t0) }, ErrKeyAlgorithmMismatch},
		{"lookup unknown", func() error { _, err := r.Lookup(KeyRef{ID: "b"}, t0); return err }, ErrUnknownKey},
		{"lookup unknown version", func() error { _, err := r.Lookup(KeyRef{ID: "a", Version: 7}, t0); return err }, ErrUnknownKey},
		{"remove unknown", func() error { return r.Remove("b") }, ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give(); !errors.Is(err, tt.want) {
				t.Errorf("%s = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
	// None of the failed calls changed the ring.
	if l := r.List(); len(l) != 1 || l[0].ID != "a" || l[0].Version != 1 {
		t.Errorf("List() after failures = %+v, want only a v1", l)
	}
}

func TestKeyringRotateGrace(t *testing.T) {
	r := NewKeyring(10 * time.Minute)
	v1 := testKey(t, "zpk", UsageZPK, AES, 1, 16)
	v2 := testKey(t, "zpk", UsageZPK, AES, 2, 16)
	if err := r.Add(v1); err != nil {
		t.Fatal(err)
	}
	if err := r.Rotate(v2, t0); err != nil {
		t.Fatalf("Rotate(v2) = %v", err)
	}
	cur, err := r.Lookup(KeyRef{ID: "zpk"}, t0)
	if err != nil || cur.Version() != 2 {
		t.Fatalf("Lookup(current) = %v, %v, want v2", cur, err)
	}

	in := t0.Add(9 * time.Minute)
	if d := r.Deciphering("zpk", in); len(d) != 2 || d[0].Version() != 2 || d[1].Version() != 1 {
		t.Fatalf("Deciphering within grace = %v, want [v2 v1]", d)
	}
	if _, err := r.Lookup(KeyRef{ID: "zpk", Version: 1}, in); err != nil {
		t.Fatalf("Lookup(v1) within grace = %v", err)
	}

	out := t0.Add(10 * time.Minute)
	if d := r.Deciphering("zpk", out); len(d) != 1 || d[0].Version() != 2 {
		t.Fatalf("Deciphering after grace = %v, want [v2]", d)
	}
	if _, err := r.Lookup(KeyRef{ID: "zpk", Version: 1}, out); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("Lookup(v1) after grace = %v, want %v", err, ErrKeyExpired)
	}
	if !v1.Valid() {
		t.Fatal("v1 zeroized before Prune")
	}
	if n := r.Prune(out); n != 1 {
		t.Fatalf("Prune = %d, want 1", n)
	}
	if v1.Valid() {
		t.Error("v1 still valid after Prune")
	}
	if !v2.Valid() {
		t.Error("Prune zeroized the current version")
	}
	if _, err := r.Lookup(KeyRef{ID: "zpk", Version: 1}, out); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Lookup(v1) after Prune = %v, want %v", err, ErrUnknownKey)
	}
	if d := r.Deciphering("nope", out); d != nil {
		t.Errorf("Deciphering(unknown) = %v, want nil", d)
	}
}

func TestKeyringRemoveZeroize(t *testing.T) {
	r := NewKeyring(time.Hour)
	a := testKey(t, "a", UsageZPK, TDES, 1, 24)
	b := testKey(t, "b", UsageZMK, AES, 1, 32)
	c := testKey(t, "c", UsageTPK, TDES, 4, 16)
	for _, k := range []Key{c, a, b} {
		if err := r.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	l := r.List()
	if len(l) != 3 || l[0].ID != "a" || l[1].ID != "b" || l[2].ID != "c" {
		t.Fatalf("List() = %+v, want a, b, c", l)
	}
	if l[1].Length != 32 || l[1].KCV != b.KCV() || l[1].Algorithm != AES || l[2].Version != 4 {
		t.Errorf("List()[1..2] = %+v, want b AES 32 bytes and c v4", l[1:])
	}
	if err := r.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if a.Valid() {
		t.Error("removed key still valid")
	}
	if _, err := r.Lookup(KeyRef{ID: "a"}, t0); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Lookup(removed) = %v, want %v", err, ErrUnknownKey)
	}
	r.Zeroize()
	if b.Valid() || c.Valid() {
		t.Error("Zeroize left a key valid")
	}
	if l := r.List(); len(l) != 0 {
		t.Errorf("List() after Zeroize = %+v, want empty", l)
	}
}

// TestKeyringConcurrent runs under -race: lookups, rotations and prunes at once.
func TestKeyringConcurrent(t *testing.T) {
	r := NewKeyring(time.Millisecond)
	if err := r.Add(testKey(t, "k", UsageZPK, TDES, 1, 16)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				for _, k := range r.Deciphering("k", time.Now()) {
					if b, err := k.blockCipher(); err == nil {
						var x [8]byte
						b.Encrypt(x[:], x[:])
					}
				}
				if _, err := r.Lookup(KeyRef{ID: "k"}, time.Now()); err != nil {
					t.Errorf("goroutine %d: Lookup = %v", g, err)
					return
				}
				_ = r.List()
				if i%50 == 0 {
					r.Prune(time.Now())
				}
			}
		}()
	}
	for v := 2; v <= 30; v++ {
		if err := r.Rotate(testKey(t, "k", UsageZPK, TDES, v, 16), time.Now()); err != nil {
			t.Fatalf("Rotate(v%d) = %v", v, err)
		}
	}
	wg.Wait()
	if k, err := r.Lookup(KeyRef{ID: "k"}, time.Now()); err != nil || k.Version() != 30 {
		t.Errorf("Lookup after rotations = %v, %v, want v30", k, err)
	}
}

func TestKeyringKeyNeverPrinted(t *testing.T) {
	m := []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10}
	k, err := NewKey("zpk-print", UsageZPK, TDES, 1, m)
	if err != nil {
		t.Fatal(err)
	}
	r := NewKeyring(0)
	if err := r.Add(k); err != nil {
		t.Fatal(err)
	}
	l := r.List()[0]
	l.Created = time.Time{} // its digits are not the key's
	s := strings.ToLower(fmt.Sprintf("%+v %v %+v %#v %x %X %s %q", l, k, k, k, k, k, k, k))
	for _, frag := range []string{"01234567", "fedcba98", "89abcdef", "76543210"} {
		if strings.Contains(s, frag) {
			t.Errorf("formatted keyring/key contains key bytes (fragment %d chars)", len(frag))
		}
	}
}
