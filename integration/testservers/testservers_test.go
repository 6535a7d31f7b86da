package testservers

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRedisStopStart(t *testing.T) {
	r := StartRedisServer(t)
	if err := redisPing(r.Addr); err != nil {
		t.Fatalf("PING after start: %v", err)
	}
	r.Stop()
	if err := redisPing(r.Addr); err == nil {
		t.Fatalf("PING %s after Stop succeeded, want an error", r.Addr)
	}
	r.Stop() // idempotent
	r.Start()
	if err := redisPing(r.Addr); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

func TestStartRedisStopFunc(t *testing.T) {
	addr, stop := StartRedis(t)
	if err := redisPing(addr); err != nil {
		t.Fatalf("PING: %v", err)
	}
	stop()
	if err := redisPing(addr); err == nil {
		t.Fatalf("PING %s after stop succeeded, want an error", addr)
	}
}

func TestKafkaWriteReadRestart(t *testing.T) {
	k := StartKafka(t)
	const topic = "testservers.check"
	CreateTopic(t, k.Brokers, topic, 3)
	CreateTopic(t, k.Brokers, topic, 3) // existing topic: no error

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tr := &kafka.Transport{} // the default transport keeps idle connections (and goroutines) forever
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Transport:    tr,
		Addr:         kafka.TCP(k.Brokers),
		Topic:        topic,
		RequiredAcks: kafka.RequireAll,
		Balancer:     &kafka.Hash{},
		BatchTimeout: time.Millisecond,
	}
	want := map[string]string{}
	var msgs []kafka.Message
	for i := range 6 {
		key, val := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		want[key] = val
		msgs = append(msgs, kafka.Message{Key: []byte(key), Value: []byte(val)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("WriteMessages: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Writer.Close: %v", err)
	}

	k.Stop()
	if err := kafkaReady(k.Brokers); err == nil {
		t.Fatalf("broker %s answers after Stop, want an error", k.Brokers)
	}
	k.Start()

	// The messages written before the restart are still there.
	got := readAll(ctx, t, k.Brokers, topic, 3)
	if len(got) != len(want) {
		t.Fatalf("read %d messages after restart, want %d", len(got), len(want))
	}
	for key, val := range want {
		if got[key] != val {
			t.Errorf("message %q = %q, want %q", key, got[key], val)
		}
	}
}

// readAll reads every partition of topic from the start to its end offset.
func readAll(ctx context.Context, t *testing.T, brokers, topic string, partitions int) map[string]string {
	t.Helper()
	got := map[string]string{}
	for p := range partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", brokers, topic, p)
		if err != nil {
			t.Fatalf("DialLeader(%s, %d): %v", topic, p, err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		first, last, err := conn.ReadOffsets()
		if err != nil {
			conn.Close()
			t.Fatalf("ReadOffsets(%s, %d): %v", topic, p, err)
		}
		if _, err := conn.Seek(first, kafka.SeekAbsolute); err != nil {
			conn.Close()
			t.Fatalf("Seek(%s, %d): %v", topic, p, err)
		}
		for off := first; off < last; off++ {
			m, err := conn.ReadMessage(1 << 20)
			if err != nil {
				conn.Close()
				t.Fatalf("ReadMessage(%s, %d): %v", topic, p, err)
			}
			got[string(m.Key)] = string(m.Value)
		}
		conn.Close()
	}
	return got
}

func TestCreateTopicBadPartitions(t *testing.T) {
	if err := createTopic("127.0.0.1:1", "x", 0); err == nil {
		t.Fatal("createTopic(partitions=0) = nil, want an error")
	}
}

func TestClusterID(t *testing.T) {
	for range 100 {
		id, err := clusterID()
		if err != nil {
			t.Fatalf("clusterID: %v", err)
		}
		b, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(b) != 16 || len(id) != 22 || strings.HasPrefix(id, "-") {
			t.Fatalf("clusterID() = %q: want 22 URL-safe base64 chars of 16 bytes, not starting with '-'", id)
		}
	}
}

// fakeTB records Skipf and Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestMissing(t *testing.T) {
	tests := []struct {
		ci                   string
		wantSkip, wantFailed bool
	}{
		{ci: "", wantSkip: true},
		{ci: "false", wantSkip: true},
		{ci: "true", wantFailed: true},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			f := &fakeTB{TB: t}
			missing(f, "redis-server not found on PATH")
			if (f.skipped != "") != tt.wantSkip || (f.failed != "") != tt.wantFailed {
				t.Fatalf("missing() with CI=%q: skipped=%q failed=%q, want skip=%v fail=%v",
					tt.ci, f.skipped, f.failed, tt.wantSkip, tt.wantFailed)
			}
			if tt.wantSkip && !strings.Contains(f.skipped, "scripts/services.sh start") {
				t.Errorf("skip message %q does not say how to start the services", f.skipped)
			}
		})
	}
}

func TestKafkaLibsFromEnv(t *testing.T) {
	t.Setenv("KAFKA_LIBS", t.TempDir())
	if _, err := kafkaLibs(); err == nil {
		t.Fatal("kafkaLibs() with an empty $KAFKA_LIBS = nil error, want not found")
	}
}
