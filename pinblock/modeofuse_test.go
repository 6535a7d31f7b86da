package pinblock

import (
	"errors"
	"strings"
	"testing"
)

// TestModeOfUseAllows: TR-31:2018 Table 6, row by row, for the four
// operations pingate gives keys.
func TestModeOfUseAllows(t *testing.T) {
	tests := []struct {
		give ModeOfUse
		want [4]bool // decrypt, encrypt, unwrap, wrap
	}{
		{'B', [4]bool{true, true, true, true}},
		{'N', [4]bool{true, true, true, true}},
		{'D', [4]bool{true, false, true, false}},
		{'E', [4]bool{false, true, false, true}},
		{'T', [4]bool{true, false, false, false}},
		{'C', [4]bool{}},
		{'G', [4]bool{}},
		{'V', [4]bool{}},
		{'X', [4]bool{}},
		{0, [4]bool{}},
	}
	for _, tt := range tests {
		for op := OpDecrypt; op <= OpWrap; op++ {
			if got := tt.give.Allows(op); got != tt.want[op] {
				t.Errorf("ModeOfUse(%v).Allows(%v) = %v, want %v", tt.give, op, got, tt.want[op])
			}
		}
	}
}

// TestUnwrapKeyBlockKeepsModeOfUse: a key unwrapped from each published PIN
// or key-encryption key block carries the block's mode of use, and the
// header pingate makes to wrap it again (export, the LMK) writes that mode.
func TestUnwrapKeyBlockKeepsModeOfUse(t *testing.T) {
	n := 0
	for _, tt := range loadTR31Vectors(t).Unwrap {
		if tt.Usage != UsageZPK && tt.Usage != UsageZMK {
			continue
		}
		n++
		kbpk := tr31KBPK(t, tt.KBPKAlg, tt.KBPK)
		k, _, err := UnwrapKeyBlock(kbpk, tt.Block, UnwrapOptions{ID: "k", Version: 1})
		if err != nil {
			t.Fatalf("%s: UnwrapKeyBlock() error = %v", tt.Name, err)
		}
		if got := k.ModeOfUse(); got != ModeOfUse(tt.Block[8]) {
			t.Errorf("%s: ModeOfUse() = %v, want %c", tt.Name, got, tt.Block[8])
		}
		h, err := NewKeyBlockHeader(k, kbpk)
		if err != nil {
			t.Fatal(err)
		}
		if h.ModeOfUse != tt.Block[8] {
			t.Errorf("%s: NewKeyBlockHeader() mode %c, want %c", tt.Name, h.ModeOfUse, tt.Block[8])
		}
	}
	if n == 0 {
		t.Fatal("no P0 or K0 vectors")
	}
}

// TestKeyPermits: a key that came without a block is unrestricted for its
// usage; a refusal names id, version, KCV and mode, never the key.
func TestKeyPermits(t *testing.T) {
	const raw = "F039121BEC83D26B169BDCD5B22AAF8F"
	k, err := ParseHexKey("zpk-1", UsageZPK, TDES, 3, raw)
	if err != nil {
		t.Fatal(err)
	}
	if k.ModeOfUse() != ModeBoth || k.Permits(OpDecrypt) != nil || k.Permits(OpEncrypt) != nil {
		t.Errorf("a key from hex: mode %v; want B, both ways", k.ModeOfUse())
	}
	k.k.mode = ModeEncryptOnly
	err = k.Permits(OpDecrypt)
	if !errors.Is(err, ErrModeOfUse) || !errors.Is(err, ErrKeyUsage) {
		t.Fatalf("Permits(decrypt) of a P0 E key = %v, want ErrModeOfUse", err)
	}
	for _, want := range []string{"zpk-1", "v3", "CB9DEA", "E (encrypt only)", "deciphering"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Permits() error %q does not name %q", err, want)
		}
	}
	if strings.Contains(strings.ToUpper(err.Error()), raw[:8]) {
		t.Errorf("Permits() error %q echoes the key", err)
	}
}

// TestUnwrapKeyBlockRefusesModeForUsage: a PIN key block whose mode of use
// is none of B, D, E and N (here C, a MAC mode) is refused on import.
func TestUnwrapKeyBlockRefusesModeForUsage(t *testing.T) {
	kbpk := tr31KBPK(t, TDES, "DD7515F2BFC17F85CE48F3CA25CB21F6")
	k, err := ParseHexKey("k", UsageZPK, TDES, 1, "F039121BEC83D26B169BDCD5B22AAF8F")
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewKeyBlockHeader(k, kbpk)
	if err != nil {
		t.Fatal(err)
	}
	h.ModeOfUse = 'C'
	block, err := WrapKeyBlock(kbpk, h, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := UnwrapKeyBlock(kbpk, block, UnwrapOptions{ID: "k", Version: 1}); !errors.Is(err, ErrModeOfUse) {
		t.Errorf("UnwrapKeyBlock(P0 C) error = %v, want ErrModeOfUse", err)
	}
}

func TestBlockPermits(t *testing.T) {
	tests := []struct {
		give string
		op   KeyOp
		want error
	}{
		{"B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E", OpEncrypt, nil},
		{"B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E", OpDecrypt, ErrModeOfUse},
		{"D0032P0TD00N00000123456789ABCDEF", OpDecrypt, nil},
		{"D0032P0TB00N00000123456789ABCDEF", OpDecrypt, nil},
		{"D0032P0TE00N00000123456789ABCDEF", OpDecrypt, ErrModeOfUse},
		{"D00", OpDecrypt, ErrKeyBlock},
	}
	for _, tt := range tests {
		if err := BlockPermits(tt.give, tt.op); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("BlockPermits(%.16q, %v) = %v, want %v", tt.give, tt.op, err, tt.want)
		}
	}
}
