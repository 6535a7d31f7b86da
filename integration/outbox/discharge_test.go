package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/vfs"

	"pingate/integration/reversalstore"
	"pingate/pinblock"
	"pingate/routing"
)

// The gateway keeps the reversal advices owed ahead of issuer calls in the
// journal's database (reversalstore.New on Journal.Store) and writes an
// approval's entry with the delete of its advice (PublishWith with
// reversalstore.Store.Discharge). These tests crash the disk at every point
// of that write and of the advice's put: after a restart the journal holds
// the approval or the store still owes its advice, never both and never
// neither.

// crashAfter is a file system on a strict MemFS that lets the first n file
// syncs after it is armed reach the disk and drops every later one, so that
// MemFS.ResetToSyncedState then leaves the disk as a power cut after the
// n-th sync would. (pebble's errorfs does not see SyncData, which the WAL
// uses.)
type crashAfter struct {
	vfs.FS
	mem   *vfs.MemFS
	n     int64
	armed atomic.Bool
	syncs atomic.Int64
}

// newCrashAfter returns the file system with dirs made and synced into the
// root, as an installed gateway's directories are.
func newCrashAfter(t *testing.T, n int64, dirs ...string) *crashAfter {
	t.Helper()
	mem := vfs.NewStrictMem()
	for _, dir := range dirs {
		if err := mem.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, err := mem.OpenDir("/")
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Sync(); err != nil {
		t.Fatal(err)
	}
	_ = root.Close()
	return &crashAfter{FS: mem, mem: mem, n: n}
}

// sync counts a sync when armed and, past the n-th, drops it and every
// later one.
func (c *crashAfter) sync() {
	if c.armed.Load() && c.syncs.Add(1) > c.n {
		c.mem.SetIgnoreSyncs(true)
	}
}

type countedFile struct {
	vfs.File
	c *crashAfter
}

func (f countedFile) Sync() error     { f.c.sync(); return f.File.Sync() }
func (f countedFile) SyncData() error { f.c.sync(); return f.File.SyncData() }

func (c *crashAfter) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return countedFile{File: f, c: c}, nil
}

func (c *crashAfter) Create(name string) (vfs.File, error) { return c.wrap(c.FS.Create(name)) }
func (c *crashAfter) Open(name string, o ...vfs.OpenOption) (vfs.File, error) {
	return c.wrap(c.FS.Open(name, o...))
}
func (c *crashAfter) OpenReadWrite(name string, o ...vfs.OpenOption) (vfs.File, error) {
	return c.wrap(c.FS.OpenReadWrite(name, o...))
}
func (c *crashAfter) OpenDir(name string) (vfs.File, error) { return c.wrap(c.FS.OpenDir(name)) }
func (c *crashAfter) ReuseForWrite(old, name string) (vfs.File, error) {
	return c.wrap(c.FS.ReuseForWrite(old, name))
}

// restart crashes the disk to its last synced state (after the journal is
// closed, so nothing written after the crash point reaches it) and opens the
// journal and the advices kept in it again, on the plain MemFS.
func (c *crashAfter) restart(t *testing.T, j *Journal, cfg Config) (*Journal, *reversalstore.Store) {
	t.Helper()
	c.mem.SetIgnoreSyncs(true)
	_ = stopJournal(t, j)
	c.mem.ResetToSyncedState()
	c.mem.SetIgnoreSyncs(false)
	cfg.FS = c.mem
	return openWithAdvices(t, cfg)
}

