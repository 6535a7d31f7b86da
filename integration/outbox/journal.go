package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	dto "github.com/prometheus/client_model/go"

	"pingate/integration/events"
	"pingate/integration/pebblestore"
	"pingate/routing"
)

// Errors that callers branch on.
var (
	// ErrJournalFull: MaxDepth entries are waiting for the relay. The
	// gateway answers 91 rather than accept an outcome it may lose.
	ErrJournalFull = errors.New("event journal full")
	// ErrClosed: the journal is shut down.
	ErrClosed = errors.New("event journal closed")
	// ErrLowSpace: the journal's file system has less free space than
	// Config.MinFree; Admit refuses new work until it has again.
	ErrLowSpace = fmt.Errorf("%w: free space below the reserve", routing.ErrSinkFull)
	// ErrStalled: a journal write did not return within Config.WriteTimeout.
	// The journal refuses work until every stalled write has returned.
	ErrStalled = fmt.Errorf("%w: journal write stalled", routing.ErrSinkUnavailable)
	// ErrFailed: the store reported a fatal write error (pebble's commit
	// pipeline or manifest): the journal refuses every write until it has
	// reopened the store by itself (package pebblestore), once the
	// directory can be written again.
	ErrFailed = fmt.Errorf("%w: journal storage failed", routing.ErrSinkUnavailable)
)

var _ routing.Admitter = (*Journal)(nil)

var _ routing.OutcomeSink = (*Journal)(nil)

// Keys. Entries are "e" + the big-endian sequence number, so pebble's key
// order is append order; the relay's progress lives under "m/".
var (
	entryPrefix = []byte("e")
	metaRelayed = []byte("m/relayed") // highest sequence acknowledged by Kafka
	metaFloor   = []byte("m/floor")   // highest sequence deleted
)

func entryKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = entryPrefix[0]
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// Entry is one journal entry.
type Entry struct {
	Seq      uint64
	Appended time.Time
	Message  events.Message
}

// Journal is the durable outbox: an append-only log of outcome events in a
// pebble store, drained to Kafka by its relay. It implements
// routing.OutcomeSink: Publish returns nil only once the event is fsynced.
//
// Group commit is pebble's own: every Publish commits its entry with a synced
// batch, and pebble's commit pipeline covers all commits waiting at that
// moment with one WAL fsync (measured against a committer goroutine of ours,
// see BenchmarkJournalAppend in bench_test.go and /tmp/bench-outbox.md).
// Sequence numbers are assigned before the commit, so commits may complete
// out of order; the relay only reads up to the durable watermark, the highest
// sequence below which every append has completed.
type Journal struct {
	cfg      Config
	store    *pebblestore.DB // reopens itself after a fatal storage error
	fsCloser io.Closer       // stops the disk-health checker, after the store's Close
	enc      *events.Encoder
	m        *metrics

	mu       sync.Mutex // guards closed and the Add side of inflight
	closed   bool
	inflight sync.WaitGroup

	seqMu sync.Mutex // guards next
	next  uint64     // highest sequence assigned

	doneMu sync.Mutex          // guards done and the writes of last
	done   map[uint64]struct{} // completed sequences above last

	trimMu sync.Mutex // journal-only retention, one trim at a time

	last    atomic.Uint64 // durable watermark: every sequence <= last completed
	floor   atomic.Uint64 // highest sequence deleted
	relayed atomic.Uint64 // highest sequence acknowledged by Kafka
	appends atomic.Uint64 // entries appended since Open

	wake  chan struct{} // capacity 1: "new entries" for the relay
	relay *Relay
	wg    sync.WaitGroup

	fs       vfs.FS
	syncBase atomic.Uint64  // WAL fsyncs of the store's instances closed since Open
	stalled  atomic.Int64   // writes past WriteTimeout not yet returned
	free     atomic.Int64   // free bytes of the file system, last measured
	commits  sync.WaitGroup // commit goroutines
	stopMon  chan struct{}
	// storeClosed is closed once Shutdown closed the store, which on a
	// stalled disk happens only after Shutdown returned.
	storeClosed chan struct{}
}

