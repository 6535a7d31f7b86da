package outbox

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	"pingate/routing"
)

// faultFS injects storage faults into pebble's file system (pebble's
// vfs/errorfs) once armed: every write-kind operation fails with err, or
// blocks until released when block is set.
type faultFS struct {
	armed   atomic.Bool
	block   atomic.Bool
	err     error
	mu      sync.Mutex
	release chan struct{}
}

func newFaultFS(err error) *faultFS { return &faultFS{err: err, release: make(chan struct{})} }

func (f *faultFS) MaybeError(op errorfs.Op, _ string) error {
	if !f.armed.Load() || op.OpKind() != errorfs.OpKindWrite {
		return nil
	}
	if f.block.Load() {
		f.mu.Lock()
		ch := f.release
		f.mu.Unlock()
		<-ch
		return nil
	}
	return f.err
}

// heal disarms the injector and lets blocked operations go on.
func (f *faultFS) heal() {
	f.armed.Store(false)
	f.mu.Lock()
	close(f.release)
	f.release = make(chan struct{})
	f.mu.Unlock()
}

func openFaulty(t *testing.T, inj *faultFS, mutate func(*Config)) *Journal {
	t.Helper()
	cfg := testConfig(t)
	cfg.FS = errorfs.Wrap(vfs.Default, inj)
	cfg.WriteTimeout = 200 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	j, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func stopJournal(t *testing.T, j *Journal) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return j.Shutdown(ctx)
}

// TestJournalWriteErrorFailsFast: a WAL write that fails (ENOSPC, EIO) makes
// Publish fail — never a nil for an event that is not on disk, never a
// panic — and the journal refuses work from then on (ErrFailed through
// Admit, Health and Publish).
func TestJournalWriteErrorFailsFast(t *testing.T) {
	inj := newFaultFS(errors.New("no space left on device"))
	j := openFaulty(t, inj, nil)
	ctx := context.Background()
	if err := j.Publish(ctx, testEvent(1)); err != nil {
		t.Fatalf("Publish on a healthy disk: %v", err)
	}
	inj.armed.Store(true)
	if err := j.Publish(ctx, testEvent(2)); err == nil {
		t.Fatal("Publish with the WAL write failing = nil, want an error")
	}
	if err := j.Admit(); !errors.Is(err, ErrFailed) || !errors.Is(err, routing.ErrSinkUnavailable) {
		t.Fatalf("Admit after a failed write = %v, want ErrFailed (routing.ErrSinkUnavailable)", err)
	}
	if err := j.Publish(ctx, testEvent(3)); !errors.Is(err, ErrFailed) {
		t.Fatalf("Publish after a failed write = %v, want ErrFailed", err)
	}
	inj.heal()
	_ = stopJournal(t, j)
}

// TestJournalStalledWriteIsBounded: a disk whose writes do not return makes
// Publish fail with ErrStalled after WriteTimeout instead of hanging; while
// the write is stalled, Admit refuses and Publish fails at once; once the
// disk returns, work resumes by itself. Shutdown is bounded too.
func TestJournalStalledWriteIsBounded(t *testing.T) {
	inj := newFaultFS(nil)
	inj.block.Store(true)
	j := openFaulty(t, inj, nil)
	ctx := context.Background()
	inj.armed.Store(true)
	if err := j.Publish(ctx, testEvent(1)); !errors.Is(err, ErrStalled) {
		t.Fatalf("Publish on a stalled disk = %v, want ErrStalled", err)
	}
	if err := j.Admit(); !errors.Is(err, ErrStalled) {
		t.Fatalf("Admit with a write stalled = %v, want ErrStalled", err)
	}
	if err := j.Publish(ctx, testEvent(2)); !errors.Is(err, ErrStalled) {
		t.Fatalf("Publish with a write stalled = %v, want ErrStalled at once", err)
	}
	inj.heal()
	deadline := time.Now().Add(10 * time.Second)
	for j.Admit() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Admit after the disk returned = %v, want nil", j.Admit())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := j.Publish(ctx, testEvent(3)); err != nil {
		t.Fatalf("Publish after the disk returned: %v", err)
	}
	// The stalled entry landed late: it is in the journal, before the next.
	es, err := j.Entries(1, 10)
	if err != nil || len(es) != 2 {
		t.Fatalf("Entries = %d entries, %v; want the late one and the new one", len(es), err)
	}
	if err := stopJournal(t, j); err != nil {
		t.Fatal(err)
	}
}

