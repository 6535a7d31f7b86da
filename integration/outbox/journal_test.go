package outbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"pingate/integration/events"
	"pingate/routing"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testT0 = time.Date(2025, 11, 25, 9, 0, 0, 0, time.UTC)

// testEvent returns a valid event number i, of the i-th event type, for one
// of 7 cards. Its id is derived from i, so a re-run produces the same ids.
func testEvent(i int) routing.Event {
	types := len(events.Operations) * len(events.Outcomes)
	op := events.Operations[(i%types)/len(events.Outcomes)]
	oc := events.Outcomes[i%len(events.Outcomes)]
	code := map[string]string{
		routing.OutcomeApproved: "00", routing.OutcomeDeclined: "55", routing.OutcomeReversed: "91",
		routing.OutcomeLimited: "65", routing.OutcomeRejected: "14", routing.OutcomeFailed: "96",
	}[oc]
	card := i % 7
	at := testT0.Add(time.Duration(i) * time.Millisecond)
	ev := routing.Event{
		ID:   uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint("event-", i))).String(),
		Type: routing.EventType(op, oc), Time: at, Operation: op, Outcome: oc, Code: code,
		Channel: routing.ChannelATM, Acquirer: "ACQ1", Terminal: "ATM00042", Issuer: "ISS1",
		MaskedPAN: "424242******4242", CardToken: fmt.Sprintf("card%028x", card),
		Received: at.Add(-100 * time.Millisecond), Completed: at,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	if op != routing.OpChange {
		ev.Channel, ev.Teller = routing.ChannelBranch, "T0107"
	}
	if oc != routing.OutcomeApproved {
		ev.Reason = "reason_" + oc
	}
	return ev
}

func testConfig(t testing.TB) Config {
	return Config{Dir: t.TempDir(), Source: events.Source("test")}
}

func mustOpen(t testing.TB, cfg Config) *Journal {
	t.Helper()
	j, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	return j
}

func shutdown(t testing.TB, j *Journal) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := j.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() error = %v", err)
	}
}

// ids decodes the ce_id of every entry.
func ids(t testing.TB, es []Entry) []string {
	t.Helper()
	out := make([]string, len(es))
	for i, e := range es {
		ev, err := events.Decode(e.Message)
		if err != nil {
			t.Fatalf("entry %d: Decode() error = %v", e.Seq, err)
		}
		out[i] = ev.ID
	}
	return out
}

func TestPublishOrderAndRestart(t *testing.T) {
	cfg := testConfig(t)
	j := mustOpen(t, cfg)
	ctx := context.Background()
	const n = 30
	for i := range n {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d) error = %v", i, err)
		}
	}
	check := func(j *Journal, want int) {
		t.Helper()
		es, err := j.Entries(1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != want {
			t.Fatalf("Entries() = %d entries, want %d", len(es), want)
		}
		got := ids(t, es)
		for i := range want {
			if es[i].Seq != uint64(i+1) {
				t.Errorf("entry %d has seq %d, want %d", i, es[i].Seq, i+1)
			}
			if want := testEvent(i).ID; got[i] != want {
				t.Errorf("entry %d id = %s, want %s", i, got[i], want)
			}
		}
	}
	check(j, n)
	shutdown(t, j)

	j = mustOpen(t, cfg)
	defer shutdown(t, j)
	if s := j.Stats(); s.Last != n || s.Depth != n {
		t.Fatalf("after restart Stats() = %+v, want Last %d Depth %d", s, n, n)
	}
	for i := n; i < n+5; i++ {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d) error = %v", i, err)
		}
	}
	check(j, n+5)
}

