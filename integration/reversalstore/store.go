// Package reversalstore persists the reversal advices pingate owes issuers
// (routing.ReversalStore) in an embedded pebble database, so that a restart
// resends what was not yet acknowledged. The gateway keeps them in the
// outcome journal's database (New on outbox.Journal.Store), under keys of
// their own ("rev/" + advice id) that the journal never reads or deletes, so
// an approval's entry and the delete of its advice go in one synced batch
// (Discharge); Open gives a store a database of its own (tools, tests, and
// the directory MoveFrom empties). Every write is synced and bounded:
// a write that fails or does not return within its context's deadline
// returns an error (the request it was for is answered 91 without the issuer
// being called); a fatal storage error marks the store failed instead of
// panicking, and the store reopens itself once its directory can be written
// again (package pebblestore).
package reversalstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"pingate/integration/pebblestore"
	"pingate/routing"
)

// Errors callers branch on.
var (
	// ErrStalled: a write did not return before its context ended; the
	// store refuses writes until it has.
	ErrStalled = errors.New("reversal store write stalled")
	// ErrFailed: pebble reported a fatal storage error; the store refuses
	// writes until it has reopened itself (probed every second).
	ErrFailed = errors.New("reversal store failed")
)

// Sealer enciphers and authenticates stored values under a data key held
// by the security module (pinblock.DataSealer); aad is bound to the value
// but not enciphered.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// Store is a pebble-backed routing.ReversalStore. Every advice is stored
// sealed (Sealer, its key as aad): the PAN it carries is never written to
// the store's files in clear (PCI DSS 3.5), neither in the WAL nor in an
// sstable. pebble keeps a deleted value until compaction drops it; what it
// keeps is ciphertext. The clear JSON of an advice is cleared after use
// (best-effort: the PAN also lives in the routing.Reversal string).
type Store struct {
	sealer  Sealer
	db      *pebblestore.DB
	ownsDB  bool // Open's: Close closes it; New's belongs to its opener
	stalled atomic.Int64
	writes  sync.WaitGroup
}

var _ routing.ReversalStore = (*Store)(nil)

// Options are the store's optional settings.
type Options struct {
	// FS is the file system under pebble; nil means the disk. Tests inject
	// faults with pebble's vfs/errorfs.
	FS vfs.FS
	// ProbeInterval is the time between recovery attempts after a fatal
	// storage error. Default 1s.
	ProbeInterval time.Duration
}

// Open opens or creates the store in dir, sealing every advice with sealer
// (required).
func Open(dir string, sealer Sealer) (*Store, error) { return OpenWith(dir, sealer, Options{}) }

// OpenWith opens the store with opts.
func OpenWith(dir string, sealer Sealer, opts Options) (*Store, error) {
	if sealer == nil {
		return nil, errors.New("open reversal store: a sealer is required (advices carry PANs)")
	}
	db, err := pebblestore.Open(dir, pebblestore.Options{Name: "reversal store", FS: opts.FS, ProbeInterval: opts.ProbeInterval})
	if err != nil {
		return nil, fmt.Errorf("open reversal store: %w", err)
	}
	return &Store{sealer: sealer, db: db, ownsDB: true}, nil
}

// New returns a store kept in db, a database opened and closed by another
// owner (the outcome journal's: outbox.Journal.Store). Its advices live
// under their own key prefix; Close waits for the store's writes and leaves
// db open. The owner must close db only after Close.
func New(db *pebblestore.DB, sealer Sealer) (*Store, error) {
	if sealer == nil {
		return nil, errors.New("open reversal store: a sealer is required (advices carry PANs)")
	}
	if db == nil {
		return nil, errors.New("open reversal store: no database")
	}
	return &Store{sealer: sealer, db: db}, nil
}

// Advice keys: "rev/" + the advice id. Every key of the prefix sorts
// between keyLow and keyHigh.
var (
	keyLow  = []byte("rev/")
	keyHigh = []byte("rev0")
)

