package routing

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"
)

// dedupe remembers each request's outcome for a window so that a duplicate
// (same card, acquirer, terminal, STAN, transmission time) is answered with the first
// outcome and never sent to the issuer twice. A duplicate that arrives while
// the first is still in flight waits for it.
//
// The window holds every request of the last duplicate_window (at 3 000/s and
// the default 10 minutes, 1.8 million). A request in flight is a pointer
// entry that its duplicates wait on; once finished, its outcome is encoded
// into a log of byte chunks and indexed by a map from the key's hash to the
// record's position. Neither holds a pointer, so the garbage collector never
// scans the finished outcomes: as one pointer-rich entry each they made GC
// marking a seventh of the gateway's CPU (docs/optimisation-log.md, change 24).
type dedupe struct {
	seed   maphash.Seed
	mu     sync.Mutex
	flying map[string]*dupEntry
	done   map[uint64]uint64 // hash of the key → position of its record in log
	log    dupLog
	buf    []byte // scratch for encoding a record, under mu
}

type dupEntry struct {
	done    chan struct{}
	outcome Outcome
	// reversed is set, under dedupe.mu, once an acquirer's reversal advice
	// for this request has been taken (Flow.Reverse).
	reversed bool
}

func newDedupe() *dedupe {
	return &dedupe{seed: maphash.MakeSeed(), flying: map[string]*dupEntry{}, done: map[uint64]uint64{}}
}

// dedupeKey is the window's key of a request, and of the reversal advice
// that names it: acquirer, terminal, STAN, transmission time and the card's
// token (WindowID's fields): two cards sent under one STAN by a terminal are
// two requests, on this instance's window as on the shared one.
func dedupeKey(acquirer, terminal, stan, transmit, cardToken string) string {
	return acquirer + "|" + terminal + "|" + stan + "|" + transmit + "|" + cardToken
}

// begin registers key. If it is new, first is true and the caller must call
// finish; reversedFirst is then true when its acquirer reversed it before it
// came (forbid). Otherwise it waits for the first request's outcome.
func (d *dedupe) begin(ctx context.Context, key string, now time.Time) (first, reversedFirst bool, o Outcome, err error) {
	d.mu.Lock()
	d.expire(now)
	e, ok := d.flying[key]
	if !ok {
		rec, found := d.record(key, now)
		if found && !rec.forbidden() {
			o := rec.outcome()
			d.mu.Unlock()
			return false, false, o, nil
		}
		// A forbidden key's record stays until finish replaces it; lookup
		// and begin see the entry in flight first.
		d.flying[key] = &dupEntry{done: make(chan struct{}), reversed: found}
		d.mu.Unlock()
		return true, found, Outcome{}, nil
	}
	d.mu.Unlock()
	select {
	case <-e.done:
		return false, false, e.outcome, nil
	case <-ctx.Done():
		return false, false, Outcome{}, ctx.Err()
	}
}

// forbid remembers key, which no request holds, as reversed by its acquirer
// before it came, for window from now: a request under key is then refused
// (begin reports it reversedFirst) and never reaches the issuer, and a
// repeated advice finds nothing to undo. It reports false, doing nothing,
// when a request holds key after all.
func (d *dedupe) forbid(key string, now time.Time, window time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.flying[key]; ok {
		return false
	}
	if _, ok := d.record(key, now); ok {
		return false
	}
	h := d.hash(key)
	d.buf = appendDupRecord(d.buf[:0], now.Add(window).UnixNano(), h, dupReversed|dupForbidden, key, &Outcome{})
	d.done[h] = d.log.append(d.buf)
	return true
}

// lookup returns the outcome of key if it is within the window, waiting for
// it while the request is in flight.
func (d *dedupe) lookup(ctx context.Context, key string, now time.Time) (o Outcome, found bool, err error) {
	d.mu.Lock()
	e, ok := d.flying[key]
	if !ok {
		rec, found := d.record(key, now)
		if found {
			o = rec.outcome()
		}
		d.mu.Unlock()
		return o, found, nil
	}
	d.mu.Unlock()
	select {
	case <-e.done:
		return e.outcome, true, nil
	case <-ctx.Done():
		return Outcome{}, false, ctx.Err()
	}
}

// claimReversal marks key reversed; it reports false if it already was, or
// if key is not held.
func (d *dedupe) claimReversal(key string, now time.Time) bool {
	return d.setReversed(key, now, true)
}

// releaseReversal undoes claimReversal after a reversal that failed, so that
// the acquirer's next advice tries again.
func (d *dedupe) releaseReversal(key string, now time.Time) {
	d.setReversed(key, now, false)
}

// setReversed sets key's reversed mark to to and reports whether it changed.
func (d *dedupe) setReversed(key string, now time.Time, to bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.flying[key]; ok {
		if e.reversed == to {
			return false
		}
		e.reversed = to
		return true
	}
	rec, ok := d.record(key, now)
	if !ok || rec.reversed() == to {
		return false
	}
	rec.setReversed(to)
	return true
}

// finish stores o as key's outcome, remembered for window from now, and
// releases the duplicates waiting for it. The window is the configuration's
// of the moment (Flow.Reload may change it): a record expires at its own
// time, checked on every read, and leaves memory once the ones before it
// have (expire).
func (d *dedupe) finish(key string, o Outcome, now time.Time, window time.Duration) {
	d.mu.Lock()
	e := d.flying[key]
	if e == nil {
		d.mu.Unlock()
		return
	}
	delete(d.flying, key)
	h := d.hash(key)
	var flags byte
	if e.reversed {
		flags = dupReversed
	}
	d.buf = appendDupRecord(d.buf[:0], now.Add(window).UnixNano(), h, flags, key, &o)
	// A key whose hash another one's record holds takes the index entry:
	// the older key is forgotten (a 2^-64 chance per pair with a seed no
	// client knows), and no request is ever answered with another's outcome.
	d.done[h] = d.log.append(d.buf)
	d.mu.Unlock()
	e.outcome = o
	close(e.done)
}

