// Command pingate is the PIN-operation gateway and its operator tools.
//
// Usage: pingate <command> [flags]. Run "pingate help" for the list and
// "pingate help CMD" (or "pingate CMD --help") for a command's flags.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"pingate/cmd/internal/cli"
	"pingate/integration/records"
	"pingate/pinblock/keystore"
)

// pingateCLI is the command line of pingate: one field per command, its flags
// declared on the command's struct in the command's cmd_*.go file.
type pingateCLI struct {
	Serve       serveCmd       `cmd:"" help:"run the gateway (embedded defaults without --config)"`
	CheckConfig checkConfigCmd `cmd:"" name:"check-config" help:"validate a config file and name every problem"`
	ServePprof  servePprofCmd  `cmd:"" name:"serve-pprof" help:"serve, plus Go pprof profiles on --pprof ADDR (profiling only; loopback)"`
	Key         keyCmd         `cmd:"" help:"key custody: kcv, lmk-generate, init, import, import-tr31, combine, generate, rotate, remove, export-tr31, list, log verify, log migrate"`
	HSMKey      hsmKeyCmd      `cmd:"" name:"hsm-key" help:"key ceremonies in the payShield HSMs: generate, import, combine, kcv, list (security.payshield.key_file, custody log)"`
	Events      eventsCmd      `cmd:"" help:"print outcome events: events tail --journal DIR | --admin HOST:PORT | --kafka BROKERS --topic T"`
	Records     recordsCmd     `cmd:"" help:"records service (PostgreSQL): migrate, run, statements, replay"`
	Demo        demoCmd        `cmd:"" help:"run the gateway and an issuer simulator and play a scripted day of PIN operations"`
}

// app is pingate's command line for cli.Run.
var app = cli.App{
	Name:        "pingate",
	Description: "pingate — PIN change, reset and unblock gateway",
	Grammar:     func() any { return &pingateCLI{} },
	Vars:        cliVars,
}

// errUsage marks an error as a usage problem: exit status 2 instead of 1.
var errUsage = cli.ErrUsage

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status (cli.Run).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, app, args, stdout, stderr)
}

// commandExists reports whether pingate has a top-level command name.
func commandExists(name string) bool { return cli.HasCommand(app, name) }

// cliVars fill the ${name} references in the commands' tags.
var cliVars = kong.Vars{
	"grace": keystore.DefaultGrace.String(),

	"pgenv":        postgresEnv,
	"recordstopic": records.DefaultTopic,
	"recordsgroup": records.DefaultGroup,
}