// Open opens (or creates) the journal in cfg.Dir, recovers its sequence and
// the relay's progress, and starts the committer and, unless in journal-only
// mode, the relay goroutine. cfg is validated first (defaults applied to a copy).
func Open(cfg Config) (*Journal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	enc, err := events.NewEncoder(cfg.Source)
	if err != nil {
		return nil, fmt.Errorf("%w: source: %v", ErrConfig, err)
	}
	// The disk-health-checking FS is built here, not by pebble's defaults,
	// so its goroutine can be stopped when Open fails (pebble leaks it then).
	base := cfg.FS
	if base == nil {
		base = vfs.Default
	}
	fs, fsCloser := vfs.WithDiskHealthChecks(base, 5*time.Second, func(info vfs.DiskSlowInfo) {
		slog.Warn("event journal disk slow", "op", info.OpType.String(), "duration", info.Duration)
	})
	j := &Journal{
		cfg: cfg, fsCloser: fsCloser, enc: enc, fs: fs,
		done:    map[uint64]struct{}{},
		wake:    make(chan struct{}, 1),
		stopMon: make(chan struct{}), storeClosed: make(chan struct{}),
	}
	store, err := pebblestore.Open(cfg.Dir, pebblestore.Options{
		Name: "event journal", FS: fs, MinFree: cfg.MinFree, ProbeInterval: cfg.probeInterval,
		CloseWait: cfg.WriteTimeout, Ready: j.load,
		Closing: func(db *pebble.DB) { j.syncBase.Add(dbSyncs(db)) },
		Pebble:  pebble.Options{WALMinSyncInterval: minSyncInterval(cfg.SyncInterval)},
	})
	if err != nil {
		fsCloser.Close()
		return nil, fmt.Errorf("open journal %s: %w", cfg.Dir, err)
	}
	j.store = store
	j.measure()
	if j.m, err = newMetrics(cfg.MeterProvider, j); err != nil {
		j.closeStore()
		return nil, err
	}
	if !cfg.JournalOnly() {
		j.relay = newRelay(j, cfg.Relay)
	}
	if j.relay != nil {
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			j.relay.run()
		}()
	}
	j.wg.Add(1)
	go j.monitor()
	return j, nil
}

// monitor measures the free space of the journal's file system four times
// a second, for Admit, until Shutdown.
func (j *Journal) monitor() {
	defer j.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-j.stopMon:
			return
		case <-t.C:
			j.measure()
		}
	}
}

func (j *Journal) measure() {
	if j.cfg.MinFree < 0 {
		return
	}
	u, err := j.fs.GetDiskUsage(j.cfg.Dir)
	if err != nil {
		j.free.Store(0) // unknown counts as full: refuse rather than guess
		return
	}
	j.free.Store(int64(min(u.AvailBytes, 1<<62)))
}

// Admit implements routing.Admitter: it refuses new work, before the issuer
// is called, when the journal could not record its outcome: ErrClosed,
// ErrFailed (a fatal storage error), ErrStalled (a write has not returned
// within WriteTimeout), ErrLowSpace (free space below MinFree) or
// ErrJournalFull (relay mode, MaxDepth entries waiting for Kafka). Every
// refusal lifts by itself when its condition does; ErrFailed once the store
// has been reopened (pebblestore: probed every ProbeInterval, 1 s).
func (j *Journal) Admit() error {
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := j.health(); err != nil {
		return err
	}
	if j.cfg.MinFree > 0 && j.free.Load() < j.cfg.MinFree {
		return fmt.Errorf("%w (%d bytes free, reserve %d)", ErrLowSpace, j.free.Load(), j.cfg.MinFree)
	}
	if !j.cfg.JournalOnly() {
		j.seqMu.Lock()
		next := j.next
		j.seqMu.Unlock()
		if next-min(j.relayed.Load(), next) >= uint64(j.cfg.MaxDepth) {
			return ErrJournalFull
		}
	}
	return nil
}

