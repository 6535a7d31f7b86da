package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Published vectors (pinblock/testdata/pinblock-vectors.json has the sources).
const (
	// devindtools.com PinblockCalc worked ISO-0 example.
	devKey   = "E8DD93B8AF13999C7644C0FE11F5D2A7"
	devPAN   = "4451234567890129"
	devPIN   = "123456"
	devBlock = "ABC5E23474210DAC"
	// ANSI X9.24-3:2017 supplement, AES-128 DUKPT PIN key, KSN ...0001 (format 4).
	aesKey   = "AF8CB133A78F8DC2D1359F18527593FB"
	aesPAN   = "4111111111111111"
	aesBlock = "A912150391AB65A67E52883D81CE2D15"
	// Thales simulator PinBlockTests.cs: account field 550000025321, ZPK to ZPK.
	thalesPAN  = "5500000253210" // a PAN whose format 0 account field is 550000025321
	thalesFrom = "0123456789ABCDEFABCDEF0123456789"
	thalesIn   = "CAE9C83F58DDC12D"
	thalesTo   = "ABCDEF09876543210123456789ABCDEF"
	thalesOut  = "5BFC613E71F15274"
)

func runPinCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), append([]string{"pin"}, args...), &o, &e)
	return o.String(), e.String(), code
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestPinCLI(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"encode format 0", []string{"encode", "--format", "0", "--pin", devPIN, "--pan", devPAN, "--key", devKey}, devBlock},
		{"decode format 0", []string{"decode", "--format", "0", "--pan", devPAN, "--key", devKey, "--block", devBlock}, devPIN},
		{"decode format 4", []string{"decode", "--format", "4", "--pan", aesPAN, "--key", aesKey, "--block", aesBlock}, "1234"},
		{"encode format 2", []string{"encode", "--format", "2", "--pin", "34567"}, "2534567FFFFFFFFF"},
		{"decode format 2", []string{"decode", "--format", "2", "--block", "2534567FFFFFFFFF"}, "34567"},
		{"translate 0 to 0", []string{"translate", "--pan", thalesPAN, "--block", thalesIn, "--from-format", "0", "--from-key", thalesFrom, "--to-format", "0", "--to-key", thalesTo}, thalesOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runPinCLI(t, tt.give...)
			if code != 0 || lastLine(out) != tt.want {
				t.Errorf("pingate pin %s = %q (exit %d, stderr %q), want %q", tt.give[0], lastLine(out), code, errOut, tt.want)
			}
		})
	}
}

// TestPinCLIRoundTrip: a random-fill encode (formats 1 and 4) decodes to the
// PIN, and a translated block decodes under the new key.
func TestPinCLIRoundTrip(t *testing.T) {
	out, _, code := runPinCLI(t, "encode", "--format", "1", "--pin", "8142", "--key", devKey)
	if code != 0 {
		t.Fatalf("encode format 1: exit %d", code)
	}
	if got, _, _ := runPinCLI(t, "decode", "--format", "1", "--key", devKey, "--block", lastLine(out)); lastLine(got) != "8142" {
		t.Errorf("format 1 round trip gave another PIN")
	}
	out, _, code = runPinCLI(t, "translate", "--pan", devPAN, "--block", devBlock, "--from-format", "0", "--from-key", devKey, "--to-format", "4", "--to-key", aesKey)
	if code != 0 {
		t.Fatalf("translate 0 to 4: exit %d", code)
	}
	if got, _, _ := runPinCLI(t, "decode", "--format", "4", "--pan", devPAN, "--key", aesKey, "--block", lastLine(out)); lastLine(got) != devPIN {
		t.Errorf("translate 0 to 4 then decode gave another PIN")
	}
}

