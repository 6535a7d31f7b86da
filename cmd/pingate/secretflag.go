package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Secret flag values. A key, a key component, a PIN or a PIN block given as a
// flag's value shows in the process list and the shell history. Each such
// flag also takes "@FILE" (the file's first line) or "-" (the next line of
// standard input; several "-" flags read successive lines, in command-line
// order), so that a key ceremony need not put a component on a command line.

// secretInput is where "-" values are read from: standard input, read
// through one buffered reader for the whole command line.
var secretInput = struct {
	sync.Mutex
	r *bufio.Reader
}{r: bufio.NewReader(os.Stdin)}

// setSecretInput replaces the reader of "-" values (tests).
func setSecretInput(r io.Reader) {
	secretInput.Lock()
	defer secretInput.Unlock()
	secretInput.r = bufio.NewReader(r)
}

// errSecretSource: a secret could not be read from where its flag pointed.
var errSecretSource = errors.New("secret not readable")

// readSecret resolves a secret flag value: "-" reads a line of standard
// input, "@FILE" the first line of FILE; any other value is the secret
// itself. Errors name the source, never its content.
func readSecret(flagName, v string) (string, error) {
	switch {
	case v == "-":
		secretInput.Lock()
		line, err := secretInput.r.ReadString('\n')
		secretInput.Unlock()
		if err != nil && (err != io.EOF || line == "") {
			return "", fmt.Errorf("%w: --%s -: no line left on standard input", errSecretSource, flagName)
		}
		return strings.TrimSpace(line), nil
	case strings.HasPrefix(v, "@"):
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return "", fmt.Errorf("%w: --%s %s: %v", errSecretSource, flagName, v, errors.Unwrap(err))
		}
		defer clear(b)
		first, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimSpace(first), nil
	}
	return v, nil
}

// secretValue is a flag.Value holding one secret; it never prints it.
type secretValue struct {
	name string
	s    string
}

func (v *secretValue) String() string { return "" }

func (v *secretValue) Set(x string) error {
	s, err := readSecret(v.name, x)
	v.s = s
	return err
}

// secretString defines a flag for a secret (see readSecret).
func secretString(fs *flag.FlagSet, name, usage string) *string {
	v := &secretValue{name: name}
	fs.Var(v, name, usage+"; or @FILE, or - for a line of standard input")
	return &v.s
}

// secretList collects a repeated secret flag (key components).
type secretList struct {
	name string
	vs   []string
}

func (l *secretList) String() string { return fmt.Sprint(len(l.vs)) } // never the values

func (l *secretList) Set(x string) error {
	s, err := readSecret(l.name, x)
	if err != nil {
		return err
	}
	l.vs = append(l.vs, s)
	return nil
}
