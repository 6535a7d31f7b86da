package pinblock

import (
	"errors"
	"testing"
)

// TestNewKeyRefusesSingleDES: a TDES key whose adjacent 8-byte parts are
// equal, parity bits ignored, is single DES under the remaining part, whatever
// way it arrives (a TR-31 block, a key under a ZMK, components).
func TestNewKeyRefusesSingleDES(t *testing.T) {
	const (
		k1 = "0123456789ABCDEF" // the classic test key's halves (docs/dev-keys.md)
		k2 = "FEDCBA9876543210"
		p1 = "0022446688AACCEE" // k1 with every parity bit flipped
	)
	tests := []struct {
		name string
		give string
	}{
		{"K1 = K2 = K3", k1 + k1 + k1},
		{"double length, K1 = K2", k1 + k1},
		{"double length, K1 = K2 but for parity", k1 + p1},
		{"triple length, K1 = K2", k1 + k1 + k2},
		{"triple length, K2 = K3", k2 + k1 + k1},
		{"triple length, K1 = K2 but for parity", k1 + p1 + k2},
		{"triple length, K2 = K3 but for parity", k2 + k1 + p1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseHexKey("weak", UsageZMK, TDES, 1, tt.give); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("ParseHexKey(%s) = %v, want %v", tt.name, err, ErrInvalidKey)
			}
		})
	}
	// Keying option 2 (K1 K2 K1) and distinct parts stay valid.
	for _, give := range []string{k1 + k2, k1 + k2 + k1, k1 + k2 + p1} {
		if _, err := ParseHexKey("ok", UsageZMK, TDES, 1, give); err != nil {
			t.Errorf("ParseHexKey(%d hex digits, distinct adjacent parts) = %v, want nil", len(give), err)
		}
	}
}

// TestNewKeyDoubleLengthExpandsInPlace: the K1 K2 K1 expansion of a
// double-length TDES key is built in the key's own buffer (which Zeroize
// clears whole), not in a second allocation that would leave the first copy
// of the key uncleared: NewKey allocates for a double-length key no more
// than for a triple-length one.
func TestNewKeyDoubleLengthExpandsInPlace(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	double := tr31Hex(t, "0123456789ABCDEFFEDCBA9876543210")
	triple := tr31Hex(t, "0123456789ABCDEFFEDCBA987654321089E88CF7931444F3")
	allocs := func(raw []byte) float64 {
		return testing.AllocsPerRun(20, func() {
			k, err := NewKey("k", UsageZPK, TDES, 1, raw)
			if err != nil {
				t.Fatal(err)
			}
			k.Zeroize()
		})
	}
	if d, tr := allocs(double), allocs(triple); d > tr {
		t.Errorf("NewKey(double-length TDES) = %v allocations, NewKey(triple-length) = %v; want no more: an extra one is a copy of the key left uncleared", d, tr)
	}
}
