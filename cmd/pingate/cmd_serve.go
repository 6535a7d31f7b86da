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

	"pingate/integration/gateway"

	"pingate/integration/logredact"
)

// serveFlags are the flags that shape the configuration.
type serveFlags struct {
	config, redis, kafka, topic, acqAddr, httpAddr, adminAddr, instance string
	production                                                          bool
}

func (sf *serveFlags) config0() (gateway.Config, error) {
	cfg := gateway.EmbeddedConfig()
	if sf.config != "" {
		var err error
		if cfg, err = gateway.LoadConfig(sf.config); err != nil {
			return gateway.Config{}, err
		}
	}
	if sf.production {
		cfg.Production = true
	}
	if sf.redis != "" {
		cfg.Limits.Backend = "redis"
		cfg.Limits.Addrs = strings.Split(sf.redis, ",")
	}
	if sf.kafka != "" {
		cfg.Events.KafkaBrokers = strings.Split(sf.kafka, ",")
		if cfg.Events.KafkaTopicPartitions == 0 {
			cfg.Events.KafkaTopicPartitions = 3 // --kafka is for trying things out: make the topic if missing
		}
	}
	if sf.topic != "" {
		cfg.Events.KafkaTopic = sf.topic
	}
	if sf.acqAddr != "" {
		cfg.Acquirer.Addr = sf.acqAddr
	}
	if sf.httpAddr != "" {
		cfg.HTTP.Addr = sf.httpAddr
	}
	if sf.adminAddr != "" {
		cfg.Admin.Addr = sf.adminAddr
	}
	if sf.instance != "" {
		cfg.Instance = sf.instance
	}
	return cfg, nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve")
	var sf serveFlags
	fs.StringVar(&sf.config, "config", "", "YAML config file (default: the embedded development config)")
	fs.BoolVar(&sf.production, "production", false, "refuse development keys and the in-process issuer simulator")
	fs.StringVar(&sf.redis, "redis", "", "Redis address(es) for shared limits, comma-separated")
	fs.StringVar(&sf.kafka, "kafka", "", "Kafka broker(s) for outcome events, comma-separated")
	fs.StringVar(&sf.topic, "kafka-topic", "", "Kafka topic for outcome events")
	fs.StringVar(&sf.acqAddr, "acquirer-addr", "", "ISO 8583 acquirer listener address")
	fs.StringVar(&sf.httpAddr, "http-addr", "", "HTTP address (health, metrics)")
	fs.StringVar(&sf.adminAddr, "admin-addr", "", "admin HTTP address (POST /admin/reload)")
	fs.StringVar(&sf.instance, "instance", "", "instance name in events and logs (overrides the config; e.g. the pod name)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
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
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
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

func runCheckConfig(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("check-config")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: pingate check-config FILE", errUsage)
	}
	cfg, err := gateway.LoadConfig(fs.Arg(0))
	if err != nil {
		return err
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		return err
	}
	for _, w := range cfg.WithDefaults().ProductionWarnings() {
		fmt.Fprintln(stdout, "warning: production: "+w)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