// Health reports whether the journal can be written now: nil, or the reason
// Admit refuses work (readiness shows it).
func (j *Journal) Health() error { return j.Admit() }

func (j *Journal) health() error {
	if f := j.store.Fault(); f != "" {
		return fmt.Errorf("%w: %s", ErrFailed, f)
	}
	if n := j.stalled.Load(); n > 0 {
		return fmt.Errorf("%w: %d writes outstanding", ErrStalled, n)
	}
	return nil
}

// write fills a batch of the store in use and commits it with o, waiting at
// most WriteTimeout; after runs once with the commit's error, whatever the
// path (the commit returned, or never started).
//
// pebble's Batch.Commit cannot be cut short: on a stalled disk (a memtable
// that cannot flush, a WAL write that never returns) it blocks for as long as
// the disk does. So the commit runs in a goroutine the journal owns, and the
// caller gives up after WriteTimeout with ErrStalled. The write may still
// land later; until it returns, the journal counts it as stalled, Admit
// refuses new work and write refuses new writes at once (no pile of blocked
// goroutines). A caller that got ErrStalled must treat the write as failed
// (the flow answers 91 and reverses); if the entry lands after all, the
// relay sends it like any other, and the reversal's own event says the
// operation did not stand.
//
// pebble reports a fatal commit error through its logger (the store marks
// itself failed) and then returns nil from Commit; write turns that nil into
// ErrFailed. The commit holds the store instance until it returns, so the
// store's recovery closes an instance only once no commit is running on it.
func (j *Journal) write(fill func(*pebble.Batch) error, o *pebble.WriteOptions, after func(error)) error {
	if err := j.health(); err != nil {
		after(err)
		return err
	}
	db, release, err := j.store.Acquire()
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrFailed, err)
		after(err)
		return err
	}
	b := db.NewBatch()
	if err := fill(b); err != nil {
		b.Close()
		release()
		after(err)
		return err
	}
	done := make(chan error, 1)
	j.commits.Add(1)
	go func() {
		defer j.commits.Done()
		err := b.Commit(o)
		b.Close()
		release()
		if err == nil {
			err = j.health()
			if errors.Is(err, ErrStalled) {
				err = nil // others stalled; this one returned
			}
		}
		after(err)
		done <- err
	}()
	t := time.NewTimer(j.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		j.stalled.Add(1)
		j.commits.Add(1)
		go func() {
			defer j.commits.Done()
			<-done
			j.stalled.Add(-1)
		}()
		slog.Error("event journal write stalled; refusing new work until it returns", "timeout", j.cfg.WriteTimeout)
		return ErrStalled
	}
}

// minSyncInterval is pebble's WALMinSyncInterval for Config.SyncInterval:
// nil (no wait between fsyncs) when it is negative.
func minSyncInterval(d time.Duration) func() time.Duration {
	if d <= 0 {
		return nil
	}
	return func() time.Duration { return d }
}

// Store is the journal's database. Other stores may keep their keys in it
// under a prefix of their own (reversalstore.New: "rev/"), to commit their
// writes with an entry's (PublishWith); the journal never reads, trims or
// relays a key outside "e" and "m/". The journal owns it: Shutdown closes
// it, so those stores must be done with it (closed) before.
func (j *Journal) Store() *pebblestore.DB { return j.store }

// read runs f on the store in use, or fails with ErrFailed while it is out
// of use (being reopened).
func (j *Journal) read(f func(db *pebble.DB) error) error {
	db, release, err := j.store.Acquire()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFailed, err)
	}
	defer release()
	return f(db)
}

