package payshield

import (
	"bufio"
	"context"
	"crypto/des"
	"encoding/hex"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"pingate/pinblock"
)

// pythales (PyPI pythales 0.74, installed by scripts/test-deps.sh) is a
// payShield simulator written by others. Its LMK is one double-length key,
// not the variant LMK: a key under it is 'U' + TDES-ECB(LMK, key). The client
// treats tokens as opaque, so it runs against pythales unchanged, one
// command at a time (pythales serves one connection, with no header).
const pythalesLMK = "0123456789ABCDEFFEDCBA9876543210"

// startPythales runs testdata/pythales_hsm.py and returns its address.
func startPythales(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed (scripts/test-deps.sh)")
	}
	if err := exec.Command(py, "-c", "import pythales.hsm").Run(); err != nil {
		t.Skip("pythales not installed (scripts/test-deps.sh)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, py, "-u", "testdata/pythales_hsm.py", pythalesLMK)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	br := bufio.NewReader(out)
	lines := make(chan string, 1)
	go func() {
		for {
			l, err := br.ReadString('\n')
			if strings.HasPrefix(l, "LISTENING ") {
				lines <- strings.TrimSpace(strings.TrimPrefix(l, "LISTENING "))
				break
			}
			if err != nil {
				close(lines)
				return
			}
		}
		_, _ = io.Copy(io.Discard, br) // pythales traces every message
	}()
	select {
	case port, ok := <-lines:
		if !ok {
			t.Fatal("pythales exited before listening")
		}
		return "127.0.0.1:" + port
	case <-time.After(30 * time.Second):
		t.Fatal("pythales did not start listening")
	}
	return ""
}

// underPythalesLMK is what a key ceremony would have loaded: key under the
// pythales LMK. Test-only: the test plays the key custodians.
func underPythalesLMK(t *testing.T, clearHex string) string {
	t.Helper()
	return "U" + strings.ToUpper(hex.EncodeToString(tdesECB(t, pythalesLMK, mustHex(clearHex), false)))
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func tdesECB(t *testing.T, keyHex string, data []byte, decrypt bool) []byte {
	t.Helper()
	k := mustHex(keyHex)
	k = append(k, k[:8]...)
	b, err := des.NewTripleDESCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += 8 {
		if decrypt {
			b.Decrypt(out[i:], data[i:i+8])
		} else {
			b.Encrypt(out[i:], data[i:i+8])
		}
	}
	return out
}

func kcvOf(t *testing.T, keyHex string, n int) string {
	t.Helper()
	return strings.ToUpper(hex.EncodeToString(tdesECB(t, keyHex, make([]byte, 8), false)))[:n]
}

// TestPythales runs the client's NC, A0, FA, BU and CA against pythales.
func TestPythales(t *testing.T) {
	addr := startPythales(t)
	c, err := New(Config{Hosts: []string{addr}, NoHeader: true, Connections: 1, HealthInterval: -1, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	keys := NewKeys(time.Hour)
	m := NewModule(c, keys)

	// NC: the LMK check value is TDES(LMK, zeros), 16 digits.
	d, err := c.Diagnostics(ctx)
	if err != nil {
		t.Fatalf("NC = %v", err)
	}
	if want := kcvOf(t, pythalesLMK, 16); d.LMKCheck != want || d.Firmware != "0007-E000" {
		t.Fatalf("NC = %+v, want LMK check %s, firmware 0007-E000", d, want)
	}

	// The ZMK as a ceremony loaded it.
	const zmkHex = "0123456789ABCDEFFEDCBA9876543210"
	if _, err := keys.Add(Key{ID: "zmk", Usage: pinblock.UsageZMK, Algorithm: pinblock.TDES, Length: 16, Token: underPythalesLMK(t, zmkHex), KCV: kcvOf(t, zmkHex, 6)}, false); err != nil {
		t.Fatal(err)
	}

	// A0 mode 1: a TPK under the LMK and under the ZMK, with its KCV. The
	// test recovers the clear TPK from the ZMK copy (it plays the terminal)
	// and checks that both copies and the KCV agree.
	info, underZMK, err := m.GenerateExport(ctx, "tpk", pinblock.UsageTPK, 16, KeyRef("zmk"))
	if err != nil {
		t.Fatalf("A0 = %v", err)
	}
	tpkHex := strings.ToUpper(hex.EncodeToString(tdesECB(t, zmkHex, underZMK, true)))
	if info.KCV != kcvOf(t, tpkHex, 6) {
		t.Fatalf("A0 KCV = %s, want the KCV of the key under the ZMK, %s", info.KCV, kcvOf(t, tpkHex, 6))
	}
	tpkTok, _ := keys.Lookup(KeyRef("tpk"))
	if tpkTok.Token != underPythalesLMK(t, tpkHex) {
		t.Fatal("A0's key under the LMK and its key under the ZMK are not the same key")
	}

	// FA: a ZPK under the ZMK to under the LMK. pythales (pynblock 0.26
	// check_key_parity) insists on even parity, the opposite of DES's odd
	// parity that a payShield checks; this ZPK has even parity for it.
	const zpkHex = "88AACCEE00224466FFDDBB9977553311"
	zpkUnderZMK := "X" + strings.ToUpper(hex.EncodeToString(tdesECB(t, zmkHex, mustHex(zpkHex), false)))
	tok, kcv, err := c.importZPK(ctx, keys.mustToken(t, "zmk"), zpkUnderZMK)
	if err != nil {
		t.Fatalf("FA = %v", err)
	}
	if tok != underPythalesLMK(t, zpkHex) {
		t.Fatal("FA did not return the ZPK under the LMK")
	}
	// pythales 0.74 (hsm.py translate_zpk) computes FA's check value over
	// the LMK cryptogram, not over the key as a payShield does. The
	// module's Import therefore refuses the key: its KCV check works.
	if want := kcvOf(t, tok[1:], 6); kcv != want {
		t.Fatalf("FA KCV = %s; pythales computes %s", kcv, want)
	}
	_, err = m.Import(ctx, pinblock.ImportRequest{ID: "zpk-import", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES,
		Enciphered: mustHex(zpkUnderZMK[1:]), ZMK: KeyRef("zmk"), KCV: kcvOf(t, zpkHex, 6)})
	if !errors.Is(err, pinblock.ErrKCVMismatch) {
		t.Fatalf("Import through pythales' FA = %v, want ErrKCVMismatch (pythales reports the cryptogram's KCV)", err)
	}
	if _, err := keys.Add(Key{ID: "zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Token: tok, KCV: kcvOf(t, zpkHex, 6)}, false); err != nil {
		t.Fatal(err)
	}

	// BU: like FA, pythales (get_key_check_value) computes the check value
	// of the token's hex, not of the key; the client reports what the HSM says.
	got, err := m.KCV(ctx, KeyRef("zpk"))
	if err != nil {
		t.Fatalf("BU = %v", err)
	}
	if want := kcvOf(t, tok[1:], 6); got != want {
		t.Fatalf("BU = %s, want %s", got, want)
	}

	// CA, format 01: a PIN block from the terminal under the TPK, to the ZPK.
	tpk, _ := pinblock.ParseHexKey("tpk", pinblock.UsageTPK, pinblock.TDES, 1, tpkHex)
	const pan = "4000001234567899"
	pin, _ := pinblock.NewSecretPIN("4921")
	block, err := pinblock.Encipher(pinblock.Format0, pin, pan, tpk)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Translate(ctx, pinblock.TranslateRequest{PAN: pan, Block: block, From: KeyRef("tpk"), To: KeyRef("zpk")})
	if err != nil {
		t.Fatalf("CA = %v", err)
	}
	// pythales 0.74 (hsm.py translate_pinblock) enciphers the result under
	// the destination key's LMK cryptogram used as a key, instead of the
	// key it deciphers to; a payShield uses the ZPK. The block decodes to
	// the original PIN under the key pythales used.
	used, _ := pinblock.ParseHexKey("zpk-as-pythales-uses-it", pinblock.UsageZPK, pinblock.TDES, 1, tok[1:])
	p, err := pinblock.Decipher(pinblock.Format0, out, pan, used)
	if err != nil || p.Reveal() != "4921" {
		t.Fatalf("the CA result does not decode to the original PIN (%v)", err)
	}

	// An error code comes back typed: a TPK with the parity pythales
	// refuses (odd, see above) is its error 10, a key error that alerts.
	if _, err := keys.Add(Key{ID: "odd", Usage: pinblock.UsageTPK, Algorithm: pinblock.TDES, Length: 16, Token: underPythalesLMK(t, zmkHex)}, false); err != nil {
		t.Fatal(err)
	}
	_, err = m.Translate(ctx, pinblock.TranslateRequest{PAN: pan, Block: block, From: KeyRef("odd"), To: KeyRef("zpk")})
	var he *Error
	if !errors.As(err, &he) || he.Code != "10" || !errors.Is(err, pinblock.ErrInvalidKey) || !IsAlert(err) {
		t.Fatalf("CA with a parity error = %v, want error 10 (ErrInvalidKey, alert)", err)
	}
}

// KeyRef is shorthand for the current version of id.
func KeyRef(id string) pinblock.KeyRef { return pinblock.KeyRef{ID: id} }

func (s *Keys) mustToken(t *testing.T, id string) string {
	t.Helper()
	k, err := s.Lookup(KeyRef(id))
	if err != nil {
		t.Fatal(err)
	}
	return k.Token
}
