package reversalstore

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"pingate/integration/pebblestore"
)

// MoveFrom moves the advices held in dir, a database of their own (the
// `reversals.dir` of a gateway from before they moved into the journal's
// database), into s, and leaves dir an empty database. It returns how many
// it moved. opts.FS is the file system of dir (nil: the disk).
//
// It is crash-safe and moves each advice exactly once: the advices are
// copied as stored (sealed under the same keys, so they open with the same
// data key) in one synced batch of s, and only then deleted from dir in one
// synced batch. A crash between the two leaves them in both; the next
// MoveFrom copies them again onto the same keys (the same values: still one
// advice each) and deletes them. The caller moves them before anything
// sends or discharges an advice of s (the gateway: at start, before its
// issuer links start), so no advice is discharged between the copy and a
// second copy. A dir that does not exist or holds no database moves nothing
// and is left as it is; an error leaves the advices where they were (in
// dir, and maybe in s too) for the next attempt.
func (s *Store) MoveFrom(ctx context.Context, dir string, opts Options) (int, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if _, err := fs.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("move advices from %s: %w", dir, err)
	}
	desc, err := pebble.Peek(dir, fs)
	if err != nil {
		return 0, fmt.Errorf("move advices from %s: %w", dir, err)
	}
	if !desc.Exists {
		return 0, nil
	}
	old, err := pebblestore.Open(dir, pebblestore.Options{Name: "old reversal store", FS: fs, ProbeInterval: opts.ProbeInterval})
	if err != nil {
		return 0, fmt.Errorf("move advices from %s: %w", dir, err)
	}
	n, err := s.moveFrom(ctx, old)
	if cerr := old.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("move advices from %s: %w", dir, err)
	}
	return n, nil
}

func (s *Store) moveFrom(ctx context.Context, old *pebblestore.DB) (int, error) {
	db, release, err := old.Acquire()
	if err != nil {
		return 0, err
	}
	defer release()
	var keys, values [][]byte
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: keyLow, UpperBound: keyHigh})
	if err != nil {
		return 0, err
	}
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, append([]byte(nil), it.Key()...))
		values = append(values, append([]byte(nil), it.Value()...))
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		return 0, nil
	}
	copyAll := func(b *pebble.Batch) error {
		for i := range keys {
			if err := b.Set(keys[i], values[i], nil); err != nil {
				return err
			}
		}
		return nil
	}
	if err := s.write(ctx, copyAll); err != nil {
		return 0, fmt.Errorf("copy: %w", err)
	}
	b := db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(keyLow, keyHigh, nil); err != nil {
		return 0, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("delete moved advices: %w", err)
	}
	if f := old.Fault(); f != "" {
		// pebble's Fatalf, then a nil from Commit.
		return 0, fmt.Errorf("delete moved advices: %s", f)
	}
	return len(keys), nil
}
