package keystore

import (
	"crypto/subtle"
	"encoding/hex"
	"strconv"
	"testing"

	"pingate/pinblock"
)

func xorAll(parts ...[]byte) []byte {
	out := make([]byte, len(parts[0]))
	for _, p := range parts {
		subtle.XORBytes(out, out, p)
	}
	return out
}

// kcvOf is the KCV of raw as a TDES key, through pinblock.NewKey.
func kcvOf(t *testing.T, raw []byte) string {
	t.Helper()
	k, err := pinblock.NewKey("kcv", pinblock.UsageZMK, pinblock.TDES, 1, raw)
	if err != nil {
		t.Fatal(err)
	}
	return k.KCV()
}

func mustComponent(t *testing.T, material []byte, kcv string) pinblock.Component {
	t.Helper()
	c, err := pinblock.NewComponent(material, kcv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tr31Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("test vector is not hex: %v", err)
	}
	return b
}

func tr31Key(t testing.TB, u pinblock.Usage, alg pinblock.Algorithm, h string) pinblock.Key {
	t.Helper()
	k, err := pinblock.ParseHexKey(string(u), u, alg, 1, h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func tr31Itoa(n int) string { return strconv.Itoa(n) }
