package records

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"pingate/integration/events"
)

// ConsumerConfig configures the topic consumer.
type ConsumerConfig struct {
	// Brokers are the Kafka bootstrap addresses (host:port).
	Brokers []string
	// Topic is the outcome topic. Default "pingate.pin-outcomes.v1" (the gateway's default).
	Topic string
	// Group is the consumer group id; it also keys the offsets in the
	// database. Default "pingate-records".
	Group string
	// BatchSize is the most records applied in one transaction. Default 200,
	// at most MaxBatchSize.
	BatchSize int
	// BatchWait is how long a batch waits for more records after its first.
	// Default 20ms.
	BatchWait time.Duration
	// SessionTimeout is the group session timeout: how long the broker waits
	// for a silent (crashed) member before giving its partitions to another.
	// Default 10s; the broker's minimum is 6s.
	SessionTimeout time.Duration
	// IdleCheck is how often an idle partition re-reads its stored offset,
	// to notice a replay ("records replay"). Default 2s.
	IdleCheck time.Duration
	// RetryBackoff is the wait after a failed transaction, doubled up to 5s.
	// Default 100ms.
	RetryBackoff time.Duration
}

// Defaults.
const (
	DefaultTopic = "pingate.pin-outcomes.v1"
	DefaultGroup = "pingate-records"
)

func (c *ConsumerConfig) defaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 200
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 20 * time.Millisecond
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.IdleCheck <= 0 {
		c.IdleCheck = 2 * time.Second
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
}

// Validate names the offending values.
// MaxBatchSize bounds ConsumerConfig.BatchSize. A batch's transaction holds
// one PostgreSQL lock per approved operation or reversal in it, to the
// commit (applyOne), and every partition applies its own batches at once;
// PostgreSQL's shared lock table holds max_locks_per_transaction ×
// max_connections of them (6 400 by default), and a transaction that finds
// it full fails, and would fail again on every retry.
const MaxBatchSize = 1000

func (c ConsumerConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka brokers: at least one host:port required"))
	}
	if c.BatchSize > MaxBatchSize {
		errs = append(errs, fmt.Errorf("batch size %d: at most %d", c.BatchSize, MaxBatchSize))
	}
	if c.SessionTimeout != 0 && c.SessionTimeout < 6*time.Second {
		errs = append(errs, fmt.Errorf("session timeout %s: at least 6s (the broker's minimum)", c.SessionTimeout))
	}
	return errors.Join(errs...)
}

// Consumer reads the topic as a member of a consumer group and applies each
// partition's records to the Store in batches, exactly once.
type Consumer struct {
	cfg     ConsumerConfig
	store   *Store
	metrics *Metrics
	log     *slog.Logger
}

// NewConsumer returns a consumer; Run starts it.
func NewConsumer(cfg ConsumerConfig, store *Store, m *Metrics, log *slog.Logger) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Consumer{cfg: cfg, store: store, metrics: m, log: log}, nil
}

// Run joins the group and consumes until ctx is done, then leaves the group
// and returns nil. Each generation's partitions are read from the offsets
// stored in the database. A failed transaction is retried with the same
// records until it succeeds, so Run returns an error only when the group
// cannot be set up.
func (c *Consumer) Run(ctx context.Context) error {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                c.cfg.Group,
		Brokers:           c.cfg.Brokers,
		Topics:            []string{c.cfg.Topic},
		SessionTimeout:    c.cfg.SessionTimeout,
		HeartbeatInterval: c.cfg.SessionTimeout / 5,
		RebalanceTimeout:  c.cfg.SessionTimeout,
		JoinGroupBackoff:  500 * time.Millisecond,
		StartOffset:       kafka.FirstOffset,
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	defer group.Close()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Warn("records: consumer group", "err", err)
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		parts := gen.Assignments[c.cfg.Topic]
		c.log.Info("records: partitions assigned", "generation", gen.ID, "partitions", len(parts))
		for _, pa := range parts {
			gen.Start(func(gctx context.Context) { c.partition(gctx, gen, pa.ID) })
		}
	}
}