// load reads the relay progress and the last sequence from an instance of
// the store before it is put in use: at Open, and after every reopen
// (pebblestore's Ready). On a reopen no write of the old instance is still
// running (the store closed it first). Sequence numbers never go back:
// those assigned to appends that failed with the fault and are not on disk
// are skipped like any failed append's. The relay's progress may go back to
// its last durable value; it then sends those entries again, with the same
// bytes and ce_id (at-least-once delivery).
func (j *Journal) load(db *pebble.DB) error {
	get := func(k []byte) (uint64, error) {
		v, c, err := db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read journal meta: %w", err)
		}
		defer c.Close()
		if len(v) != 8 {
			return 0, fmt.Errorf("read journal meta: corrupt value")
		}
		return binary.BigEndian.Uint64(v), nil
	}
	relayed, err := get(metaRelayed)
	if err != nil {
		return err
	}
	floor, err := get(metaFloor)
	if err != nil {
		return err
	}
	last := max(relayed, floor)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: entryKey(0), UpperBound: []byte{entryPrefix[0] + 1}})
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	if it.Last() {
		last = max(last, binary.BigEndian.Uint64(it.Key()[1:]))
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	j.seqMu.Lock()
	defer j.seqMu.Unlock()
	j.doneMu.Lock()
	defer j.doneMu.Unlock()
	j.next = max(j.next, last)
	clear(j.done)
	j.relayed.Store(relayed)
	j.floor.Store(floor)
	j.last.Store(j.next)
	return nil
}

// Publish encodes ev (events.Encoder: a record free of secrets) and appends it
// to the journal. It returns nil only after the entry is fsynced; concurrent
// calls share fsyncs (pebble's commit pipeline). Errors: the Encoder's
// (events.ErrInvalidEvent, events.ErrUnsafeEvent), ErrJournalFull (relay mode,
// MaxDepth entries waiting), ErrClosed, ctx.Err() if ctx has ended on entry,
// or a storage error. Once the commit has started it is awaited whatever ctx
// does: an fsync is short, and an answer must not contradict the journal.
func (j *Journal) Publish(ctx context.Context, ev routing.Event) error {
	return j.PublishWith(ctx, ev, nil)
}

// PublishWith is Publish with also's writes in the entry's own batch: one
// synced commit, so the entry and those writes land together or not at all
// (pebble applies a batch atomically, and its WAL record is replayed whole
// or not at all). The gateway deletes an approval's owed reversal advice
// this way (reversalstore.Store.Discharge, on the store New built on Store).
// also must write only keys outside the journal's own ("e" entries, "m/"
// progress), which the journal never reads or deletes; nil adds nothing.
//
// An error before the commit leaves neither written. ErrStalled, and
// ErrFailed once the commit has begun, leave the outcome unknown: the batch
// may still land (late, or replayed after the store reopens), whole.
func (j *Journal) PublishWith(ctx context.Context, ev routing.Event, also func(*pebble.Batch) error) error {
	if err := ctx.Err(); err != nil {
		j.m.appended(ctx, "canceled")
		return err
	}
	m, err := j.enc.Encode(ev)
	if err != nil {
		j.m.appended(ctx, "invalid")
		return fmt.Errorf("journal event: %w", err)
	}
	v := appendRecord(make([]byte, 0, recordSize(m)), time.Now().UnixNano(), m)
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.inflight.Add(1)
	j.mu.Unlock()
	defer j.inflight.Done()

	if err := j.health(); err != nil {
		j.m.appended(ctx, "error")
		return err
	}
	if j.cfg.MinFree > 0 && j.free.Load() < j.cfg.MinFree/2 && !issuerDecided(ev.Outcome) {
		// The lower half of the reserve is kept for outcomes an issuer
		// decided: refusals arriving at a full disk must not eat it.
		j.m.appended(ctx, "full")
		return fmt.Errorf("%w: lower half of the reserve kept for decided outcomes", ErrLowSpace)
	}
	j.seqMu.Lock()
	if !j.cfg.JournalOnly() && j.next-min(j.relayed.Load(), j.next) >= uint64(j.cfg.MaxDepth) {
		j.seqMu.Unlock()
		j.m.appended(ctx, "full")
		return ErrJournalFull
	}
	j.next++
	seq := j.next
	j.seqMu.Unlock()

	// The watermark passes seq only when its commit has returned, also one
	// the caller gave up on: an entry that lands late is relayed. A failed
	// append leaves a hole in the sequence; the watermark passes it.
	fill := func(b *pebble.Batch) error {
		if err := b.Set(entryKey(seq), v, nil); err != nil || also == nil {
			return err
		}
		return also(b)
	}
	err = j.write(fill, pebble.Sync, func(error) { j.complete(seq) })
	if err != nil {
		j.m.appended(ctx, "error")
		return fmt.Errorf("journal append: %w", err)
	}
	j.appends.Add(1)
	j.m.appended(ctx, "ok")
	select {
	case j.wake <- struct{}{}:
	default:
	}
	if j.cfg.JournalOnly() {
		if err := j.trim(); err != nil {
			// The event is durable; retention failing is not the caller's
			// problem and is retried by the next append.
			slog.Warn("event journal retention", "err", err)
		}
	}
	return nil
}

