package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"pingate/integration/branchapi"
	"pingate/integration/records"
)

// postgresEnv is read when --postgres is not given.
const postgresEnv = "PINGATE_RECORDS_POSTGRES"

func runRecords(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: records needs a subcommand: migrate, run, statements or replay", errUsage)
	}
	switch args[0] {
	case "migrate":
		return runRecordsMigrate(ctx, args[1:], stdout)
	case "run":
		return runRecordsRun(ctx, args[1:], stdout, stderr)
	case "statements":
		return runRecordsStatements(ctx, args[1:], stdout)
	case "replay":
		return runRecordsReplay(ctx, args[1:], stdout)
	}
	return fmt.Errorf("%w: unknown records subcommand (migrate, run, statements, replay)", errUsage)
}

// postgresURL returns the --postgres value or $PINGATE_RECORDS_POSTGRES. No
// database is a usage error: the records service has no embedded default.
func postgresURL(flagValue string) (string, error) {
	u := flagValue
	if u == "" {
		u = os.Getenv(postgresEnv)
	}
	if u == "" {
		return "", fmt.Errorf("%w: %v: pass --postgres postgres://USER@HOST:PORT/DB or set %s", errUsage, records.ErrNoPostgres, postgresEnv)
	}
	return u, nil
}

func runRecordsMigrate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("records migrate")
	pg := fs.String("postgres", "", "PostgreSQL URL (password from PGPASSWORD or PGPASSFILE, never in the URL)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u, err := postgresURL(*pg)
	if err != nil {
		return err
	}
	applied, err := records.Migrate(ctx, u)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "schema current (version %d)\n", records.SchemaVersion())
		return nil
	}
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied migration %05d\n", v)
	}
	fmt.Fprintf(stdout, "schema now at version %d\n", records.SchemaVersion())
	return nil
}

// recordsRunOptions are the flags of "records run".
type recordsRunOptions struct {
	postgres, brokers, topic, group string
	listen, admin                   string
	cert, key, clientCA, devCerts   string
	logLevel                        string
	batch                           int
	session                         time.Duration
}

// recordsDevClient is the client identity of --dev-certs: a front end that
// calls the inquiry API.
const recordsDevClient = "records-client"

// runRecordsRun consumes the topic into the database and, with --listen,
// answers the inquiry API until interrupted. Lines on stdout: "records api
// listening on ADDR", "records admin listening on ADDR", then "records
// stopped" after a clean shutdown.
func runRecordsRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o recordsRunOptions
	fs := newFlagSet("records run")
	fs.StringVar(&o.postgres, "postgres", "", "PostgreSQL URL (or $"+postgresEnv+"); required: there is no embedded default")
	fs.StringVar(&o.brokers, "kafka", "", "Kafka bootstrap brokers, host:port[,host:port] (required)")
	fs.StringVar(&o.topic, "topic", records.DefaultTopic, "outcome topic")
	fs.StringVar(&o.group, "group", records.DefaultGroup, "consumer group id (keys the offsets in the database)")
	fs.StringVar(&o.listen, "listen", "", "inquiry API HTTPS address (mutual TLS); empty: no API")
	fs.StringVar(&o.admin, "admin", "", "plain-HTTP address for /healthz, /readyz and /metrics; empty: none")
	fs.StringVar(&o.cert, "tls-cert", "", "inquiry API server certificate (PEM)")
	fs.StringVar(&o.key, "tls-key", "", "inquiry API server key (PEM file)")
	fs.StringVar(&o.clientCA, "client-ca", "", "CA bundle of the clients allowed to call the inquiry API (PEM)")
	fs.StringVar(&o.devCerts, "dev-certs", "", "directory of development certificates (made when missing); replaces --tls-cert, --tls-key, --client-ca")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn, error")
	fs.IntVar(&o.batch, "batch", 200, "records per transaction, at most")
	fs.DurationVar(&o.session, "session-timeout", 10*time.Second, "consumer group session timeout (>= 6s)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u, err := postgresURL(o.postgres)
	if err != nil {
		return err
	}
	if o.brokers == "" {
		return fmt.Errorf("%w: records run needs --kafka", errUsage)
	}
	if o.devCerts != "" {
		if o.cert != "" || o.key != "" || o.clientCA != "" {
			return fmt.Errorf("%w: --dev-certs replaces --tls-cert, --tls-key and --client-ca", errUsage)
		}
		if err := ensureRecordsDevCerts(o.devCerts); err != nil {
			return fmt.Errorf("dev certs: %w", err)
		}
		o.cert = filepath.Join(o.devCerts, branchapi.DevServerCertFile)
		o.key = filepath.Join(o.devCerts, branchapi.DevServerKeyFile)
		o.clientCA = filepath.Join(o.devCerts, branchapi.DevCAFile)
	}
	log := newLogger(LogConfig{Level: o.logLevel}, stderr)

	store, err := records.Open(ctx, u, 0)
	if err != nil {
		return err
	}
	defer store.Close()
	metrics := records.NewMetrics()
	cons, err := records.NewConsumer(records.ConsumerConfig{
		Brokers: strings.Split(o.brokers, ","), Topic: o.topic, Group: o.group,
		BatchSize: o.batch, SessionTimeout: o.session,
	}, store, metrics, log)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	var servers []func(context.Context) error
	var wg sync.WaitGroup
	defer wg.Wait()
	serve := func(name string, ln net.Listener, serveFn func(net.Listener) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveFn(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("records: "+name+" server", "err", err)
			}
		}()
	}
	shutdownAll := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s(sctx)
		}
	}
	if o.listen != "" {
		api, err := records.NewAPI(records.APIConfig{Addr: o.listen, CertFile: o.cert, KeyFile: o.key, ClientCAFile: o.clientCA},
			store, metrics, log)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			return fmt.Errorf("records api: %w", err)
		}
		servers = append(servers, api.Shutdown)
		serve("api", ln, api.Serve)
		fmt.Fprintf(stdout, "records api listening on %s\n", ln.Addr())
	} else if o.cert != "" || o.clientCA != "" {
		shutdownAll()
		return fmt.Errorf("%w: TLS flags given without --listen", errUsage)
	}
	if o.admin != "" {
		ln, err := net.Listen("tcp", o.admin)
		if err != nil {
			shutdownAll()
			return fmt.Errorf("records admin: %w", err)
		}
		srv := &http.Server{Handler: records.AdminHandler(store, metrics), ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv.Shutdown)
		serve("admin", ln, srv.Serve)
		fmt.Fprintf(stdout, "records admin listening on %s\n", ln.Addr())
	}
	err = cons.Run(ctx)
	shutdownAll()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "records stopped")
	return nil
}

