package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// ErrDown: the database is out of use, after a fatal storage error (until
// the supervisor has reopened it) or after Close.
var ErrDown = errors.New("store out of use")

// Options configure a DB.
type Options struct {
	// Name names the store in log lines ("event journal").
	Name string
	// FS is the file system under pebble; nil means the disk. Tests inject
	// faults with pebble's vfs/errorfs.
	FS vfs.FS
	// MinFree is the free space, in bytes, the directory's file system must
	// have before a reopen is tried; <= 0 skips the check.
	MinFree int64
	// ProbeInterval is the time between recovery attempts. Default 1s.
	ProbeInterval time.Duration
	// CloseWait is how long the supervisor waits for the broken instance to
	// close before it logs that the close is stuck (it keeps waiting; see
	// recoverStore). Default 2s.
	CloseWait time.Duration
	// Ready runs on every instance before it is put in use, the first one
	// included (reload the state kept beside the database). An error on the
	// first fails Open; on a reopen, the attempt is retried.
	Ready func(db *pebble.DB) error
	// Closing runs on an instance just before it is closed (read its last
	// metrics).
	Closing func(db *pebble.DB)
	// Pebble is the template of the pebble options; FS, Logger and Lock are
	// set by the DB.
	Pebble pebble.Options
}

// DB is a pebble database that reopens itself after a fatal storage error.
type DB struct {
	dir  string
	opts Options
	lock *pebble.Lock

	mu      sync.Mutex
	db      *pebble.DB // nil while out of use
	refs    int        // Acquire calls not yet released
	idle    chan struct{}
	stopped bool
	broken  bool // a close panicked: the lock may still be held, no reopen

	fault      atomic.Pointer[string]
	faultCh    chan struct{} // capacity 1: "a fault was marked"
	stop       chan struct{}
	wg         sync.WaitGroup // the supervisor
	bg         sync.WaitGroup // closes and reopen attempts
	recoveries atomic.Uint64
}

// Open locks dir, opens the database in it and starts the supervisor.
func Open(dir string, opts Options) (*DB, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = time.Second
	}
	if opts.CloseWait <= 0 {
		opts.CloseWait = 2 * time.Second
	}
	if err := opts.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	lock, err := pebble.LockDirectory(dir, opts.FS)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	d := &DB{dir: dir, opts: opts, lock: lock, faultCh: make(chan struct{}, 1), stop: make(chan struct{})}
	db, err := d.open()
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	d.db = db
	d.wg.Add(1)
	go d.supervise()
	return d, nil
}

func (d *DB) open() (*pebble.DB, error) {
	po := d.opts.Pebble
	po.FS, po.Logger, po.Lock = d.opts.FS, logger{d}, d.lock
	db, err := pebble.Open(d.dir, &po)
	if err != nil {
		return nil, err
	}
	if d.opts.Ready != nil {
		if err := d.opts.Ready(db); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

// Acquire returns the database in use and a release function the caller
// must call once done with it (with every batch and iterator closed), or
// ErrDown while it is out of use.
func (d *DB) Acquire() (*pebble.DB, func(), error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return nil, nil, d.downErr()
	}
	d.refs++
	var once sync.Once
	return d.db, func() { once.Do(d.release) }, nil
}

func (d *DB) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refs--
	if d.refs == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

func (d *DB) downErr() error {
	if f := d.fault.Load(); f != nil {
		return fmt.Errorf("%w: %s", ErrDown, *f)
	}
	return ErrDown
}

// Fault returns pebble's fatal error message while the database is failed
// (until the supervisor has reopened it), else "".
func (d *DB) Fault() string {
	if f := d.fault.Load(); f != nil {
		return *f
	}
	return ""
}

// Recoveries counts the reopens after a fatal storage error since Open.
func (d *DB) Recoveries() uint64 { return d.recoveries.Load() }

// MarkFailed marks the database failed, as pebble's Fatalf does; the
// supervisor then recovers it. For callers that see a fault pebble does not
// report (and tests).
func (d *DB) MarkFailed(msg string) {
	if d.fault.CompareAndSwap(nil, &msg) {
		slog.Error(d.opts.Name+" storage failure; refusing writes and recovering by itself", "err", msg)
		select {
		case d.faultCh <- struct{}{}:
		default:
		}
	}
}

// takeOut removes the instance in use and returns it with a channel closed
// once its last user has released it.
func (d *DB) takeOut() (*pebble.DB, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	db := d.db
	d.db = nil
	idle := make(chan struct{})
	// Users only ever hold the instance in use: with none in use (taken out
	// by the supervisor already) there is nothing to wait for here.
	if db == nil || d.refs == 0 {
		close(idle)
	} else {
		d.idle = idle
	}
	return db, idle
}

// closeDB closes db, turning a panic of pebble's Close into an error (the
// DB is then marked broken: the lock may be held by the half-closed
// instance, so no reopen is tried).
func (d *DB) closeDB(db *pebble.DB) (err error) {
	defer func() {
		if p := recover(); p != nil {
			d.mu.Lock()
			d.broken = true
			d.mu.Unlock()
			err = fmt.Errorf("close %s: panic: %v", d.opts.Name, p)
		}
	}()
	if d.opts.Closing != nil {
		d.opts.Closing(db)
	}
	return db.Close()
}

func (d *DB) supervise() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		case <-d.faultCh:
		}
		if d.fault.Load() != nil {
			d.recoverStore()
		}
	}
}