func TestEntriesRoundTripTheEvent(t *testing.T) {
	j := mustOpen(t, testConfig(t))
	defer shutdown(t, j)
	want := testEvent(3)
	if err := j.Publish(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	es, err := j.Entries(1, 1)
	if err != nil || len(es) != 1 {
		t.Fatalf("Entries() = %d, %v", len(es), err)
	}
	if err := events.ValidateBody(es[0].Message.Value); err != nil {
		t.Errorf("stored body: ValidateBody() = %v", err)
	}
	got, err := events.Decode(es[0].Message)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != want.ID || got.Type != want.Type || got.TraceParent != want.TraceParent || !got.Completed.Equal(want.Completed) {
		t.Errorf("stored event = %+v, want %+v", got, want)
	}
}

func TestPublishRefusesInvalidEvent(t *testing.T) {
	j := mustOpen(t, testConfig(t))
	defer shutdown(t, j)
	ev := testEvent(0)
	ev.MaskedPAN = "4242424242424242"
	err := j.Publish(context.Background(), ev)
	if !errors.Is(err, events.ErrUnsafeEvent) {
		t.Fatalf("Publish(unmasked PAN) error = %v, want %v", err, events.ErrUnsafeEvent)
	}
	if strings.Contains(err.Error(), "4242424242") {
		t.Error("Publish error echoes the PAN")
	}
	if s := j.Stats(); s.Last != 0 {
		t.Errorf("Stats().Last = %d after a refused event, want 0", s.Last)
	}
}

func TestRetentionInJournalOnlyMode(t *testing.T) {
	cfg := testConfig(t)
	cfg.Retain = 5
	j := mustOpen(t, cfg)
	for i := range 12 {
		if err := j.Publish(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	es, err := j.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	// Trims to 5 when 7 are held (Retain 5 + slack 1): after 12 appends,
	// the last trim (at 11) kept 7..11, then 12 came.
	if len(es) != 6 || es[0].Seq != 7 || es[5].Seq != 12 {
		t.Fatalf("Entries() = %d entries from %d, want 6 from 7", len(es), es[0].Seq)
	}
	if d := j.Stats().Depth; d != 6 {
		t.Errorf("Depth = %d, want 6", d)
	}
	shutdown(t, j)
	j = mustOpen(t, cfg) // the floor survives a restart
	defer shutdown(t, j)
	if s := j.Stats(); s.Depth != 6 || s.Last != 12 {
		t.Errorf("after restart Stats() = %+v, want Depth 6 Last 12", s)
	}
}

// TestDepthLimit runs the relay against a port nothing listens on: events
// accumulate until MaxDepth, then Publish refuses with ErrJournalFull.
func TestDepthLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxDepth, cfg.Retain = 4, 4
	cfg.Relay = RelayConfig{Brokers: []string{closedAddr(t)}, Topic: "t",
		BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		MaxAttempts: 1, WriteTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		CallTimeout: time.Second}
	j := mustOpen(t, cfg)
	ctx := context.Background()
	for i := range 4 {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d) error = %v", i, err)
		}
	}
	if err := j.Publish(ctx, testEvent(4)); !errors.Is(err, ErrJournalFull) {
		t.Fatalf("Publish(past MaxDepth) error = %v, want %v", err, ErrJournalFull)
	}
	if s := j.Stats(); s.Lag != 4 || s.Depth != 4 {
		t.Errorf("Stats() = %+v, want Lag 4 Depth 4", s)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := j.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	if rs := j.Relay().Stats(); rs.Failures == 0 || rs.Sent != 0 {
		t.Errorf("Relay().Stats() = %+v, want failures and nothing sent", rs)
	}
	// Undelivered entries are still there for the next start.
	cfg.Relay = RelayConfig{}
	j = mustOpen(t, cfg)
	defer shutdown(t, j)
	if s := j.Stats(); s.Depth != 4 {
		t.Errorf("after restart Depth = %d, want 4", s.Depth)
	}
}

// TestWatermark: appends completing out of order move the durable
// watermark only over contiguous completed sequences.
func TestWatermark(t *testing.T) {
	j := mustOpen(t, testConfig(t))
	defer shutdown(t, j)
	tests := []struct {
		give uint64
		want uint64
	}{{3, 0}, {2, 0}, {5, 0}, {1, 3}, {4, 5}, {6, 6}}
	for _, tt := range tests {
		j.complete(tt.give)
		if got := j.last.Load(); got != tt.want {
			t.Errorf("complete(%d): watermark = %d, want %d", tt.give, got, tt.want)
		}
	}
}

// TestConcurrentPublish: every concurrent Publish lands exactly once, with
// contiguous sequence numbers, and concurrent appends share WAL fsyncs
// (group commit): fewer fsyncs than appends.
func TestConcurrentPublish(t *testing.T) {
	j := mustOpen(t, testConfig(t))
	defer shutdown(t, j)
	const workers, each = 16, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				if err := j.Publish(context.Background(), testEvent(w*each+k)); err != nil {
					t.Errorf("Publish() error = %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	es, err := j.Entries(1, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != workers*each {
		t.Fatalf("%d entries, want %d", len(es), workers*each)
	}
	seen := map[string]bool{}
	for i, id := range ids(t, es) {
		if es[i].Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, es[i].Seq)
		}
		if seen[id] {
			t.Fatalf("id %s appended twice", id)
		}
		seen[id] = true
	}
	if s := j.Stats(); s.Syncs == 0 || s.Syncs >= s.Appends {
		t.Errorf("Stats() = %+v: want 0 < WAL fsyncs < appends", s)
	}
}

