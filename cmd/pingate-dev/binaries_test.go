package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"pingate/cmd/internal/clitest"
)

// The PIN tools' tests check KCVs with `pingate key kcv`, which is in the
// production binary: those command lines run the built pingate; the rest run
// pingate-dev in-process or built.

var (
	tdesKCV    = clitest.TDESKCV
	secretFile = clitest.SecretFile
)

func devBinary(t *testing.T) string     { return clitest.Build(t, "pingate/cmd/pingate-dev") }
func pingateBinary(t *testing.T) string { return clitest.Build(t, "pingate/cmd/pingate") }

// binFor is the binary that has the command args[0].
func binFor(t *testing.T, args []string) string {
	if len(args) > 0 && args[0] == "key" {
		return pingateBinary(t)
	}
	return devBinary(t)
}

// runAny runs a command line: pingate's key commands through the built
// pingate, everything else through pingate-dev in-process.
func runAny(t *testing.T, args []string, stdout, stderr io.Writer) int {
	t.Helper()
	if len(args) > 0 && args[0] == "key" {
		out, errOut, code := clitest.Exec(t, pingateBinary(t), args...)
		io.WriteString(stdout, out)
		io.WriteString(stderr, errOut)
		return code
	}
	return run(context.Background(), args, stdout, stderr)
}

// TestEveryCommandAnswersHelp: through the built binary, every pingate-dev
// command answers -h, --help and "pingate-dev help CMD" with its flags and
// an example (clitest.CheckHelp).
func TestEveryCommandAnswersHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	clitest.CheckHelp(t, devBinary(t), app)
}

// TestBadFlagNeverEchoesSecret: whatever is wrong with a PIN tool's command
// line, the error line never repeats a PIN, a PAN or a key given.
func TestBadFlagNeverEchoesSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := devBinary(t)
	const (
		key = "0123456789ABCDEFFEDCBA9876543210"
		pin = "739184"
		pan = "4111111111111111"
	)
	tests := [][]string{
		{"pin", "encode", "--format", "0", "--pin", pin, "--pan", pan, "--key", key, "--kye", key},
		{"pin", "encode", "--format", "0", "--pin", pin, "--pan", pan, "--kye=" + key},
		{"pin", "decode", "--format", "0", "--pan", pan, "--key", key, "--block", key, pin},
		{"pin", "encode", "--format", "0", "--pin", pin, "--pin"},
		{"hsm-sim", "--header", pin},
		{"pin", key},
	}
	for _, give := range tests {
		out, errOut, code := clitest.Exec(t, bin, give...)
		if code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("pingate-dev %s …: exit %d, %d stderr lines; want exit 2 and one line", give[0], code, strings.Count(errOut, "\n"))
		}
		for _, secret := range []string{key, pin, pan} {
			if strings.Contains(out+errOut, secret) || strings.Contains(out+errOut, secret[:6]) {
				t.Errorf("pingate-dev %s …: output repeats a value given (%d bytes of stderr)", give[0], len(errOut))
			}
		}
	}
	if _, errOut, code := clitest.Exec(t, bin, "pin", "encode", "--fromat", "0"); code != 2 || !strings.Contains(errOut, `--fromat, did you mean "--format"?`) {
		t.Errorf("pingate-dev pin encode --fromat: exit %d, %q; want exit 2 naming --fromat and --format", code, errOut)
	}
}
