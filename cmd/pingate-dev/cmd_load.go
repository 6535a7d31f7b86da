package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"pingate/cmd/internal/cli"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
)

// trafficFlags are the flags load and bench-baseline share.
type trafficFlags struct {
	Concurrency string        `name:"concurrency" default:"4x8" help:"requests in flight: N, or CxI = C connections per acquirer × I in flight on each"`
	Rate        float64       `name:"rate" help:"open loop: start this many requests per second (0: closed loop, each slot sends again when answered)"`
	Duration    time.Duration `name:"duration" default:"10s" help:"how long to measure (after the warm-up)"`
	Warmup      time.Duration `name:"warmup" default:"1s" help:"traffic before measuring starts, not counted"`
	Requests    int64         `name:"requests" help:"stop after this many measured requests (0: no limit)"`
	Timeout     time.Duration `name:"timeout" default:"5s" help:"a request not answered within this is an error"`
	Progress    time.Duration `name:"progress" default:"1s" help:"live progress interval on stderr"`
	JSON        bool          `name:"json" help:"print one JSON object on one line instead of the report"`
	Quiet       bool          `name:"quiet" help:"no live progress on stderr"`
	CPU         string        `name:"cpu" placeholder:"NAME=PID,..." help:"also report the CPU per answered request of these processes (/proc/PID/stat over the measured time)"`
}

// params fills the traffic part of loadgen.Params; a bad --concurrency is a
// usage error.
func (f *trafficFlags) params(target string) (loadgen.Params, error) {
	p := loadgen.Params{Target: target, Rate: f.Rate, Duration: f.Duration, Warmup: f.Warmup,
		MaxRequests: f.Requests, Timeout: f.Timeout, Progress: f.Progress}
	var err error
	if p.Conns, p.InFlight, err = loadgen.ParseConcurrency(f.Concurrency); err != nil {
		return p, fmt.Errorf("%w: %v", errUsage, err)
	}
	if p.CPU, err = loadgen.ParseWatched(f.CPU); err != nil {
		return p, fmt.Errorf("%w: %v", errUsage, err)
	}
	return p, nil
}

// progressTo is where live progress goes: stderr, unless --quiet.
func (f *trafficFlags) progressTo(stderr io.Writer) io.Writer {
	if f.Quiet || f.Progress <= 0 {
		return nil
	}
	return stderr
}

// loadCmd drives a gateway with the traffic of integration/loadgen.
type loadCmd struct {
	Target       string `name:"target" default:"127.0.0.1:8583" placeholder:"HOST:PORT" help:"gateway acquirer listener"`
	trafficFlags `embed:""`
	Mix          string `name:"mix" default:"change=80,reset=10,unblock=10" help:"operation mix (weights)"`
	BINs         string `name:"bins" default:"${devbins}" help:"card ranges of the issuer simulator's population, comma-separated"`
	Seed         int64  `name:"seed" default:"1" help:"issuer simulator population seed"`
	PerBIN       int    `name:"per-bin" default:"10000" help:"cards per BIN in the simulator's population"`
	PANLength    int    `name:"pan-length" default:"16" help:"PAN length of the population"`
	CardOffset   int    `name:"card-offset" help:"first card of the population to use (runs against one simulator should use disjoint cards)"`
	Cards        int    `name:"cards" help:"cards to use from --card-offset (0: the rest of the population)"`
	Terminals    int    `name:"terminals" default:"10000" help:"distinct terminal ids per acquirer, used round-robin"`
	RandSeed     uint64 `name:"rand-seed" help:"seed of the operation/card choice (0: random)"`
	SM4Share     int    `name:"sm4-share" default:"20" help:"percent of PIN changes sent by the SM4 ATM network (acquirer ${sm4acquirer}, SM4-0 blocks); 0 sends none"`
	profileFlag  `embed:""`
}

func (*loadCmd) Help() string {
	return cli.Example("pingate-dev load --target 127.0.0.1:8583 --duration 30s --concurrency 4x8 --mix change=80,reset=10,unblock=10")
}

func (c *loadCmd) Run(env *cli.Env) error {
	p, err := c.params(c.Target)
	if err != nil {
		return err
	}
	if p.Mix, err = loadgen.ParseMix(c.Mix); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	p.Pop = issuersim.Population{Seed: c.Seed, BINs: strings.Split(c.BINs, ","), PerBIN: c.PerBIN, Length: c.PANLength}
	p.Offset, p.Cards, p.Terminals, p.SM4Share = c.CardOffset, c.Cards, c.Terminals, c.SM4Share
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if p.Seed = c.RandSeed; p.Seed == 0 {
		p.Seed = rand.Uint64()
	}
	stop, err := c.start()
	if err != nil {
		return err
	}
	rep, err := loadgen.Run(env.Ctx, p, c.progressTo(env.Stderr))
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	return rep.Write(env.Stdout, c.JSON)
}