func TestShutdown(t *testing.T) {
	j := mustOpen(t, testConfig(t))
	shutdown(t, j)
	if err := j.Publish(context.Background(), testEvent(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Shutdown error = %v, want %v", err, ErrClosed)
	}
	if err := j.Shutdown(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Shutdown() = %v, want %v", err, ErrClosed)
	}
}

func TestOpenLockedDir(t *testing.T) {
	cfg := testConfig(t)
	j := mustOpen(t, cfg)
	defer shutdown(t, j)
	if _, err := Open(cfg); err == nil {
		t.Error("second Open of the same directory succeeded; want a lock error")
	}
}

func TestMetrics(t *testing.T) {
	reader := metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	cfg := testConfig(t)
	cfg.MeterProvider = mp
	j := mustOpen(t, cfg)
	defer shutdown(t, j)
	for i := range 3 {
		if err := j.Publish(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	bad := testEvent(9)
	bad.ID = ""
	_ = j.Publish(context.Background(), bad)

	collect := func() map[string]int64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			if sm.Scope.Name != MeterName {
				continue
			}
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Gauge[int64]:
					for _, p := range d.DataPoints {
						got[m.Name] = p.Value
					}
				case metricdata.Sum[int64]:
					for _, p := range d.DataPoints {
						r, _ := p.Attributes.Value("result")
						got[m.Name+"/"+r.AsString()] = p.Value
					}
				}
			}
		}
		return got
	}
	// The sync count is read from pebble's fsync-latency histogram, which
	// pebble may update just after it has woken the committer: wait for it
	// to settle rather than read it once.
	got := collect()
	for deadline := time.Now().Add(5 * time.Second); got[MetricSyncs+"/"] < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		got = collect()
	}
	want := map[string]int64{
		MetricJournalDepth:         3,
		MetricAppends + "/ok":      3,
		MetricAppends + "/invalid": 1,
	}
	if got[MetricSyncs+"/"] < 3 {
		t.Errorf("metric %s = %d, want at least 3 (one per sequential append)", MetricSyncs, got[MetricSyncs+"/"])
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("metric %s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config { return Config{Dir: "/x", Source: "/pingate/a"} }
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(minimal) = %v", err)
	}
	if c.MaxDepth != DefaultMaxDepth || c.Retain != DefaultRetain || c.Relay.BatchSize != DefaultBatchSize ||
		c.Relay.CallTimeout != DefaultCallTimeout || c.Relay.Linger != DefaultLinger || c.SyncInterval != DefaultSyncInterval || !c.JournalOnly() {
		t.Errorf("defaults not applied: %+v", c)
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no dir", func(c *Config) { c.Dir = "" }, "dir"},
		{"no source", func(c *Config) { c.Source = "" }, "source"},
		{"negative depth", func(c *Config) { c.MaxDepth = -1 }, "max_depth -1"},
		{"retain over depth", func(c *Config) { c.MaxDepth, c.Retain = 10, 11 }, "retain 11"},
		{"broker without port", func(c *Config) { c.Relay.Brokers = []string{"kafka"}; c.Relay.Topic = "t" }, `broker "kafka"`},
		{"no topic", func(c *Config) { c.Relay.Brokers = []string{"k:9092"} }, "topic"},
		{"call timeout too short", func(c *Config) { c.Relay.CallTimeout = time.Second }, "call_timeout"},
		{"backoff reversed", func(c *Config) { c.Relay.BackoffMin, c.Relay.BackoffMax = time.Second, time.Millisecond }, "backoff"},
		{"linger too long", func(c *Config) { c.Relay.Linger = time.Second }, "linger 1s"},
		{"sync interval too long", func(c *Config) { c.SyncInterval = 11 * time.Millisecond }, "sync_interval 11ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want %v naming %q", err, ErrConfig, tt.want)
			}
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestReader(t *testing.T) {
	cfg := testConfig(t)
	j := mustOpen(t, cfg)
	for i := range 10 {
		if err := j.Publish(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenReader(cfg.Dir); err == nil {
		t.Error("OpenReader on an open journal succeeded; want a lock error")
	}
	shutdown(t, j)
	r, err := OpenReader(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tests := []struct {
		name      string
		read      func(int) ([]Entry, error)
		give      int
		wantFirst uint64
		wantLen   int
	}{
		{"last 3", r.Last, 3, 8, 3},
		{"last all", r.Last, 0, 1, 10},
		{"last 20", r.Last, 20, 1, 10},
		{"first 4", r.First, 4, 1, 4},
		{"first all", r.First, 0, 1, 10},
	}
	for _, tt := range tests {
		es, err := tt.read(tt.give)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(es) != tt.wantLen || es[0].Seq != tt.wantFirst {
			t.Errorf("%s: %d entries from %d, want %d from %d", tt.name, len(es), es[0].Seq, tt.wantLen, tt.wantFirst)
		}
	}
	if _, err := OpenReader(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("OpenReader(missing dir) succeeded")
	}
}

func TestConfigDefaultsFollowLimits(t *testing.T) {
	c := Config{Dir: "/x", Source: "/pingate/a", MaxDepth: 1000, Relay: RelayConfig{WriteTimeout: 20 * time.Second}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if c.Retain != 1000 || c.Relay.CallTimeout != 60*time.Second {
		t.Errorf("Retain = %d, CallTimeout = %v; want 1000, 1m0s", c.Retain, c.Relay.CallTimeout)
	}
}

// TestSyncIntervalOff: a negative Config.SyncInterval leaves pebble without
// a wait between fsyncs (its option nil), a positive one is passed as is.
func TestSyncIntervalOff(t *testing.T) {
	c := testConfig(t)
	c.SyncInterval = -1
	if err := c.Validate(); err != nil || c.SyncInterval != -1 {
		t.Fatalf("Validate() = %v with sync interval %v, want nil with -1 kept", err, c.SyncInterval)
	}
	if f := minSyncInterval(c.SyncInterval); f != nil {
		t.Errorf("sync interval -1 gives pebble a minimum of %v, want none", f())
	}
	if f := minSyncInterval(3 * time.Millisecond); f == nil || f() != 3*time.Millisecond {
		t.Error("sync interval 3ms is not passed to pebble")
	}
	j := mustOpen(t, c)
	defer shutdown(t, j)
	for i := range 3 {
		if err := j.Publish(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
}
