package outbox

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"go.opentelemetry.io/otel/metric"
)

// Config configures a Journal and its relay. The zero value of every field but
// Dir and Source means its default; call Validate (Open does) to apply the
// defaults and check the values.
type Config struct {
	// Dir is the journal directory (a pebble store), created if missing.
	// One gateway process owns it: pebble locks it while open. Required.
	Dir string
	// Source is the CloudEvents ce_source of every event, e.g.
	// events.Source(instance) = "/pingate/gw-1". Required.
	Source string
	// MaxDepth bounds the entries waiting for the relay. Past it Publish
	// returns ErrJournalFull and the gateway answers 91 instead of accepting
	// an outcome it may lose. Default 1,000,000 (about 1.2 GB of journal at ~1.2 KB per entry).
	MaxDepth int
	// Retain bounds the entries kept in journal-only mode (no Kafka
	// configured): once more than Retain + Retain/100 (at least 1) are held,
	// the oldest are deleted down to Retain. Must be at most MaxDepth.
	// Default 100,000, or MaxDepth if smaller.
	Retain int
	// WriteTimeout bounds every journal write (an append, the relay's
	// progress, a trim). A write that has not returned by then fails
	// (ErrStalled): the request is answered 91, the journal reports itself
	// unhealthy and refuses new work (Admit) until the write returns.
	// Default 2s.
	WriteTimeout time.Duration
	// MinFree is the free-space reserve of the journal's file system, in
	// bytes: below it Admit refuses new work (ErrLowSpace, answered 91
	// journal_full before the issuer is called) while the outcomes already
	// decided are still written into the reserve; above it work resumes by
	// itself. Size it at least pebble's memtable flush plus a WAL file (2 ×
	// 4 MiB) plus the in-flight outcomes (~1.2 KB each) with room to spare;
	// see docs/operations.md. Default 64 MiB; negative disables the check.
	MinFree int64
	// SyncInterval is the least time between two fsyncs of the journal's
	// write-ahead log (pebble's WALMinSyncInterval): a synced write that
	// arrives while the last fsync is younger than this waits for the next
	// one, so more writes share each fsync. Every approved PIN change waits
	// for two synced writes (the reversal owed before the issuer call, and
	// its outcome), so it adds at most twice this to an answer, and
	// nothing when fsyncs are slower than it anyway. Default 1ms
	// (docs/optimisation-log.md, change 26); at most 10ms; negative turns it
	// off (an fsync as soon as the last one returns).
	SyncInterval time.Duration
	// Relay configures delivery to Kafka. Without brokers the journal runs
	// in journal-only mode.
	Relay RelayConfig
	// MeterProvider receives the outbox metrics; nil means the global one
	// (otel.GetMeterProvider()).
	MeterProvider metric.MeterProvider

	// FS, when set (tests only: the gateway's config file cannot reach it),
	// is the file system under pebble instead of the disk: pebble's
	// vfs/errorfs injects faults through it.
	FS vfs.FS
	// probeInterval, when set (tests), replaces the store's 1 s between
	// recovery attempts after a fatal storage error.
	probeInterval time.Duration
}

// RelayConfig configures the relay from the journal to Kafka.
type RelayConfig struct {
	// Brokers are the bootstrap brokers, host:port. Empty: journal-only mode.
	Brokers []string
	// Topic receives the events. It must exist: the writer does not create
	// topics (a write to a missing topic fails and is retried). Required
	// with Brokers.
	Topic string
	// ClientID names the producer to the brokers. Default "pingate".
	ClientID string
	// BatchSize bounds the entries sent per WriteMessages call (and the
	// kafka-go writer's per-partition batch, so one call produces at most
	// one batch per partition and per-card order survives a partial
	// failure). Default 500.
	BatchSize int
	// BatchBytes bounds the bytes of one call; the relay reads entries up to
	// half of it so the writer never splits a partition's batch. Default
	// 1 MiB.
	BatchBytes int64
	// BatchTimeout is how long the writer waits to fill a partition batch.
	// Default 2ms.
	BatchTimeout time.Duration
	// Linger is how long the relay lets entries gather before it reads a
	// batch that is not full: from the moment it sees the first entry not
	// yet sent, it waits until BatchSize entries are waiting or Linger has
	// passed, so each WriteMessages call (and each produce request the
	// broker handles) carries more events. It delays only the delivery to
	// Kafka: an answer still waits for its entry's fsync, never for the
	// relay. Default 10ms; at most 100ms; negative turns it off (each call
	// takes what is waiting at once).
	Linger time.Duration
	// WriteTimeout and ReadTimeout bound one produce request and one
	// metadata read. Default 10s each.
	WriteTimeout, ReadTimeout time.Duration
	// MaxAttempts bounds the writer's own attempts per call before the relay
	// backs off. Default 3.
	MaxAttempts int
	// CallTimeout is the context deadline of every WriteMessages call.
	// Default 30s or 3×WriteTimeout, whichever is longer; must exceed
	// WriteTimeout.
	CallTimeout time.Duration
	// BackoffMin and BackoffMax bound the relay's exponential backoff after
	// a failed call. It retries forever: the journal holds the events.
	// Defaults 100ms and 5s.
	BackoffMin, BackoffMax time.Duration
}

