package testservers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL server (Debian's postgresql package) for
// one test, run through pg_ctl. As root it runs as the postgres user (the
// server refuses root), with its data in a directory owned by that user.
type Postgres struct {
	// URL is postgres://pingate@127.0.0.1:PORT/postgres; it stays the same
	// across Stop/Crash and Start.
	URL string

	t    testing.TB
	bin  string
	dir  string // data/, log, the Unix socket
	port int
}

// StartPostgres initialises a new cluster (trust auth, superuser pingate) in
// a temporary directory, starts it on a free loopback port and returns once
// it accepts connections. It is stopped and removed in t.Cleanup. Without the
// server tools the test is skipped (failed when CI=true).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, err := pgBin()
	if err != nil {
		missing(t, err.Error())
	}
	dir, err := os.MkdirTemp("", "pingate-pg-")
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	p := &Postgres{t: t, bin: bin, dir: dir}
	t.Cleanup(func() {
		p.pgctl("stop", "-m", "immediate")
		os.RemoveAll(dir)
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testservers: %v", err)
	}
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			missing(t, "running as root and there is no postgres user to run the server")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("testservers: %v", err)
		}
	}
	if out, err := p.as(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-A", "trust",
		"-U", "pingate", "-E", "UTF8", "--no-instructions").CombinedOutput(); err != nil {
		t.Fatalf("testservers: initdb: %v\n%s", err, out)
	}
	var lastErr error
	for range 3 { // a port picked free can be taken before the server binds it
		ports, err := freePorts(1)
		if err != nil {
			t.Fatalf("testservers: %v", err)
		}
		p.port = ports[0]
		p.URL = fmt.Sprintf("postgres://pingate@%s/postgres?sslmode=disable", loopback(p.port))
		if lastErr = p.start(); lastErr == nil {
			return p
		}
	}
	t.Fatalf("testservers: %v", lastErr)
	return nil
}

// Start starts a stopped server again on the same port and data.
func (p *Postgres) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("testservers: %v", err)
	}
}

// Stop shuts the server down cleanly (pg_ctl -m fast).
func (p *Postgres) Stop() { p.pgctl("stop", "-m", "fast") }

// Crash stops the server the way a crash would (pg_ctl -m immediate: no
// checkpoint; the next Start runs crash recovery).
func (p *Postgres) Crash() { p.pgctl("stop", "-m", "immediate") }

func (p *Postgres) start() error {
	out, err := p.as(filepath.Join(p.bin, "pg_ctl"), "-D", filepath.Join(p.dir, "data"),
		"-l", filepath.Join(p.dir, "log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=50", p.port, p.dir),
		"start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s%s", err, out, logTail(filepath.Join(p.dir, "log")))
	}
	return nil
}

func (p *Postgres) pgctl(args ...string) {
	if _, err := os.Stat(filepath.Join(p.dir, "data", "postmaster.pid")); err != nil {
		return
	}
	args = append([]string{"-D", filepath.Join(p.dir, "data"), "-w", "-t", "60"}, args...)
	p.as(filepath.Join(p.bin, "pg_ctl"), args...).Run()
}

// as runs a server tool as the postgres user when we are root.
func (p *Postgres) as(bin string, args ...string) *exec.Cmd {
	if os.Getuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// pgBin finds Debian's versioned server directory.
func pgBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("postgresql server tools (initdb, pg_ctl) not found")
}

// PostgresURL is the server of a test: $PG_URL (scripts/services.sh) when
// set, else a private server from StartPostgres.
func PostgresURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("PG_URL"); u != "" {
		return u
	}
	return StartPostgres(t).URL
}

// CreateDatabase makes a new, empty database on the server at serverURL and
// returns the URL of it; it is dropped in t.Cleanup.
func CreateDatabase(t testing.TB, serverURL string) string {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatalf("testservers: postgres url: %v", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		missing(t, fmt.Sprintf("postgres not reachable: %v", err))
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testservers: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, serverURL); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	u.Path = "/" + name
	return u.String()
}
