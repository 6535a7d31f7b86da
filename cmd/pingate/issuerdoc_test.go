package main

import (
	"crypto/subtle"
	"encoding/hex"
	"os"
	"regexp"
	"testing"

	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// TestIssuerDocPINBlockExample: the format 4 worked example of
// docs/iso8583-issuer.md deciphers, with pingate's own code, under the
// development issuer key to the PIN the document states
// (scripts/pyiso8583_issuer.py checks the same with psec).
func TestIssuerDocPINBlockExample(t *testing.T) {
	raw, err := os.ReadFile(issuerDocPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	find := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(doc)
		if m == nil {
			t.Fatalf("docs/iso8583-issuer.md: no line matching %q", re)
		}
		return m[1]
	}
	keyHex := find("(?m)^- key: `dev-issuer-zpk`, AES-128 `([0-9A-F]{32})`, KCV `[0-9A-F]+`$")
	kcv := find("(?m)^- key: `dev-issuer-zpk`, AES-128 `[0-9A-F]{32}`, KCV `([0-9A-F]+)`$")
	pan := find("(?m)^- PAN: `(\\d+)`$")
	pin := find("(?m)^- PIN: `(\\d+)`")
	block, err := hex.DecodeString(find("(?m)^- DE 52 on the wire: `10` `([0-9A-F]{32})`$"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := devkeys.Key(devkeys.IssuerZPK)
	if err != nil {
		t.Fatal(err)
	}
	doc2, err := pinblock.ParseHexKey("doc", pinblock.UsageZPK, pinblock.AES, 1, keyHex)
	if err != nil {
		t.Fatal(err)
	}
	if doc2.KCV() != key.KCV() {
		t.Errorf("the example's key has KCV %s, dev-issuer-zpk %s", doc2.KCV(), key.KCV())
	}
	if kcv != key.KCV() {
		t.Errorf("the example states KCV %s, dev-issuer-zpk's is %s", kcv, key.KCV())
	}
	got, err := pinblock.Decipher(pinblock.Format4, block, pan, key)
	if err != nil {
		t.Fatalf("Decipher(format 4, the example's block) under dev-issuer-zpk: %v", err)
	}
	defer got.Zeroize()
	if subtle.ConstantTimeCompare([]byte(got.Reveal()), []byte(pin)) != 1 {
		t.Errorf("the example's block does not decipher to the PIN the document states") // neither PIN printed
	}
}

// TestDevKeysDoc: every KCV in docs/dev-keys.md's key table is the check
// value pingate computes for that development key, and every development
// key has its row.
func TestDevKeysDoc(t *testing.T) {
	raw, err := os.ReadFile("../../docs/dev-keys.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `(dev-[a-z0-9-]+)` \\| [^|]+\\| [^|]+\\| ([0-9A-F]*) \\| `[0-9A-F]+` \\|").FindAllStringSubmatch(string(raw), -1)
	kcvs := map[string]string{}
	for _, r := range rows {
		kcvs[r[1]] = r[2]
	}
	for _, d := range devkeys.All() {
		want, ok := kcvs[d.ID]
		if !ok {
			t.Errorf("docs/dev-keys.md has no row for %s", d.ID)
			continue
		}
		k, err := devkeys.Key(d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.KCV(); got != want {
			t.Errorf("docs/dev-keys.md: KCV of %s = %q, want %s", d.ID, want, got)
		}
	}
}
