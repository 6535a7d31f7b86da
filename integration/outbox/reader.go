package outbox

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// Reader reads a journal directory that no gateway has open, for operator
// tools ("pingate events tail --journal"). pebble locks the directory while
// a Journal has it open, so OpenReader fails on a running gateway's journal;
// follow the Kafka topic instead, or copy the stopped journal.
type Reader struct {
	db       *pebble.DB
	fsCloser io.Closer
}

// OpenReader opens the journal in dir read-only. It fails if dir holds no
// journal or another process has it open.
func OpenReader(dir string) (*Reader, error) {
	fs, fsCloser := vfs.WithDiskHealthChecks(vfs.Default, 5*time.Second, func(vfs.DiskSlowInfo) {})
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, ReadOnly: true, ErrorIfNotExists: true, Logger: quietLogger{}})
	if err != nil {
		fsCloser.Close()
		return nil, fmt.Errorf("open journal %s read-only (is a gateway running on it?): %w", dir, err)
	}
	return &Reader{db: db, fsCloser: fsCloser}, nil
}

// bounds returns the first and last sequence present, ok false if empty.
func (r *Reader) bounds() (first, last uint64, ok bool, err error) {
	it, err := r.db.NewIter(&pebble.IterOptions{LowerBound: entryKey(0), UpperBound: []byte{entryPrefix[0] + 1}})
	if err != nil {
		return 0, 0, false, fmt.Errorf("read journal: %w", err)
	}
	defer it.Close()
	if !it.First() {
		return 0, 0, false, it.Error()
	}
	first = binary.BigEndian.Uint64(it.Key()[1:])
	it.Last()
	last = binary.BigEndian.Uint64(it.Key()[1:])
	return first, last, true, it.Error()
}

// First returns the n oldest entries, in order; n <= 0 means all.
func (r *Reader) First(n int) ([]Entry, error) {
	first, last, ok, err := r.bounds()
	if err != nil || !ok {
		return nil, err
	}
	if n <= 0 {
		n = int(last - first + 1)
	}
	return readEntries(r.db, first, last, n, 0)
}

// Last returns the n newest entries, in order; n <= 0 means all.
func (r *Reader) Last(n int) ([]Entry, error) {
	first, last, ok, err := r.bounds()
	if err != nil || !ok {
		return nil, err
	}
	from := first
	if n > 0 && last-first+1 > uint64(n) {
		from = last - uint64(n) + 1
	}
	return readEntries(r.db, from, last, int(last-from+1), 0)
}

// Close releases the directory.
func (r *Reader) Close() error {
	err := r.db.Close()
	r.fsCloser.Close()
	return err
}

// quietLogger keeps pebble's routine messages out of a read-only reader's
// output; a fatal error is logged, not panicked on (a reader writes nothing).
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}

func (quietLogger) Fatalf(format string, args ...any) {
	slog.Error("event journal reader storage failure", "err", fmt.Sprintf(format, args...))
}