// issuerDecided reports whether an outcome is one an issuer may have acted on.
func issuerDecided(outcome string) bool {
	switch outcome {
	case routing.OutcomeApproved, routing.OutcomeDeclined, routing.OutcomeReversed:
		return true
	}
	return false
}

// complete marks seq done and advances the durable watermark over every
// contiguous completed sequence.
func (j *Journal) complete(seq uint64) {
	j.doneMu.Lock()
	defer j.doneMu.Unlock()
	last := j.last.Load()
	if seq <= last {
		return // passed by a reopen of the store (load)
	}
	if seq != last+1 {
		j.done[seq] = struct{}{}
		return
	}
	last = seq
	for {
		if _, ok := j.done[last+1]; !ok {
			break
		}
		delete(j.done, last+1)
		last++
	}
	j.last.Store(last)
}

// trim deletes the oldest entries in journal-only mode once more than
// Retain + Retain/100 are held, down to Retain. The write is not synced: a
// lost trim is redone by a later one.
func (j *Journal) trim() error {
	slack := uint64(max(1, j.cfg.Retain/100))
	last, floor := j.last.Load(), j.floor.Load()
	if last-min(floor, last) <= uint64(j.cfg.Retain)+slack {
		return nil
	}
	j.trimMu.Lock()
	defer j.trimMu.Unlock()
	last, floor = j.last.Load(), j.floor.Load()
	if last-min(floor, last) <= uint64(j.cfg.Retain) {
		return nil
	}
	newFloor := last - uint64(j.cfg.Retain)
	fill := func(b *pebble.Batch) error {
		return errors.Join(b.DeleteRange(entryKey(floor+1), entryKey(newFloor+1), nil),
			b.Set(metaFloor, u64(newFloor), nil))
	}
	if err := j.write(fill, pebble.NoSync, func(error) {}); err != nil {
		return err
	}
	j.floor.Store(newFloor)
	return nil
}

// Stats is a snapshot of the journal's counters.
type Stats struct {
	Last    uint64 // highest sequence appended (durable)
	Relayed uint64 // highest sequence acknowledged by Kafka (0 in journal-only mode)
	Depth   int    // entries held in the journal
	Lag     int    // entries appended but not yet acknowledged by Kafka (0 in journal-only mode)
	Appends uint64 // entries appended since Open
	Syncs   uint64 // WAL fsyncs since Open (pebble's group commits and others)
}

// Stats returns a snapshot of the journal's counters.
func (j *Journal) Stats() Stats {
	last, floor, relayed := j.last.Load(), j.floor.Load(), j.relayed.Load()
	s := Stats{Last: last, Relayed: relayed, Depth: int(last - min(floor, last)),
		Appends: j.appends.Load(), Syncs: j.walSyncs()}
	if !j.cfg.JournalOnly() {
		s.Lag = int(last - min(relayed, last))
	}
	return s
}

// walSyncs counts the WAL fsyncs pebble made since Open, over every
// instance of the store.
func (j *Journal) walSyncs() uint64 {
	n := j.syncBase.Load()
	_ = j.read(func(db *pebble.DB) error { n += dbSyncs(db); return nil })
	return n
}