// Defaults.
const (
	DefaultMaxDepth     = 1_000_000
	DefaultWriteTimeout = 2 * time.Second
	DefaultMinFree      = 64 << 20
	DefaultRetain       = 100_000
	DefaultSyncInterval = time.Millisecond
	MaxSyncInterval     = 10 * time.Millisecond
	DefaultBatchSize    = 500
	DefaultBatchBytes   = 1 << 20
	DefaultBatchTimeout = 2 * time.Millisecond
	DefaultLinger       = 10 * time.Millisecond
	MaxLinger           = 100 * time.Millisecond
	DefaultIOTimeout    = 10 * time.Second
	DefaultMaxAttempts  = 3
	DefaultCallTimeout  = 30 * time.Second
	DefaultBackoffMin   = 100 * time.Millisecond
	DefaultBackoffMax   = 5 * time.Second
)

// ErrConfig marks an invalid configuration.
var ErrConfig = errors.New("invalid outbox config")

// JournalOnly reports whether no Kafka is configured.
func (c *Config) JournalOnly() bool { return len(c.Relay.Brokers) == 0 }

// Validate applies defaults to zero fields and checks every value; the error
// names each offending field.
func (c *Config) Validate() error {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.MaxDepth, DefaultMaxDepth)
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MinFree == 0 {
		c.MinFree = DefaultMinFree
	}
	def(&c.Retain, min(DefaultRetain, max(c.MaxDepth, 1)))
	defd(&c.SyncInterval, DefaultSyncInterval)
	r := &c.Relay
	if r.ClientID == "" {
		r.ClientID = "pingate"
	}
	def(&r.BatchSize, DefaultBatchSize)
	if r.BatchBytes == 0 {
		r.BatchBytes = DefaultBatchBytes
	}
	defd(&r.BatchTimeout, DefaultBatchTimeout)
	defd(&r.Linger, DefaultLinger)
	defd(&r.WriteTimeout, DefaultIOTimeout)
	defd(&r.ReadTimeout, DefaultIOTimeout)
	def(&r.MaxAttempts, DefaultMaxAttempts)
	defd(&r.CallTimeout, max(DefaultCallTimeout, 3*r.WriteTimeout))
	defd(&r.BackoffMin, DefaultBackoffMin)
	defd(&r.BackoffMax, DefaultBackoffMax)

	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if c.Dir == "" {
		bad("dir is required")
	}
	if c.Source == "" {
		bad("source is required")
	}
	if c.WriteTimeout < 0 {
		bad("write_timeout %v must be positive", c.WriteTimeout)
	}
	if c.SyncInterval > MaxSyncInterval {
		bad("sync_interval %v must be at most %v", c.SyncInterval, MaxSyncInterval)
	}
	if c.MaxDepth < 1 {
		bad("max_depth %d must be positive", c.MaxDepth)
	}
	if c.Retain < 1 || c.Retain > c.MaxDepth {
		bad("retain %d must be in 1..max_depth (%d)", c.Retain, c.MaxDepth)
	}
	if !c.JournalOnly() {
		for _, b := range r.Brokers {
			if b == "" || !strings.Contains(b, ":") {
				bad("broker %q must be host:port", b)
			}
		}
		if r.Topic == "" {
			bad("relay topic is required with brokers")
		}
	}
	if r.BatchSize < 1 || r.BatchSize > 10_000 {
		bad("relay batch_size %d must be in 1..10000", r.BatchSize)
	}
	if r.BatchBytes < 64<<10 {
		bad("relay batch_bytes %d must be at least 64 KiB", r.BatchBytes)
	}
	if r.BatchTimeout < 0 || r.BatchTimeout > time.Second {
		bad("relay batch_timeout %v must be in 0..1s", r.BatchTimeout)
	}
	if r.Linger > MaxLinger {
		bad("relay linger %v must be at most %v", r.Linger, MaxLinger)
	}
	if r.WriteTimeout < 0 || r.ReadTimeout < 0 {
		bad("relay write_timeout %v and read_timeout %v must be positive", r.WriteTimeout, r.ReadTimeout)
	}
	if r.MaxAttempts < 1 || r.MaxAttempts > 20 {
		bad("relay max_attempts %d must be in 1..20", r.MaxAttempts)
	}
	if r.CallTimeout <= r.WriteTimeout {
		bad("relay call_timeout %v must exceed write_timeout %v", r.CallTimeout, r.WriteTimeout)
	}
	if r.BackoffMin <= 0 || r.BackoffMax < r.BackoffMin {
		bad("relay backoff %v..%v must be positive and ordered", r.BackoffMin, r.BackoffMax)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrConfig, strings.Join(errs, "; "))
	}
	return nil
}
