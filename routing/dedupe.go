package routing

import (
	"context"
	"sync"
	"time"
)

// dedupe remembers each request's outcome for a window so that a duplicate
// (same acquirer, terminal, STAN, transmission time) is answered with the first
// outcome and never sent to the issuer twice. A duplicate that arrives while
// the first is still in flight waits for it.
type dedupe struct {
	window time.Duration
	mu     sync.Mutex
	m      map[string]*dupEntry
	order  []dupExpiry // insertion order = expiry order, since window is fixed
	head   int
}

type dupEntry struct {
	done    chan struct{}
	outcome Outcome
	// reversed is set, under dedupe.mu, once an acquirer's reversal advice
	// for this request has been taken (Flow.Reverse).
	reversed bool
}

type dupExpiry struct {
	key string
	at  time.Time
}

func newDedupe(window time.Duration) *dedupe {
	return &dedupe{window: window, m: map[string]*dupEntry{}}
}

func dedupeKey(r *Request) string {
	return r.Acquirer + "|" + r.Terminal + "|" + r.STAN + "|" + r.Transmit
}

// begin registers key. If it is new, first is true and the caller must call
// finish. Otherwise it waits for the first request's outcome.
func (d *dedupe) begin(ctx context.Context, key string, now time.Time) (first bool, o Outcome, err error) {
	d.mu.Lock()
	d.expire(now)
	e, ok := d.m[key]
	if !ok {
		d.m[key] = &dupEntry{done: make(chan struct{})}
		d.order = append(d.order, dupExpiry{key: key, at: now.Add(d.window)})
		d.mu.Unlock()
		return true, Outcome{}, nil
	}
	d.mu.Unlock()
	select {
	case <-e.done:
		return false, e.outcome, nil
	case <-ctx.Done():
		return false, Outcome{}, ctx.Err()
	}
}

// lookup returns the outcome of key if it is within the window, waiting for
// it while the request is in flight.
func (d *dedupe) lookup(ctx context.Context, key string) (o Outcome, found bool, err error) {
	d.mu.Lock()
	e, ok := d.m[key]
	d.mu.Unlock()
	if !ok {
		return Outcome{}, false, nil
	}
	select {
	case <-e.done:
		return e.outcome, true, nil
	case <-ctx.Done():
		return Outcome{}, false, ctx.Err()
	}
}

// claimReversal marks key reversed; it reports false if it already was, or
// if key is not held.
func (d *dedupe) claimReversal(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[key]
	if !ok || e.reversed {
		return false
	}
	e.reversed = true
	return true
}

// releaseReversal undoes claimReversal after a reversal that failed, so that
// the acquirer's next advice tries again.
func (d *dedupe) releaseReversal(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[key]; ok {
		e.reversed = false
	}
}

func (d *dedupe) finish(key string, o Outcome) {
	d.mu.Lock()
	e := d.m[key]
	d.mu.Unlock()
	if e != nil {
		e.outcome = o
		close(e.done)
	}
}

// expire drops entries past the window; called with mu held.
func (d *dedupe) expire(now time.Time) {
	for d.head < len(d.order) && now.After(d.order[d.head].at) {
		k := d.order[d.head].key
		if e := d.m[k]; e != nil {
			select {
			case <-e.done:
				delete(d.m, k)
			default:
				// still in flight: keep it until it finishes and expires again
				d.order = append(d.order, dupExpiry{key: k, at: now.Add(d.window)})
			}
		}
		d.order[d.head] = dupExpiry{}
		d.head++
	}
	if d.head > 1024 && d.head*2 > len(d.order) {
		d.order = append(d.order[:0:0], d.order[d.head:]...)
		d.head = 0
	}
}