func key(id string) []byte { return []byte("rev/" + id) }

// Put stores r durably. It returns when the synced write has returned, or
// ErrStalled when ctx ends first.
//
// The value is the advice's binary form (routing.Reversal.AppendBinary),
// sealed; stores written before it hold JSON, which Pending still reads.
func (s *Store) Put(ctx context.Context, r routing.Reversal) error {
	var buf [256]byte
	plain, _ := r.AppendBinary(buf[:0]) // never fails
	k := key(r.ID)
	v, err := s.sealer.Seal(plain, k)
	clear(plain)
	if err != nil {
		return fmt.Errorf("seal reversal: %w", err)
	}
	return s.write(ctx, func(b *pebble.Batch) error { return b.Set(k, v, nil) })
}

// Delete removes an acknowledged reversal, bounded like Put.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.write(ctx, s.Discharge(id))
}

// Discharge returns the batch operation that deletes advice id, for the
// owner of the store's database to commit with its own write: the journal
// commits an approval's entry and the delete of its advice in one synced
// batch (outbox.Journal.PublishWith), so both land or neither does.
func (s *Store) Discharge(id string) func(*pebble.Batch) error {
	return func(b *pebble.Batch) error { return b.Delete(key(id), nil) }
}

// Health reports whether the store can be written: nil, ErrFailed or
// ErrStalled.
func (s *Store) Health() error {
	if f := s.db.Fault(); f != "" {
		return fmt.Errorf("%w: %s", ErrFailed, f)
	}
	if s.stalled.Load() > 0 {
		return ErrStalled
	}
	return nil
}

// write commits one synced batch in a goroutine the store owns and waits
// for it until ctx ends (pebble's Commit cannot be cut short; see
// outbox.Journal's commit for the same reasoning).
func (s *Store) write(ctx context.Context, fill func(*pebble.Batch) error) error {
	if err := s.Health(); err != nil {
		return err
	}
	db, release, err := s.db.Acquire()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFailed, err)
	}
	b := db.NewBatch()
	if err := fill(b); err != nil {
		b.Close()
		release()
		return err
	}
	done := make(chan error, 1)
	s.writes.Add(1)
	go func() {
		defer s.writes.Done()
		err := b.Commit(pebble.Sync)
		b.Close()
		release()
		if err == nil && s.db.Fault() != "" {
			err = s.Health() // pebble's Fatalf, then a nil from Commit
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		s.stalled.Add(1)
		s.writes.Add(1)
		go func() {
			defer s.writes.Done()
			<-done
			s.stalled.Add(-1)
		}()
		return fmt.Errorf("%w: %v", ErrStalled, ctx.Err())
	}
}

// Pending lists the stored reversals, oldest first.
func (s *Store) Pending(context.Context) ([]routing.Reversal, error) {
	db, release, err := s.db.Acquire()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFailed, err)
	}
	defer release()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: keyLow, UpperBound: keyHigh})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []routing.Reversal
	for it.First(); it.Valid(); it.Next() {
		var r routing.Reversal
		plain, err := s.sealer.Open(it.Value(), it.Key())
		if err != nil {
			return nil, fmt.Errorf("reversal store entry does not open (another data key?): %w", err)
		}
		if len(plain) > 0 && plain[0] == '{' {
			err = json.Unmarshal(plain, &r) // written before the binary form
		} else {
			err = r.UnmarshalBinary(plain)
		}
		clear(plain)
		if err != nil {
			return nil, errors.New("reversal store entry unreadable")
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b routing.Reversal) int { return a.Created.Compare(b.Created) })
	return out, it.Error()
}

// Close waits for the store's writes and closes the database if the store
// opened it (Open). With a write stalled it returns ErrStalled without
// waiting (pebble's Close would wait for the write).
func (s *Store) Close() error {
	if s.stalled.Load() > 0 {
		return ErrStalled
	}
	s.writes.Wait()
	if !s.ownsDB {
		return nil
	}
	return s.db.Close()
}
