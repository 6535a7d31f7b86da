// Package kafkatopic makes sure the outcome topic exists before pingate's
// first write to it.
package kafkatopic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// EnsureTopic creates topic through the cluster's controller when it does not
// exist yet (an existing topic is left as it is) and waits until metadata
// shows partitions partitions, each with a leader, so that the first write
// succeeds: a broker with auto.create.topics.enable=false refuses writes to a
// missing topic, and an unretried refused write would be a lost event.
// It is Ensure with no topic-level settings.
func EnsureTopic(ctx context.Context, brokers []string, topic string, partitions, replication int) error {
	return Ensure(ctx, brokers, Spec{Topic: topic, Partitions: partitions, Replication: replication})
}

// Spec is a topic to create.
type Spec struct {
	Topic       string
	Partitions  int
	Replication int
	// MinInSync, when > 0, is the topic's min.insync.replicas: with acks
	// from all in-sync replicas (the relay's setting) a write is refused
	// while fewer replicas are in sync, instead of being acknowledged by a
	// lone leader whose loss would lose it. 0: the brokers' default.
	MinInSync int
}

// Ensure is EnsureTopic for a full Spec. The brokers are tried in order until
// one answers, so a bootstrap list with a node down still works.
func Ensure(ctx context.Context, brokers []string, s Spec) error {
	topic, partitions, replication := s.Topic, s.Partitions, s.Replication
	if len(brokers) == 0 || topic == "" || partitions < 1 || replication < 1 {
		return errors.New("ensure topic: want brokers, a topic, partitions >= 1 and replication >= 1")
	}
	if s.MinInSync < 0 || s.MinInSync > replication {
		return fmt.Errorf("ensure topic %s: min.insync.replicas %d must be in 0..replication (%d)", topic, s.MinInSync, replication)
	}
	d := &kafka.Dialer{Timeout: 5 * time.Second}
	var conn *kafka.Conn
	var err error
	for _, b := range brokers {
		if conn, err = d.DialContext(ctx, "tcp", b); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("ensure topic %s: %w", topic, err)
	}
	bootstrap := conn.RemoteAddr().String()
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("ensure topic %s: find controller: %w", topic, err)
	}
	cc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return fmt.Errorf("ensure topic %s: dial controller: %w", topic, err)
	}
	defer cc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = cc.SetDeadline(dl)
	}
	tc := kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: replication}
	if s.MinInSync > 0 {
		tc.ConfigEntries = []kafka.ConfigEntry{{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(s.MinInSync)}}
	}
	err = cc.CreateTopics(tc)
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("ensure topic %s: %w", topic, err)
	}
	for {
		err = partitionsLed(ctx, d, bootstrap, topic, partitions)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure topic %s: partitions not ready: %w", topic, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// partitionsLed checks that metadata shows want partitions of topic, each
// with a leader.
func partitionsLed(ctx context.Context, d *kafka.Dialer, broker, topic string, want int) error {
	c, err := d.DialContext(ctx, "tcp", broker)
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
