package payshield

import (
	"errors"
	"testing"

	"pingate/pinblock"
)

// TestErrorCodeTable checks every published error code the client knows,
// row by row: the typed error it unwraps to and whether it alerts.
func TestErrorCodeTable(t *testing.T) {
	tests := []struct {
		give      string
		want      error
		wantAlert bool
	}{
		{"01", pinblock.ErrKCVMismatch, false},
		{"02", pinblock.ErrInvalidKey, true},
		{"03", pinblock.ErrInvalidKey, false},
		{"04", pinblock.ErrKeyUsage, true},
		{"05", pinblock.ErrInvalidKey, true},
		{"10", pinblock.ErrInvalidKey, true},
		{"11", pinblock.ErrInvalidKey, true},
		{"12", pinblock.ErrModuleUnavailable, true},
		{"13", pinblock.ErrModuleUnavailable, true},
		{"14", pinblock.ErrInvalidPINBlock, false},
		{"15", ErrProtocol, true},
		{"16", pinblock.ErrMailerUnavailable, true},
		{"17", pinblock.ErrModuleUnavailable, true},
		{"20", pinblock.ErrInvalidPINBlock, false},
		{"22", pinblock.ErrInvalidPAN, false},
		{"23", pinblock.ErrUnsupportedFormat, false},
		{"24", pinblock.ErrInvalidPIN, false},
		{"26", pinblock.ErrInvalidKey, true},
		{"27", pinblock.ErrInvalidKey, true},
		{"28", pinblock.ErrKeyUsage, true},
		{"29", pinblock.ErrKeyUsage, true},
		{"41", pinblock.ErrModuleUnavailable, true},
		{"42", pinblock.ErrModuleUnavailable, true},
		{"68", pinblock.ErrModuleUnavailable, true},
		{"69", pinblock.ErrUnsupportedFormat, true},
		{"80", ErrProtocol, true},
		{"90", ErrProtocol, true},
		{"91", ErrProtocol, true},
		{"99", pinblock.ErrModuleUnavailable, true}, // not published: unavailable + alert
	}
	if len(tests) != len(codeTable)+1 {
		t.Fatalf("table has %d codes, test covers %d", len(codeTable), len(tests)-1)
	}
	for _, tt := range tests {
		err := error(errorFor("CC", tt.give))
		if !errors.Is(err, tt.want) {
			t.Errorf("errorFor(%q) = %v, want it to be %v", tt.give, err, tt.want)
		}
		if got := IsAlert(err); got != tt.wantAlert {
			t.Errorf("IsAlert(errorFor(%q)) = %v, want %v", tt.give, got, tt.wantAlert)
		}
	}
	// The parity and LMK rows are what the issue names explicitly.
	if !errors.Is(errorFor("CC", "13"), pinblock.ErrModuleUnavailable) || !errors.Is(errorFor("CA", "68"), pinblock.ErrModuleUnavailable) {
		t.Error("13 and 68 must mean module unavailable")
	}
}

func TestAccountNumber(t *testing.T) {
	tests := []struct{ give, want string }{
		{"4000001234567899", "000123456789"},
		{"5413330089020011", "333008902001"},
		{"1234567", "000000123456"},
	}
	for _, tt := range tests {
		got, err := accountNumber(tt.give)
		if err != nil || got != tt.want {
			t.Errorf("accountNumber(%q) = %q, %v, want %q", tt.give, got, err, tt.want)
		}
	}
	for _, give := range []string{"", "1", "12345678901234567890", "40000012345a7899"} {
		if _, err := accountNumber(give); !errors.Is(err, pinblock.ErrInvalidPAN) {
			t.Errorf("accountNumber(len %d) error = %v, want ErrInvalidPAN", len(give), err)
		}
	}
}
