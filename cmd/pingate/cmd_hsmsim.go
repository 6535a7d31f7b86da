package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"pingate/integration/payshield/hsmsim"
	"pingate/pinblock"
)

// runHSMSim runs integration/payshield/hsmsim: a payShield-protocol HSM for
// development, the demo and CI, under the published Thales test variant LMK
// (so never for real keys). It prints the address it listens on as the only
// line of stdout once it accepts connections, and stops on SIGTERM/SIGINT.
func runHSMSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hsm-sim")
	addr := fs.String("addr", "127.0.0.1:1500", "listen address")
	header := fs.Int("header", 4, "message header length (0-32), echoed in every response")
	spool := fs.String("mailer-spool", "", "directory for PIN mailers printed by PE (empty: PE answers 16, printer not ready)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *header < 0 || *header > 32 {
		return fmt.Errorf("%w: --header %d is not 0-32", errUsage, *header)
	}
	cfg := hsmsim.Config{HeaderLen: *header}
	if *spool != "" {
		p, err := pinblock.NewSpoolPrinter(*spool)
		if err != nil {
			return err
		}
		cfg.Printer = p
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	s := hsmsim.New(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	fmt.Fprintln(stdout, ln.Addr().String())
	select {
	case <-ctx.Done():
		s.Close()
		<-done
		return nil
	case err := <-done:
		s.Close()
		return err
	}
}

// startDemoHSM runs a payShield simulator in process on a loopback port for
// `pingate demo --hsm`.
func startDemoHSM() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	s := hsmsim.New(hsmsim.Config{HeaderLen: 4})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	return ln.Addr().String(), func() { s.Close(); <-done }, nil
}
