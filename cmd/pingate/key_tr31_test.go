package main

import (
	"strings"
	"testing"
)

// TestKeyImportTR31RefusesComponentBlock: a TR-31 block whose key version
// number is "c1" carries component 1 of a key (TR-31:2018 A.5.4), not a key:
// key import-tr31 refuses it, with exit 1, rather than store the component
// as the ZPK.
func TestKeyImportTR31RefusesComponentBlock(t *testing.T) {
	e := setupCeremony(t) // zmk-1 is the TR-31 A.7.2.2 KBPK
	// The A.7.2.1 key under the A.7.2.2 KBPK as component 1, wrapped by
	// psec 1.3.0 (tr31.wrap with header B0000P0TEc1E0000).
	const block = "B0096P0TEc1E00002F74123B84D681D213A0F2AF46C7F8A5F5D9A2521660DD737FD0CAEB3662EC098373F2D987DB36BB"
	out, errOut, code := runKeyCLI(t, append([]string{"import-tr31", "--id", "zpk-c1", "--under", "zmk-1", "--block", block}, e.flags(true)...)...)
	if code != 1 || out != "" || !strings.Contains(errOut, "key component, not a key") {
		t.Errorf("key import-tr31 (component block) = %q, %q, exit %d; want exit 1, a key component, not a key", out, errOut, code)
	}
	if strings.Contains(errOut, block[16:32]) {
		t.Errorf("stderr %q echoes the block", errOut)
	}
	if got := keyLastLine(mustRunKey(t, append([]string{"log", "verify"}, e.flags(false)...)...)); got != "ok 3 records" {
		t.Errorf("key log verify --store = %q, want ok 3 records (nothing recorded)", got)
	}
}

// TestKeyExportTR31Header: key export-tr31 writes the header fields
// docs/key-custody.md lists ("TR-31 key blocks"), which the partner's
// system reads: version B under a TDES ZMK, the usage and mode of use for
// the key's usage, key version number 00, exportable, no optional blocks.
func TestKeyExportTR31Header(t *testing.T) {
	e := setupCeremony(t)
	e.do(t, "generate", "--id", "tak-1", "--usage", "TAK", "--alg", "tdes")
	e.do(t, "combine", "--id", "zmk-2", "--component", secretFile(t, tr31KeyA), "--kcv", tr31KCVA,
		"--component", secretFile(t, xorHex(t, tr31KeyA, tr31AESKey)), "--kcv", tdesKCV(t, xorHex(t, tr31KeyA, tr31AESKey)))
	tests := []struct {
		give string
		want string // the header after the length field
	}{
		{"zpk-1", "P0TE00E0000"}, // arrived as P0 E: the mode of use is kept
		{"zmk-2", "K0TB00E0000"},
		{"tak-1", "M3TC00E0000"},
		{"pvk-1", "V2TC00E0000"},
	}
	for _, tt := range tests {
		block := e.do(t, "export-tr31", "--id", tt.give, "--under", "zmk-1")
		if len(block) < 16 || block[0] != 'B' || block[5:16] != tt.want {
			t.Errorf("key export-tr31 --id %s = header %.16q, want B….%s", tt.give, block, tt.want)
		}
	}
}