// ensureRecordsDevCerts makes a development CA, a server certificate for
// localhost and one client certificate (records-client.pem) in dir unless
// they are there.
func ensureRecordsDevCerts(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, recordsDevClient+".pem")); err == nil {
		if _, err := os.Stat(filepath.Join(dir, branchapi.DevServerCertFile)); err == nil {
			return nil
		}
	}
	id := branchapi.DevIdentity{File: recordsDevClient, Client: branchapi.Client{
		Subject: "CN=records-inquiry,O=pingate development agency", ID: "records-inquiry"}}
	return branchapi.WriteDevCerts(dir, []branchapi.DevIdentity{id}, time.Now())
}

func runRecordsStatements(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("records statements")
	pg := fs.String("postgres", "", "PostgreSQL URL (or $"+postgresEnv+")")
	month := fs.String("month", "", "month, YYYY-MM (required)")
	out := fs.String("out", "", "output directory (required); statements go to OUT/YYYY-MM/<card token>.json and .html")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *month == "" || *out == "" {
		return fmt.Errorf("%w: records statements needs --month YYYY-MM and --out DIR", errUsage)
	}
	if _, err := records.ParseMonth(*month); err != nil {
		return fmt.Errorf("%w: --month: %v", errUsage, err)
	}
	u, err := postgresURL(*pg)
	if err != nil {
		return err
	}
	store, err := records.Open(ctx, u, 2)
	if err != nil {
		return err
	}
	defer store.Close()
	run, err := records.WriteStatements(ctx, store, *month, *out, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "statements %s: %d written, %d already sent\n", run.Period, run.Written, run.Skipped)
	return nil
}

// runRecordsReplay sets the group's stored offsets back to the beginning of
// the topic: the running (or next) consumer re-reads everything; stored
// events are skipped as duplicates.
func runRecordsReplay(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("records replay")
	pg := fs.String("postgres", "", "PostgreSQL URL (or $"+postgresEnv+")")
	topic := fs.String("topic", records.DefaultTopic, "outcome topic")
	group := fs.String("group", records.DefaultGroup, "consumer group id")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u, err := postgresURL(*pg)
	if err != nil {
		return err
	}
	store, err := records.Open(ctx, u, 2)
	if err != nil {
		return err
	}
	defer store.Close()
	n, err := store.ResetOffsets(ctx, *group, *topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replay: %d partitions of %s reset to the first offset for group %s\n", n, *topic, *group)
	return nil
}
