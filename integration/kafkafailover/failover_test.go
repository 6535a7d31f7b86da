package kafkafailover

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/kafkatopic"
	"pingate/integration/loadgen"
	"pingate/integration/logredact"
	"pingate/integration/testservers"
)

// The cluster of the package's tests, started once in TestMain (a start
// costs three JVMs: 10–30 s here). Each test leaves every node running.
var (
	cluster    *testservers.KafkaCluster
	clusterErr error
)

const partitions = 3

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "pingate-kafka-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if testing.Short() {
		clusterErr = errors.New("-short: no Kafka cluster")
	} else {
		t0 := time.Now()
		cluster, clusterErr = testservers.StartKafkaCluster(dir)
		if clusterErr == nil {
			fmt.Printf("kafka cluster of three nodes serving in %.1fs: %v\n", time.Since(t0).Seconds(), cluster.Brokers)
		}
	}
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	_ = os.RemoveAll(dir)
	if code == 0 {
		// Every goroutine a gateway or a client started must have ended.
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/internal/invariants.init.0.func1"),
			goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needCluster returns the cluster, or skips the test with the reason it did
// not start (java or the jars missing) — a failure when CI is "true", and a
// failure whenever the cluster was there to start but did not.
func needCluster(t *testing.T) *testservers.KafkaCluster {
	t.Helper()
	switch {
	case cluster != nil:
		return cluster
	case testing.Short():
		t.Skip("kills Kafka brokers under load")
	case errors.Is(clusterErr, testservers.ErrClusterUnavailable) && os.Getenv("CI") != "true":
		t.Skipf("%v: run ./scripts/services.sh start first", clusterErr)
	}
	t.Fatalf("three-node Kafka cluster: %v", clusterErr)
	return nil
}

// startGateway runs a gateway on the embedded default (issuer simulator in
// process) whose relay publishes to topic on the cluster, which it creates at
// start with replication factor 3 and min.insync.replicas=2, and limits a
// load run does not trip. It returns once the issuer links have signed on.
func startGateway(t *testing.T, c *testservers.KafkaCluster, instance, topic string) *gateway.Gateway {
	t.Helper()
	var log syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the gateway's log (warnings and errors):\n%s", tail(log.String(), 4000))
			t.Logf("cluster:\n%s", c.Status())
		}
	})
	g := gatewaytest.Start(t, func(cfg *gateway.Config) {
		cfg.Instance = instance
		cfg.Limits.TerminalRPS, cfg.Limits.TerminalBurst = 100_000, 100_000
		cfg.Limits.AcquirerRPS, cfg.Limits.AcquirerBurst = 1e6, 1_000_000
		cfg.Limits.CardOpsPerDay = 1_000_000
		cfg.Events.KafkaBrokers, cfg.Events.KafkaTopic = c.Brokers, topic
		cfg.Events.KafkaTopicPartitions, cfg.Events.KafkaTopicReplication, cfg.Events.KafkaTopicMinInSync = partitions, 3, 2
	}, gatewaytest.WithLogger(logredact.New(logredact.Config{Level: "warn"}, &log)))
	deadline := time.Now().Add(20 * time.Second)
	for {
		on := g.SignedOn()
		if on[gateway.DevIssuer] && on[gateway.DevSM4Issuer] {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("issuer links not signed on after 20s: %v", on)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load drives ATM PIN changes over TCP for d on the cards [offset,
// offset+200) of the simulator's population, and fails the test unless every
// request was answered 00. It returns the number answered.
func load(t *testing.T, g *gateway.Gateway, d time.Duration, offset int) int {
	t.Helper()
	sc := g.Config().IssuerSim
	p := loadgen.Params{Target: g.AcquirerAddr(), Conns: 2, InFlight: 4, Duration: d,
		// A long per-request timeout: on a busy 2-core machine with JVMs
		// restarting, a slow answer must not count as unanswered.
		Timeout: 30 * time.Second, Mix: loadgen.Mix{100, 0, 0},
		Pop:    issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN},
		Offset: offset, Cards: 200, Terminals: 10_000, Seed: uint64(offset + 1)}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	rep, err := loadgen.Run(context.Background(), p, nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if rep.Requests == 0 || rep.Errors != 0 || len(rep.Codes) != 1 || rep.Codes["00"] != rep.Requests {
		t.Fatalf("load: %d requests, %d unanswered %v, codes %v; want every one answered 00",
			rep.Requests, rep.Errors, rep.ErrorKinds, rep.Codes)
	}
	return int(rep.Codes["00"])
}

// killDuring kills nodes after delay, while a load runs; wait returns the
// first error.
func killDuring(c *testservers.KafkaCluster, delay time.Duration, nodes ...int) (wait func() error) {
	done := make(chan error, 1)
	go func() {
		time.Sleep(delay)
		var err error
		for _, n := range nodes {
			err = errors.Join(err, c.Kill(n))
		}
		done <- err
	}()
	return func() error { return <-done }
}

// restart starts nodes again, side by side, and fails the test if one does
// not come back. Registered in t.Cleanup too, so a failed test leaves the
// next one a whole cluster.
func restart(t *testing.T, c *testservers.KafkaCluster, nodes ...int) {
	t.Helper()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = c.StartNode(n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("restart nodes %v: %v", nodes, err)
	}
}

// waitDrained waits until the journal's relay has every entry acknowledged
// by Kafka and returns how long that took.
func waitDrained(t *testing.T, g *gateway.Gateway, within time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for {
		st := g.Journal().Stats()
		if st.Lag == 0 {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			t.Fatalf("relay lag %d after %v (relay %+v)", st.Lag, within, g.Journal().Relay().Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOneBrokerKilledUnderLoad(t *testing.T) {
	c := needCluster(t)
	const topic = "pingate.failover.one-down.v1"
	g := startGateway(t, c, "kafka-one-down", topic)
	cl := newClient(t, c.Brokers)
	checkTopic(t, cl, topic)

	// The node that leads partition 0 dies 2 s into a 6 s run: its
	// partitions move to the two others, which keep min.insync.replicas.
	victim := leaderOf(t, cl, topic, 0)
	t.Cleanup(func() { _ = c.StartNode(victim) })
	wait := killDuring(c, 2*time.Second, victim)
	answered := load(t, g, 6*time.Second, 0)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	lag := g.Journal().Stats().Lag
	drain := waitDrained(t, g, 2*time.Minute)
	got := countTopic(t, c.Brokers, topic, "/pingate/kafka-one-down")
	got.check(t, answered)
	rs := g.Journal().Relay().Stats()
	t.Logf("node %d killed under load: %d PIN changes all answered 00; relay lag %d when the load ended, drained in %v; topic: %d records, %d distinct ce_id, %d re-sent; relay: %d failed calls, the last: %s",
		victim, answered, lag, drain.Round(10*time.Millisecond), got.records, len(got.ids), got.records-len(got.ids), rs.Failures, rs.LastError[:min(len(rs.LastError), 160)])
	restart(t, c, victim)
}

func TestTwoBrokersKilledJournalHolds(t *testing.T) {
	c := needCluster(t)
	const topic = "pingate.failover.two-down.v1"
	g := startGateway(t, c, "kafka-two-down", topic)
	cl := newClient(t, c.Brokers)
	checkTopic(t, cl, topic)

	// Two nodes die 2 s into a 5 s run, the leader of partition 0 one of
	// them: one broker is left, below min.insync.replicas, and the
	// controllers have lost their quorum. Kafka acknowledges nothing more;
	// the gateway goes on answering from its journal.
	victim := leaderOf(t, cl, topic, 0)
	other := victim%3 + 1
	t.Cleanup(func() { _ = c.StartNode(victim); _ = c.StartNode(other) })
	wait := killDuring(c, 2*time.Second, victim, other)
	answered := load(t, g, 5*time.Second, 0)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	// A run wholly with two nodes down: none of its events can be in Kafka,
	// so the relay must hold at least all of them.
	during := load(t, g, 3*time.Second, 200)
	answered += during
	// Readiness does not hang on Kafka: the balancer keeps the instance.
	if code, body := readyz(t, g); code != http.StatusOK {
		t.Fatalf("GET /readyz with two of three brokers down = %d %s, want 200", code, body)
	}
	st := g.Journal().Stats()
	if st.Lag < during || st.Depth < st.Lag {
		t.Fatalf("with two of three brokers down: relay lag %d, journal depth %d; want both at least the %d outcomes answered while they were down",
			st.Lag, st.Depth, during)
	}

	t0 := time.Now()
	restart(t, c, victim, other)
	back := time.Since(t0)
	drain := waitDrained(t, g, 3*time.Minute)
	got := countTopic(t, c.Brokers, topic, "/pingate/kafka-two-down")
	got.check(t, answered)
	t.Logf("nodes %d and %d killed under load: %d PIN changes all answered 00 (%d with both down); backlog %d events in the journal; nodes serving again after %v, backlog delivered %v later; topic: %d records, %d distinct ce_id, %d re-sent",
		victim, other, answered, during, st.Lag, back.Round(10*time.Millisecond), drain.Round(10*time.Millisecond),
		got.records, len(got.ids), got.records-len(got.ids))
}

// TestEnsureTopicPastADeadBootstrapBroker: the topic creation at start
// tries the bootstrap brokers in turn, so a gateway whose first listed broker
// is down still creates its topic, with the settings asked for.
func TestEnsureTopicPastADeadBootstrapBroker(t *testing.T) {
	c := needCluster(t)
	const topic = "pingate.failover.bootstrap.v1"
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there, the dial is refused.
	brokers := append([]string{"127.0.0.1:1"}, c.Brokers...)
	if err := kafkatopic.Ensure(ctx, brokers, kafkatopic.Spec{Topic: topic, Partitions: partitions, Replication: 3, MinInSync: 2}); err != nil {
		t.Fatalf("Ensure with a dead first broker: %v", err)
	}
	checkTopic(t, newClient(t, c.Brokers), topic)
	err := kafkatopic.Ensure(ctx, c.Brokers, kafkatopic.Spec{Topic: "pingate.failover.bad.v1", Partitions: 1, Replication: 3, MinInSync: 4})
	if err == nil || !strings.Contains(err.Error(), "min.insync.replicas 4") {
		t.Fatalf("Ensure with min.insync.replicas 4 of 3 replicas = %v, want an error naming it", err)
	}
}

// ---------------------------------------------------------------- the independent client

func newClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// checkTopic asks the cluster how the gateway created topic: three
// partitions, three replicas each, min.insync.replicas=2.
func checkTopic(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta := metadata(t, cl, topic)
	if len(meta.Partitions) != partitions {
		t.Fatalf("topic %s has %d partitions, want %d", topic, len(meta.Partitions), partitions)
	}
	for _, p := range meta.Partitions {
		if len(p.Replicas) != 3 {
			t.Fatalf("topic %s partition %d has replicas %v, want 3", topic, p.Partition, p.Replicas)
		}
	}
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	res.ConfigNames = []string{"min.insync.replicas"}
	req.Resources = append(req.Resources, res)
	for {
		// Unknown topic (3) from a broker that has not yet read the topic's
		// creation from the metadata log: ask again.
		resp, err := req.RequestWith(ctx, cl)
		if err == nil && len(resp.Resources) == 1 && resp.Resources[0].ErrorCode == 0 {
			cs := resp.Resources[0].Configs
			if len(cs) != 1 || cs[0].Value == nil || *cs[0].Value != "2" {
				t.Fatalf("topic %s configs %+v, want min.insync.replicas 2", topic, cs)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("describe configs of %s: %v %+v", topic, err, resp)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func metadata(t *testing.T, cl *kgo.Client, topic string) kmsg.MetadataResponseTopic {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	for {
		// A broker learns of a new topic from the metadata log a moment
		// after the one that created it: ask again until it knows.
		resp, err := req.RequestWith(ctx, cl)
		if err == nil && len(resp.Topics) == 1 && resp.Topics[0].ErrorCode == 0 {
			return resp.Topics[0]
		}
		select {
		case <-ctx.Done():
			code := int16(-1)
			if err == nil && len(resp.Topics) == 1 {
				code = resp.Topics[0].ErrorCode
			}
			t.Fatalf("metadata of %s: %v, error code %d", topic, err, code)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// leaderOf is the node (1–3: node.id in scripts/kafka-cluster.sh) leading
// partition p of topic.
func leaderOf(t *testing.T, cl *kgo.Client, topic string, p int32) int {
	t.Helper()
	for _, mp := range metadata(t, cl, topic).Partitions {
		if mp.Partition == p && mp.Leader >= 1 && mp.Leader <= 3 {
			return int(mp.Leader)
		}
	}
	t.Fatalf("partition %d of %s has no leader among nodes 1-3", p, topic)
	return 0
}

// topicCount is what the independent client read from the topic.
type topicCount struct {
	records int            // records read
	ids     map[string]int // ce_id → how many records carry it
	codes   map[string]int // response_code → distinct events
	foreign int            // records with another ce_source, or none
}

// check fails the test unless the topic holds exactly one event per
// answered request, by ce_id, each answered 00. A record re-sent with the
// same ce_id (delivery is at least once: a produce the writer retried after
// the leader had written it) is counted in records, not as an event.
func (c topicCount) check(t *testing.T, answered int) {
	t.Helper()
	if len(c.ids) != answered || c.codes["00"] != answered || c.foreign != 0 {
		t.Fatalf("topic holds %d distinct events (codes %v, %d records, %d of another source) for %d requests answered 00",
			len(c.ids), c.codes, c.records, c.foreign, answered)
	}
}

// countTopic reads topic from the start up to the end offsets it has now and
// counts its events by ce_id.
func countTopic(t *testing.T, brokers []string, topic, source string) topicCount {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends := endOffsets(ctx, t, newClient(t, brokers), topic)
	got := topicCount{ids: map[string]int{}, codes: map[string]int{}}
	offsets := map[int32]kgo.Offset{}
	pending := 0
	for p, end := range ends {
		if end > 0 {
			offsets[p] = kgo.NewOffset().AtStart()
			pending++
		}
	}
	if pending == 0 {
		return got
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	next := map[int32]int64{}
	for pending > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %d partitions not read to their end %v after 1m (read up to %v)", topic, pending, ends, next)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= ends[r.Partition] {
				return
			}
			got.records++
			var id, src string
			for _, h := range r.Headers {
				switch h.Key {
				case events.HeaderID:
					id = string(h.Value)
				case events.HeaderSource:
					src = string(h.Value)
				}
			}
			if src != source || id == "" {
				got.foreign++
			} else {
				got.ids[id]++
				if got.ids[id] == 1 {
					var body struct {
						Code string `json:"response_code"`
					}
					_ = json.Unmarshal(r.Value, &body)
					got.codes[body.Code]++
				}
			}
			if r.Offset+1 == ends[r.Partition] {
				pending--
			}
			next[r.Partition] = r.Offset + 1
		})
	}
	return got
}

// endOffsets lists each partition's end offset (ListOffsets, timestamp -1).
func endOffsets(ctx context.Context, t *testing.T, cl *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range int32(partitions) {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	for {
		resp, err := req.RequestWith(ctx, cl)
		ends, ok := map[int32]int64{}, err == nil
		if ok {
			for _, tp := range resp.Topics {
				for _, p := range tp.Partitions {
					if p.ErrorCode != 0 {
						ok = false
					}
					ends[p.Partition] = p.Offset
				}
			}
		}
		if ok && len(ends) == partitions {
			return ends
		}
		// A partition whose leader just died answers an error until it is
		// led elsewhere; with two nodes down it stays without a leader.
		select {
		case <-ctx.Done():
			t.Fatalf("end offsets of %s: %v %+v", topic, err, resp)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ---------------------------------------------------------------- helpers

func readyz(t *testing.T, g *gateway.Gateway) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + g.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c.CloseIdleConnections()
	return resp.StatusCode, string(b)
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
