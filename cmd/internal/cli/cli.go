// Package cli runs the command lines of pingate's binaries (cmd/pingate, the
// gateway and its operator tools, and cmd/pingate-dev, the development and
// test tools): flags parsed by github.com/alecthomas/kong from each
// command's struct, help on -h, --help and "help CMD", exit statuses, and
// error lines that never repeat a value given on the command line.
//
// Exit statuses: 0 success (and help asked for), 1 the command failed, 2 a
// usage error (a bad or missing flag or argument, an unknown command, or an
// error wrapping ErrUsage).
//
// A flag's value may be a secret (a PIN, a PIN block, a key component), so an
// error line names the flag, never its value: kong's own parse errors quote
// values ("--n: expected a valid 64 bit int but got "abc""), and are
// rewritten by problem before they are printed. Secret flags themselves are
// typed Secret, SecretRef and SecretRefList (secret.go).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/alecthomas/kong"
)

// ErrUsage marks an error as a usage problem: exit status 2 instead of 1.
var ErrUsage = errors.New("usage")

// Env is what a command's Run method is given: the context (cancelled on
// SIGINT and SIGTERM by main) and where to write. A command prints its
// result on Stdout and returns its error; it never exits the process.
type Env struct {
	Ctx            context.Context
	Stdout, Stderr io.Writer
}

// App describes one binary.
type App struct {
	Name        string     // the binary's name, as typed: "pingate"
	Description string     // one line, shown at the top of the help
	Grammar     func() any // a new command struct for kong, one per run
	Vars        kong.Vars  // values for ${name} in the grammar's tags
}

// HasCommand reports whether app has a top-level command name.
func HasCommand(app App, name string) bool {
	parser, err := kong.New(app.Grammar(), app.Vars)
	if err != nil {
		panic(err)
	}
	for _, n := range parser.Model.Children {
		if n.Name == name {
			return true
		}
	}
	return false
}

// exitRequest carries kong's request to exit (after printing help) out of
// the parse, as a panic recovered by Run: the process is not ended here, so
// Run can be called from tests.
type exitRequest struct{ code int }

// Run executes one command line of app and returns its exit status. Errors
// are printed as a single line on stderr: "NAME CMD: problem". A panic inside
// a command becomes the line "NAME CMD: internal error", so no stack trace
// reaches an operator's terminal.
//
// "NAME help [CMD...]" prints the help of CMD (as "NAME CMD... --help"
// does) and exits 0; NAME alone prints the top-level help and exits 2.
func Run(ctx context.Context, app App, args []string, stdout, stderr io.Writer) (code int) {
	noArgs := len(args) == 0
	if noArgs {
		args = []string{"--help"}
	}
	if args[0] == "help" {
		args = append(append([]string{}, args[1:]...), "--help")
	}
	cmdName := "" // the first word, for the error line's prefix
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmdName = args[0]
	}
	prefix := app.Name
	if cmdName != "" && isWord(cmdName) {
		prefix += " " + cmdName
	}
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(exitRequest); ok {
				code = e.code
				if noArgs && code == 0 {
					code = 2 // the help, but no command was run
				}
				return
			}
			fmt.Fprintf(stderr, "%s: internal error\n", prefix)
			code = 1
		}
	}()
	parser, err := kong.New(app.Grammar(),
		kong.Name(app.Name),
		kong.Description(app.Description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitRequest{code}) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
		app.Vars,
	)
	if err != nil {
		// The grammar is static: a fault here is a programming error.
		panic(err)
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s (run \"%s help%s\")\n", prefix, problem(err, args), app.Name, helpPath(err))
		return 2
	}
	env := &Env{Ctx: ctx, Stdout: stdout, Stderr: stderr}
	if err := kctx.Run(env); err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		fmt.Fprintf(stderr, "%s: %s\n", prefix, msg)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// helpPath is " CMD SUB" of the command a parse error happened in, for the
// hint that ends the error line.
func helpPath(err error) string {
	var pe *kong.ParseError
	if !errors.As(err, &pe) || pe.Context == nil {
		return ""
	}
	var words []string
	for _, p := range pe.Context.Path {
		if p.Command != nil {
			words = append(words, p.Command.Name)
		}
	}
	if len(words) == 0 {
		return ""
	}
	return " " + strings.Join(words, " ")
}

var (
	// valueError: kong's error for a flag or argument value it could not
	// take: "--flag: ..." or "<arg>: ..."; the rest may quote the value.
	valueError = regexp.MustCompile(`^(--[a-z0-9-]+|\[?<[a-z0-9-]+>( \.\.\.)?\]?): `)
	// word: what an unexpected argument must look like to be repeated: a
	// mistyped command word. A PIN, a PAN or a key has digits, or is
	// longer.
	word = regexp.MustCompile(`^[a-z][a-z-]{0,23}$`)
)

