package main

import (
	"errors"
	"fmt"
	"net"

	"pingate/cmd/internal/cli"
	"pingate/integration/payshield/hsmsim"
	"pingate/pinblock"
)

// hsmSimCmd runs integration/payshield/hsmsim: a payShield-protocol HSM for
// development, the demo and CI, under the published Thales test variant LMK,
// or with --key-block the published test key-block LMK (so never for real
// keys). It prints the address it listens on as the only
// line of stdout once it accepts connections, and stops on SIGTERM/SIGINT.
type hsmSimCmd struct {
	Addr   string `name:"addr" default:"127.0.0.1:1500" help:"listen address"`
	Header int    `name:"header" default:"4" help:"message header length (0-32), echoed in every response"`
	Spool  string `name:"mailer-spool" placeholder:"DIR" help:"directory for PIN mailers printed by PE (empty: PE answers 16, printer not ready)"`
	// KeyBlock runs the test key-block LMK (LMK identifier 01): keys are
	// Thales key blocks, key scheme S.
	KeyBlock    bool `name:"key-block" help:"run the published Thales test key-block LMK (keys are key blocks, scheme S; LMK id 01) instead of the test variant LMK"`
	profileFlag `embed:""`
}

func (*hsmSimCmd) Help() string {
	return cli.Example("pingate-dev hsm-sim --addr 127.0.0.1:1500 --header 4")
}

func (c *hsmSimCmd) Run(env *cli.Env) error {
	if c.Header < 0 || c.Header > 32 {
		return fmt.Errorf("%w: --header must be 0-32", errUsage)
	}
	stop, err := c.start()
	if err != nil {
		return err
	}
	return errors.Join(c.serve(env), stop())
}

func (c *hsmSimCmd) serve(env *cli.Env) error {
	cfg := hsmsim.Config{HeaderLen: c.Header, KeyBlock: c.KeyBlock}
	if c.Spool != "" {
		p, err := pinblock.NewSpoolPrinter(c.Spool)
		if err != nil {
			return err
		}
		cfg.Printer = p
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	s := hsmsim.New(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	fmt.Fprintln(env.Stdout, ln.Addr().String())
	select {
	case <-env.Ctx.Done():
		s.Close()
		<-done
		return nil
	case err := <-done:
		s.Close()
		return err
	}
}
