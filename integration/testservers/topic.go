package testservers

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// dial connects to one broker, giving up after d.
func dial(addr string, d time.Duration) (*kafka.Conn, error) {
	return (&kafka.Dialer{Timeout: d}).Dial("tcp", addr)
}

// CreateTopic creates topic with the given number of partitions (replication
// factor 1) through the cluster's controller, using kafka-go's
// Conn.CreateTopics, and returns once every partition has a leader, so the
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
	conn, err := dial(brokers, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("find controller: %w", err)
	}
	cc, err := dial(net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)), 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial controller: %w", err)
	}
	defer cc.Close()
	_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
	err = cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = partitionsLed(brokers, topic, partitions)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("partitions not ready: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// partitionsLed checks that metadata shows want partitions of topic, each
// with a leader.
func partitionsLed(brokers, topic string, want int) error {
	c, err := dial(brokers, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	ps, err := c.ReadPartitions(topic)
	if err != nil {
		return err
	}
	led := 0
	for _, p := range ps {
		if p.Topic == topic && p.Leader.Host != "" && p.Leader.ID >= 0 {
			led++
		}
	}
	if led < want {
		return fmt.Errorf("%d of %d partitions have a leader", led, want)
	}
	return nil
}