// openWithAdvices opens the journal and the reversal advices kept in its
// database, as the gateway does.
func openWithAdvices(t *testing.T, cfg Config) (*Journal, *reversalstore.Store) {
	t.Helper()
	j := mustOpen(t, cfg)
	revs, err := reversalstore.New(j.Store(), journalSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	return j, revs
}

// journalSealer seals advices as a gateway on a payShield does (a data key
// derived from the card-token secret); any sealer serves these tests.
func journalSealer(t *testing.T) *pinblock.DataSealer {
	t.Helper()
	s, err := pinblock.DataSealerFromSecret([]byte("test card-token secret, 32 bytes"), "reversals")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// journaled reports whether the journal holds event id.
func journaled(t *testing.T, j *Journal, id string) bool {
	t.Helper()
	es, err := j.Entries(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return countIDs(t, es)[id] > 0
}

// TestPublishWithDischargeSurvivesACrashAtEverySync: the operation of an
// approval — its advice put ahead of the issuer call, then its entry written
// with the advice's delete — is cut by a power failure after each of its
// file syncs in turn (0, 1, 2, … reach the disk). After every restart
// exactly one of "approval journaled" and "advice owed" holds, unless the
// crash came before the put was durable (then the process died before the
// issuer call: nothing to record or reverse). A crash after the whole write leaves the approval and no advice.
func TestPublishWithDischargeSurvivesACrashAtEverySync(t *testing.T) {
	ctx := context.Background()
	ev := testEvent(0)
	adv := routing.Reversal{ID: "adv-0", Issuer: "ssbank", EventID: ev.ID}
	for n := int64(0); ; n++ {
		c := newCrashAfter(t, n, "/journal")
		cfg := Config{Dir: "/journal", Source: testConfig(t).Source, MinFree: -1, FS: c}
		j, revs := openWithAdvices(t, cfg)
		c.armed.Store(true)
		putErr := revs.Put(ctx, adv)
		putSyncs := c.syncs.Load() // the put is durable once its syncs reached the disk
		var pubErr error
		if putErr == nil {
			pubErr = j.PublishWith(ctx, ev, revs.Discharge(adv.ID))
		}
		syncs := c.syncs.Load()
		if err := revs.Close(); err != nil {
			t.Fatal(err)
		}
		j, revs = c.restart(t, j, cfg)
		isOwed, isJournaled := pendingIDs(t, revs)[adv.ID] > 0, journaled(t, j, ev.ID)
		if err := revs.Close(); err != nil {
			t.Fatal(err)
		}
		shutdown(t, j)
		if putErr != nil || pubErr != nil {
			t.Fatalf("crash after %d syncs: put = %v, publish = %v; want both nil (the crash only drops syncs)", n, putErr, pubErr)
		}
		if isOwed && isJournaled {
			t.Fatalf("crash after %d of %d syncs: the approval is journaled and its advice still owed (a restart would reverse a recorded change)", n, syncs)
		}
		if !isOwed && !isJournaled && n >= putSyncs {
			t.Fatalf("crash after %d of %d syncs: the advice is gone and the approval is not journaled (a change at the issuer without a record)", n, syncs)
		}
		if n >= syncs {
			// Every sync of the operation reached the disk.
			if !isJournaled || isOwed {
				t.Fatalf("after the whole operation: journaled = %v, owed = %v; want the approval and no advice", isJournaled, isOwed)
			}
			return
		}
	}
}

// TestPublishWithFailedWriteLandsWholeOrNotAtAll: when the disk fails the
// combined write, PublishWith reports it, and after a restart on the healed
// disk the journal and the store agree: the approval with no advice, or the
// advice with no approval (pebble applies a batch whole or not at all).
func TestPublishWithFailedWriteLandsWholeOrNotAtAll(t *testing.T) {
	ctx := context.Background()
	inj := newFaultFS(errors.New("no space left on device"))
	j := openFaulty(t, inj, nil)
	cfg := j.cfg
	revs, err := reversalstore.New(j.Store(), journalSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent(1)
	adv := routing.Reversal{ID: "adv-1", Issuer: "ssbank", EventID: ev.ID}
	if err := revs.Put(ctx, adv); err != nil {
		t.Fatal(err)
	}
	inj.armed.Store(true)
	if err := j.PublishWith(ctx, ev, revs.Discharge(adv.ID)); err == nil {
		t.Fatal("PublishWith with the WAL write failing = nil, want an error")
	}
	inj.heal()
	_ = revs.Close()
	_ = stopJournal(t, j)
	cfg.FS = nil
	j, revs = openWithAdvices(t, cfg)
	defer shutdown(t, j)
	defer revs.Close()
	if isOwed, isJournaled := pendingIDs(t, revs)[adv.ID] > 0, journaled(t, j, ev.ID); isOwed == isJournaled {
		t.Fatalf("after a failed combined write and a restart: journaled = %v, owed = %v; want exactly one", isJournaled, isOwed)
	}
}

// pendingIDs counts the advices revs owes, by id.
func pendingIDs(t *testing.T, revs *reversalstore.Store) map[string]int {
	t.Helper()
	rs, err := revs.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, r := range rs {
		n[r.ID]++
	}
	return n
}

// TestMoveFromSurvivesACrashAtEverySync: the advices of a gateway from
// before they moved into the journal's database (a `reversals.dir` of their
// own) are moved in at start (reversalstore.Store.MoveFrom), and the move is
// cut by a power failure after each of its file syncs in turn. After every
// restart each advice is still owed in one of the two stores; the next
// start's move then leaves each owed exactly once in the journal's database
// and none in the old directory. Moving from a directory that is absent,
// or one the move already emptied, moves nothing.
func TestMoveFromSurvivesACrashAtEverySync(t *testing.T) {
	ctx := context.Background()
	const legacy = "/reversals"
	want := []string{"adv-a", "adv-b", "adv-c"}
	openLegacy := func(fs vfs.FS) *reversalstore.Store {
		t.Helper()
		s, err := reversalstore.OpenWith(legacy, journalSealer(t), reversalstore.Options{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for n := int64(0); ; n++ {
		c := newCrashAfter(t, n, "/journal", legacy)
		old := openLegacy(c)
		for _, id := range want {
			if err := old.Put(ctx, routing.Reversal{ID: id, Issuer: "ssbank"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
		cfg := Config{Dir: "/journal", Source: testConfig(t).Source, MinFree: -1, FS: c}
		j, revs := openWithAdvices(t, cfg)
		c.armed.Store(true)
		moved, err := revs.MoveFrom(ctx, legacy, reversalstore.Options{FS: c})
		if err != nil || moved != len(want) {
			t.Fatalf("crash after %d syncs: MoveFrom = %d, %v; want %d, nil (the crash only drops syncs)", n, moved, err, len(want))
		}
		syncs := c.syncs.Load()
		_ = revs.Close()
		j, revs = c.restart(t, j, cfg)
		inJournal := pendingIDs(t, revs)
		old = openLegacy(c.mem)
		inOld := pendingIDs(t, old)
		_ = old.Close()
		for _, id := range want {
			if inJournal[id]+inOld[id] == 0 {
				t.Fatalf("crash after %d of %d syncs of the move: advice %s is in neither store", n, syncs, id)
			}
		}
		again, err := revs.MoveFrom(ctx, legacy, reversalstore.Options{FS: c.mem})
		if err != nil {
			t.Fatalf("crash after %d syncs: the next start's MoveFrom: %v", n, err)
		}
		if again != len(inOld) {
			t.Errorf("crash after %d syncs: the next start moved %d, want the %d left in the old store", n, again, len(inOld))
		}
		inJournal = pendingIDs(t, revs)
		old = openLegacy(c.mem)
		inOld = pendingIDs(t, old)
		_ = old.Close()
		if fmt.Sprint(inJournal) != fmt.Sprint(map[string]int{"adv-a": 1, "adv-b": 1, "adv-c": 1}) || len(inOld) != 0 {
			t.Fatalf("crash after %d syncs, then a start: journal owes %v, old store %v; want each advice once in the journal, none in the old store", n, inJournal, inOld)
		}
		if none, err := revs.MoveFrom(ctx, legacy, reversalstore.Options{FS: c.mem}); none != 0 || err != nil {
			t.Errorf("MoveFrom from the emptied store = %d, %v; want 0, nil", none, err)
		}
		if none, err := revs.MoveFrom(ctx, "/absent", reversalstore.Options{FS: c.mem}); none != 0 || err != nil {
			t.Errorf("MoveFrom from an absent directory = %d, %v; want 0, nil", none, err)
		}
		_ = revs.Close()
		shutdown(t, j)
		if n >= syncs {
			return
		}
	}
}
