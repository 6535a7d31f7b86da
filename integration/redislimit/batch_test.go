package redislimit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/routing"
)

// gate is a go-redis hook that holds every round trip until open is closed
// (or the round trip's context ends) and records how many commands each
// carried.
type gate struct {
	mu    sync.Mutex
	sizes []int // commands per round trip, in the order they started
	open  chan struct{}
	once  sync.Once
}

// newGate returns a closed gate on l's client, opened when the test ends.
func newGate(t *testing.T, l *Limiter) *gate {
	g := &gate{open: make(chan struct{})}
	l.rdb.AddHook(g)
	t.Cleanup(g.release)
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) hold(ctx context.Context, n int) error {
	g.mu.Lock()
	g.sizes = append(g.sizes, n)
	g.mu.Unlock()
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) started() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sizes)
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" && cmd.Name() != "client" { // connection set-up
			if err := g.hold(ctx, 1); err != nil {
				cmd.SetErr(err)
				return err
			}
		}
		return next(ctx, cmd)
	}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := g.hold(ctx, len(cmds)); err != nil {
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		return next(ctx, cmds)
	}
}

// queued is how many calls wait in l's batcher.
func queued(l *Limiter) int {
	l.batch.mu.Lock()
	defer l.batch.mu.Unlock()
	return len(l.batch.queue)
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// While maxPipelines round trips are out, the requests that arrive wait and
// then go together, in one pipeline; each gets its own decision.
func TestConcurrentRequestsShareAPipeline(t *testing.T) {
	l, m := newTestLimiter(t, wide)
	mustAllow(t, l, req(routing.OpChange, "warm", "acq1", "T0")) // the script loaded
	g := newGate(t, l)

	const waiting = 5
	var wg sync.WaitGroup
	errs := make(chan error, maxPipelines+waiting)
	allow := func(tok string) {
		defer wg.Done()
		d, err := l.Allow(context.Background(), req(routing.OpChange, tok, "acq1", "T1"))
		if err != nil || !d.Allowed {
			errs <- fmt.Errorf("Allow(%s) = %+v, %v; want allowed", tok, d, err)
		}
	}
	for i := range maxPipelines {
		wg.Add(1)
		go allow(fmt.Sprint("first", i))
	}
	waitFor(t, "the first round trips", func() bool { return g.started() == maxPipelines })
	for i := range waiting {
		wg.Add(1)
		go allow(fmt.Sprint("next", i))
	}
	waitFor(t, "the next requests to queue", func() bool { return queued(l) == waiting })
	g.release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	want := slices.Repeat([]int{1}, maxPipelines)
	want = append(want, waiting)
	if !slices.Equal(g.sizes, want) {
		t.Errorf("commands per round trip = %v, want %v", g.sizes, want)
	}
	for i := range waiting {
		key := fmt.Sprintf("pg:{c:next%d}:ops:20260314", i)
		if got, _ := m.Get(key); got != "1" {
			t.Errorf("%s = %q, want 1", key, got)
		}
	}
}

// A request whose context ends while it waits for a pipeline returns at
// once, unavailable, and its script is never sent.
func TestQueuedRequestGivesUpWithItsContext(t *testing.T) {
	l, m := newTestLimiter(t, wide)
	mustAllow(t, l, req(routing.OpChange, "warm", "acq1", "T0"))
	g := newGate(t, l)

	var wg sync.WaitGroup
	for i := range maxPipelines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Allow(context.Background(), req(routing.OpChange, fmt.Sprint("first", i), "acq1", "T1"))
		}()
	}
	waitFor(t, "the first round trips", func() bool { return g.started() == maxPipelines })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	type answer struct {
		d   routing.Decision
		err error
	}
	late := make(chan answer, 1)
	go func() {
		d, err := l.Allow(ctx, req(routing.OpChange, "late", "acq1", "T1"))
		late <- answer{d, err}
	}()
	select {
	case a := <-late:
		if !errors.Is(a.err, ErrUnavailable) || a.d != wantDown {
			t.Errorf("Allow(queued, context ended) = %+v, %v; want %+v, ErrUnavailable", a.d, a.err, wantDown)
		}
	case <-time.After(5 * time.Second):
		t.Error("a queued Allow did not return when its context ended")
	}
	g.release()
	wg.Wait()
	l.batch.close()
	if m.Exists("pg:{c:late}:ops:20260314") {
		t.Error("the script of a request that gave up was sent")
	}
	if n := g.started(); n != maxPipelines {
		t.Errorf("%d round trips, want %d: the abandoned request's went out", n, maxPipelines)
	}
}
