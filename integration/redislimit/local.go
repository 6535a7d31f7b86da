package redislimit

import (
	"sync"
	"time"
)

// localBuckets is the per-instance fallback for throughput limits while Redis
// is unreachable: one token bucket per key, refilled at rate per second up to
// burst tokens. It is safe for concurrent use.
type localBuckets struct {
	rate  float64 // tokens per second
	burst float64

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxLocalKeys bounds the map; past it, full buckets are dropped (a full
// bucket behaves exactly like a missing one, so dropping it loses nothing).
const maxLocalKeys = 10000

func newLocalBuckets(rate float64, burst int) *localBuckets {
	return &localBuckets{rate: rate, burst: float64(burst), m: map[string]*bucket{}}
}

// allow takes one token for key at time now, if there is one.
func (l *localBuckets) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[key]
	if !ok {
		if len(l.m) >= maxLocalKeys {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.m[key] = b
	}
	b.refill(now, l.rate, l.burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(burst, b.tokens+el*rate)
		b.last = now
	}
}

// sweep drops the buckets that have refilled completely. Called with mu held.
func (l *localBuckets) sweep(now time.Time) {
	for k, b := range l.m {
		b.refill(now, l.rate, l.burst)
		if b.tokens >= l.burst {
			delete(l.m, k)
		}
	}
}
