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
func EnsureTopic(ctx context.Context, brokers []string, topic string, partitions, replication int) error {
	if len(brokers) == 0 || topic == "" || partitions < 1 || replication < 1 {
		return errors.New("ensure topic: want brokers, a topic, partitions >= 1 and replication >= 1")
	}
	d := &kafka.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("ensure topic %s: %w", topic, err)
	}
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
	err = cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: replication})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("ensure topic %s: %w", topic, err)
	}
	for {
		err = partitionsLed(ctx, d, brokers[0], topic, partitions)
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
