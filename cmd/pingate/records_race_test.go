package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"pingate/integration/events"
	"pingate/integration/records"
	"pingate/integration/testservers"
	"pingate/routing"
)

// TestRecordsStatementsWaitForMonthEnd: "records statements" run while
// "records run" still stores operations of the month must not record a
// card's statement as sent without an operation of that month: a statement
// is recorded once and never written again (docs/records.md, "Statements"),
// so an operation stored after it would be in no statement at all. The
// statement of a month that has not ended is refused.
func TestRecordsStatementsWaitForMonthEnd(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic = "records-stmt-open-month"
	testservers.CreateTopic(t, k.Brokers, topic, 1)
	pgURL := recordsDB(t, testservers.PostgresURL(t))
	startRecords(t, pgURL, k.Brokers, topic)

	card := randomToken(t)
	at := time.Now().UTC().Add(-time.Minute)
	m1, _ := encodedEvent(t, card, at)
	writePartition(t, k.Brokers, topic, 0, m1)
	waitEvents(t, pgURL, 1)

	month := at.Add(time.Second).Format("2006-01") // the month the operation completed in
	outDir := t.TempDir()
	statements := func() (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"records", "statements", "--postgres", pgURL, "--month", month, "--out", outDir}, &out, &errOut)
		return code, maskDigitRuns(out.String() + errOut.String())
	}
	code, msg := statements()

	// The consumer stores another operation of the same month.
	m2, _ := encodedEvent(t, card, at.Add(time.Second))
	writePartition(t, k.Brokers, topic, 0, m2)
	waitEvents(t, pgURL, 2)
	code2, msg2 := statements()

	if code == 0 || code2 == 0 {
		b, err := os.ReadFile(filepath.Join(outDir, month, card+".json"))
		if err != nil {
			t.Fatalf("statements of the open month exited %d (%s) then %d (%s), and wrote no statement: %v", code, msg, code2, msg2, err)
		}
		var st records.Statement
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Operations) != 2 {
			t.Errorf("statements run while the month was open (exit %d: %s; then exit %d: %s): the card's statement holds %d operations of the month, want 2",
				code, msg, code2, msg2, len(st.Operations))
		}
		return
	}
	if !bytes.Contains([]byte(msg), []byte("has not ended")) {
		t.Errorf("records statements --month %s (not ended): exit %d: %s, want a refusal naming the month as not ended", month, code, msg)
	}
	var out, errOut bytes.Buffer
	prev := at.AddDate(0, -1, 0).Format("2006-01")
	if code := run(context.Background(), []string{"records", "statements", "--postgres", pgURL, "--month", prev, "--out", outDir}, &out, &errOut); code != 0 {
		t.Errorf("records statements --month %s (ended): exit %d: %s, want 0", prev, code, maskDigitRuns(errOut.String()))
	}
}

