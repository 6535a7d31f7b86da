package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"pingate/integration/payshield"
	"pingate/integration/payshield/hsmsim"
	"pingate/pinblock"
)

// TestHSMSimCommand: `pingate-dev hsm-sim` prints its address and answers the
// payShield client: NC, B2, and a CC translation on keys it generated (A0)
// that decodes to the original PIN.
func TestHSMSimCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"hsm-sim", "--addr", "127.0.0.1:0", "--header", "4"}, pw, &stderr)
		pw.Close()
	}()
	line := make(chan string, 1)
	go func() {
		b := make([]byte, 256)
		n, _ := pr.Read(b)
		line <- strings.TrimSpace(string(b[:n]))
		_, _ = io.Copy(io.Discard, pr)
	}()
	var addr string
	select {
	case addr = <-line:
	case c := <-code:
		cancel()
		t.Fatalf("hsm-sim exited %d: %s", c, stderr.String())
	}
	defer func() {
		cancel()
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("hsm-sim exit code %d: %s", c, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("hsm-sim did not stop")
		}
	}()

	c, err := payshield.New(payshield.Config{Hosts: []string{addr}, HealthInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Diagnostics(ctx); err != nil {
		t.Fatalf("NC = %v", err)
	}
	if err := c.Echo(ctx, "ping"); err != nil {
		t.Fatalf("B2 = %v", err)
	}
	m := payshield.NewModule(c, payshield.NewKeys(0))
	// Two ZPKs loaded as a ceremony would (under the public test LMK); the
	// test plays both zones, so it knows their clear values.
	const pan = "4000001234567899"
	clearKeys := map[string]string{"acq": "0123456789ABCDEFFEDCBA9876543210", "iss": "89ABCDEF01234567FEDCBA9876543210"}
	keys := map[string]pinblock.Key{}
	for id, h := range clearKeys {
		raw, _ := hex.DecodeString(h)
		tok, err := hsmsim.EncipherUnderTestLMK("001", raw)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := pinblock.NewKey(id, pinblock.UsageZPK, pinblock.TDES, 1, raw)
		keys[id] = k
		if _, err := m.Keys().Add(payshield.Key{ID: id, Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Token: tok, KCV: k.KCV()}, false); err != nil {
			t.Fatal(err)
		}
	}
	pin, _ := pinblock.NewSecretPIN("735910")
	block, err := pinblock.Encipher(pinblock.Format0, pin, pan, keys["acq"])
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Translate(ctx, pinblock.TranslateRequest{PAN: pan, Block: block, From: pinblock.KeyRef{ID: "acq"}, To: pinblock.KeyRef{ID: "iss"}, ToFormat: pinblock.Format3})
	if err != nil {
		t.Fatalf("CC = %v", err)
	}
	got, err := pinblock.Decipher(pinblock.Format3, out, pan, keys["iss"])
	if err != nil || got.Reveal() != "735910" {
		t.Fatalf("the CC result does not decode to the original PIN under the issuer ZPK (%v)", err)
	}
	if kcv, err := m.KCV(ctx, pinblock.KeyRef{ID: "iss"}); err != nil || kcv != keys["iss"].KCV() {
		t.Fatalf("BU = %q, %v, want %s", kcv, err, keys["iss"].KCV())
	}
}
