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
