package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"pingate/integration/issuersim"
	"pingate/iso8583"
)

// runIssuerSim runs integration/issuersim as its own process: the issuer
// host of the compose stack and of the shutdown tests. It answers the issuer
// dialect under the published development issuer keys (DevIssuerZPK,
// DevIssuerPVK), so it is for development and test only. It prints the
// address it listens on as the only line of stdout once it accepts
// connections, and on SIGTERM or SIGINT stops accepting, lets in-flight
// answers finish (at most --grace) and returns.
func runIssuerSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("issuer-sim")
	addr := fs.String("addr", "127.0.0.1:9583", "listen address")
	framing := fs.String("framing", "binary2", "framing: binary2 or ascii4")
	seed := fs.Int64("seed", 1, "seed of the card population")
	bins := fs.String("bins", strings.Join(devBINs, ","), "card ranges, comma-separated")
	perBIN := fs.Int("per-bin", 10000, "cards per range")
	latency := fs.Duration("latency", 0, "delay before every answer to a PIN operation")
	failRate := fs.Float64("fail-rate", 0, "share of PIN operations answered 96 (0–1)")
	dropRate := fs.Float64("drop-rate", 0, "share of PIN operations never answered (0–1)")
	grace := fs.Duration("grace", 10*time.Second, "how long in-flight answers get on SIGTERM")
	verbose := fs.Bool("v", false, "log to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fr, err := iso8583.ParseFraming(*framing)
	if err != nil {
		return fmt.Errorf("%w: --framing: want binary2 or ascii4", errUsage)
	}
	if *latency < 0 || *grace < 0 {
		return fmt.Errorf("%w: --latency and --grace must not be negative", errUsage)
	}
	zpk, pvk, err := issuersim.DevelopmentKeys()
	if err != nil {
		return err
	}
	more, err := issuersim.DevelopmentKeyIndexZPKs()
	if err != nil {
		return err
	}
	log := newLogger(LogConfig{}, io.Discard)
	if *verbose {
		log = newLogger(LogConfig{}, stderr)
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
		Server: iso8583.Config{Framing: fr}, Logger: log,
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
