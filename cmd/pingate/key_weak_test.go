package main

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// flipParityHex is h with the low (DES parity) bit of every byte flipped: the
// same DES key, the same KCV.
func flipParityHex(t *testing.T, h string) string {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 1
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

// singleDESKCV is the KCV of the single DES key k (16 hex digits): what a
// TDES key with equal adjacent parts really is.
func singleDESKCV(t *testing.T, k string) string {
	t.Helper()
	raw, err := hex.DecodeString(k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := des.NewCipher(raw)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 8)
	b.Encrypt(out, out)
	return strings.ToUpper(hex.EncodeToString(out[:3]))
}

// aesKCV is the check value pingate key kcv prints for an AES key.
func aesKCV(t *testing.T, keyHex string) string {
	t.Helper()
	return runLast(t, "key", "kcv", "--alg", "aes", "--key", secretFile(t, keyHex))
}

// TestKeyCeremonyRefusesWeakKeys: a ceremony whose result one custodian
// alone would know (a component entered twice, parity aside; an all-zero
// component), or whose TDES key is single DES (equal adjacent 8-byte parts,
// parity aside), is refused with exit 1: nothing stored, nothing recorded,
// and no component in the message.
func TestKeyCeremonyRefusesWeakKeys(t *testing.T) {
	e := setupCeremony(t) // zmk-1 is the TR-31 A.7.2.2 KBPK
	logBefore, _ := os.ReadFile(e.log)
	storeBefore, _ := os.ReadFile(e.store)

	const k3 = "89E88CF7931444F334BD7547FC3F380C" // TR-31:2018 A.7.2.1 KBPK
	dup := flipParityHex(t, tr31KeyA)             // component 1 again, parity bits flipped: same KCV
	// Two triple-length components XORing to K1 K1' K3: single DES under K3.
	weak := tr31KeyA[:16] + flipParityHex(t, tr31KeyA[:16]) + k3[:16]
	w1 := tr31KBPKB + k3[16:]
	w2 := xorHex(t, w1, weak)
	zero := strings.Repeat("00", 16)
	// A double-length ZPK whose halves differ only in parity, under zmk-1.
	weakZPK := tr31KeyA[:16] + flipParityHex(t, tr31KeyA[:16])

	tests := []struct {
		name    string
		give    []string
		want    string
		secrets []string
	}{
		{
			name: "combine: a component twice, parity bits flipped",
			give: []string{"combine", "--id", "zmk-dup",
				"--component", secretFile(t, tr31KeyA), "--kcv", tr31KCVA,
				"--component", secretFile(t, dup), "--kcv", tdesKCV(t, dup),
				"--component", secretFile(t, k3), "--kcv", tdesKCV(t, k3)},
			want:    "components 1 and 2 are identical",
			secrets: []string{tr31KeyA, dup, k3},
		},
		{
			name: "combine: the result is single DES",
			give: []string{"combine", "--id", "zmk-weak",
				"--component", secretFile(t, w1), "--kcv", tdesKCV(t, w1),
				"--component", secretFile(t, w2), "--kcv", tdesKCV(t, w2)},
			want:    "single DES",
			secrets: []string{w1, w2},
		},
		{
			name: "combine: an all-zero AES component",
			give: []string{"combine", "--id", "zmk-zero", "--alg", "aes",
				"--component", secretFile(t, tr31AESKey), "--kcv", aesKCV(t, tr31AESKey),
				"--component", secretFile(t, zero), "--kcv", aesKCV(t, zero)},
			want:    "component 2 is all zeros",
			secrets: []string{tr31AESKey},
		},
		{
			// The KCV a custodian's form shows for it: DES of the zero
			// block under the zero key, 8CA64DE9C1B123A7.
			name: "combine: an all-zero TDES component",
			give: []string{"combine", "--id", "zmk-zero",
				"--component", secretFile(t, tr31KeyA), "--kcv", tr31KCVA,
				"--component", secretFile(t, zero), "--kcv", "8CA64D"},
			want:    "component 2 is all zeros",
			secrets: []string{tr31KeyA},
		},
		{
			name: "combine: an all-zero TDES component with odd parity",
			give: []string{"combine", "--id", "zmk-zero",
				"--component", secretFile(t, strings.Repeat("01", 16)), "--kcv", "8CA64D",
				"--component", secretFile(t, tr31KeyA), "--kcv", tr31KCVA},
			want:    "component 1 is all zeros",
			secrets: []string{tr31KeyA},
		},
		{
			name: "import: a single-DES key under the ZMK",
			give: []string{"import", "--id", "zpk-weak", "--usage", "ZPK", "--under", "zmk-1",
				"--key", secretFile(t, tdesECB(t, tr31KBPKB, weakZPK)), "--kcv", singleDESKCV(t, tr31KeyA[:16])},
			want:    "single DES",
			secrets: []string{weakZPK},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runKeyCLI(t, append(tt.give, e.flags(true)...)...)
			if code != 1 || out != "" || !strings.Contains(errOut, tt.want) {
				t.Fatalf("pingate key %s = %q, %q, exit %d; want exit 1 and %q", tt.give[0], out, errOut, code, tt.want)
			}
			for _, s := range tt.secrets {
				for _, part := range []string{s[:16], s[16:32]} {
					if strings.Contains(strings.ToUpper(errOut), part) {
						t.Errorf("stderr %q repeats key material", errOut)
					}
				}
			}
		})
	}
	if raw, _ := os.ReadFile(e.log); !bytes.Equal(raw, logBefore) {
		t.Error("a refused ceremony changed the custody log")
	}
	if raw, _ := os.ReadFile(e.store); !bytes.Equal(raw, storeBefore) {
		t.Error("a refused ceremony changed the key store")
	}
}
