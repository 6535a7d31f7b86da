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

	"golang.org/x/term"
)

// Secret flag values. A key, a key component, a PIN or a PIN block given as a
// flag's value shows in the process list and the shell history. Each such
// flag also takes "@FILE" (the file's first line) or "-" (the next line of
// standard input; several "-" flags read successive lines, in command-line
// order; typed at a terminal, without echo), so that a key ceremony need not
// put a component on a command line or on the screen. The key ceremony
// commands (pingate key …) accept only "-" and "@FILE" for their secrets
// (secretRef, secretList); the pin test tools also take the value itself.

// secretInput is where "-" values are read from: standard input, read
// through one buffered reader for the whole command line. When standard
// input is a terminal, each value is read with echo off instead, after a
// prompt on standard error naming the flag: in a key ceremony, a custodian's
// component must not show on the screen the next custodian sees.
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

// errSecretSource: a secret could not be read from where its flag pointed.
var errSecretSource = errors.New("secret not readable")

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
				return "", fmt.Errorf("%w: --%s -: %v", errSecretSource, flagName, err)
			}
			return strings.TrimSpace(string(b)), nil
		}
		line, err := secretInput.r.ReadString('\n')
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

// readSecretRef is readSecret for the key ceremony flags: only "-" and
// "@FILE" are accepted. A value given literally is refused before anything
// else happens (it already is in the process list and the shell history,
// but nothing then acts on it); the error names the flag, never the value.
func readSecretRef(flagName, v string) (string, error) {
	if v != "-" && !strings.HasPrefix(v, "@") {
		return "", fmt.Errorf("%w: --%s takes - (a line of standard input) or @FILE, not the value itself: "+
			"a value on the command line shows in the process list and the shell history", errSecretSource, flagName)
	}
	return readSecret(flagName, v)
}

// secretValue is a flag.Value holding one secret; it never prints it. With
// refOnly, the value must come from "-" or "@FILE" (readSecretRef).
type secretValue struct {
	name    string
	refOnly bool
	s       string
}

func (v *secretValue) String() string { return "" }

func (v *secretValue) Set(x string) error {
	read := readSecret
	if v.refOnly {
		read = readSecretRef
	}
	s, err := read(v.name, x)
	v.s = s
	return err
}

// secretString defines a flag for a secret (see readSecret).
func secretString(fs *flag.FlagSet, name, usage string) *string {
	v := &secretValue{name: name}
	fs.Var(v, name, usage+"; or @FILE, or - for a line of standard input")
	return &v.s
}

// secretRef defines a flag for a key ceremony secret: "-" or "@FILE" only
// (see readSecretRef).
func secretRef(fs *flag.FlagSet, name, usage string) *string {
	v := &secretValue{name: name, refOnly: true}
	fs.Var(v, name, usage+": - for a line of standard input, or @FILE (never the value itself)")
	return &v.s
}

// secretList collects a repeated key ceremony secret (components): "-" or
// "@FILE" only (readSecretRef).
type secretList struct {
	name string
	vs   []string
}

func (l *secretList) String() string { return fmt.Sprint(len(l.vs)) } // never the values

func (l *secretList) Set(x string) error {
	s, err := readSecretRef(l.name, x)
	if err != nil {
		return err
	}
	l.vs = append(l.vs, s)
	return nil
}
