package pinblock_test

import (
	"bytes"
	"errors"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"testing"
)

func devModule(t *testing.T) *pinblock.SoftwareModule {
	t.Helper()
	ring := pinblock.NewKeyring(0)
	if err := devkeys.Load(ring); err != nil {
		t.Fatal(err)
	}
	return pinblock.NewSoftwareModule(ring, pinblock.PINPolicy{}, nil)
}

// TestDataSealerRoundTripAndSeparation: data sealed by one module opens in
// another over the same base key (a restart), not under another purpose or
// aad, and a PIN key is refused as a base.
func TestDataSealerRoundTripAndSeparation(t *testing.T) {
	a, err := devModule(t).DataSealer(pinblock.KeyRef{ID: devkeys.ATMZMK}, "reversals")
	if err != nil {
		t.Fatal(err)
	}
	b, err := devModule(t).DataSealer(pinblock.KeyRef{ID: devkeys.ATMZMK}, "reversals")
	if err != nil {
		t.Fatal(err)
	}
	other, err := devModule(t).DataSealer(pinblock.KeyRef{ID: devkeys.ATMZMK}, "other")
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
	if _, err := b.Open(sealed, []byte("rev/2")); !errors.Is(err, pinblock.ErrSealedData) {
		t.Fatalf("Open under another aad = %v, want ErrSealedData", err)
	}
	if _, err := other.Open(sealed, []byte("rev/1")); !errors.Is(err, pinblock.ErrSealedData) {
		t.Fatalf("Open under another purpose = %v, want ErrSealedData", err)
	}
	if _, err := devModule(t).DataSealer(pinblock.KeyRef{ID: devkeys.ATMZPK}, "reversals"); !errors.Is(err, pinblock.ErrKeyUsage) {
		t.Fatalf("DataSealer over a PIN key = %v, want ErrKeyUsage", err)
	}
}
