package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"pingate/cmd/internal/cli"
	"pingate/integration/issuersim"
	"pingate/integration/logredact"
	"pingate/iso8583"
)

// runIssuerSim runs integration/issuersim as its own process: the issuer
// host of the compose stack and of the shutdown tests. It answers the issuer
// dialect (or the one of --dialect) under the published development issuer keys (DevIssuerZPK,
// DevIssuerPVK), so it is for development and test only. It prints the
// address it listens on as the only line of stdout once it accepts
// connections, and on SIGTERM or SIGINT stops accepting, lets in-flight
// answers finish (at most --grace) and returns.
type issuerSimCmd struct {
	Addr        string        `name:"addr" default:"127.0.0.1:9583" help:"listen address"`
	Framing     string        `name:"framing" default:"binary2" help:"framing: binary2 or ascii4"`
	Seed        int64         `name:"seed" default:"1" help:"seed of the card population"`
	BINs        string        `name:"bins" default:"${devbins}" help:"card ranges, comma-separated"`
	PerBIN      int           `name:"per-bin" default:"10000" help:"cards per range"`
	Latency     time.Duration `name:"latency" help:"delay before every answer to a PIN operation"`
	FailRate    float64       `name:"fail-rate" help:"share of PIN operations answered 96 (0–1)"`
	DropRate    float64       `name:"drop-rate" help:"share of PIN operations never answered (0–1)"`
	Dialect     string        `name:"dialect" placeholder:"FILE" help:"speak the issuer dialect of this spec file (.json, .yaml, .yml; docs/iso8583-issuer.md); default the built-in issuer dialect"`
	Grace       time.Duration `name:"grace" default:"10s" help:"how long in-flight answers get on SIGTERM"`
	Verbose     bool          `name:"verbose" short:"v" help:"log to stderr"`
	profileFlag `embed:""`
}

func (*issuerSimCmd) Help() string {
	return cli.Example("pingate-dev issuer-sim --addr 127.0.0.1:9583 --seed 1 --per-bin 10000 --latency 20ms -v")
}

func (c *issuerSimCmd) Run(env *cli.Env) error {
	stop, err := c.start()
	if err != nil {
		return err
	}
	err = runIssuerSim(env.Ctx, *c, env.Stdout, env.Stderr)
	return errors.Join(err, stop())
}

func runIssuerSim(ctx context.Context, c issuerSimCmd, stdout, stderr io.Writer) error {
	addr, framing, seed, bins, perBIN := &c.Addr, &c.Framing, &c.Seed, &c.BINs, &c.PerBIN
	latency, failRate, dropRate, grace, verbose := &c.Latency, &c.FailRate, &c.DropRate, &c.Grace, &c.Verbose
	fr, err := iso8583.ParseFraming(*framing)
	if err != nil {
		return fmt.Errorf("%w: --framing: want binary2 or ascii4", errUsage)
	}
	if *latency < 0 || *grace < 0 {
		return fmt.Errorf("%w: --latency and --grace must not be negative", errUsage)
	}
	dialect := iso8583.IssuerDialect
	if c.Dialect != "" {
		if dialect, err = iso8583.LoadDialect("issuer-sim", c.Dialect); err != nil {
			return fmt.Errorf("%w: --dialect: %v", errUsage, err)
		}
	}
	zpk, pvk, err := issuersim.DevelopmentKeys()
	if err != nil {
		return err
	}
	more, err := issuersim.DevelopmentKeyIndexZPKs()
	if err != nil {
		return err
	}
	log := logredact.New(logredact.Config{}, io.Discard)
	if *verbose {
		log = logredact.New(logredact.Config{}, stderr)
	}
	var binList []string
	for _, b := range strings.Split(*bins, ",") {
		if b = strings.TrimSpace(b); b != "" {
			binList = append(binList, b)
		}
	}
	sim, err := issuersim.New(issuersim.Config{
		Population: issuersim.Population{Seed: *seed, BINs: binList, PerBIN: *perBIN},
		ZPK:        zpk, KeyIndexZPKs: more, PVK: pvk, Latency: *latency, FailRate: *failRate, DropRate: *dropRate,
		// GatherWrites: answers to one segment of requests in one write
		// (the tool runs on one P, lightRuntime).
		Dialect: dialect, Server: iso8583.Config{Framing: fr, GatherWrites: true}, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- sim.Server().Serve(context.WithoutCancel(ctx), ln) }()
	fmt.Fprintln(stdout, ln.Addr().String())
	log.Info("issuer simulator listening", "addr", ln.Addr().String(), "cards", binList, "per_bin", *perBIN)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	err = sim.Server().Shutdown(sctx)
	if serr := <-served; serr != nil && !errors.Is(serr, iso8583.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	log.Info("issuer simulator stopped", "requests", sim.Requests.Load(), "reversals", sim.Reversals.Load())
	return err
}
