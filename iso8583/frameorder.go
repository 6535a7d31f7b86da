package iso8583

import (
	"context"
	"sync"
)

// Frames of one server connection are handled concurrently, so a frame read
// after another may be handled first. Most frames do not care; one that
// names an earlier frame does — an acquirer's 0420 sent right behind the 0100
// it reverses must not be taken before that 0100 is. The handler of such a
// frame calls WaitEarlierFrames; the handler of every frame calls
// FramePassed at the point past which later frames may overtake it (an
// 0100: once its request is registered), and a frame passes at the latest
// when its ServeFrame returns.

// inFrame is a frame with its place in its connection's read order.
type inFrame struct {
	b   []byte
	seq uint64
}

// frameOrder tracks which frames of a connection have passed.
type frameOrder struct {
	mu     sync.Mutex
	low    uint64              // every frame below low has passed
	passed map[uint64]struct{} // frames at or above low that have passed
	wake   chan struct{}       // closed when low moves, made by a waiter
}

// frameTurn is one frame's place in its connection's order, in the context
// ServeFrame gets.
type frameTurn struct {
	o    *frameOrder
	seq  uint64
	once sync.Once
}

type frameTurnKey struct{}

func (t *frameTurn) pass() { t.once.Do(func() { t.o.pass(t.seq) }) }

func (o *frameOrder) pass(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq != o.low {
		if o.passed == nil {
			o.passed = map[uint64]struct{}{}
		}
		o.passed[seq] = struct{}{}
		return
	}
	o.low++
	for {
		if _, ok := o.passed[o.low]; !ok {
			break
		}
		delete(o.passed, o.low)
		o.low++
	}
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
}

// FramePassed marks the frame ctx belongs to (the context a server
// connection's ServeFrame got, or one derived from it) as passed: frames read
// after it that wait in WaitEarlierFrames need not wait for it any longer.
// Outside a frame's context it does nothing; a second call changes nothing.
func FramePassed(ctx context.Context) {
	if t, ok := ctx.Value(frameTurnKey{}).(*frameTurn); ok {
		t.pass()
	}
}

// EarlierFramesPending reports whether a frame its connection read before the
// frame ctx belongs to has not passed yet. Outside a frame's context it
// reports false.
func EarlierFramesPending(ctx context.Context) bool {
	t, ok := ctx.Value(frameTurnKey{}).(*frameTurn)
	if !ok {
		return false
	}
	t.o.mu.Lock()
	defer t.o.mu.Unlock()
	return t.o.low < t.seq
}

// WaitEarlierFrames waits until every frame its connection read before the
// frame ctx belongs to has passed (FramePassed, or its ServeFrame returned),
// or until ctx ends (ctx.Err()). Outside a frame's context it returns nil at
// once.
func WaitEarlierFrames(ctx context.Context) error {
	t, ok := ctx.Value(frameTurnKey{}).(*frameTurn)
	if !ok {
		return nil
	}
	o := t.o
	for {
		o.mu.Lock()
		if o.low >= t.seq {
			o.mu.Unlock()
			return nil
		}
		if o.wake == nil {
			o.wake = make(chan struct{})
		}
		wake := o.wake
		o.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
