package pinblock

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
)

func TestTranslateVector(t *testing.T) {
	// Thales simulator PinBlockTests.cs TranslateEncryptedPinBlock: ZPK to ZPK,
	// format 0 to 0 (deterministic, so the whole output is published).
	var src, dst vector
	for _, v := range loadVectors(t) {
		switch v.EncHex {
		case "CAE9C83F58DDC12D":
			src = v
		case "5BFC613E71F15274":
			dst = v
		}
	}
	if src.KeyHex == "" || dst.KeyHex == "" {
		t.Fatal("translation vectors missing from testdata")
	}
	from, err := ParseHexKey("src", UsageZPK, TDES, 1, src.KeyHex)
	if err != nil {
		t.Fatal(err)
	}
	to, err := ParseHexKey("dst", UsageZPK, TDES, 1, dst.KeyHex)
	if err != nil {
		t.Fatal(err)
	}
	got, err := TranslateBlock(blockHex(t, src.EncHex), src.pan(), from, Format0, to, Format0)
	if err != nil {
		t.Fatalf("TranslateBlock = %v", err)
	}
	if g := fmt.Sprintf("%X", got); g != dst.EncHex {
		t.Errorf("TranslateBlock(F0->F0) = %s, want %s", g, dst.EncHex)
	}
}

func TestTranslationAllowed(t *testing.T) {
	allowed := map[[2]Format]bool{}
	for _, from := range []Format{0, 3, 4} {
		for _, to := range []Format{0, 3, 4} {
			allowed[[2]Format{from, to}] = true
		}
	}
	for _, to := range []Format{0, 1, 3, 4} {
		allowed[[2]Format{1, to}] = true
	}
	for from := Format(-1); from <= 5; from++ {
		for to := Format(-1); to <= 5; to++ {
			if got, want := TranslationAllowed(from, to), allowed[[2]Format{from, to}]; got != want {
				t.Errorf("TranslationAllowed(%d, %d) = %v, want %v", from, to, got, want)
			}
		}
	}
}

// randomDigits returns n random decimal digits.
func randomDigits(t testing.TB, n int) string {
	t.Helper()
	var b strings.Builder
	for range n {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String()
}

func randomLen(t testing.TB, lo, hi int) int {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(hi-lo+1)))
	if err != nil {
		t.Fatal(err)
	}
	return lo + int(n.Int64())
}

// keyLengths are the key lengths each algorithm is tested with.
var keyLengths = map[Algorithm][]int{TDES: {16, 24}, AES: {16, 24, 32}}

