package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"pingate/cmd/internal/clitest"
)

// The CLI checked against an independent implementation: psec (PyPI, by
// knovichikhin) and the Python cryptography package compute the other side
// of every case. Keys, PINs and PANs are drawn at random.
const cliCrossScript = `
import sys, json, warnings
warnings.filterwarnings("ignore")
from psec import pinblock as p, des
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
def aes_ecb(key, data, enc):
    c = Cipher(algorithms.AES(key), modes.ECB())
    x = c.encryptor() if enc else c.decryptor()
    return x.update(data) + x.finalize()
for line in sys.stdin:
    c = json.loads(line)
    key = bytes.fromhex(c["key"]); f = c["format"]; pin = c["pin"]; pan = c["pan"]; r = {}
    if f in (0, 3):
        clear = des.decrypt_tdes_ecb(key, bytes.fromhex(c["ours"]))
        r["pin_of_ours"] = (p.decode_pinblock_iso_0(clear, pan) if f == 0 else p.decode_pinblock_iso_3(clear, pan))
        mine = p.encode_pinblock_iso_0(pin, pan) if f == 0 else p.encode_pinblock_iso_3(pin, pan)
        r["theirs"] = des.encrypt_tdes_ecb(key, mine).hex()
        r["kcv"] = des.generate_kcv(key, 3).hex()
    else:
        r["pin_of_ours"] = p.decipher_pinblock_iso_4(key, bytes.fromhex(c["ours"]), pan)
        r["theirs"] = p.encipher_pinblock_iso_4(key, pin, pan).hex()
        m = cmac.CMAC(algorithms.AES(key)); m.update(bytes(16)); r["kcv"] = m.finalize()[:5].hex()
    if "to_key" in c:
        r["pin_of_translated"] = p.decipher_pinblock_iso_4(bytes.fromhex(c["to_key"]), bytes.fromhex(c["translated"]), pan)
    print(json.dumps(r))
`

var randHex = clitest.RandHex

func randDigits(t *testing.T, lo, hi int) string {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(hi-lo+1)))
	var sb strings.Builder
	for i := 0; i < lo+int(n.Int64()); i++ {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		sb.WriteByte(byte('0' + d.Int64()))
	}
	return sb.String()
}

// runLast runs one command (runAny) and returns its last stdout line.
func runLast(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := runAny(t, args, &out, &errOut); code != 0 {
		t.Fatalf("pingate %s %s: exit %d: %s", args[0], args[1], code, strings.TrimSpace(errOut.String()))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1]
}

func TestCLIAgainstPsec(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import psec, cryptography").Run()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 with psec and cryptography is required under CI (scripts/test-deps.sh installs them)")
		}
		t.Skip("python3 with psec not available; run scripts/test-deps.sh")
	}
	type cse struct {
		Format     int    `json:"format"`
		Key        string `json:"key"`
		PIN        string `json:"pin"`
		PAN        string `json:"pan"`
		Ours       string `json:"ours"`
		ToKey      string `json:"to_key,omitempty"`
		Translated string `json:"translated,omitempty"`
	}
	var cases []cse
	var in bytes.Buffer
	for i := 0; i < 60; i++ {
		f := []int{0, 3, 4}[i%3]
		c := cse{Format: f, PIN: randDigits(t, 4, 12), PAN: randDigits(t, 13, 19)}
		if f == 4 {
			c.Key = randHex(t, []int{16, 24, 32}[(i/3)%3])
		} else {
			c.Key = randHex(t, []int{16, 24}[i%2])
		}
		c.Ours = runLast(t, "pin", "encode", "--format", fmt.Sprint(f), "--pin", c.PIN, "--pan", c.PAN, "--key", c.Key)
		if f != 4 {
			// Every TDES case is also translated to format 4 under a fresh AES key.
			c.ToKey = randHex(t, 16)
			c.Translated = runLast(t, "pin", "translate", "--pan", c.PAN, "--block", c.Ours, "--from-format", fmt.Sprint(f),
				"--from-key", c.Key, "--to-format", "4", "--to-key", c.ToKey)
		}
		cases = append(cases, c)
		line, _ := json.Marshal(c)
		in.Write(append(line, '\n'))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", cliCrossScript)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python side failed: %v (%d bytes of stderr)", err, stderr.Len())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("python returned %d results for %d cases", len(lines), len(cases))
	}
	for i, c := range cases {
		var r struct {
			PINOfOurs       string `json:"pin_of_ours"`
			Theirs          string `json:"theirs"`
			KCV             string `json:"kcv"`
			PINOfTranslated string `json:"pin_of_translated"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatal(err)
		}
		if r.PINOfOurs != c.PIN {
			t.Errorf("case %d (format %d): `pin encode` block deciphers to another PIN in psec", i, c.Format)
		}
		if got := runLast(t, "pin", "decode", "--format", fmt.Sprint(c.Format), "--pan", c.PAN, "--key", c.Key, "--block", r.Theirs); got != c.PIN {
			t.Errorf("case %d (format %d): `pin decode` of psec's block gives another PIN", i, c.Format)
		}
		alg := "tdes"
		if c.Format == 4 {
			alg = "aes"
		}
		if got := runLast(t, "key", "kcv", "--key", secretFile(t, c.Key), "--alg", alg); !strings.EqualFold(got, r.KCV) {
			t.Errorf("case %d: `key kcv` = %s, independent KCV %s", i, got, strings.ToUpper(r.KCV))
		}
		if c.ToKey != "" && r.PINOfTranslated != c.PIN {
			t.Errorf("case %d: `pin translate` %d→4 block deciphers to another PIN in psec", i, c.Format)
		}
	}
}
