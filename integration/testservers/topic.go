package testservers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"pingate/integration/kafkatopic"
)

// dial connects to one broker, giving up after d.
func dial(addr string, d time.Duration) (*kafka.Conn, error) {
	return (&kafka.Dialer{Timeout: d}).Dial("tcp", addr)
}

// CreateTopic creates topic with the given number of partitions (replication
// factor 1) with kafkatopic.EnsureTopic, the code the gateway uses, and returns once every partition has a leader, so the
// first write to it succeeds. An existing topic is left as it is. It fails the
// test on error.
func CreateTopic(t testing.TB, brokers, topic string, partitions int) {
	t.Helper()
	if err := createTopic(brokers, topic, partitions); err != nil {
		t.Fatalf("testservers: create topic %q: %v", topic, err)
	}
}

func createTopic(brokers, topic string, partitions int) error {
	if partitions < 1 {
		return fmt.Errorf("partitions = %d, want >= 1", partitions)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	return kafkatopic.EnsureTopic(ctx, []string{brokers}, topic, partitions, 1)
}
