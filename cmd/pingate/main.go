// Command pingate is the PIN-operation gateway and its operator tools.
//
// Usage: pingate <command> [flags]. Run "pingate help" for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one sub-command. run returns an error to print on one line of
// stderr; it never exits the process itself.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is filled by the init functions of the cmd_*.go files, one file per
// command family.
var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("pingate: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error as a usage problem: exit status 2 instead of 1.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status. Errors are printed
// as a single line on stderr; a panic inside a command is turned into a
// one-line error too, so no stack trace reaches an operator's terminal.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "pingate: unknown command %q (run \"pingate help\")\n", args[0])
		return 2
	}
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "pingate %s: internal error\n", c.name)
			code = 1
		}
	}()
	if err := c.run(ctx, args[1:], stdout, stderr); err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		fmt.Fprintf(stderr, "pingate %s: %s\n", c.name, msg)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "pingate — PIN change, reset and unblock gateway")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].usage)
	}
}

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
	case strings.Contains(msg, errSecretSource.Error()):
		// A secret flag's own error names the flag and where the secret was
		// to come from, never the secret (readSecret).
		return msg[strings.Index(msg, errSecretSource.Error()):]
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
