package redislimit

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher sends the scripts of concurrent requests to a single Redis
// (standalone or Sentinel) together: the calls waiting when a pipeline goes
// out are one pipeline — one write, one read on one connection for the
// gateway, one read event and one write for Redis — instead of a round trip
// each. Nothing waits to fill a batch: a call that finds no pipeline in
// flight goes out at once, alone, so an idle gateway's latency is the round
// trip's; under load, calls queue while maxPipelines pipelines are out and
// leave together with the next one. Each call keeps its own answer or error
// (Redis runs the scripts one after another, each atomically, exactly as if
// they had come one by one), and a WAIT closing the pipeline counts the
// replicas of every write before it on that connection, so a claim waited
// for in a batch is as durable as one sent alone.
//
// Redis Cluster is not batched here: the card's script and its WAIT go to
// the card's master (decideSplit), which a batch of many cards would not.
type batcher struct {
	l *Limiter

	mu    sync.Mutex
	queue []*pending
	busy  int // pipelines being sent (goroutines in drain)
	wg    sync.WaitGroup
}

// maxPipelines is how many batches may be on the wire at once, and
// maxBatch the most calls in one. Two pipelines keep Redis busy while the
// gateway reads one answer and writes the next batch; 64 calls of the
// largest script (finishScript with an approval) are ~50 KB.
const (
	maxPipelines = 2
	maxBatch     = 64
)

// pending is one call waiting for its batch. Its call's cmd and w are the
// sender's until done is closed.
type pending struct {
	ctx  context.Context
	c    *call
	wait bool // close the pipeline with WAIT
	w    *redis.Cmd
	done chan struct{}
}

// do sends c in the next batch and returns it with its cmd set, and the
// answer of the batch's WAIT when wait (nil otherwise). When ctx ends first,
// do returns at once with a copy of c whose cmd holds ctx's error; the
// script may still run (as when a context ends during a round trip).
func (b *batcher) do(ctx context.Context, c *call, wait bool) (*call, *redis.Cmd) {
	p := &pending{ctx: ctx, c: c, wait: wait, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	lead := b.busy < maxPipelines
	if lead {
		b.busy++
	}
	b.mu.Unlock()
	if lead {
		b.drain(p)
	}
	select {
	case <-p.done:
		return c, p.w
	case <-ctx.Done():
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(ctx.Err())
		return &call{script: c.script, keys: c.keys, args: c.args, cmd: cmd}, nil
	}
}

// drain sends the queue batch by batch until own's answer is in (own nil:
// until the queue is empty); what is still queued then is sent on by a
// goroutine of its own, so that no request waits on others' batches after
// its own answer. Close waits for those goroutines.
func (b *batcher) drain(own *pending) {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.busy--
			b.mu.Unlock()
			return
		}
		if own != nil && isDone(own.done) {
			b.wg.Add(1)
			b.mu.Unlock()
			go func() {
				defer b.wg.Done()
				b.drain(nil)
			}()
			return
		}
		n := min(len(b.queue), maxBatch)
		batch := make([]*pending, n)
		copy(batch, b.queue)
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		b.mu.Unlock()
		b.send(batch)
	}
}

// send runs batch as one pipeline (l.run: EVALSHA, and EVAL again for a
// script the server lost) and hands each call its answer. Calls whose
// context ended while queued are not sent.
func (b *batcher) send(batch []*pending) {
	calls := make([]*call, 0, len(batch))
	live := batch[:0:0]
	wait := false
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.c.cmd = redis.NewCmd(p.ctx)
			p.c.cmd.SetErr(err)
			close(p.done)
			continue
		}
		calls = append(calls, p.c)
		live = append(live, p)
		wait = wait || p.wait
	}
	if len(calls) == 0 {
		return
	}
	// The batch is no one request's: its deadline is the connection's
	// (Config.ReadTimeout); each request stops waiting at its own.
	ctx := context.WithoutCancel(live[0].ctx)
	w := b.l.run(ctx, b.l.rdb, calls, wait)
	for _, p := range live {
		if p.wait {
			p.w = w
		}
		close(p.done)
	}
}

// close waits for the goroutines that drain the queue.
func (b *batcher) close() { b.wg.Wait() }

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
