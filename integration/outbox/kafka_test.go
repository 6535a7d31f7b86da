package outbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
	"github.com/segmentio/kafka-go"

	"pingate/integration/events"
	"pingate/integration/testservers"
)

const partitions = 3

// relayConfig returns a relay configuration for a test broker with short
// timeouts, so a stopped broker is noticed within seconds.
func relayConfig(brokers, topic string) RelayConfig {
	return RelayConfig{
		Brokers: []string{brokers}, Topic: topic,
		WriteTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, CallTimeout: 5 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond,
	}
}

// waitDrained waits until Kafka acknowledged every entry.
func waitDrained(t *testing.T, j *Journal, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for j.Stats().Lag > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("relay did not drain within %v: %+v, relay %+v", within, j.Stats(), j.Relay().Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readTopic reads every record of topic, partition by partition, with a plain
// kafka-go Reader, up to each partition's high watermark.
func readTopic(t *testing.T, brokers, topic string) map[int][]kafka.Message {
	t.Helper()
	out := map[int][]kafka.Message{}
	for p := range partitions {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, err := kafka.DialLeader(ctx, "tcp", brokers, topic, p)
		if err != nil {
			cancel()
			t.Fatalf("dial leader of partition %d: %v", p, err)
		}
		hw, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			cancel()
			t.Fatalf("read high watermark of partition %d: %v", p, err)
		}
		if hw == 0 {
			cancel()
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{brokers}, Topic: topic, Partition: p,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				cancel()
				t.Fatalf("read partition %d at %d of %d: %v", p, len(out[p]), hw, err)
			}
			out[p] = append(out[p], m)
			if m.Offset >= hw-1 {
				break
			}
		}
		r.Close()
		cancel()
	}
	return out
}

func toMessage(m kafka.Message) events.Message {
	em := events.Message{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		em.Headers = append(em.Headers, events.Header{Key: h.Key, Value: h.Value})
	}
	return em
}

// TestKafka runs the tests that share one real broker (a broker start costs
// seconds); TestKafkaStoppedMidLoad has its own, since it stops it.
func TestKafka(t *testing.T) {
	k := testservers.StartKafka(t)
	t.Run("EveryEventType", func(t *testing.T) { testEveryEventType(t, k) })
	t.Run("CrashDuplicates", func(t *testing.T) { testCrashDuplicates(t, k) })
	t.Run("RecoversAfterStorageFault", func(t *testing.T) { testRecoversAfterStorageFault(t, k) })
}

// testRecoversAfterStorageFault: a WAL write error fails the journal while
// the relay runs; once the disk is healed the journal reopens itself and the
// relay delivers every entry acknowledged before and after the fault, each
// under its own ce_id, and never two different records under one ce_id.
func testRecoversAfterStorageFault(t *testing.T, k *testservers.Kafka) {
	const topic = "pingate.events.storagefault"
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	inj := newFaultFS(errors.New("no space left on device"))
	cfg := testConfig(t)
	cfg.FS = errorfs.Wrap(vfs.Default, inj)
	cfg.probeInterval = 20 * time.Millisecond
	cfg.Relay = relayConfig(k.Brokers, topic)
	j := mustOpen(t, cfg)
	ctx := context.Background()
	var acked []int
	for i := range 5 {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d): %v", i, err)
		}
		acked = append(acked, i)
	}
	inj.armed.Store(true)
	for i := 5; i < 8; i++ {
		if err := j.Publish(ctx, testEvent(i)); err == nil {
			t.Fatalf("Publish(%d) with the WAL failing = nil, want an error", i)
		}
	}
	inj.heal()
	waitHealthy(t, j)
	for i := 8; i < 12; i++ {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d) after recovery: %v", i, err)
		}
		acked = append(acked, i)
	}
	waitDrained(t, j, 60*time.Second)
	shutdown(t, j)
	byID := map[string][]byte{}
	for p, ms := range readTopic(t, k.Brokers, topic) {
		for _, m := range ms {
			ev, err := events.Decode(toMessage(m))
			if err != nil {
				t.Fatalf("partition %d offset %d: Decode() error = %v", p, m.Offset, err)
			}
			if prev, ok := byID[ev.ID]; ok && !bytes.Equal(prev, m.Value) {
				t.Errorf("ce_id %s on the topic twice with different records", ev.ID)
			}
			byID[ev.ID] = m.Value
		}
	}
	for _, i := range acked {
		if _, ok := byID[testEvent(i).ID]; !ok {
			t.Errorf("acknowledged event %d is not on the topic", i)
		}
	}
}