// TestRecordsPagingAcrossPartitions: paging a card's history with ?after=
// while two partitions' batches store operations of that card at once (the
// topic repartitioned) neither skips nor repeats one: every pagination is a
// prefix, in order, of the final history (docs/records.md, "Paging").
func TestRecordsPagingAcrossPartitions(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic = "records-paging-race"
	testservers.CreateTopic(t, k.Brokers, topic, 2)
	pgURL := recordsDB(t, testservers.PostgresURL(t))
	s := startRecords(t, pgURL, k.Brokers, topic)
	c := s.client(t)

	card := randomToken(t)
	at := time.Date(2026, 11, 9, 9, 0, 0, 0, time.UTC)
	const bulk, single = 600, 40
	var big []kafka.Message
	for i := range bulk {
		m, _ := encodedEvent(t, card, at.Add(time.Duration(i)*time.Millisecond))
		big = append(big, m)
	}
	type page struct {
		Operations []records.Operation `json:"operations"`
		Next       string              `json:"next"`
	}
	paginate := func(limit int) []string {
		var ids []string
		after := "0"
		for {
			var p page
			getJSON(t, c, fmt.Sprintf("https://%s/v1/cards/%s/operations?limit=%d&after=%s", s.api, card, limit, after), 200, &p)
			for _, o := range p.Operations {
				ids = append(ids, o.EventID)
			}
			if p.Next == "" {
				return ids
			}
			after = p.Next
		}
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range single {
			m, _ := encodedEvent(t, card, at.Add(time.Hour+time.Duration(i)*time.Millisecond))
			writePartition(t, k.Brokers, topic, 1, m)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for i := 0; i < bulk; i += 100 {
		writePartition(t, k.Brokers, topic, 0, big[i:i+100]...)
	}
	var seen [][]string
	for len(readDB(t, pgURL).ids) < bulk+single {
		seen = append(seen, paginate(7))
	}
	<-done
	final := paginate(100)
	if len(final) != bulk+single {
		t.Fatalf("history holds %d operations, want %d", len(final), bulk+single)
	}
	bad, first := 0, ""
	for n, p := range seen {
		for i, id := range p {
			if i >= len(final) || final[i] != id {
				if bad++; bad == 1 {
					first = fmt.Sprintf("pagination %d: operation %d of %d", n+1, i+1, len(p))
				}
				break
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d paginations while storing are not a prefix of the final history (skipped or repeated an operation); first: %s", bad, len(seen), first)
	}
}

// TestRecordsTwoInstancesRebalance: two "records run" in one consumer group
// on a three-partition topic while events stream in; one is stopped and
// started again mid-stream, so partitions move between them twice. The
// database ends with every ce_id once and every reversal applied
// (docs/records.md, "Exactly once").
func TestRecordsTwoInstancesRebalance(t *testing.T) {
	const topic, partitions = "records-two-instances", 3
	k, pgURL, te := startRecordsTopic(t, topic, partitions, 24)
	b := startRecords(t, pgURL, k.Brokers, topic, "--batch", "25")
	chunk := len(te.msgs) / 6
	for i := 0; i < len(te.msgs); i += chunk {
		writeEvents(t, k.Brokers, topic, te.msgs[i:min(i+chunk, len(te.msgs))])
		switch i / chunk {
		case 1:
			b.stop(t)
		case 3:
			b = startRecords(t, pgURL, k.Brokers, topic, "--batch", "25")
		}
		time.Sleep(300 * time.Millisecond)
	}
	checkTopicStoredOnce(t, k.Brokers, pgURL, topic, partitions, te, 0)
}

// startRecordsTopic starts a broker, a topic of the partitions, a database
// and one "records run" (25-record batches), and makes cards × 40 events of
// a November day (makeEvents).
func startRecordsTopic(t *testing.T, topic string, partitions, cards int) (*testservers.Kafka, string, *testEvents) {
	t.Helper()
	k := testservers.StartKafka(t)
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	pgURL := recordsDB(t, testservers.PostgresURL(t))
	te := makeEvents(t, cards, 40, time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))
	startRecords(t, pgURL, k.Brokers, topic, "--batch", "25")
	return k, pgURL, te
}

// checkTopicStoredOnce waits until the database holds every distinct ce_id
// of the topic, lets settle run on (a replay's re-read), and checks
// checkExactlyOnce and one history row per event but te's two records not
// understood.
func checkTopicStoredOnce(t *testing.T, brokers, pgURL, topic string, partitions int, te *testEvents, settle time.Duration) {
	t.Helper()
	want, _, _ := topicIDs(t, brokers, topic, partitions)
	if len(want) != len(te.ids) {
		t.Fatalf("topic holds %d distinct ce_ids, want %d", len(want), len(te.ids))
	}
	waitForDB(t, pgURL, len(want))
	time.Sleep(settle)
	st := readDB(t, pgURL)
	checkExactlyOnce(t, st, want, te.reversals)
	if st.history != len(want)-2 {
		t.Errorf("card history rows = %d, want %d", st.history, len(want)-2)
	}
}

// TestRecordsReplayAndResendWhileConsuming: "records replay" run while
// "records run" consumes, and events re-sent (a producer's retry) to the
// other partition, change nothing: every ce_id once, one history row each,
// every reversal applied once.
func TestRecordsReplayAndResendWhileConsuming(t *testing.T) {
	const topic, partitions = "records-replay-live", 2
	k, pgURL, te := startRecordsTopic(t, topic, partitions, 12)
	half := len(te.msgs) / 2
	writeEvents(t, k.Brokers, topic, te.msgs[:half])
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"records", "replay", "--postgres", pgURL, "--topic", topic}, &out, &errOut); code != 0 {
		t.Fatalf("records replay: exit %d: %s", code, errOut.String())
	}
	// The first half again, spread over the partitions by position (not
	// by key), so about half land on a partition their first copy is not
	// on; then the rest.
	for p := range partitions {
		var again []kafka.Message
		for i, m := range te.msgs[:half] {
			if i%partitions == p {
				m.Partition = 0
				again = append(again, m)
			}
		}
		writePartition(t, k.Brokers, topic, p, again...)
	}
	writeEvents(t, k.Brokers, topic, te.msgs[half:])
	checkTopicStoredOnce(t, k.Brokers, pgURL, topic, partitions, te, 3*time.Second) // past the idle check
}

// TestRecordsReversalOnOtherPartitionAtOnce: approved operations on one
// partition and their reversals on another, written at once so that the two
// partitions' batches are applied concurrently, each by its own "records
// run" of the group: every operation ends reversed by its reversal
// (docs/records.md, "Reversals": the per-card lock).
func TestRecordsReversalOnOtherPartitionAtOnce(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic = "records-rev-split"
	testservers.CreateTopic(t, k.Brokers, topic, 2)
	pgURL := recordsDB(t, testservers.PostgresURL(t))
	startRecords(t, pgURL, k.Brokers, topic, "--batch", "10")
	startRecords(t, pgURL, k.Brokers, topic, "--batch", "10")
	time.Sleep(3 * time.Second) // both members joined: one partition each

	enc, err := events.NewEncoder(events.Source("records-test"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 12, 9, 0, 0, 0, time.UTC)
	want := map[string]string{}
	var ops, revs []kafka.Message
	for i := range 300 {
		card := randomToken(t)
		ev := routing.Event{ID: uuid.NewString(), Operation: routing.OpChange, Outcome: routing.OutcomeApproved, Code: "00",
			Channel: routing.ChannelATM, Acquirer: "ACQ1", Terminal: "ATM00042", Issuer: "ISS1",
			MaskedPAN: "424242******4242", CardToken: card, Received: at, Completed: at.Add(time.Duration(i) * time.Millisecond)}
		rev := ev
		rev.ID, rev.Outcome, rev.Code, rev.Reason, rev.Reverses = uuid.NewString(), routing.OutcomeReversed, "68", "acquirer_reversal", ev.ID
		rev.Completed = ev.Completed.Add(time.Second)
		for _, e := range []*routing.Event{&ev, &rev} {
			e.Type = routing.EventType(e.Operation, e.Outcome)
			m, err := enc.Encode(*e)
			if err != nil {
				t.Fatal(err)
			}
			if e == &ev {
				ops = append(ops, kafkaMessage(m))
			} else {
				revs = append(revs, kafkaMessage(m))
			}
		}
		want[ev.ID] = rev.ID
	}
	var wg sync.WaitGroup
	for p, msgs := range [][]kafka.Message{ops, revs} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < len(msgs); i += 10 {
				writePartition(t, k.Brokers, topic, p, msgs[i:i+10]...)
			}
		}()
	}
	wg.Wait()
	st := waitForDB(t, pgURL, 2*len(want))
	missed := 0
	for op, rev := range want {
		if st.reversed[op] != rev {
			missed++
		}
	}
	if missed > 0 || len(st.reversed) != len(want) {
		t.Errorf("%d of %d operations not marked reversed by their reversal on the other partition (%d marked)", missed, len(want), len(st.reversed))
	}
}
