package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"pingate/integration/events"
	"pingate/integration/records"
	"pingate/integration/testservers"
	"pingate/routing"
)

// writePartition writes msgs to one partition of topic, in order.
func writePartition(t *testing.T, brokers, topic string, partition int, msgs ...kafka.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", brokers, topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.WriteMessages(msgs...); err != nil {
		t.Fatalf("write partition %d: %v", partition, err)
	}
}

// encodedEvent is an approved change of card, encoded by the producer's
// encoder, as a kafka message.
func encodedEvent(t *testing.T, card string, at time.Time) (kafka.Message, string) {
	t.Helper()
	enc, err := events.NewEncoder(events.Source("records-test"))
	if err != nil {
		t.Fatal(err)
	}
	ev := routing.Event{ID: uuid.NewString(), Operation: routing.OpChange, Outcome: routing.OutcomeApproved, Code: "00",
		Channel: routing.ChannelATM, Acquirer: "ACQ1", Terminal: "ATM00042", Issuer: "ISS1",
		MaskedPAN: "424242******4242", CardToken: card, Received: at, Completed: at.Add(time.Second)}
	ev.Type = routing.EventType(ev.Operation, ev.Outcome)
	m, err := enc.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return kafkaMessage(m), ev.ID
}

// kafkaMessage is m as kafka-go writes it.
func kafkaMessage(m events.Message) kafka.Message {
	km := kafka.Message{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		km.Headers = append(km.Headers, kafka.Header{Key: h.Key, Value: h.Value})
	}
	return km
}

// setHeader replaces (or adds) header k of m.
func setHeader(m kafka.Message, k string, v []byte) kafka.Message {
	hs := make([]kafka.Header, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if h.Key != k {
			hs = append(hs, h)
		}
	}
	m.Headers = append(hs, kafka.Header{Key: k, Value: v})
	return m
}

// TestRecordsPoisonRecordsKept: records that PostgreSQL cannot store as they
// are — a ce_type that is not UTF-8 text, a ce_id longer than a B-tree
// index entry may be, a body string holding a NUL character — are kept as
// records not understood (docs/records.md, "Unknown types are kept"), and the
// records after them on the same partition are applied: a poison record
// does not stall its partition. Each poison record leads its own partition.
func TestRecordsPoisonRecordsKept(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic, partitions = "records-poison", 3
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	pgURL := recordsDB(t, testservers.PostgresURL(t))

	day := time.Date(2026, 11, 5, 9, 0, 0, 0, time.UTC)
	card := randomToken(t)
	long := make([]byte, 4096)
	if _, err := rand.Read(long); err != nil {
		t.Fatal(err)
	}
	base, _ := encodedEvent(t, card, day)
	badType := setHeader(base, events.HeaderType, []byte("pingate.pin.\xff\x00new.v2"))
	badTypeID := uuid.NewString()
	badType = setHeader(badType, events.HeaderID, []byte(badTypeID))
	longID, _ := encodedEvent(t, card, day.Add(time.Minute))
	longID = setHeader(longID, events.HeaderID, []byte(hex.EncodeToString(long)))
	nul, nulID := encodedEvent(t, card, day.Add(2*time.Minute))
	nul.Value = []byte(strings.Replace(string(nul.Value), `"channel"`, `"reason":"a\u0000b","channel"`, 1))

	var good []string
	for p, poison := range []kafka.Message{badType, longID, nul} {
		m, id := encodedEvent(t, card, day.Add(time.Duration(10+p)*time.Minute))
		good = append(good, id)
		writePartition(t, k.Brokers, topic, p, poison, m)
	}
	svc := startRecords(t, pgURL, k.Brokers, topic)

	// Six records, six events: the long ce_id is kept under its position.
	st := waitForDB(t, pgURL, 6)
	for _, id := range append([]string{badTypeID, nulID, "kafka:" + topic + "/1/0"}, good...) {
		if !st.ids[id] {
			t.Errorf("event %s not stored; database holds %d events", id, len(st.ids))
		}
	}
	if len(st.ids) != 6 || st.history != len(good) {
		t.Errorf("database holds %d events, %d history rows; want 6 events, %d history rows (the poison records not understood)",
			len(st.ids), st.history, len(good))
	}
	if got := recordsMetric(t, svc.admin, "pingate_records_unknown_events_total"); got != 3 {
		t.Errorf("unknown events metric = %v, want 3", got)
	}
	var page struct {
		Operations []records.Operation `json:"operations"`
	}
	getJSON(t, svc.client(t), "https://"+svc.api+"/v1/cards/"+card+"/operations", http.StatusOK, &page)
	if len(page.Operations) != len(good) {
		t.Errorf("history of the card: %d operations, want %d", len(page.Operations), len(good))
	}
}

