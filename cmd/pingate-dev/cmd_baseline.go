package main

import (
	"context"
	"fmt"
	"net"

	"pingate/cmd/internal/cli"
	"pingate/integration/loadgen"
)

// baselineCmd: with --listen, the echo server until interrupted (with
// --relay, the bare relay in front of an echo server instead); without, the
// client, against --target or, when that is empty, an echo server of its own
// in the same process (loadgen.RunBaseline).
type baselineCmd struct {
	Listen       string `name:"listen" placeholder:"ADDR" help:"run the echo server on ADDR until interrupted"`
	Relay        string `name:"relay" placeholder:"HOST:PORT" help:"with --listen: run the bare moov relay instead, forwarding each request to the echo server at HOST:PORT"`
	Target       string `name:"target" placeholder:"HOST:PORT" help:"echo server (empty: one in this process)"`
	trafficFlags `embed:""`
}

func (*baselineCmd) Help() string {
	return cli.Example("pingate-dev bench-baseline --listen 127.0.0.1:9600",
		"pingate-dev bench-baseline --listen 127.0.0.1:9601 --relay 127.0.0.1:9600",
		"pingate-dev bench-baseline --target 127.0.0.1:9601 --duration 30s --json")
}

func (c *baselineCmd) Run(env *cli.Env) error {
	ctx := env.Ctx
	if c.Relay != "" && c.Listen == "" {
		return fmt.Errorf("%w: --relay needs --listen", errUsage)
	}
	if c.Listen != "" {
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			return err
		}
		if c.Relay != "" {
			fmt.Fprintf(env.Stdout, "relay on %s to %s\n", ln.Addr(), c.Relay)
			return loadgen.ServeRelay(ctx, ln, c.Relay)
		}
		fmt.Fprintf(env.Stdout, "echo server on %s\n", ln.Addr())
		return loadgen.ServeEcho(ctx, ln)
	}
	p, err := c.params(c.Target)
	if err != nil {
		return err
	}
	if err := p.ValidateTraffic(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if p.Target == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- loadgen.ServeEcho(sctx, ln) }()
		defer func() { cancel(); <-done }()
		p.Target = ln.Addr().String()
	}
	rep, err := loadgen.RunBaseline(ctx, p, c.progressTo(env.Stderr))
	if err != nil {
		return err
	}
	return rep.Write(env.Stdout, c.JSON)
}