// TestTranslateProperty: for every allowed (from, to) pair and every key
// length, encode -> translate -> decode gives the PIN back, with random keys,
// PINs and PANs; every forbidden pair is refused.
func TestTranslateProperty(t *testing.T) {
	formats := []Format{Format0, Format1, Format2, Format3, Format4}
	for _, from := range formats {
		for _, to := range formats {
			if !TranslationAllowed(from, to) {
				t.Run(fmt.Sprintf("%s-%s-forbidden", from, to), func(t *testing.T) {
					fk := testKey(t, "f", UsageZPK, TDES, 1, 16)
					tk := testKey(t, "t", UsageZPK, AES, 1, 16)
					_, err := TranslateBlock(make([]byte, max(from.BlockSize(), 8)), "4111111111111111", fk, from, tk, to)
					if !errors.Is(err, ErrForbiddenTranslation) {
						t.Errorf("TranslateBlock(%s -> %s) = %v, want %v", from, to, err, ErrForbiddenTranslation)
					}
				})
				continue
			}
			for _, fl := range keyLengths[from.Algorithm()] {
				for _, tl := range keyLengths[to.Algorithm()] {
					t.Run(fmt.Sprintf("%s-%d-%s-%d", from, fl, to, tl), func(t *testing.T) {
						for range 12 {
							fk := testKey(t, "from", UsageZPK, from.Algorithm(), 1, fl)
							tk := testKey(t, "to", UsageZPK, to.Algorithm(), 1, tl)
							digits := randomDigits(t, randomLen(t, MinPINLength, MaxPINLength))
							pan := randomDigits(t, randomLen(t, 1, MaxPANLength))
							in, err := Encipher(from, mustPIN(t, digits), pan, fk)
							if err != nil {
								t.Fatalf("Encipher(%s) = %v", from, err)
							}
							out, err := TranslateBlock(in, pan, fk, from, tk, to)
							if err != nil {
								t.Fatalf("TranslateBlock(%s -> %s) = %v", from, to, err)
							}
							if len(out) != to.BlockSize() {
								t.Fatalf("TranslateBlock(%s -> %s) gave %d bytes, want %d", from, to, len(out), to.BlockSize())
							}
							got, err := Decipher(to, out, pan, tk)
							if err != nil {
								t.Fatalf("Decipher(%s) = %v", to, err)
							}
							if got.Reveal() != digits {
								t.Fatalf("%s -> %s changed the PIN", from, to)
							}
							// The PAN is bound: another PAN does not give the PIN back
							// (format 1 carries no PAN). The changed digit is the first
							// of the account field, which lies over the PIN's digits in
							// formats 0 and 3.
							if to != Format1 && len(pan) >= 13 {
								i := len(pan) - 13
								other := pan[:i] + string('0'+(pan[i]-'0'+1)%10) + pan[i+1:]
								if p, err := Decipher(to, out, other, tk); err == nil && p.Reveal() == digits {
									t.Fatalf("%s block deciphered to the same PIN under another PAN", to)
								}
							}
						}
					})
				}
			}
		}
	}
}

func TestTranslateErrors(t *testing.T) {
	tdes := testKey(t, "tdes", UsageZPK, TDES, 1, 16)
	other := testKey(t, "other", UsageZPK, TDES, 1, 16)
	aesKey := testKey(t, "aes", UsageZPK, AES, 1, 32)
	const pan = "4012345678909"
	good, err := Encipher(Format0, mustPIN(t, "1234"), pan, tdes)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		block    []byte
		pan      string
		from, to Key
		ff, tf   Format
		want     error
	}{
		{"wrong source key", good, pan, other, tdes, Format0, Format0, ErrInvalidPINBlock},
		{"short block", good[:7], pan, tdes, tdes, Format0, Format0, ErrInvalidPINBlock},
		{"nil block", nil, pan, tdes, tdes, Format0, Format0, ErrInvalidPINBlock},
		{"bad PAN", good, "40123456789x9", tdes, tdes, Format0, Format0, ErrInvalidPAN},
		{"AES key for format 0", good, pan, aesKey, tdes, Format0, Format0, ErrKeyAlgorithmMismatch},
		{"TDES key for format 4 output", good, pan, tdes, tdes, Format0, Format4, ErrKeyAlgorithmMismatch},
		{"format 0 to 1", good, pan, tdes, tdes, Format0, Format1, ErrForbiddenTranslation},
		{"format 0 to 2", good, pan, tdes, tdes, Format0, Format2, ErrForbiddenTranslation},
		{"format 2 to 0", good, pan, tdes, tdes, Format2, Format0, ErrForbiddenTranslation},
		{"format 9 to 0", good, pan, tdes, tdes, Format(9), Format0, ErrUnsupportedFormat},
		{"format 0 to 9", good, pan, tdes, tdes, Format0, Format(9), ErrUnsupportedFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TranslateBlock(tt.block, tt.pan, tt.from, tt.ff, tt.to, tt.tf)
			if !errors.Is(err, tt.want) {
				t.Fatalf("TranslateBlock(%s) = %v, want %v", tt.name, err, tt.want)
			}
			if strings.Contains(strings.ToUpper(err.Error()), fmt.Sprintf("%X", good)[:6]) || strings.Contains(err.Error(), pan[:8]) {
				t.Errorf("TranslateBlock(%s) error echoes the block or PAN", tt.name)
			}
		})
	}
}
