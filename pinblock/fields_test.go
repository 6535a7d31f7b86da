package pinblock

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// refPANFields writes out ISO 9564-1's PAN fields digit by digit, as the
// standard defines them, for comparison with the word-at-a-time panFields.set.
func refPANFields(pan string) (acct uint64, hi, lo uint64) {
	// Formats 0 and 3: 0000, then the 12 rightmost digits excluding the
	// check digit, left-padded with 0.
	body := pan[:len(pan)-1]
	body = strings.Repeat("0", max(12-len(body), 0)) + body[max(len(body)-12, 0):]
	for _, c := range body {
		acct = acct<<4 | uint64(c-'0')
	}
	// Format 4: M = length − 12 (0 below 12), the PAN right-justified in at
	// least 12 digits, then 0 to 32 nibbles.
	m := max(len(pan)-12, 0)
	nibbles := string(rune('0'+m)) + strings.Repeat("0", max(12-len(pan), 0)) + pan
	nibbles += strings.Repeat("0", 32-len(nibbles))
	for i, c := range nibbles {
		if i < 16 {
			hi = hi<<4 | uint64(c-'0')
		} else {
			lo = lo<<4 | uint64(c-'0')
		}
	}
	return acct, hi, lo
}

func TestPANFieldsMatchDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(9564, 1))
	for n := 1; n <= MaxPANLength; n++ {
		for range 200 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte('0' + rng.IntN(10))
			}
			pan := string(b)
			var got panFields
			if err := got.set(pan); err != nil {
				t.Fatalf("panFields.set(%d digits) = %v", n, err)
			}
			acct, hi, lo := refPANFields(pan)
			gotHi, gotLo := binary.BigEndian.Uint64(got.f4[:8]), binary.BigEndian.Uint64(got.f4[8:])
			if got.acct != acct || gotHi != hi || gotLo != lo {
				t.Fatalf("panFields.set(%d-digit PAN) = %016X %016X:%016X, want %016X %016X:%016X",
					n, got.acct, gotHi, gotLo, acct, hi, lo)
			}
		}
	}
}

func TestPANFieldsRefuseNonDigits(t *testing.T) {
	for n := 1; n <= MaxPANLength; n++ {
		for pos := range n {
			for _, c := range []byte{'/', ':', 'A', ' ', 0x00, 0xB0, '0' + 16} {
				b := []byte(strings.Repeat("5", n))
				b[pos] = c
				if err := new(panFields).set(string(b)); !errors.Is(err, ErrInvalidPAN) {
					t.Fatalf("panFields.set(%d digits, byte %#x at %d) = %v, want ErrInvalidPAN", n, c, pos, err)
				}
			}
		}
	}
	for _, pan := range []string{"", strings.Repeat("1", MaxPANLength+1)} {
		if err := new(panFields).set(pan); !errors.Is(err, ErrInvalidPAN) {
			t.Errorf("panFields.set(%d digits) = %v, want ErrInvalidPAN", len(pan), err)
		}
	}
}