// TestJournalShutdownWithStalledDisk: Shutdown returns within its context
// even when a write never returns.
func TestJournalShutdownWithStalledDisk(t *testing.T) {
	inj := newFaultFS(nil)
	inj.block.Store(true)
	j := openFaulty(t, inj, nil)
	inj.armed.Store(true)
	if err := j.Publish(context.Background(), testEvent(1)); !errors.Is(err, ErrStalled) {
		t.Fatalf("Publish on a stalled disk = %v, want ErrStalled", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := j.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown with a write stalled = nil, want the context's error")
	}
	inj.heal() // the store closes once the write returns (and goleak is content)
	<-j.storeClosed
}

// TestJournalRelayProgressWriteError: the relay's progress write
// (markRelayed) returns an error on a failing disk instead of panicking.
func TestJournalRelayProgressWriteError(t *testing.T) {
	inj := newFaultFS(errors.New("input/output error"))
	j := openFaulty(t, inj, nil)
	if err := j.Publish(context.Background(), testEvent(1)); err != nil {
		t.Fatal(err)
	}
	inj.armed.Store(true)
	// NoSync: the WAL write itself reports the fault.
	if err := j.markRelayed(1); err == nil {
		// pebble may buffer a NoSync write; then a synced one must fail.
		if err := j.Publish(context.Background(), testEvent(2)); err == nil {
			t.Fatal("writes on a failing disk all returned nil")
		}
	}
	if j.Health() == nil {
		t.Fatal("Health on a failing disk = nil, want the fault")
	}
	inj.heal()
	_ = stopJournal(t, j)
}

// TestJournalAdmitsWithinReserve: below MinFree free bytes Admit refuses
// with ErrLowSpace (routing.ErrSinkFull: the flow answers journal_full
// before the issuer is called); past MaxDepth with ErrJournalFull.
func TestJournalAdmitsWithinReserve(t *testing.T) {
	j := openFaulty(t, newFaultFS(nil), func(c *Config) { c.MinFree = 1 << 62 })
	if err := j.Admit(); !errors.Is(err, ErrLowSpace) || !errors.Is(err, routing.ErrSinkFull) {
		t.Fatalf("Admit with free space below the reserve = %v, want ErrLowSpace", err)
	}
	_ = stopJournal(t, j)
	j = openFaulty(t, newFaultFS(nil), func(c *Config) { c.MinFree = 1 })
	if err := j.Admit(); err != nil {
		t.Fatalf("Admit with free space above the reserve = %v, want nil", err)
	}
	_ = stopJournal(t, j)
}

// waitHealthy waits until the journal admits work again; the bound only
// keeps a broken recovery from hanging the test.
func waitHealthy(t *testing.T, j *Journal) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for j.Admit() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Admit after the disk was healed = %v, want nil (recovery by itself)", j.Admit())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countIDs counts each ce_id among es.
func countIDs(t *testing.T, es []Entry) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, id := range ids(t, es) {
		n[id]++
	}
	return n
}

// TestJournalRecoversAfterWriteError: a WAL write error (pebble's fatal
// commit error) fails the journal; once the disk is healed, the journal
// reopens its store by itself, without a restart: appends succeed again,
// every entry acknowledged before and after the fault is in the journal
// exactly once, and an entry whose append failed is there at most once
// (its commit outcome was unknown; the flow answered 91 and reversed).
func TestJournalRecoversAfterWriteError(t *testing.T) {
	inj := newFaultFS(errors.New("no space left on device"))
	j := openFaulty(t, inj, func(c *Config) { c.probeInterval = 20 * time.Millisecond })
	ctx := context.Background()
	var acked, failed []int
	for i := range 5 {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d) on a healthy disk: %v", i, err)
		}
		acked = append(acked, i)
	}
	inj.armed.Store(true)
	for i := 5; i < 8; i++ {
		if err := j.Publish(ctx, testEvent(i)); err == nil {
			t.Fatalf("Publish(%d) with the WAL write failing = nil, want an error", i)
		}
		failed = append(failed, i)
	}
	if err := j.Health(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Health with the disk failing = %v, want ErrFailed", err)
	}
	inj.heal()
	waitHealthy(t, j)
	if n := j.store.Recoveries(); n < 1 {
		t.Fatalf("store recoveries = %d, want at least 1", n)
	}
	for i := 8; i < 12; i++ {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d) after recovery: %v", i, err)
		}
		acked = append(acked, i)
	}
	check := func(when string, es []Entry) {
		t.Helper()
		n := countIDs(t, es)
		for _, i := range acked {
			if n[testEvent(i).ID] != 1 {
				t.Errorf("%s: acknowledged event %d is in the journal %d times, want 1", when, i, n[testEvent(i).ID])
			}
		}
		for _, i := range failed {
			if n[testEvent(i).ID] > 1 {
				t.Errorf("%s: failed event %d is in the journal %d times, want at most 1", when, i, n[testEvent(i).ID])
			}
		}
		if len(es) > len(acked)+len(failed) {
			t.Errorf("%s: %d entries, want at most %d", when, len(es), len(acked)+len(failed))
		}
	}
	es, err := j.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	check("after recovery", es)
	cfg := j.cfg
	if err := stopJournal(t, j); err != nil {
		t.Fatal(err)
	}
	// A restart on the plain disk reads the same journal.
	cfg.FS = nil
	j = mustOpen(t, cfg)
	defer shutdown(t, j)
	es, err = j.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	check("after a restart", es)
}

