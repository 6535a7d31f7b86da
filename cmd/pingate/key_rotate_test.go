package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestKeyRotateRefusesTwoSources: the new version of a rotation comes from
// one source; a --component beside --key or --block is refused with exit 2
// before anything changes, not left out of a rotation that then goes ahead.
func TestKeyRotateRefusesTwoSources(t *testing.T) {
	e := setupCeremony(t)
	logBefore, _ := os.ReadFile(e.log)
	storeBefore, _ := os.ReadFile(e.store)
	c2 := xorHex(t, tr31KBPKB, tr31KeyA)
	enc := tdesECB(t, tr31KBPKB, tr31KeyA)
	tests := []struct {
		name string
		give []string
	}{
		{"--block and --component", []string{"--block", tr31BlockB, "--component", secretFile(t, c2), "--kcv", tdesKCV(t, c2)}},
		{"--key and --component", []string{"--key", secretFile(t, enc), "--kcv", tr31KCVA, "--component", secretFile(t, c2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"rotate", "--id", "zpk-1", "--under", "zmk-1"}, tt.give...)
			out, errOut, code := runKeyCLI(t, append(args, e.flags(true)...)...)
			if code != 2 || out != "" || !strings.Contains(errOut, "not more than one") {
				t.Errorf("key rotate %s = %q, %q, exit %d; want exit 2, not more than one source", tt.name, out, errOut, code)
			}
			if strings.Contains(strings.ToUpper(errOut), c2[:12]) {
				t.Errorf("stderr %q shows the component", errOut)
			}
		})
	}
	if raw, _ := os.ReadFile(e.log); !bytes.Equal(raw, logBefore) {
		t.Error("a refused rotation changed the custody log")
	}
	if raw, _ := os.ReadFile(e.store); !bytes.Equal(raw, storeBefore) {
		t.Error("a refused rotation changed the key store")
	}
}
