package records

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"pingate/integration/events"
	"pingate/integration/testservers"
	"pingate/routing"
)

// pgStore is a fresh, migrated database on the test's PostgreSQL (skipped
// without one, failed under CI).
func pgStore(t *testing.T) (*Store, string) {
	t.Helper()
	url := testservers.CreateDatabase(t, testservers.PostgresURL(t))
	ctx := context.Background()
	if _, err := Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, url, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, url
}

// record is ev encoded by the producer's encoder, as read at partition and
// offset of topic.
func record(t *testing.T, ev routing.Event, topic string, partition int, offset int64) Record {
	t.Helper()
	enc, err := events.NewEncoder(events.Source("records-test"))
	if err != nil {
		t.Fatal(err)
	}
	ev.Type = routing.EventType(ev.Operation, ev.Outcome)
	m, err := enc.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return Record{Topic: topic, Partition: partition, Offset: offset, Key: m.Key, Headers: m.Headers, Value: m.Value}
}

// lockWaiters counts the sessions of the database waiting for a lock.
func lockWaiters(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestApplyBatchReversalOnAnotherPartitionConcurrently: an approved operation
// and its reversal on two partitions (a topic repartitioned between them) are
// applied by two batch transactions at the same time; the reversal is
// applied (docs/records.md: "A reversal read before its operation … is
// applied when the operation arrives"). The interleaving is forced: the
// reversal's batch is held open after its reversal by a third session that
// holds an uncommitted row the batch inserts next, while the operation's
// batch runs.
func TestApplyBatchReversalOnAnotherPartitionConcurrently(t *testing.T) {
	s, dbURL := pgStore(t)
	ctx := context.Background()
	const topic, group = "records-race", "g"
	at := time.Date(2026, 11, 8, 9, 0, 0, 0, time.UTC)
	card, other := "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	op := routing.Event{ID: uuid.NewString(), Operation: routing.OpChange, Outcome: routing.OutcomeApproved, Code: "00",
		Channel: routing.ChannelATM, Acquirer: "ACQ1", Terminal: "ATM00042", Issuer: "ISS1",
		MaskedPAN: "424242******4242", CardToken: card, Received: at, Completed: at.Add(time.Second)}
	rev := op
	rev.ID, rev.Outcome, rev.Code, rev.Reason, rev.Reverses = uuid.NewString(), routing.OutcomeReversed, "68", "acquirer_reversal", op.ID
	rev.Completed = op.Completed.Add(time.Second)
	next := op
	next.ID, next.Outcome, next.Code, next.CardToken = uuid.NewString(), routing.OutcomeDeclined, "55", other
	for _, p := range []int{1, 2} {
		if _, err := s.PartitionOffset(ctx, group, topic, p); err != nil {
			t.Fatal(err)
		}
	}

	blocker, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(ctx)
	watch, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	btx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer btx.Rollback(ctx)
	if _, err := btx.Exec(ctx, `INSERT INTO events (ce_id, ce_type, known, topic, kafka_partition, kafka_offset)
		VALUES ($1, 'blocker', false, 'blocker', 0, 0)`, next.ID); err != nil {
		t.Fatal(err)
	}

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	revBatch := []Record{record(t, rev, topic, 1, 0), record(t, next, topic, 1, 1)}
	opBatch := []Record{record(t, op, topic, 2, 0)}
	revDone, opDone := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := s.ApplyBatch(ctx, group, FirstOffset, revBatch)
		revDone <- err
	}()
	waitFor("the reversal's batch to wait for the blocker", func() bool { return lockWaiters(t, watch) >= 1 })
	go func() {
		_, err := s.ApplyBatch(ctx, group, FirstOffset, opBatch)
		opDone <- err
	}()
	// The operation's batch either commits now or waits for the reversal's.
	var opErr error
	opFinished := false
	waitFor("the operation's batch to commit or wait", func() bool {
		select {
		case opErr = <-opDone:
			opFinished = true
			return true
		default:
			return lockWaiters(t, watch) >= 2
		}
	})
	if err := btx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-revDone; err != nil {
		t.Fatalf("ApplyBatch(reversal) = %v", err)
	}
	if !opFinished {
		opErr = <-opDone
	}
	if opErr != nil {
		t.Fatalf("ApplyBatch(operation) = %v", opErr)
	}
	o, err := s.Operation(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if o.ReversedBy != rev.ID || o.Stands {
		t.Errorf("operation after its reversal on another partition: reversed_by %q, stands %v; want reversed by %s",
			o.ReversedBy, o.Stands, rev.ID)
	}
}

// TestHistoryCursorFollowsContract: ?after= is the `next` of a previous page,
// `^[0-9]{1,18}$` in docs/records-openapi.yaml; anything else is a 400
// invalid-parameter problem, as a schema-violating request must be.
func TestHistoryCursorFollowsContract(t *testing.T) {
	s, _ := pgStore(t)
	h := (&API{cfg: APIConfig{MaxPageSize: 100}, store: s, log: slog.New(slog.DiscardHandler)}).Handler()
	const card = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		give string
		want int
	}{
		{"1", http.StatusOK},
		{"000000000000000000", http.StatusOK},
		{"999999999999999999", http.StatusOK},
		{"-0", http.StatusBadRequest},
		{"+1", http.StatusBadRequest},
		{"0000000000000000001", http.StatusBadRequest},
		{"", http.StatusBadRequest},
		{"1.5", http.StatusBadRequest},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet,
			"/v1/cards/"+card+"/operations?after="+url.QueryEscape(tt.give), nil))
		if rec.Code != tt.want {
			t.Errorf("GET …/operations?after=%q = %d, want %d", tt.give, rec.Code, tt.want)
		}
		if tt.want == http.StatusBadRequest && !strings.Contains(rec.Body.String(), ProblemTypeBase+"invalid-parameter") {
			t.Errorf("GET …/operations?after=%q: body %s, want an invalid-parameter problem", tt.give, rec.Body)
		}
	}
}
