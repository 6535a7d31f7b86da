package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"pingate/cmd/internal/cli"
)

// newFlagSet returns a flag set that reports errors to the caller instead of
// printing usage text and exiting.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args into fs; a bad flag is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s", errUsage, flagProblem(err))
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument (%d extra)", errUsage, fs.NArg())
	}
	return nil
}

// flagProblem describes a flag parse error without repeating the value given:
// flag's own message quotes it, and a value may be a PIN or a key.
func flagProblem(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, cli.ErrSecretSource.Error()):
		return msg[strings.Index(msg, cli.ErrSecretSource.Error()):]
	case strings.HasPrefix(msg, "invalid value "):
		if i := strings.LastIndex(msg, " for flag "); i >= 0 {
			name, _, _ := strings.Cut(msg[i+len(" for flag "):], ":")
			return "invalid value for flag " + name
		}
		return "invalid flag value"
	case strings.HasPrefix(msg, "flag provided but not defined: "),
		strings.HasPrefix(msg, "flag needs an argument: "),
		strings.HasPrefix(msg, "bad flag syntax: "):
		return msg
	}
	return "bad flags"
}
