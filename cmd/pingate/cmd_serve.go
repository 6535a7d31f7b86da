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
	"syscall"
)

func init() {
	register(command{name: "serve", usage: "run the gateway (embedded defaults without --config)", run: runServe})
	register(command{name: "check-config", usage: "validate a config file and name every problem", run: runCheckConfig})
}

// serveFlags are the flags that shape the configuration.
type serveFlags struct {
	config, redis, kafka, topic, acqAddr, httpAddr string
	production                                     bool
}

func (sf *serveFlags) config0() (Config, error) {
	cfg := embeddedConfig()
	if sf.config != "" {
		var err error
		if cfg, err = loadConfig(sf.config); err != nil {
			return Config{}, err
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := sf.config0()
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	// The first SIGTERM or SIGINT starts a graceful shutdown; a second one
	// forces exit (signal.NotifyContext stops catching after the first).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	g, err := startGateway(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pingate serving: acquirer %s, http %s\n", g.acqAddr, g.httpAddr)
	var runErr error
	select {
	case <-ctx.Done():
	case s := <-sigs:
		log.Info("shutting down", "signal", s.String())
	case runErr = <-g.Err():
		log.Error("listener failed", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.withDefaults().Acquirer.ShutdownGrace)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			log.Error("second signal: exiting without draining")
			os.Exit(1)
		case <-sctx.Done():
		}
	}()
	return errors.Join(runErr, g.Shutdown(sctx))
}

func runCheckConfig(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("check-config")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: pingate check-config FILE", errUsage)
	}
	cfg, err := loadConfig(fs.Arg(0))
	if err != nil {
		return err
	}
	if err := cfg.withDefaults().Validate(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// newLogger builds the structured log: JSON by default.
func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