// recoverStore closes the failed instance and reopens the database, until
// it has or Close is called.
//
// The failed instance is closed once its last user has released it. A user
// may be a commit that the disk never lets return, and pebble's Close waits
// for commits too: the close then runs on in a goroutine of the DB's own
// (Close waits for it, within its caller's deadline), the supervisor logs
// that it is stuck, and no reopen is tried until it has returned — pebble
// refuses a second Open on the held lock, and two instances on one
// directory would each delete the other's files. The database stays failed
// (readiness shows it) for as long as the disk holds that write.
func (d *DB) recoverStore() {
	start := time.Now()
	old, idle := d.takeOut()
	closed := make(chan struct{})
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		defer close(closed)
		<-idle
		if old != nil {
			if err := d.closeDB(old); err != nil {
				slog.Warn(d.opts.Name+" failed instance closed with an error", "err", err)
			}
		}
	}()
	t := time.NewTimer(d.opts.CloseWait)
	select {
	case <-closed:
		t.Stop()
	case <-d.stop:
		t.Stop()
		return
	case <-t.C:
		slog.Error(d.opts.Name+" failed instance does not close (a write the disk holds); reopening once it has",
			"waited", d.opts.CloseWait)
		select {
		case <-closed:
		case <-d.stop:
			return
		}
	}
	d.mu.Lock()
	broken := d.broken
	d.mu.Unlock()
	if broken {
		slog.Error(d.opts.Name + " cannot be reopened in this process; restart it once the disk is healthy")
		return
	}
	tick := time.NewTicker(d.opts.ProbeInterval)
	defer tick.Stop()
	var lastErr string
	for {
		done := make(chan bool, 1)
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			done <- d.attempt(&lastErr)
		}()
		select {
		case ok := <-done:
			if ok {
				slog.Info(d.opts.Name+" recovered from the storage failure", "after", time.Since(start).Round(time.Millisecond))
				return
			}
		case <-d.stop:
			return
		}
		select {
		case <-tick.C:
		case <-d.stop:
			return
		}
	}
}

// attempt probes the directory and reopens the database; it reports whether
// the new instance is in use. It runs in a goroutine of its own, because a
// stalled disk can hold the probe or pebble's Open: the supervisor stops
// waiting for it when Close is called, and the attempt then closes what it
// opened. lastErr (owned by the attempt in flight) keeps a repeated failure
// to one log line.
func (d *DB) attempt(lastErr *string) bool {
	err := d.probe()
	var db *pebble.DB
	if err == nil {
		db, err = d.open()
	}
	if err != nil {
		if msg := err.Error(); msg != *lastErr {
			*lastErr = msg
			slog.Warn(d.opts.Name+" not yet writable; retrying", "err", msg, "every", d.opts.ProbeInterval)
		}
		return false
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		_ = db.Close()
		return false
	}
	d.fault.Store(nil)
	d.db = db
	d.mu.Unlock()
	d.recoveries.Add(1)
	return true
}

// probe checks that the directory has MinFree bytes free and that a file
// can be written and synced in it.
func (d *DB) probe() error {
	fs := d.opts.FS
	if d.opts.MinFree > 0 {
		u, err := fs.GetDiskUsage(d.dir)
		if err != nil {
			return fmt.Errorf("free space: %w", err)
		}
		if int64(min(u.AvailBytes, 1<<62)) < d.opts.MinFree {
			return fmt.Errorf("%d bytes free, reserve %d", u.AvailBytes, d.opts.MinFree)
		}
	}
	name := fs.PathJoin(d.dir, "probe.tmp")
	f, err := fs.Create(name)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	_, err = f.Write(make([]byte, 4096))
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close(), fs.Remove(name))
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}

// Close stops the supervisor, waits for every user to release the database,
// closes it and releases the directory. On a disk that holds a write, it
// does not return until the write has: bound it with a goroutine and a
// deadline (outbox.Journal.Shutdown does).
func (d *DB) Close() error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return ErrDown
	}
	d.stopped = true
	d.mu.Unlock()
	close(d.stop)
	d.wg.Wait()
	db, idle := d.takeOut()
	<-idle
	var err error
	if db != nil {
		err = d.closeDB(db)
	}
	d.bg.Wait()
	d.mu.Lock()
	broken := d.broken
	d.mu.Unlock()
	if !broken {
		err = errors.Join(err, d.lock.Close())
	}
	if err != nil {
		return fmt.Errorf("close %s: %w", d.opts.Name, err)
	}
	return nil
}

// logger keeps pebble's routine messages (flushes, compactions) out of the
// gateway's output and turns Fatalf into MarkFailed instead of a panic: a
// panic on ENOSPC or EIO would crash-loop a gateway on a full volume, with
// decided outcomes unrecorded. pebble's messages name files and errors,
// never values.
type logger struct{ d *DB }

func (logger) Infof(string, ...any)  {}
func (logger) Errorf(string, ...any) {}

func (l logger) Fatalf(format string, args ...any) {
	l.d.MarkFailed(fmt.Sprintf(format, args...))
}

// WaitRecovered waits until the database is in use with no fault, or ctx
// ends (tests and tools).
func (d *DB) WaitRecovered(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		d.mu.Lock()
		up := d.db != nil && d.fault.Load() == nil
		d.mu.Unlock()
		if up {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