// dbSyncs counts the WAL fsyncs of one pebble instance.
func dbSyncs(db *pebble.DB) uint64 {
	h := db.Metrics().LogWriter.FsyncLatency
	if h == nil {
		return 0
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return 0
	}
	return m.Histogram.GetSampleCount()
}

// Entries returns up to max entries with sequence numbers from from on, in
// order. The relay reads with it; so may tools.
func (j *Journal) Entries(from uint64, max int) ([]Entry, error) {
	var es []Entry
	err := j.read(func(db *pebble.DB) (err error) {
		es, err = readEntries(db, from, j.last.Load(), max, 0)
		return err
	})
	return es, err
}

// readEntries reads entries from..through, at most max of them and, if
// maxBytes > 0, stopping before the stored values exceed maxBytes (at least
// one entry is returned).
func readEntries(db *pebble.DB, from, through uint64, max int, maxBytes int64) ([]Entry, error) {
	if from == 0 {
		from = 1
	}
	if through < from || max <= 0 {
		return nil, nil
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: entryKey(from), UpperBound: entryKey(through + 1)})
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var out []Entry
	var size int64
	for ok := it.First(); ok && len(out) < max; ok = it.Next() {
		v := it.Value()
		if maxBytes > 0 && len(out) > 0 && size+int64(len(v)) > maxBytes {
			break
		}
		size += int64(len(v))
		e, err := decodeEntry(binary.BigEndian.Uint64(it.Key()[1:]), v)
		if err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, e)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	return out, nil
}

// markRelayed records that Kafka acknowledged every entry through seq and
// deletes them. The write is not synced: if it is lost in a crash, those
// entries are sent again, with the same ce_id (at-least-once delivery).
func (j *Journal) markRelayed(seq uint64) error {
	floor := j.floor.Load()
	fill := func(b *pebble.Batch) error {
		err := b.Set(metaRelayed, u64(seq), nil)
		if seq > floor {
			err = errors.Join(err, b.DeleteRange(entryKey(floor+1), entryKey(seq+1), nil),
				b.Set(metaFloor, u64(seq), nil))
		}
		return err
	}
	if err := j.write(fill, pebble.NoSync, func(error) {}); err != nil {
		return fmt.Errorf("record relay progress: %w", err)
	}
	j.relayed.Store(seq)
	if seq > floor {
		// Only the relay moves the floor in relay mode.
		j.floor.Store(seq)
	}
	return nil
}

// Shutdown stops accepting events (Publish returns ErrClosed), waits for the
// appends in flight to commit, lets the relay make a final attempt to drain
// the journal, stops it, and closes the store. Entries the final attempt
// could not deliver stay in the journal for the next start (see Stats). If
// ctx ends first, the relay's call in flight is cut short and ctx.Err() is
// returned after the store is closed. Calling Shutdown again
// returns ErrClosed.
func (j *Journal) Shutdown(ctx context.Context) error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.closed = true
	j.mu.Unlock()

	// A Publish in flight completes within one fsync, so this wait is short
	// whatever ctx says.
	j.inflight.Wait()
	var stopErr error
	if j.relay != nil {
		stopErr = j.relay.stop(ctx)
	}
	close(j.stopMon)
	j.wg.Wait()
	if j.relay != nil {
		j.relay.close()
	}
	j.m.close()
	// A stalled write may never return, and pebble's Close waits for it:
	// the wait for commits and the close are bounded by ctx.
	closed := make(chan error, 1)
	go func() {
		defer close(j.storeClosed)
		j.commits.Wait()
		closed <- j.closeStore()
	}()
	select {
	case err := <-closed:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return fmt.Errorf("close journal: writes still stalled: %w", ctx.Err())
	}
	return stopErr
}

func (j *Journal) closeStore() error {
	err := j.store.Close()
	j.fsCloser.Close()
	if err != nil {
		return fmt.Errorf("close journal: %w", err)
	}
	return nil
}