// TestRecordsStoresNoPAN: an event from a producer other than pingate's
// encoder whose card_token is a full PAN (a published test PAN here) is not
// taken for a card: no history row, no operation the API returns, no
// statement named by it, and the PAN is nowhere in the database — the body
// kept for the record not understood has it masked (docs/records.md: "No PAN
// is stored").
func TestRecordsStoresNoPAN(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic = "records-pan"
	testservers.CreateTopic(t, k.Brokers, topic, 1)
	pgURL := recordsDB(t, testservers.PostgresURL(t))
	const pan = "4111111111111111"

	day := time.Date(2026, 11, 6, 9, 0, 0, 0, time.UTC)
	token := randomToken(t)
	bad, badID := encodedEvent(t, token, day)
	bad.Value = []byte(strings.ReplaceAll(string(bad.Value), token, pan))
	if !strings.Contains(string(bad.Value), pan) {
		t.Fatal("test event does not carry the test PAN")
	}
	good, goodID := encodedEvent(t, token, day.Add(time.Minute))
	writePartition(t, k.Brokers, topic, 0, bad, good)
	svc := startRecords(t, pgURL, k.Brokers, topic)

	st := waitForDB(t, pgURL, 2)
	if !st.ids[badID] || !st.ids[goodID] {
		t.Fatalf("database: %d events; want both events kept", len(st.ids))
	}
	if st.history != 1 {
		t.Errorf("database: %d history rows, want one (the card token's event)", st.history)
	}
	c := svc.client(t)
	getJSON(t, c, "https://"+svc.api+"/v1/operations/"+goodID, http.StatusOK, nil)
	resp, err := c.Get("https://" + svc.api + "/v1/operations/" + badID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || bytes.Contains(b, []byte(pan)) {
		t.Errorf("GET the operation of the PAN event = %d, holds the PAN %v; want 404 without it",
			resp.StatusCode, bytes.Contains(b, []byte(pan)))
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM events
			WHERE position(convert_to($1, 'UTF8') IN coalesce(value, ''::bytea)) > 0 OR card_token = $1)
		+ (SELECT count(*) FROM card_history WHERE card_token = $1)`, pan).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows of the database hold the test PAN, want none", n)
	}

	outDir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"records", "statements", "--postgres", pgURL, "--month", "2026-11", "--out", outDir}, &out, &errOut); code != 0 {
		t.Fatalf("records statements: exit %d: %s", code, maskDigitRuns(errOut.String()))
	}
	err = filepath.WalkDir(outDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if strings.Contains(path, pan) || bytes.Contains(b, []byte(pan)) {
			t.Errorf("statement file %s holds the test PAN", maskDigitRuns(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != "statements 2026-11: 1 written, 0 already sent" {
		t.Errorf("records statements printed %q, want one statement (the card token's)", maskDigitRuns(got))
	}
}

// TestRecordsReversalMarksApprovedOnly: a reversal marks the approved
// operation it undoes (docs/records.md, "Reversals"); one that names a
// declined operation gets its own history row and leaves the declined one
// unmarked, whichever of the two is read first.
func TestRecordsReversalMarksApprovedOnly(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic = "records-rev-declined"
	testservers.CreateTopic(t, k.Brokers, topic, 1)
	pgURL := recordsDB(t, testservers.PostgresURL(t))
	enc, err := events.NewEncoder(events.Source("records-test"))
	if err != nil {
		t.Fatal(err)
	}
	card := randomToken(t)
	at := time.Date(2026, 11, 7, 9, 0, 0, 0, time.UTC)
	msg := func(ev routing.Event) kafka.Message {
		ev.Type = routing.EventType(ev.Operation, ev.Outcome)
		m, err := enc.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return kafkaMessage(m)
	}
	declined := func() routing.Event {
		return routing.Event{ID: uuid.NewString(), Operation: routing.OpChange, Outcome: routing.OutcomeDeclined, Code: "55",
			Channel: routing.ChannelATM, Acquirer: "ACQ1", Terminal: "ATM00042", Issuer: "ISS1",
			MaskedPAN: "424242******4242", CardToken: card, Received: at, Completed: at.Add(time.Second)}
	}
	reversal := func(of routing.Event) routing.Event {
		r := of
		r.ID, r.Outcome, r.Code, r.Reason, r.Reverses = uuid.NewString(), routing.OutcomeReversed, "91", "outcome_not_recorded", of.ID
		r.Completed = of.Completed.Add(time.Second)
		return r
	}
	first, second := declined(), declined() // the first read before its reversal, the second after
	rf, rs := reversal(first), reversal(second)
	writePartition(t, k.Brokers, topic, 0, msg(first), msg(rf), msg(rs), msg(second))
	svc := startRecords(t, pgURL, k.Brokers, topic)

	waitForDB(t, pgURL, 4)
	c := svc.client(t)
	for _, ev := range []routing.Event{first, second} {
		var o records.Operation
		getJSON(t, c, "https://"+svc.api+"/v1/operations/"+ev.ID, http.StatusOK, &o)
		if o.Outcome != routing.OutcomeDeclined || o.ReversedBy != "" || o.ReversedAt != nil || o.Stands {
			t.Errorf("declined operation %s: outcome %s, reversed_by %q, stands %v; want declined, not marked reversed",
				ev.ID, o.Outcome, o.ReversedBy, o.Stands)
		}
	}
	for _, r := range []routing.Event{rf, rs} {
		var o records.Operation
		getJSON(t, c, "https://"+svc.api+"/v1/operations/"+r.ID, http.StatusOK, &o)
		if o.Outcome != routing.OutcomeReversed || o.Reverses != r.Reverses {
			t.Errorf("reversal %s: outcome %s, reverses %q; want reversed, reverses %s", r.ID, o.Outcome, o.Reverses, r.Reverses)
		}
	}
	if got := recordsMetric(t, svc.admin, "pingate_records_reversals_applied_total"); got != 0 {
		t.Errorf("reversals applied metric = %v, want 0", got)
	}
}

// TestRecordsAPIMaxConns: with --max-conns 2 and both slots held by idle
// clients, a third client's request waits unanswered in the backlog, and is
// answered as soon as a slot frees (docs/records.md).
func TestRecordsAPIMaxConns(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic = "records-maxconns"
	testservers.CreateTopic(t, k.Brokers, topic, 1)
	svc := startRecords(t, recordsDB(t, testservers.PostgresURL(t)), k.Brokers, topic, "--max-conns", "2")
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", svc.api)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	done := make(chan int, 1)
	go func() {
		resp, err := svc.client(t).Get("https://" + svc.api + "/v1/openapi.yaml")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case st := <-done:
		t.Fatalf("a third client was answered (status %d) while two idle clients held both slots", st)
	case <-time.After(500 * time.Millisecond):
	}
	idle[0].Close()
	select {
	case st := <-done:
		if st != http.StatusOK {
			t.Errorf("the waiting client: status %d once a slot freed, want 200", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting client was not answered after a slot freed")
	}
}