// partition consumes one partition for one generation, until gctx ends.
func (c *Consumer) partition(ctx context.Context, gen *kafka.Generation, p int) {
	var r *kafka.Reader
	defer func() {
		if r != nil {
			r.Close()
		}
	}()
	pos := int64(0)
	seek := func() bool {
		if r != nil {
			r.Close()
		}
		backoff := c.cfg.RetryBackoff
		for {
			off, err := c.store.PartitionOffset(ctx, c.cfg.Group, c.cfg.Topic, p)
			if err == nil {
				pos = off
				break
			}
			c.log.Warn("records: read partition offset", "partition", p, "err", err)
			if !sleep(ctx, backoff) {
				return false
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		r = kafka.NewReader(kafka.ReaderConfig{
			Brokers: c.cfg.Brokers, Topic: c.cfg.Topic, Partition: p,
			MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 250 * time.Millisecond,
			ReadBackoffMin: 100 * time.Millisecond, ReadBackoffMax: time.Second,
		})
		start := pos
		if start == FirstOffset {
			start = kafka.FirstOffset
		}
		if err := r.SetOffset(start); err != nil {
			c.log.Warn("records: seek", "partition", p, "err", err)
		}
		c.log.Debug("records: partition seek", "partition", p, "offset", pos)
		return true
	}
	if !seek() {
		return
	}
	for {
		batch, hwm, err := c.fetch(ctx, r)
		if errors.Is(err, errIdle) {
			// Nothing new: check that nobody moved the stored offset (a
			// replay with "records replay"), else keep waiting.
			if off, err := c.store.PartitionOffset(ctx, c.cfg.Group, c.cfg.Topic, p); err == nil && off != pos {
				c.log.Info("records: partition offset moved; seeking", "partition", p, "offset", off)
				if !seek() {
					return
				}
			}
			continue
		}
		if err != nil {
			return // generation or service over
		}
		backoff := c.cfg.RetryBackoff
		for {
			res, err := c.store.ApplyBatch(ctx, c.cfg.Group, pos, batch)
			if err == nil {
				pos = batch[len(batch)-1].Offset + 1
				if c.metrics != nil {
					c.metrics.batch(res)
					c.metrics.setLag(p, hwm-pos)
				}
				// A hint for tools such as kafka-consumer-groups; the
				// database offset is the one that counts.
				_ = gen.CommitOffsets(map[string]map[int]int64{c.cfg.Topic: {p: pos}})
				break
			}
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrFenced) {
				if c.metrics != nil {
					c.metrics.batches.WithLabelValues("fenced").Inc()
				}
				c.log.Info("records: partition offset moved; seeking", "partition", p)
				if !seek() {
					return
				}
				break
			}
			if c.metrics != nil {
				c.metrics.batches.WithLabelValues("error").Inc()
			}
			c.log.Warn("records: apply batch; retrying", "partition", p, "records", len(batch), "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// errIdle: no record arrived within IdleCheck.
var errIdle = errors.New("idle")

// fetch reads one batch: it waits up to IdleCheck for the first record (else
// errIdle), then takes more
// for at most BatchWait, up to BatchSize. It returns the batch and the
// partition's high watermark as of its last record.
func (c *Consumer) fetch(ctx context.Context, r *kafka.Reader) ([]Record, int64, error) {
	var batch []Record
	var hwm int64
	add := func(m kafka.Message) {
		hs := make([]events.Header, len(m.Headers))
		for i, h := range m.Headers {
			hs[i] = events.Header{Key: h.Key, Value: h.Value}
		}
		batch = append(batch, Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
			Key: m.Key, Headers: hs, Value: m.Value})
		hwm = m.HighWaterMark
	}
	ictx, icancel := context.WithTimeout(ctx, c.cfg.IdleCheck)
	m, err := r.FetchMessage(ictx)
	icancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, 0, errIdle
		}
		return nil, 0, err
	}
	add(m)
	wctx, cancel := context.WithTimeout(ctx, c.cfg.BatchWait)
	defer cancel()
	for len(batch) < c.cfg.BatchSize {
		m, err := r.FetchMessage(wctx)
		if err != nil {
			break
		}
		add(m)
	}
	return batch, hwm, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
