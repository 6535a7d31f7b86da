package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pingate/integration/testservers"
)

// recordsProc is "pingate records run" as a child process, to be SIGKILLed.
type recordsProc struct {
	cmd   *exec.Cmd
	out   string // stdout file
	admin string
}

func startRecordsProc(t *testing.T, bin, pgURL, brokers, topic string) *recordsProc {
	t.Helper()
	dir := t.TempDir()
	p := &recordsProc{out: filepath.Join(dir, "out")}
	stdout, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "err"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	p.cmd = exec.Command(bin, "records", "run", "--postgres", pgURL, "--kafka", brokers, "--topic", topic,
		"--admin", "127.0.0.1:0", "--batch", "25", "--session-timeout", "6s", "--log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(p.out)
		if m := recordsAdminRE.FindSubmatch(b); m != nil {
			p.admin = string(m[1])
			return p
		}
		if time.Now().After(deadline) {
			e, _ := os.ReadFile(filepath.Join(dir, "err"))
			t.Fatalf("records run did not start: %s", e)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *recordsProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// stop ends the service with SIGTERM and checks it said it stopped.
func (p *recordsProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	if b, _ := os.ReadFile(p.out); !strings.Contains(string(b), "records stopped") {
		t.Errorf("records run did not stop cleanly: stdout %q", b)
	}
}

// waitEvents polls until the database holds at least n events.
func waitEvents(t *testing.T, pgURL string, n int) {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for len(readDB(t, pgURL).ids) < n {
		if time.Now().After(deadline) {
			t.Fatalf("database did not reach %d events", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRecordsFaults: while events stream onto the topic, the consumer is
// SIGKILLed twice while it applies a stream of 25-record batches (whether a
// transaction is in flight at that instant is not controlled) and restarted,
// PostgreSQL
// is crashed (pg_ctl -m immediate) and restarted, and the Kafka broker is
// restarted; afterwards the database holds exactly the distinct ce_ids an
// independent reader finds on the topic, every reversal applied once.
func TestRecordsFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: real servers")
	}
	bin := buildPingate(t)
	k := testservers.StartKafka(t)
	const topic, partitions = "records-faults", 3
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	pg := testservers.StartPostgres(t)
	pgURL := recordsDB(t, pg.URL)

	te := makeEvents(t, 16, 20, time.Date(2026, 11, 10, 8, 0, 0, 0, time.UTC))
	half := len(te.msgs) / 2
	chunks := func(from, to int, each func(i int)) {
		for i := from; i < to; i += 20 {
			writeEvents(t, k.Brokers, topic, te.msgs[i:min(i+20, to)])
			if each != nil {
				each(i)
			}
		}
	}

	svc := startRecordsProc(t, bin, pgURL, k.Brokers, topic)
	// Phase 1: a stream of chunks; the consumer is SIGKILLed twice while
	// it applies them, and restarted.
	kills, midTx := 0, 0
	chunks(0, half, func(i int) {
		if i == 60 || i == 140 {
			waitEvents(t, pgURL, i/2)
			if inTransaction(t, pgURL) {
				midTx++
			}
			svc.kill()
			kills++
			svc = startRecordsProc(t, bin, pgURL, k.Brokers, topic)
		}
	})
	// Phase 2: PostgreSQL crashes and comes back while records arrive.
	done := make(chan struct{})
	go func() { // only the crash here: Start may fail the test, so it runs on the test goroutine
		defer close(done)
		time.Sleep(200 * time.Millisecond)
		pg.Crash()
	}()
	chunks(half, half+half/2, nil)
	<-done
	pg.Start()
	// Phase 3: the broker restarts; the rest is written after it is back,
	// and the same records re-sent (an at-least-once producer).
	k.Stop()
	k.Start()
	chunks(half+half/2, len(te.msgs), nil)
	writeEvents(t, k.Brokers, topic, te.msgs[:40])

	want, _, _ := topicIDs(t, k.Brokers, topic, partitions)
	if len(want) != len(te.ids) {
		t.Fatalf("independent reader: %d distinct ce_ids on the topic, want %d", len(want), len(te.ids))
	}
	st := waitForDB(t, pgURL, len(want))
	// Let the consumer also see the re-sent tail before the final check.
	deadline := time.Now().Add(60 * time.Second)
	for recordsMetric(t, svc.admin, "pingate_records_consumer_lag") > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	st = readDB(t, pgURL)
	checkExactlyOnce(t, st, want, te.reversals)
	if kills != 2 {
		t.Errorf("consumer killed %d times, want 2", kills)
	}
	svc.stop(t)
	t.Logf("%d kills (%d seen inside an open transaction); %d events, %d reversals", kills, midTx, len(st.ids), len(st.reversed))
}

// inTransaction waits (up to 5 s) until another session of the database has
// a transaction open — the consumer applying a batch — and reports whether
// it saw one. The kill that follows lands inside that transaction unless it
// commits in between.
func inTransaction(t *testing.T, pgURL string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return true
		}
	}
	return false
}
