package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"pingate/cmd/internal/cli"
	"pingate/integration/branchapi"
	"pingate/integration/logredact"
	"pingate/integration/records"
)

// postgresEnv is read when --postgres is not given.
const postgresEnv = "PINGATE_RECORDS_POSTGRES"

// recordsCmd is "pingate records": the records service.
type recordsCmd struct {
	Migrate    recordsMigrateCmd    `cmd:"" help:"create or upgrade the records schema"`
	Run        recordsRunCmd        `cmd:"" help:"consume the outcome topic into PostgreSQL and answer the inquiry API"`
	Statements recordsStatementsCmd `cmd:"" help:"write a month's customer statements (JSON and HTML per card)"`
	Replay     recordsReplayCmd     `cmd:"" help:"set the consumer group's stored offsets back to the start of the topic"`
}

const pgExample = "--postgres postgres://pingate@127.0.0.1:5432/records"

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

type recordsMigrateCmd struct {
	Postgres string `name:"postgres" placeholder:"URL" help:"PostgreSQL URL (or env ${pgenv}); password from PGPASSWORD or PGPASSFILE, never in the URL"`
}

func (*recordsMigrateCmd) Help() string { return cli.Example("pingate records migrate " + pgExample) }

func (c *recordsMigrateCmd) Run(env *cli.Env) error {
	ctx, stdout := env.Ctx, env.Stdout
	u, err := postgresURL(c.Postgres)
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

// recordsRunCmd: lines on stdout: "records api listening on ADDR", "records
// admin listening on ADDR", then "records stopped" after a clean shutdown.
type recordsRunCmd struct {
	Postgres string        `name:"postgres" placeholder:"URL" help:"PostgreSQL URL (or env ${pgenv}); required: there is no embedded default"`
	Brokers  string        `name:"kafka" placeholder:"BROKERS" help:"Kafka bootstrap brokers, host:port[,host:port] (required)"`
	Topic    string        `name:"topic" default:"${recordstopic}" help:"outcome topic"`
	Group    string        `name:"group" default:"${recordsgroup}" help:"consumer group id (keys the offsets in the database)"`
	Listen   string        `name:"listen" placeholder:"HOST:PORT" help:"inquiry API HTTPS address (mutual TLS); empty: no API"`
	Admin    string        `name:"admin" placeholder:"HOST:PORT" help:"plain-HTTP address for /healthz, /readyz and /metrics; empty: none"`
	Cert     string        `name:"tls-cert" placeholder:"FILE" help:"inquiry API server certificate (PEM)"`
	Key      string        `name:"tls-key" placeholder:"FILE" help:"inquiry API server key (PEM file)"`
	ClientCA string        `name:"client-ca" placeholder:"FILE" help:"CA bundle of the clients allowed to call the inquiry API (PEM)"`
	DevCerts string        `name:"dev-certs" placeholder:"DIR" help:"directory of development certificates (made when missing); replaces --tls-cert, --tls-key, --client-ca"`
	LogLevel string        `name:"log-level" default:"info" help:"debug, info, warn, error"`
	Batch    int           `name:"batch" default:"200" help:"records per transaction, at most"`
	MaxConns int           `name:"max-conns" default:"256" help:"inquiry API connections open at once; more wait in the listen backlog"`
	Session  time.Duration `name:"session-timeout" default:"10s" help:"consumer group session timeout (>= 6s)"`
}

func (*recordsRunCmd) Help() string {
	return cli.Example("pingate records run " + pgExample + " --kafka 127.0.0.1:9092 --listen 127.0.0.1:8445 --dev-certs ./dev-certs --admin 127.0.0.1:9091")
}

// recordsDevClient is the client identity of --dev-certs: a front end that
// calls the inquiry API.
const recordsDevClient = "records-client"

// runRecordsRun consumes the topic into the database and, with --listen,
// answers the inquiry API until interrupted. Lines on stdout: "records api
// listening on ADDR", "records admin listening on ADDR", then "records
// stopped" after a clean shutdown.
func (o *recordsRunCmd) Run(env *cli.Env) error {
	ctx, stdout, stderr := env.Ctx, env.Stdout, env.Stderr
	u, err := postgresURL(o.Postgres)
	if err != nil {
		return err
	}
	if o.Brokers == "" {
		return fmt.Errorf("%w: records run needs --kafka", errUsage)
	}
	if o.Listen == "" && (o.Cert != "" || o.Key != "" || o.ClientCA != "" || o.DevCerts != "") {
		return fmt.Errorf("%w: TLS flags given without --listen", errUsage)
	}
	if o.DevCerts != "" {
		if o.Cert != "" || o.Key != "" || o.ClientCA != "" {
			return fmt.Errorf("%w: --dev-certs replaces --tls-cert, --tls-key and --client-ca", errUsage)
		}
		if err := ensureRecordsDevCerts(o.DevCerts); err != nil {
			return fmt.Errorf("dev certs: %w", err)
		}
		o.Cert = filepath.Join(o.DevCerts, branchapi.DevServerCertFile)
		o.Key = filepath.Join(o.DevCerts, branchapi.DevServerKeyFile)
		o.ClientCA = filepath.Join(o.DevCerts, branchapi.DevCAFile)
	}
	log := logredact.New(logredact.Config{Level: o.LogLevel}, stderr)

	store, err := records.Open(ctx, u, 0)
	if err != nil {
		return err
	}
	defer store.Close()
	metrics := records.NewMetrics()
	cons, err := records.NewConsumer(records.ConsumerConfig{
		Brokers: strings.Split(o.Brokers, ","), Topic: o.Topic, Group: o.Group,
		BatchSize: o.Batch, SessionTimeout: o.Session,
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
	if o.Listen != "" {
		api, err := records.NewAPI(records.APIConfig{Addr: o.Listen, CertFile: o.Cert, KeyFile: o.Key, ClientCAFile: o.ClientCA, MaxConns: o.MaxConns},
			store, metrics, log)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return fmt.Errorf("records api: %w", err)
		}
		servers = append(servers, api.Shutdown)
		serve("api", ln, api.Serve)
		fmt.Fprintf(stdout, "records api listening on %s\n", ln.Addr())
	}
	if o.Admin != "" {
		ln, err := net.Listen("tcp", o.Admin)
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

type recordsStatementsCmd struct {
	Postgres string `name:"postgres" placeholder:"URL" help:"PostgreSQL URL (or env ${pgenv})"`
	Month    string `name:"month" placeholder:"YYYY-MM" help:"month (required)"`
	Out      string `name:"out" placeholder:"DIR" help:"output directory (required); statements go to OUT/YYYY-MM/<card token>.json and .html"`
}

func (*recordsStatementsCmd) Help() string {
	return cli.Example("pingate records statements " + pgExample + " --month 2026-11 --out ./statements")
}

func (c *recordsStatementsCmd) Run(env *cli.Env) error {
	ctx, stdout := env.Ctx, env.Stdout
	pg, month, out := &c.Postgres, &c.Month, &c.Out
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
type recordsReplayCmd struct {
	Postgres string `name:"postgres" placeholder:"URL" help:"PostgreSQL URL (or env ${pgenv})"`
	Topic    string `name:"topic" default:"${recordstopic}" help:"outcome topic"`
	Group    string `name:"group" default:"${recordsgroup}" help:"consumer group id"`
}

func (*recordsReplayCmd) Help() string { return cli.Example("pingate records replay " + pgExample) }

func (c *recordsReplayCmd) Run(env *cli.Env) error {
	ctx, stdout := env.Ctx, env.Stdout
	pg, topic, group := &c.Postgres, &c.Topic, &c.Group
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
