package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/alecthomas/kong"
	"golang.org/x/term"
)

// Secret flag values. A key, a key component, a PIN or a PIN block given as a
// flag's value shows in the process list and the shell history. Each such
// flag also takes "@FILE" (the file's first line) or "-" (the next line of
// standard input; several "-" flags read successive lines, in command-line
// order; typed at a terminal, without echo), so that a key ceremony need not
// put a component on a command line or on the screen. The key ceremony
// commands (pingate key …) accept only "-" and "@FILE" for their secrets
// (SecretRef, SecretRefList); the PIN test tools also take the value itself
// (Secret).

// secretInput is where "-" values are read from: standard input, read
// through one buffered reader for the whole process. When standard input is
// a terminal, each value is read with echo off instead, after a prompt on
// standard error naming the flag: in a key ceremony, a custodian's component
// must not show on the screen the next custodian sees.
var secretInput = struct {
	sync.Mutex
	r   *bufio.Reader
	tty int // file descriptor of a terminal on standard input, else -1
}{r: bufio.NewReader(os.Stdin), tty: terminalFD(os.Stdin)}

func terminalFD(f *os.File) int {
	if fd := int(f.Fd()); term.IsTerminal(fd) {
		return fd
	}
	return -1
}

// ErrSecretSource: a secret could not be read from where its flag pointed.
var ErrSecretSource = errors.New("secret not readable")

// readSecret resolves a secret flag value: "-" reads a line of standard
// input, "@FILE" the first line of FILE; any other value is the secret
// itself. Errors name the source, never its content.
func readSecret(flagName, v string) (string, error) {
	switch {
	case v == "-":
		secretInput.Lock()
		defer secretInput.Unlock()
		if fd := secretInput.tty; fd >= 0 {
			fmt.Fprintf(os.Stderr, "--%s (not shown): ", flagName)
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(os.Stderr)
			defer clear(b)
			if err != nil {
				return "", fmt.Errorf("%w: --%s -: %v", ErrSecretSource, flagName, err)
			}
			return strings.TrimSpace(string(b)), nil
		}
		line, err := secretInput.r.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", fmt.Errorf("%w: --%s -: no line left on standard input", ErrSecretSource, flagName)
		}
		return strings.TrimSpace(line), nil
	case strings.HasPrefix(v, "@"):
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return "", fmt.Errorf("%w: --%s %s: %v", ErrSecretSource, flagName, v, errors.Unwrap(err))
		}
		defer clear(b)
		first, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimSpace(first), nil
	}
	return v, nil
}

// readSecretRef is readSecret for the key ceremony flags: only "-" and
// "@FILE" are accepted. A value given literally is refused before anything
// else happens (it already is in the process list and the shell history,
// but nothing then acts on it); the error names the flag, never the value.
func readSecretRef(flagName, v string) (string, error) {
	if v != "-" && !strings.HasPrefix(v, "@") {
		return "", fmt.Errorf("%w: --%s takes - (a line of standard input) or @FILE, not the value itself: "+
			"a value on the command line shows in the process list and the shell history", ErrSecretSource, flagName)
	}
	return readSecret(flagName, v)
}

// popRaw takes the flag's value token off the command line.
func popRaw(ctx *kong.DecodeContext) (string, error) {
	t, err := ctx.Scan.PopValue("value")
	if err != nil {
		return "", err
	}
	s, ok := t.Value.(string)
	if !ok {
		return "", fmt.Errorf("not a string")
	}
	return s, nil
}

// Secret is a flag holding one secret: the value itself, "@FILE" or "-"
// (readSecret). It never prints it. Give it the tag placeholder:"HEX|@FILE|-".
type Secret struct{ s string }

// Decode implements kong.MapperValue.
func (v *Secret) Decode(ctx *kong.DecodeContext) error {
	raw, err := popRaw(ctx)
	if err != nil {
		return err
	}
	v.s, err = readSecret(ctx.Value.Name, raw)
	return err
}

// Value is the secret; "" when the flag was not given.
func (v *Secret) Value() string { return v.s }

// String never shows the secret.
func (v Secret) String() string { return "" }

// SecretRef is a key ceremony secret flag: "-" or "@FILE" only
// (readSecretRef). Give it the tag placeholder:"-|@FILE".
type SecretRef struct{ s string }

// Decode implements kong.MapperValue.
func (v *SecretRef) Decode(ctx *kong.DecodeContext) error {
	raw, err := popRaw(ctx)
	if err != nil {
		return err
	}
	v.s, err = readSecretRef(ctx.Value.Name, raw)
	return err
}

// Value is the secret; "" when the flag was not given.
func (v *SecretRef) Value() string { return v.s }

// String never shows the secret.
func (v SecretRef) String() string { return "" }

// SecretRefList collects a repeated key ceremony secret (components): "-"
// or "@FILE" only, one per occurrence, in command-line order.
type SecretRefList struct{ vs []string }

// Decode implements kong.MapperValue; each occurrence appends.
func (l *SecretRefList) Decode(ctx *kong.DecodeContext) error {
	raw, err := popRaw(ctx)
	if err != nil {
		return err
	}
	s, err := readSecretRef(ctx.Value.Name, raw)
	if err != nil {
		return err
	}
	l.vs = append(l.vs, s)
	return nil
}

// Values are the secrets, in command-line order.
func (l *SecretRefList) Values() []string { return l.vs }

// String shows how many, never the values.
func (l SecretRefList) String() string { return fmt.Sprint(len(l.vs)) }