// TestJournalRelayProgressFaultRecovers: markRelayed on a disk whose WAL
// writes fail returns an error (no panic); after the disk heals and the
// journal recovers, it succeeds and the delivered entries are deleted.
func TestJournalRelayProgressFaultRecovers(t *testing.T) {
	inj := newFaultFS(errors.New("input/output error"))
	j := openFaulty(t, inj, func(c *Config) { c.probeInterval = 20 * time.Millisecond })
	defer func() { _ = stopJournal(t, j) }()
	ctx := context.Background()
	for i := range 3 {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	inj.armed.Store(true)
	err := j.markRelayed(2)
	if err == nil {
		// A NoSync write may sit in pebble's buffer: a synced one reports
		// the fault.
		err = j.Publish(ctx, testEvent(3))
	}
	if err == nil {
		t.Fatal("writes on a failing disk all returned nil")
	}
	inj.heal()
	waitHealthy(t, j)
	if err := j.markRelayed(2); err != nil {
		t.Fatalf("markRelayed after recovery: %v", err)
	}
	es, err := j.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Seq <= 2 {
			t.Errorf("entry %d still held after markRelayed(2)", e.Seq)
		}
	}
}

// manifestFaults fails writes to the store's MANIFEST once armed: the
// flush and compaction that follow the delete path (retention's range
// deletion, the relay's progress) record their result there, and pebble
// calls a MANIFEST write error fatal.
type manifestFaults struct{ armed atomic.Bool }

func (f *manifestFaults) MaybeError(op errorfs.Op, path string) error {
	if f.armed.Load() && op.OpKind() == errorfs.OpKindWrite && strings.Contains(path, "MANIFEST") {
		return errors.New("no space left on device")
	}
	return nil
}

// TestJournalTrimFlushFaultRecovers: in journal-only mode retention deletes
// old entries; the flush of those deletions fails on the MANIFEST write.
// The journal reports the fault (no panic), and once the disk is healed it
// recovers by itself: the retained entries are intact and retention goes on.
func TestJournalTrimFlushFaultRecovers(t *testing.T) {
	inj := &manifestFaults{}
	cfg := testConfig(t)
	cfg.FS = errorfs.Wrap(vfs.Default, inj)
	cfg.MaxDepth, cfg.Retain = 100, 5
	cfg.probeInterval = 20 * time.Millisecond
	j := mustOpen(t, cfg)
	defer shutdown(t, j)
	ctx := context.Background()
	for i := range 20 {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d): %v", i, err)
		}
	}
	inj.armed.Store(true)
	// pebble retries a failed flush until it succeeds, so the flush is
	// started, not awaited.
	if err := j.read(func(db *pebble.DB) error { _, err := db.AsyncFlush(); return err }); err != nil {
		t.Fatalf("AsyncFlush: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !errors.Is(j.Health(), ErrFailed) {
		if time.Now().After(deadline) {
			t.Fatalf("Health with the MANIFEST write failing = %v, want ErrFailed", j.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
	inj.armed.Store(false)
	waitHealthy(t, j)
	for i := 20; i < 30; i++ {
		if err := j.Publish(ctx, testEvent(i)); err != nil {
			t.Fatalf("Publish(%d) after recovery: %v", i, err)
		}
	}
	es, err := j.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) > cfg.Retain+1 {
		t.Errorf("%d entries held after recovery, want retention down to about %d", len(es), cfg.Retain)
	}
	n := countIDs(t, es)
	for i := 30 - cfg.Retain; i < 30; i++ {
		if n[testEvent(i).ID] != 1 {
			t.Errorf("retained event %d is in the journal %d times, want 1", i, n[testEvent(i).ID])
		}
	}
}
