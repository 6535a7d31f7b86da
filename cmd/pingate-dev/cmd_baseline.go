package main

import (
	"context"
	"fmt"
	"net"

	"pingate/cmd/internal/cli"
	"pingate/integration/loadgen"
)

// baselineCmd: with --listen, the echo server until interrupted; without, the
// client, against --target or, when that is empty, an echo server of its own
// in the same process (loadgen.RunBaseline).
type baselineCmd struct {
	Listen       string `name:"listen" placeholder:"ADDR" help:"run the echo server on ADDR until interrupted"`
	Target       string `name:"target" placeholder:"HOST:PORT" help:"echo server (empty: one in this process)"`
	trafficFlags `embed:""`
}

func (*baselineCmd) Help() string {
	return cli.Example("pingate-dev bench-baseline --listen 127.0.0.1:9600",
		"pingate-dev bench-baseline --target 127.0.0.1:9600 --duration 30s --json")
}

func (c *baselineCmd) Run(env *cli.Env) error {
	ctx := env.Ctx
	if c.Listen != "" {
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			return err
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