// testEveryEventType publishes every event type for several cards and reads
// them back from a real broker: key, headers, schema, per-card order.
func testEveryEventType(t *testing.T, k *testservers.Kafka) {
	const topic = "pingate.events.types"
	testservers.CreateTopic(t, k.Brokers, topic, partitions)

	cfg := testConfig(t)
	cfg.Relay = relayConfig(k.Brokers, topic)
	j := mustOpen(t, cfg)
	n := 2 * len(events.Types()) // every type, twice, spread over 7 cards
	for i := range n {
		if err := j.Publish(context.Background(), testEvent(i)); err != nil {
			t.Fatalf("Publish(%d) error = %v", i, err)
		}
	}
	waitDrained(t, j, 60*time.Second)
	shutdown(t, j)

	got := readTopic(t, k.Brokers, topic)
	types := map[string]int{}
	byID := map[string]bool{}
	for p, ms := range got {
		lastOfCard := map[string]int{}
		for _, m := range ms {
			ev, err := events.Decode(toMessage(m))
			if err != nil {
				t.Fatalf("partition %d offset %d: Decode() error = %v", p, m.Offset, err)
			}
			if err := events.ValidateBody(m.Value); err != nil {
				t.Errorf("%s: ValidateBody() = %v", ev.Type, err)
			}
			idx := -1
			for i := range n {
				if testEvent(i).ID == ev.ID {
					idx = i
				}
			}
			if idx < 0 {
				t.Fatalf("unknown ce_id %s on the topic", ev.ID)
			}
			want := testEvent(idx)
			if string(m.Key) != want.CardToken {
				t.Errorf("event %d key = %q, want card token %q", idx, m.Key, want.CardToken)
			}
			for h, v := range map[string]string{
				events.HeaderID: want.ID, events.HeaderType: want.Type, events.HeaderSource: "/pingate/test",
				events.HeaderSpecVersion: "1.0", events.HeaderSubject: want.CardToken,
				events.HeaderContentType: "application/json", events.HeaderTraceParent: want.TraceParent,
				events.HeaderTime: want.Time.Format(time.RFC3339Nano),
			} {
				if got, _ := toMessage(m).Header(h); got != v {
					t.Errorf("event %d header %s = %q, want %q", idx, h, got, v)
				}
			}
			// Per-card order: a card's events appear in publish order.
			if prev, ok := lastOfCard[want.CardToken]; ok && prev > idx {
				t.Errorf("card %s: event %d after event %d", want.CardToken, idx, prev)
			}
			lastOfCard[want.CardToken] = idx
			types[ev.Type]++
			byID[ev.ID] = true
		}
	}
	if len(byID) != n {
		t.Errorf("%d distinct events on the topic, want %d", len(byID), n)
	}
	for _, ty := range events.Types() {
		if types[ty] != 2 {
			t.Errorf("type %s seen %d times, want 2", ty, types[ty])
		}
	}
}