func isWord(s string) bool { return word.MatchString(s) }

// problem describes a kong parse error without repeating a value from the
// command line. What it keeps: an unknown flag's name and the flags it
// resembles; a mistyped command word and the commands it resembles; which
// flags or arguments are missing or clash. A value kong could not decode is
// reported by its flag alone, except a secret flag's own refusal, which names
// the flag and where the secret was to come from (readSecret), never the
// secret.
func problem(err error, args []string) string {
	msg := err.Error()
	var msgOut string
	switch {
	case errors.Is(err, ErrSecretSource):
		// Names the flag and the source ("-" or the file), never the secret.
		return msg[strings.Index(msg, ErrSecretSource.Error()):]
	case valueError.MatchString(msg):
		name := valueError.FindStringSubmatch(msg)[1]
		switch {
		case strings.Contains(msg, "; perhaps try "):
			msgOut = "flag " + name + " needs a value (a value that starts with - is written " + name + "=VALUE)"
		case strings.Contains(msg, "expected value value but got") || strings.Contains(msg, `but got "EOL"`):
			msgOut = "flag " + name + " needs a value"
		default:
			msgOut = "invalid value for " + name
		}
	case strings.HasPrefix(msg, "unknown flag "):
		msgOut = msg
	case strings.HasPrefix(msg, "unexpected argument "):
		arg, hint, _ := strings.Cut(strings.TrimPrefix(msg, "unexpected argument "), ", ")
		if isWord(arg) {
			msgOut = "unexpected argument " + arg
			if hint != "" {
				msgOut += ", " + hint
			}
		} else {
			msgOut = "unexpected argument (value not shown)"
		}
	case strings.HasPrefix(msg, "expected one of "):
		msgOut = "missing sub-command: want one of " + strings.TrimPrefix(msg, "expected one of ")
	case strings.HasPrefix(msg, "expected "):
		msgOut = "missing " + strings.TrimPrefix(msg, "expected ")
	case strings.HasPrefix(msg, "missing flags: "),
		strings.HasPrefix(msg, "missing positional arguments "),
		strings.HasSuffix(msg, "can't be used together"),
		strings.HasSuffix(msg, "must be used together"):
		msgOut = msg
	default:
		msgOut = "bad command line"
	}
	// Whatever the message, it must not contain a value given: the last
	// guard, for messages kong may change between versions.
	for _, v := range argValues(args) {
		if strings.Contains(msgOut, v) {
			return "bad command line (a value given is not shown)"
		}
	}
	return msgOut
}

// argValues are the values on a command line that could be secrets:
// arguments that are not flags, and the values of --flag=value, at least
// four characters long (the shortest PIN) and not a command word.
func argValues(args []string) []string {
	var vs []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			_, v, ok := strings.Cut(a, "=")
			if !ok {
				continue
			}
			a = v
		}
		if len(a) >= 4 && !isWord(a) {
			vs = append(vs, a)
		}
	}
	return vs
}

// Example is the text of a command's Help method: one or more example
// command lines, shown under the command's summary by --help. Lines are
// indented so that the help printer keeps them as they are.
func Example(lines ...string) string {
	var b strings.Builder
	b.WriteString("Example:\n\n")
	for _, l := range lines {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// Command is one runnable command of an App, for tests that walk them all.
type Command struct {
	Path        []string // the words after the binary's name: "key", "log", "verify"
	Flags       []string // its flags, "--name", without --help
	Passthrough bool     // its arguments pass through unparsed (no flags declared)
}

// Commands lists app's runnable commands (the leaves of its grammar).
func Commands(app App) []Command {
	parser, err := kong.New(app.Grammar(), app.Vars)
	if err != nil {
		panic(err)
	}
	var out []Command
	var walk func(n *kong.Node, path []string)
	walk = func(n *kong.Node, path []string) {
		if n.Type == kong.CommandNode {
			path = append(append([]string{}, path...), n.Name)
		}
		if len(n.Children) == 0 {
			c := Command{Path: path}
			for _, f := range n.AllFlags(true) {
				for _, fl := range f {
					if fl.Name != "help" {
						c.Flags = append(c.Flags, "--"+fl.Name)
					}
				}
			}
			for _, p := range n.Positional {
				c.Passthrough = c.Passthrough || p.PassthroughMode != kong.PassThroughModeNone
			}
			out = append(out, c)
			return
		}
		for _, ch := range n.Children {
			walk(ch, path)
		}
	}
	walk(parser.Model.Node, nil)
	return out
}

// Result prints a command's one-line (or multi-line) result on Stdout, or
// returns err when there is one: the usual end of a Run method.
func (e *Env) Result(out string, err error) error {
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.Stdout, out)
	return err
}
