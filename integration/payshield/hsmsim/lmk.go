package hsmsim

import (
	"crypto/cipher"
	"crypto/des"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// testLMK is the published Thales test variant LMK, pairs 00-01 to 38-39
// (the payShield test LMK set; the same values ship in the open-source
// Thales simulators, e.g. nickntg/thalessimulatorlibrary LMK/Storage.cs).
// Each line is the pair's even and odd key, a double-length TDES key.
var testLMK = [20]string{
	"01010101010101017902CD1FD36EF8BA",
	"20202020202020203131313131313131",
	"40404040404040405151515151515151",
	"61616161616161617070707070707070",
	"80808080808080809191919191919191",
	"A1A1A1A1A1A1A1A1B0B0B0B0B0B0B0B0",
	"C1C1010101010101D0D0010101010101",
	"E0E0010101010101F1F1010101010101",
	"1C587F1C13924FEF0101010101010101",
	"01010101010101010101010101010101",
	"02020202020202020404040404040404",
	"07070707070707071010101010101010",
	"13131313131313131515151515151515",
	"16161616161616161919191919191919",
	"1A1A1A1A1A1A1A1A1C1C1C1C1C1C1C1C",
	"23232323232323232525252525252525",
	"26262626262626262929292929292929",
	"2A2A2A2A2A2A2A2A2C2C2C2C2C2C2C2C",
	"2F2F2F2F2F2F2F2F3131313131313131",
	"01010101010101010101010101010101",
}

// Variants of the Thales variant LMK scheme: a key type's variant n (1-9)
// is XORed into the first byte of the LMK pair; the halves (or thirds) of a
// double (triple) length key are enciphered with the pair whose ninth byte
// is XORed with the double-length (triple-length) variants.
var (
	typeVariants   = [9]byte{0xA6, 0x5A, 0x6A, 0xDE, 0x2B, 0x50, 0x74, 0x9C, 0xFA}
	doubleVariants = [2]byte{0xA6, 0x5A}
	tripleVariants = [3]byte{0x6A, 0xDE, 0x2B}
)

// lmkPairIndex maps the LMK code of a key type (its last two characters) to
// the LMK pair: 00 → 04-05, 01 → 06-07, 02 → 14-15, 03 → 16-17, … 0E → 38-39.
var lmkPairIndex = map[string]int{
	"00": 2, "01": 3, "02": 7, "03": 8, "04": 9, "05": 10, "06": 11, "07": 12,
	"08": 13, "09": 14, "0A": 15, "0B": 16, "0C": 17, "0D": 18, "0E": 19,
}

var errToken = errors.New("invalid key token")

// lmkSet is an LMK: 20 pairs.
type lmkSet [20][16]byte

func testLMKSet() lmkSet {
	var s lmkSet
	for i, h := range testLMK {
		b, _ := hex.DecodeString(h)
		copy(s[i][:], b)
	}
	return s
}

// checkValue is the LMK check value NC reports: TDES of zeros under pair
// 00-01, 16 hex digits.
func (s *lmkSet) checkValue() string {
	b := tdes(s[0][:])
	out := make([]byte, 8)
	b.Encrypt(out, out)
	return strings.ToUpper(hex.EncodeToString(out))
}

func tdes(k16 []byte) cipher.Block {
	k := make([]byte, 24)
	copy(k, k16)
	copy(k[16:], k16[:8])
	b, err := des.NewTripleDESCipher(k)
	if err != nil {
		panic("hsmsim: LMK pair is not a TDES key") // static data
	}
	return b
}

// pairKey is the LMK pair for key type typ (3 characters: variant digit and
// LMK code), with the key type variant applied.
func (s *lmkSet) pairKey(typ string) ([16]byte, error) {
	if len(typ) != 3 || typ[0] < '0' || typ[0] > '9' {
		return [16]byte{}, fmt.Errorf("key type %q", typ)
	}
	i, ok := lmkPairIndex[strings.ToUpper(typ[1:])]
	if !ok {
		return [16]byte{}, fmt.Errorf("key type %q", typ)
	}
	k := s[i]
	if v := typ[0] - '0'; v > 0 {
		k[0] ^= typeVariants[v-1]
	}
	return k, nil
}

// encipher returns the token of clear key under the LMK for key type typ:
// U (double, variant), T (triple, variant) or X (double, no scheme variants).
func (s *lmkSet) encipher(typ string, scheme byte, clearKey []byte) (string, error) {
	k, err := s.pairKey(typ)
	if err != nil {
		return "", err
	}
	vs, err := schemeVariants(scheme, len(clearKey))
	if err != nil {
		return "", err
	}
	out := make([]byte, len(clearKey))
	for i := 0; i < len(clearKey); i += 8 {
		kk := k
		if vs != nil {
			kk[8] ^= vs[i/8]
		}
		tdes(kk[:]).Encrypt(out[i:i+8], clearKey[i:i+8])
	}
	return string(scheme) + strings.ToUpper(hex.EncodeToString(out)), nil
}

// decipher returns the clear key of token under the LMK for key type typ.
func (s *lmkSet) decipher(typ, token string) ([]byte, error) {
	if len(token) < 17 {
		return nil, errToken
	}
	scheme := token[0]
	raw, err := hex.DecodeString(token[1:])
	if err != nil {
		return nil, errToken
	}
	vs, err := schemeVariants(scheme, len(raw))
	if err != nil {
		return nil, err
	}
	k, err := s.pairKey(typ)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 8 {
		kk := k
		if vs != nil {
			kk[8] ^= vs[i/8]
		}
		tdes(kk[:]).Decrypt(out[i:i+8], raw[i:i+8])
	}
	return out, nil
}

func schemeVariants(scheme byte, n int) ([]byte, error) {
	switch {
	case scheme == 'U' && n == 16:
		return doubleVariants[:], nil
	case scheme == 'T' && n == 24:
		return tripleVariants[:], nil
	case scheme == 'X' && n == 16, scheme == 'Y' && n == 24:
		return nil, nil
	}
	return nil, errToken
}

func tdesFull(k24 []byte) cipher.Block {
	b, err := des.NewTripleDESCipher(k24)
	if err != nil {
		panic("hsmsim: not a TDES key")
	}
	return b
}