func TestPinCLIErrors(t *testing.T) {
	tests := []struct {
		name     string
		give     []string
		wantCode int
		wantErr  string
	}{
		{"no sub-command", nil, 2, "sub-command"},
		{"unknown sub-command", []string{"frob"}, 2, "unexpected argument frob"},
		{"missing format", []string{"encode", "--pin", "1234", "--pan", devPAN, "--key", devKey}, 2, "--format is required"},
		{"bad format", []string{"encode", "--format", "7", "--pin", "1234", "--pan", devPAN, "--key", devKey}, 2, "unsupported PIN block format"},
		{"missing PAN", []string{"encode", "--format", "0", "--pin", "1234", "--key", devKey}, 2, "--pan is required"},
		{"missing key", []string{"encode", "--format", "0", "--pin", "1234", "--pan", devPAN}, 2, "--key is required"},
		{"key for format 2", []string{"encode", "--format", "2", "--pin", "1234", "--key", devKey}, 2, "never enciphered"},
		{"short PIN", []string{"encode", "--format", "0", "--pin", "123", "--pan", devPAN, "--key", devKey}, 1, "invalid PIN"},
		{"bad PAN", []string{"encode", "--format", "0", "--pin", "1234", "--pan", "44512345x7890129", "--key", devKey}, 1, "invalid PAN"},
		{"bad key hex", []string{"encode", "--format", "0", "--pin", "1234", "--pan", devPAN, "--key", "E8DD93B8AF13999C7644C0FE11F5D2AZ"}, 1, "not hexadecimal"},
		{"AES key length for TDES", []string{"encode", "--format", "0", "--pin", "1234", "--pan", devPAN, "--key", devKey + devKey}, 1, "invalid key"},
		{"wrong key", []string{"decode", "--format", "0", "--pan", devPAN, "--key", aesKey, "--block", devBlock}, 1, "invalid PIN block"},
		{"bad block hex", []string{"decode", "--format", "0", "--pan", devPAN, "--key", devKey, "--block", "ABC5E23474210DAZ"}, 2, "not hexadecimal"},
		{"forbidden translation", []string{"translate", "--pan", devPAN, "--block", devBlock, "--from-format", "0", "--from-key", devKey, "--to-format", "1", "--to-key", devKey}, 1, "translation not permitted"},
		{"unknown flag", []string{"encode", "--frob"}, 2, "unknown flag --frob"},
		{"stray argument", []string{"encode", "--format", "0", "extra"}, 2, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runPinCLI(t, tt.give...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("pingate pin (%s) = exit %d, stderr %q; want exit %d and %q", tt.name, code, errOut, tt.wantCode, tt.wantErr)
			}
			if out != "" {
				t.Errorf("pingate pin (%s) printed %q on stdout", tt.name, out)
			}
			if strings.Count(errOut, "\n") != 1 {
				t.Errorf("pingate pin (%s) error is not one line: %q", tt.name, errOut)
			}
			for _, secret := range []string{devKey[:8], "44512345", "ABC5E234", "E8DD93B8"} {
				if strings.Contains(strings.ToUpper(errOut), secret) {
					t.Errorf("pingate pin (%s) error echoes a key, PAN or block", tt.name)
				}
			}
		})
	}
}

// TestPinBinary builds the real binary once and runs it.
func TestPinBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := devBinary(t) // built once per test run, with the Makefile's line
	out, err := exec.Command(bin, "pin", "decode", "--format", "4", "--pan", aesPAN, "--key", aesKey, "--block", aesBlock).Output()
	if err != nil || lastLine(string(out)) != "1234" {
		t.Errorf("pingate pin decode = %q, %v; want 1234", out, err)
	}
	out, err = exec.Command(bin, "pin", "encode", "--format", "0", "--pin", devPIN, "--pan", devPAN, "--key", devKey).Output()
	if err != nil || lastLine(string(out)) != devBlock {
		t.Errorf("pingate pin encode = %q, %v; want %s", out, err, devBlock)
	}
	cmd := exec.Command(bin, "pin", "decode", "--format", "0", "--pan", devPAN, "--key", aesKey, "--block", devBlock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	if err == nil || !asExit(err, &exitErr) || exitErr.ExitCode() != 1 || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("pingate pin decode with the wrong key: %v, stderr %q; want exit 1 and one line", err, stderr.String())
	}
}

func asExit(err error, target **exec.ExitError) bool { return errors.As(err, target) }

// TestSecretFlagsFromStdinAndFiles: through the built binary, a key, a PIN
// block or a component may come from a file (@FILE) or from standard input
// (-, one line each, in command-line order) instead of the command line, and
// gives the same result as the literal value. A missing source is one line on
// stderr, exit 2, naming the flag and not the secret.
func TestSecretFlagsFromStdinAndFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := devBinary(t)
	dir := t.TempDir()
	fromFile := filepath.Join(dir, "from.key")
	if err := os.WriteFile(fromFile, []byte(thalesFrom+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "pin", "translate", "--pan", thalesPAN, "--block", "-", "--from-format", "0",
		"--from-key", "@"+fromFile, "--to-format", "0", "--to-key", "-")
	cmd.Stdin = strings.NewReader(thalesIn + "\n" + thalesTo + "\n")
	out, err := cmd.Output()
	if err != nil || lastLine(string(out)) != thalesOut {
		t.Errorf("pin translate with --block -, --from-key @FILE, --to-key -: %v; the block is not the Thales simulator's", err)
	}

	literal := tdesKCV(t, devKey) // `key kcv` refuses a literal --key
	cmd = exec.Command(pingateBinary(t), "key", "kcv", "--key", "-", "--alg", "tdes")
	cmd.Stdin = strings.NewReader(devKey + "\n")
	if out, err := cmd.Output(); err != nil || lastLine(string(out)) != literal {
		t.Errorf("key kcv --key - = %q, %v; want %q", out, err, literal)
	}

	for _, tt := range []struct {
		name  string
		args  []string
		stdin string
	}{
		{"missing file", []string{"key", "kcv", "--key", "@" + filepath.Join(dir, "nope"), "--alg", "tdes"}, ""},
		{"empty stdin", []string{"pin", "encode", "--format", "0", "--pin", "-", "--pan", devPAN, "--key", devKey}, ""},
	} {
		cmd := exec.Command(binFor(t, tt.args), tt.args...)
		cmd.Stdin = strings.NewReader(tt.stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		if err == nil || !asExit(err, &exitErr) || exitErr.ExitCode() != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%s: %v, stderr %q; want exit 2 and one line", tt.name, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "secret not readable: --") {
			t.Errorf("%s: stderr %q does not say which secret could not be read", tt.name, stderr.String())
		}
		if strings.Contains(stderr.String(), devKey) {
			t.Errorf("%s: stderr repeats the key", tt.name)
		}
	}
}
