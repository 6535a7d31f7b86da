// Command pingate-dev holds pingate's development and test tools, kept out of
// the production binary: tools that reveal a PIN or take clear keys (pin),
// simulators that answer under published test keys (issuer-sim, hsm-sim),
// the load generator and its baseline (integration/loadgen), and
// development certificates (dev-certs). docs/operations.md ("Two binaries")
// says why. Nothing here is needed to run a gateway.
//
// Usage: pingate-dev <command> [flags]. Run "pingate-dev help" for the list
// and "pingate-dev help CMD" for a command's flags and an example.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"pingate/cmd/internal/cli"
	"pingate/integration/gateway"
	"pingate/integration/loadgen"
)

// devCLI is the command line of pingate-dev.
type devCLI struct {
	Pin      pinCmd      `cmd:"" help:"encode, decode or translate an ISO 9564-1 PIN block, TDES, AES or SM4 (clear keys and PINs: test data only)"`
	HSMSim   hsmSimCmd   `cmd:"" name:"hsm-sim" help:"run a payShield host-command simulator (public Thales test LMK) until SIGTERM"`
	DevCerts devCertsCmd `cmd:"" name:"dev-certs" help:"make a development CA, server and branch client certificates for the branch API"`

	Load          loadCmd      `cmd:"" help:"drive a gateway with ATM/branch PIN traffic over TCP and report throughput and latency"`
	BenchBaseline baselineCmd  `cmd:"" name:"bench-baseline" help:"benchmark baseline: bare moov-io/iso8583 echo server and client, the gateway's round trip without the gateway"`
	IssuerSim     issuerSimCmd `cmd:"" name:"issuer-sim" help:"run a standalone issuer simulator (development keys) until SIGTERM"`
}

// app is pingate-dev's command line for cli.Run.
var app = cli.App{
	Name:        "pingate-dev",
	Description: "pingate-dev — pingate's development and test tools (never for live keys or PINs)",
	Grammar:     func() any { return &devCLI{} },
	Vars: kong.Vars{
		"pinformat":   pinFormatHelp,
		"pinalg":      algFlagHelp,
		"institution": gateway.DevBranchAcquirer,
		"devbins":     strings.Join(loadgen.DevBINs, ","),
		"sm4acquirer": loadgen.SM4Acquirer,
	},
}

// errUsage marks an error as a usage problem: exit status 2 instead of 1.
var errUsage = cli.ErrUsage

func main() {
	// Here, not in the commands' Run: the tests run commands in their own
	// process, which must keep its runtime settings.
	if len(os.Args) > 1 && (os.Args[1] == "load" || os.Args[1] == "issuer-sim" || os.Args[1] == "hsm-sim") {
		lightRuntime()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status (cli.Run).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, app, args, stdout, stderr)
}
