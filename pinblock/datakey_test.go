package pinblock

import (
	"bytes"
	"errors"
	"testing"
)

func devModule(t *testing.T) *SoftwareModule {
	t.Helper()
	ring := NewKeyring(0)
	if err := LoadDevelopmentKeys(ring); err != nil {
		t.Fatal(err)
	}
	return NewSoftwareModule(ring, PINPolicy{}, nil)
}

// TestDataSealerRoundTripAndSeparation: data sealed by one module opens in
// another over the same base key (a restart), not under another purpose or
// aad, and a PIN key is refused as a base.
func TestDataSealerRoundTripAndSeparation(t *testing.T) {
	a, err := devModule(t).DataSealer(KeyRef{ID: DevATMZMK}, "reversals")
	if err != nil {
		t.Fatal(err)
	}
	b, err := devModule(t).DataSealer(KeyRef{ID: DevATMZMK}, "reversals")
	if err != nil {
		t.Fatal(err)
	}
	other, err := devModule(t).DataSealer(KeyRef{ID: DevATMZMK}, "other")
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"pan":"4761739001010119"}`)
	sealed, err := a.Seal(plain, []byte("rev/1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("4761739001010119")) {
		t.Fatal("sealed data contains the PAN")
	}
	got, err := b.Open(sealed, []byte("rev/1"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open in a second module = %v, want the plaintext", err)
	}
	if _, err := b.Open(sealed, []byte("rev/2")); !errors.Is(err, ErrSealedData) {
		t.Fatalf("Open under another aad = %v, want ErrSealedData", err)
	}
	if _, err := other.Open(sealed, []byte("rev/1")); !errors.Is(err, ErrSealedData) {
		t.Fatalf("Open under another purpose = %v, want ErrSealedData", err)
	}
	if _, err := devModule(t).DataSealer(KeyRef{ID: DevATMZPK}, "reversals"); !errors.Is(err, ErrKeyUsage) {
		t.Fatalf("DataSealer over a PIN key = %v, want ErrKeyUsage", err)
	}
}
