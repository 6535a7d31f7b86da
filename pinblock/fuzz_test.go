package pinblock

import (
	"bytes"
	"testing"
)

// FuzzDecodeClear: parsing any clear block never panics, and whatever parses
// re-encodes to a block that parses to the same PIN (formats 0 and 2, with no
// random fill, re-encode to the very same bytes).
func FuzzDecodeClear(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(byte(v.Format), blockHex(f, v.ClearHex), v.pan())
	}
	f.Add(byte(0), []byte{}, "")
	f.Add(byte(4), bytes.Repeat([]byte{0x4C}, 16), "1")
	f.Add(byte(6), bytes.Repeat([]byte{0xFF}, 16), "6230606601007726888")
	f.Fuzz(func(t *testing.T, fb byte, block []byte, pan string) {
		format := fuzzFormat(fb)
		pin, err := DecodeClear(format, block, pan)
		if err != nil {
			return
		}
		again, err := encodeClear(format, &pin, pan, nil)
		if err != nil {
			t.Fatalf("re-encode of a parsed %s block failed: %v", format, err)
		}
		if (format == Format0 || format == Format2 || format == Format0SM4) && !bytes.Equal(again, block) {
			t.Fatalf("%s block did not round-trip", format)
		}
		back, err := DecodeClear(format, again, pan)
		if err != nil || back.Reveal() != pin.Reveal() {
			t.Fatalf("%s re-encoded block parsed to another PIN (%v)", format, err)
		}
	})
}

// FuzzDecipher: deciphering any bytes under a fixed key never panics and
// never yields a PIN outside 4–12 digits.
func FuzzDecipher(f *testing.F) {
	tdes, err := ParseHexKey("f", UsageZPK, TDES, 1, "0123456789ABCDEFFEDCBA9876543210")
	if err != nil {
		f.Fatal(err)
	}
	aesKey, err := ParseHexKey("f", UsageZPK, AES, 1, "00112233445566778899AABBCCDDEEFF")
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range loadVectors(f) {
		if v.EncHex != "" {
			f.Add(byte(v.Format), blockHex(f, v.EncHex), v.pan())
		}
	}
	sm4Key, err := ParseHexKey("f", UsageZPK, SM4, 1, "0123456789ABCDEFFEDCBA9876543210")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, fb byte, block []byte, pan string) {
		format := fuzzFormat(fb)
		k := tdes
		switch format.Algorithm() {
		case AES:
			k = aesKey
		case SM4:
			k = sm4Key
		}
		pin, err := Decipher(format, block, pan, k)
		if err == nil && (pin.Len() < MinPINLength || pin.Len() > MaxPINLength) {
			t.Fatalf("Decipher(%s) gave a PIN of %d digits", format, pin.Len())
		}
	})
}

// fuzzFormat maps a fuzzed byte onto formats 0–5 (5 is unknown) and the two
// SM4 formats.
func fuzzFormat(b byte) Format {
	all := [...]Format{Format0, Format1, Format2, Format3, Format4, 5, Format0SM4, Format4SM4}
	return all[int(b)%len(all)]
}
