package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"pingate/cmd/internal/cli"
)

// servePprofCmd runs `pingate serve` with the serve flags and, while it
// runs, net/http/pprof on its own listener: profiles are never served on the
// gateway's HTTP or admin ports, and only when asked for. The address must be
// a loopback one: a profile shows memory contents' shapes and timings that an
// outsider has no business seeing.
type servePprofCmd struct {
	Pprof      string `name:"pprof" required:"" placeholder:"HOST:PORT" help:"loopback address for net/http/pprof (required)"`
	serveFlags `embed:""`
}

func (*servePprofCmd) Help() string {
	return cli.Example("pingate serve-pprof --pprof 127.0.0.1:6060 --config pingate.yaml")
}

func (c *servePprofCmd) Run(env *cli.Env) error {
	ctx, stdout, stderr, addr := env.Ctx, env.Stdout, env.Stderr, c.Pprof
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: --pprof: want HOST:PORT", errUsage)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%w: --pprof: only a loopback address is allowed", errUsage)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(stderr, "pprof on http://%s/debug/pprof/\n", ln.Addr())
	runErr := runServe(ctx, c.serveFlags, stdout, stderr)
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}