// TestKafkaStoppedMidLoad stops the broker while events are published and
// starts it again: every event reaches the topic (count of distinct ce_id =
// published).
func TestKafkaStoppedMidLoad(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic = "pingate.events.outage"
	testservers.CreateTopic(t, k.Brokers, topic, partitions)

	cfg := testConfig(t)
	cfg.Relay = relayConfig(k.Brokers, topic)
	j := mustOpen(t, cfg)

	const n = 600
	var published atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := j.Publish(context.Background(), testEvent(i)); err != nil {
				done <- fmt.Errorf("Publish(%d): %w", i, err)
				return
			}
			published.Add(1)
			time.Sleep(time.Millisecond)
		}
		done <- nil
	}()
	waitFor := func(v int64) {
		for published.Load() < v {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(150)
	k.Stop()
	failuresBefore := j.Relay().Stats().Failures
	waitFor(400)
	// The broker is down: the journal holds the events and the relay fails.
	deadline := time.Now().Add(30 * time.Second)
	for j.Relay().Stats().Failures == failuresBefore {
		if time.Now().After(deadline) {
			t.Fatal("relay reported no failure while the broker was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lag := j.Stats().Lag; lag == 0 {
		t.Error("Stats().Lag = 0 while the broker is down")
	}
	k.Start()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitDrained(t, j, 90*time.Second)
	shutdown(t, j)

	seen := map[string]int{}
	total := 0
	for _, ms := range readTopic(t, k.Brokers, topic) {
		for _, m := range ms {
			id, _ := toMessage(m).Header(events.HeaderID)
			seen[id]++
			total++
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct ce_id on the topic, want %d (records %d)", len(seen), n, total)
	}
	for i := range n {
		if seen[testEvent(i).ID] == 0 {
			t.Errorf("event %d lost", i)
		}
	}
	t.Logf("%d records for %d events (%d re-sent after the outage)", total, n, total-n)
}

// Crash test: a child process (this test binary) publishes events and is
// SIGKILLed after Kafka acknowledged the first batch but before the relay
// recorded its progress. The restarted journal sends that batch again: the
// duplicates carry the same ce_id and the same bytes.
const (
	envCrashDir     = "PINGATE_OUTBOX_CRASH_DIR"
	envCrashBrokers = "PINGATE_OUTBOX_CRASH_BROKERS"
	envCrashTopic   = "PINGATE_OUTBOX_CRASH_TOPIC"
	crashEvents     = 40
)

// TestCrashChild is the child half of testCrashDuplicates; it does
// nothing unless started by it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("child process of TestKafka/CrashDuplicates")
	}
	cfg := Config{Dir: dir, Source: events.Source("test"),
		Relay: relayConfig(os.Getenv(envCrashBrokers), os.Getenv(envCrashTopic))}
	j, err := Open(cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	// Hold the relay after Kafka acknowledged its first batch, before the
	// progress is recorded: the crash window.
	j.relay.testHookAfterWrite = func(last uint64) {
		fmt.Println("ACKED", last)
		select {} // killed here
	}
	for i := range crashEvents {
		if err := j.Publish(context.Background(), testEvent(i)); err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
	}
	fmt.Println("PUBLISHED", crashEvents)
	select {}
}

func testCrashDuplicates(t *testing.T, k *testservers.Kafka) {
	const topic = "pingate.events.crash"
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	dir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashBrokers+"="+k.Brokers, envCrashTopic+"="+topic)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := uint64(0)
	publishedAll := false
	sc := bufio.NewScanner(stdout)
	for (acked == 0 || !publishedAll) && sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "ACKED":
			acked, _ = strconv.ParseUint(f[1], 10, 64)
		case len(f) == 2 && f[0] == "PUBLISHED":
			publishedAll = true
		case len(f) > 0 && f[0] == "ERROR":
			t.Fatalf("child: %s", sc.Text())
		}
	}
	if acked == 0 || !publishedAll {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child ended before the crash window (acked %d, published %v): %s", acked, publishedAll, stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown, no flush
		t.Fatal(err)
	}
	cmd.Wait()

	cfg := Config{Dir: dir, Source: events.Source("test"), Relay: relayConfig(k.Brokers, topic)}
	j := mustOpen(t, cfg)
	if s := j.Stats(); s.Last != crashEvents || s.Relayed != 0 {
		t.Errorf("after the crash Stats() = %+v, want Last %d Relayed 0", s, crashEvents)
	}
	waitDrained(t, j, 60*time.Second)
	shutdown(t, j)

	byID := map[string][][]byte{}
	total := 0
	for _, ms := range readTopic(t, k.Brokers, topic) {
		for _, m := range ms {
			id, _ := toMessage(m).Header(events.HeaderID)
			// The whole record as sent: key, headers, value.
			var rec bytes.Buffer
			rec.Write(m.Key)
			for _, h := range m.Headers {
				rec.WriteString(h.Key)
				rec.Write(h.Value)
			}
			rec.Write(m.Value)
			byID[id] = append(byID[id], rec.Bytes())
			total++
		}
	}
	if len(byID) != crashEvents {
		t.Errorf("%d distinct ce_id, want %d", len(byID), crashEvents)
	}
	if want := crashEvents + int(acked); total != want {
		t.Errorf("%d records, want %d (%d events + %d re-sent)", total, want, crashEvents, acked)
	}
	dups := 0
	for i := range crashEvents {
		recs := byID[testEvent(i).ID]
		if len(recs) == 0 {
			t.Errorf("event %d lost", i)
		}
		if len(recs) > 1 {
			dups++
			for _, r := range recs[1:] {
				if !bytes.Equal(r, recs[0]) {
					t.Errorf("event %d: re-sent record differs from the first", i)
				}
			}
		}
	}
	if dups != int(acked) {
		t.Errorf("%d events sent twice, want %d (the batch acknowledged before the crash)", dups, acked)
	}
}