func (d *dedupe) hash(key string) uint64 { return maphash.String(d.seed, key) }

// record returns key's finished record if it is within the window at now;
// called with mu held.
func (d *dedupe) record(key string, now time.Time) (dupRecord, bool) {
	pos, ok := d.done[d.hash(key)]
	if !ok {
		return nil, false
	}
	rec := d.log.at(pos)
	if !rec.hasKey(key) || now.UnixNano() > rec.expires() {
		return nil, false
	}
	return rec, true
}

// expire drops records past their window; called with mu held. Records are
// in the order they finished, and so of their expiry while the window is
// not shortened; after a shorter one is loaded, the newer records leave
// memory behind the older ones.
func (d *dedupe) expire(now time.Time) {
	t := now.UnixNano()
	for {
		rec, pos, ok := d.log.oldest()
		if !ok || t <= rec.expires() {
			return
		}
		if h := rec.hash(); d.done[h] == pos {
			delete(d.done, h)
		}
		d.log.drop(len(rec))
	}
}

// dupChunkSize is the size of one chunk of the log: a few thousand records.
const dupChunkSize = 1 << 20

// dupLog is an append-only sequence of records in chunks of bytes, dropped
// from the front as they expire. A record's position is its chunk's number
// (counted from the first chunk ever) << 32 | its offset in the chunk.
type dupLog struct {
	chunks [][]byte
	first  uint64 // the number of chunks[0]
	read   int    // offset of the oldest record in chunks[0]
}

// append copies rec to the end of the log and returns its position.
func (l *dupLog) append(rec []byte) uint64 {
	n := len(l.chunks)
	if n == 0 || cap(l.chunks[n-1])-len(l.chunks[n-1]) < len(rec) {
		l.chunks = append(l.chunks, make([]byte, 0, max(dupChunkSize, len(rec))))
		n++
	}
	c := l.chunks[n-1]
	pos := (l.first+uint64(n-1))<<32 | uint64(len(c))
	l.chunks[n-1] = append(c, rec...)
	return pos
}

// at returns the record at pos, which must be a position append returned
// whose record has not been dropped.
func (l *dupLog) at(pos uint64) dupRecord {
	c := l.chunks[pos>>32-l.first]
	return dupRecordAt(c[uint32(pos):])
}

// oldest returns the oldest record and its position, false if none is left.
func (l *dupLog) oldest() (dupRecord, uint64, bool) {
	for len(l.chunks) > 0 {
		if c := l.chunks[0]; l.read < len(c) {
			return dupRecordAt(c[l.read:]), l.first<<32 | uint64(l.read), true
		}
		if len(l.chunks) == 1 {
			return nil, 0, false // the chunk being written: keep it
		}
		l.chunks[0] = nil
		l.chunks = l.chunks[1:]
		l.first++
		l.read = 0
	}
	return nil, 0, false
}

// drop removes the oldest record, of n bytes.
func (l *dupLog) drop(n int) { l.read += n }

// A dupRecord is one finished request in the log:
//
//	expires  8 bytes, Unix nanoseconds
//	hash     8 bytes, of the key (dedupe.hash)
//	flags    1 byte: dupReversed, dupForbidden
//	length   4 bytes, of what follows
//	the key, then the outcome (appendOutcome)
//
// integers big-endian. It is a slice of the log's chunk: valid until the
// record is dropped, and copied from by every accessor that returns a value.
type dupRecord []byte

const dupHeader = 8 + 8 + 1 + 4

// A record's flags.
const (
	dupReversed byte = 1 << iota // an acquirer's reversal advice was taken
	// dupForbidden: the advice came first, with no request under the key
	// (dedupe.forbid); the record holds no outcome.
	dupForbidden
)

func dupRecordAt(b []byte) dupRecord {
	return dupRecord(b[:dupHeader+int(binary.BigEndian.Uint32(b[17:]))])
}

func appendDupRecord(b []byte, expires int64, hash uint64, flags byte, key string, o *Outcome) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(expires))
	b = binary.BigEndian.AppendUint64(b, hash)
	b = append(b, flags, 0, 0, 0, 0)
	start := len(b)
	b = appendString(b, key)
	b = appendOutcome(b, o)
	binary.BigEndian.PutUint32(b[start-4:], uint32(len(b)-start))
	return b
}

func (r dupRecord) expires() int64  { return int64(binary.BigEndian.Uint64(r)) }
func (r dupRecord) hash() uint64    { return binary.BigEndian.Uint64(r[8:]) }
func (r dupRecord) reversed() bool  { return r[16]&dupReversed != 0 }
func (r dupRecord) forbidden() bool { return r[16]&dupForbidden != 0 }

func (r dupRecord) setReversed(to bool) {
	if to {
		r[16] |= dupReversed
	} else {
		r[16] &^= dupReversed
	}
}

func (r dupRecord) hasKey(key string) bool {
	n, k := binary.Uvarint(r[dupHeader:])
	return string(r[dupHeader+k:][:n]) == key
}

func (r dupRecord) outcome() Outcome {
	f := &fieldReader{b: r[dupHeader:]}
	f.bytes() // the key
	return readOutcome(f)
}
