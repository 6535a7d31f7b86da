package pebblestore

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openMem opens a DB on a fresh in-memory file system, counting the
// instances Ready saw, and closes it when the test ends.
func openMem(t *testing.T, opts Options) (*DB, vfs.FS, *atomic.Int32) {
	t.Helper()
	fs := vfs.NewMem()
	var ready atomic.Int32
	opts.FS = fs
	opts.Name = "test store"
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = 10 * time.Millisecond
	}
	opts.Ready = func(*pebble.DB) error { ready.Add(1); return nil }
	d, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d, fs, &ready
}

func put(t *testing.T, d *DB, k, v string) {
	t.Helper()
	db, release, err := d.Acquire()
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer release()
	if err := db.Set([]byte(k), []byte(v), pebble.Sync); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

func get(t *testing.T, d *DB, k string) string {
	t.Helper()
	db, release, err := d.Acquire()
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer release()
	v, closer, err := db.Get([]byte(k))
	if err != nil {
		t.Fatalf("Get(%s): %v", k, err)
	}
	defer closer.Close()
	return string(v)
}

func waitRecovered(t *testing.T, d *DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitRecovered(ctx); err != nil {
		t.Fatalf("not recovered: %v (fault %q)", err, d.Fault())
	}
}

// TestRecoversAfterFault: a fault (pebble's Fatalf, here MarkFailed) takes
// the instance out of use — Acquire names the fault — and the supervisor
// reopens the directory: a synced write from before is there again, Ready
// ran on the new instance, the fault is cleared and counted.
func TestRecoversAfterFault(t *testing.T) {
	d, _, ready := openMem(t, Options{})
	put(t, d, "k", "before")
	d.MarkFailed("write error on WAL")
	if got := d.Fault(); got != "write error on WAL" {
		t.Errorf("Fault() = %q, want the fault's message", got)
	}
	waitRecovered(t, d)
	if d.Fault() != "" || d.Recoveries() != 1 || ready.Load() != 2 {
		t.Errorf("after recovery: fault %q, recoveries %d, Ready calls %d; want none, 1, 2", d.Fault(), d.Recoveries(), ready.Load())
	}
	if got := get(t, d, "k"); got != "before" {
		t.Errorf("synced write after the reopen = %q, want before", got)
	}
	put(t, d, "k", "after")
	if got := get(t, d, "k"); got != "after" {
		t.Errorf("write on the reopened instance = %q, want after", got)
	}
}

// TestReopenWaitsForTheLastUser: the failed instance is not closed under a
// user still holding it; meanwhile new users are refused with ErrDown and
// the fault, and the reopen follows the release.
func TestReopenWaitsForTheLastUser(t *testing.T) {
	d, _, _ := openMem(t, Options{CloseWait: 20 * time.Millisecond})
	db, release, err := d.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	d.MarkFailed("disk gone")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, r, err := d.Acquire()
		if err != nil {
			if !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "disk gone") {
				t.Errorf("Acquire while failed = %v, want ErrDown naming the fault", err)
			}
			break
		}
		r()
		if time.Now().After(deadline) {
			t.Fatal("the failed instance stayed in use")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if d.Recoveries() != 0 {
		t.Fatal("reopened while the failed instance was still held")
	}
	if _, _, err := db.Get([]byte("x")); !errors.Is(err, pebble.ErrNotFound) {
		t.Errorf("the held instance was closed under its user: Get = %v", err)
	}
	release()
	release() // a second call is a no-op
	waitRecovered(t, d)
	if d.Recoveries() != 1 {
		t.Errorf("recoveries %d, want 1", d.Recoveries())
	}
}

// TestStaysDownWhileTheDirectoryCannotTakeWrites: with less free space
// than MinFree (the in-memory file system reports none) the probe fails and
// no reopen is tried; Close still returns.
func TestStaysDownWhileTheDirectoryCannotTakeWrites(t *testing.T) {
	d, _, ready := openMem(t, Options{MinFree: 1 << 40})
	d.MarkFailed("no space left on device")
	time.Sleep(150 * time.Millisecond) // ~15 probe intervals
	if d.Fault() == "" || d.Recoveries() != 0 || ready.Load() != 1 {
		t.Errorf("fault %q, recoveries %d, Ready calls %d; want the fault kept, none, 1", d.Fault(), d.Recoveries(), ready.Load())
	}
	if _, _, err := d.Acquire(); !errors.Is(err, ErrDown) {
		t.Errorf("Acquire = %v, want ErrDown", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close of a failed store did not return")
	}
}

// TestOpenHoldsTheDirectory: a second DB on the same directory is refused
// while the first is open, and opens once it is closed.
func TestOpenHoldsTheDirectory(t *testing.T) {
	d, fs, _ := openMem(t, Options{})
	if d2, err := Open("db", Options{FS: fs}); err == nil {
		d2.Close()
		t.Fatal("a second Open on a held directory succeeded")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); !errors.Is(err, ErrDown) {
		t.Errorf("second Close = %v, want ErrDown", err)
	}
	if _, _, err := d.Acquire(); !errors.Is(err, ErrDown) {
		t.Errorf("Acquire after Close = %v, want ErrDown", err)
	}
	d2, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenFailsWhenReadyFails: an error of Ready on the first instance
// fails Open and releases the directory.
func TestOpenFailsWhenReadyFails(t *testing.T) {
	fs := vfs.NewMem()
	boom := errors.New("state beside the database unreadable")
	if _, err := Open("db", Options{FS: fs, Ready: func(*pebble.DB) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("Open = %v, want Ready's error", err)
	}
	d, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatalf("Open after a failed Open: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
