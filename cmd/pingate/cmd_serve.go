package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"pingate/cmd/internal/cli"
	"pingate/integration/gateway"
	"pingate/integration/logredact"
)

// serveFlags are the flags that shape the configuration; each overrides
// the config file (or the embedded development config without --config).
type serveFlags struct {
	Config     string `name:"config" placeholder:"FILE" help:"YAML config file (default: the embedded development config)"`
	Production bool   `name:"production" help:"refuse development keys and the in-process issuer simulator"`
	Redis      string `name:"redis" placeholder:"HOST:PORT,..." help:"Redis address(es) for shared limits, comma-separated"`
	Kafka      string `name:"kafka" placeholder:"HOST:PORT,..." help:"Kafka broker(s) for outcome events, comma-separated"`
	Topic      string `name:"kafka-topic" placeholder:"TOPIC" help:"Kafka topic for outcome events"`
	AcqAddr    string `name:"acquirer-addr" placeholder:"HOST:PORT" help:"ISO 8583 acquirer listener address"`
	HTTPAddr   string `name:"http-addr" placeholder:"HOST:PORT" help:"HTTP address (health, metrics)"`
	AdminAddr  string `name:"admin-addr" placeholder:"HOST:PORT" help:"admin HTTP address (POST /admin/reload)"`
	BranchAddr string `name:"branch-addr" placeholder:"HOST:PORT" help:"branch API (HTTPS) listener address"`
	Instance   string `name:"instance" help:"instance name in events and logs (overrides the config; e.g. the pod name)"`
}

// serveCmd runs the gateway until SIGTERM or SIGINT; SIGHUP reloads.
type serveCmd struct {
	serveFlags `embed:""`
}

func (*serveCmd) Help() string {
	return cli.Example("pingate serve", "pingate serve --config /etc/pingate/pingate.yaml --production --instance $(hostname)")
}

func (c *serveCmd) Run(env *cli.Env) error {
	return runServe(env.Ctx, c.serveFlags, env.Stdout, env.Stderr)
}

func (sf *serveFlags) config0() (gateway.Config, error) {
	cfg := gateway.EmbeddedConfig()
	if sf.Config != "" {
		var err error
		if cfg, err = gateway.LoadConfig(sf.Config); err != nil {
			return gateway.Config{}, err
		}
	}
	if sf.Production {
		cfg.Production = true
	}
	if sf.Redis != "" {
		cfg.Limits.Backend = "redis"
		cfg.Limits.Addrs = strings.Split(sf.Redis, ",")
	}
	if sf.Kafka != "" {
		cfg.Events.KafkaBrokers = strings.Split(sf.Kafka, ",")
		if cfg.Events.KafkaTopicPartitions == 0 {
			cfg.Events.KafkaTopicPartitions = 3 // --kafka is for trying things out: make the topic if missing
		}
	}
	if sf.Topic != "" {
		cfg.Events.KafkaTopic = sf.Topic
	}
	if sf.AcqAddr != "" {
		cfg.Acquirer.Addr = sf.AcqAddr
	}
	if sf.HTTPAddr != "" {
		cfg.HTTP.Addr = sf.HTTPAddr
	}
	if sf.AdminAddr != "" {
		cfg.Admin.Addr = sf.AdminAddr
	}
	if sf.BranchAddr != "" {
		cfg.Branch.Addr = sf.BranchAddr
	}
	if sf.Instance != "" {
		cfg.Instance = sf.Instance
	}
	return cfg, nil
}

func runServe(ctx context.Context, sf serveFlags, stdout, stderr io.Writer) error {
	cfg, err := sf.config0()
	if err != nil {
		return err
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		return err
	}
	log := logredact.New(cfg.Log, stderr)
	// Packages that log through slog's default logger (storage failures in
	// the journal) get the same handler: JSON, redaction, request ids.
	slog.SetDefault(log)
	for _, w := range cfg.WithDefaults().ProductionWarnings() {
		log.Warn("production: " + w)
	}
	// SIGTERM or SIGINT starts a graceful shutdown; another one forces exit.
	// SIGHUP reloads the configuration. The channels are registered before
	// the gateway starts so that no signal is missed.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)

	g, err := gateway.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	cfg.Routing.Routes = nil // the gateway's BIN table holds them now; cfg lives until shutdown
	g.SetReloadSource(sf.config0)
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- g.Run(runCtx) }()
	reloads := reloadOnSignal(runCtx, g, hups)

	admin := g.AdminAddr()
	if admin == "" {
		admin = "off"
	}
	fmt.Fprintf(stdout, "pingate serving: acquirer %s, http %s, admin %s\n", g.AcquirerAddr(), g.HTTPAddr(), admin)
	var runErr error
	// pendingSame is how many signals still to arrive on sigs are the one
	// that already started the shutdown: when main's signal context saw the
	// signal first, the same signal is also delivered to sigs, and only a
	// signal after it forces exit.
	pendingSame := 0
	select {
	case <-ctx.Done():
		if bySignal(ctx) {
			pendingSame = 1
		}
		log.Info("shutting down", "cause", context.Cause(ctx).Error())
	case s := <-sigs:
		log.Info("shutting down", "signal", s.String())
	case runErr = <-ran:
		log.Error("listener failed", "err", runErr)
		ran <- nil // put back for the drain below
	}
	stopRun()
	reloads()
	grace := cfg.WithDefaults().Acquirer.ShutdownGrace
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	log.Info("draining", "grace", grace.String())
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(sctx) }()
	for {
		select {
		case err = <-done:
			<-ran
			if err != nil {
				log.Error("shutdown incomplete", "err", err)
			} else {
				log.Info("stopped")
			}
			return errors.Join(runErr, err)
		case <-sigs:
			if pendingSame > 0 {
				pendingSame--
				continue
			}
			// main exits when this returns; the drain is abandoned.
			log.Error("second signal: exiting without draining")
			return errors.New("second signal: exited without draining")
		}
	}
}

// bySignal reports whether ctx, done, was canceled by main's
// signal.NotifyContext: its cause is then the signal's error, not
// context.Canceled or DeadlineExceeded themselves. Compared by identity: the
// signal's error claims to be context.Canceled under errors.Is, which once
// made the one SIGTERM's second delivery read as a second signal and cut the
// drain short.
func bySignal(ctx context.Context) bool {
	c := context.Cause(ctx)
	return c != nil && c != context.Canceled && c != context.DeadlineExceeded
}

// reloadOnSignal reloads g on every signal from hups until ctx ends or the
// returned stop function is called; stop waits for a reload in progress.
func reloadOnSignal(ctx context.Context, g *gateway.Gateway, hups <-chan os.Signal) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-hups:
				_, _ = g.Reload("sighup") // logged and counted by Reload
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// checkConfigCmd validates a config file and names every problem.
type checkConfigCmd struct {
	File string `arg:"" name:"file" help:"the YAML config file to check"`
}

func (*checkConfigCmd) Help() string {
	return cli.Example("pingate check-config /etc/pingate/pingate.yaml")
}

func (c *checkConfigCmd) Run(env *cli.Env) error {
	stdout := env.Stdout
	cfg, err := gateway.LoadConfig(c.File)
	if err != nil {
		return err
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		return err
	}
	if err := gateway.CheckKeyModes(cfg); err != nil {
		return err
	}
	if err := gateway.CheckPayShieldFiles(cfg); err != nil {
		return err
	}
	if err := gateway.CheckKeyLabels(cfg); err != nil {
		return err
	}
	for _, w := range cfg.WithDefaults().ProductionWarnings() {
		fmt.Fprintln(stdout, "warning: production: "+w)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
