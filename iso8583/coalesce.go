package iso8583

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"
)

// Coalescer writes the frames of one connection, one writer at a time: a
// frame written while another write is in progress is queued, and the
// writer in progress writes every queued frame in one call once its own
// write has returned (repeating while frames keep arriving). Frames ready
// together cost one write — a syscall, a TCP segment — instead of one each
// (docs/optimisation-log.md). The client link's Send and the server
// connection's WriteFrame share it, and so may any other stream of
// length-prefixed frames (WriteFrames: the payShield host-command link).
// The zero value is ready and queues without limit (the client links, whose
// peers are our issuers and HSMs); a Coalescer must not be copied after
// first use.
type Coalescer struct {
	mu      sync.Mutex // guards writing, queue and spare
	writing bool       // a write is in progress
	queue   []byte     // frames waiting for the writer in progress
	spare   []byte     // the last written queue, reused
	idle    *sync.Cond // on mu: broadcast when writing ends (flush) or the queue is taken (limit)

	// limit, if positive, is the queued bytes at which a write waits for
	// the writer in progress to take the queue, instead of adding to it:
	// a peer that does not read then holds up its writers, not memory.
	// Each wait is bounded by the write in progress, hence by its timeout.
	limit int
}

// flush waits until no write is in progress: every frame write accepted
// before it has been written, or has failed with the connection. Each
// write call is bounded by its timeout, so flush is too.
func (w *Coalescer) flush() {
	w.mu.Lock()
	for w.writing {
		w.wait()
	}
	w.mu.Unlock()
}

// wait waits for the end of the write in progress or for its writer to take
// the queue; w.mu is held.
func (w *Coalescer) wait() {
	if w.idle == nil {
		w.idle = sync.NewCond(&w.mu)
	}
	w.idle.Wait()
}

// wake wakes the waiters of wait; w.mu is held.
func (w *Coalescer) wake() {
	if w.idle != nil {
		w.idle.Broadcast()
	}
}

// done ends a write; w.mu is held.
func (w *Coalescer) done() {
	w.writing = false
	w.wake()
}

// write writes msg framed on nc, or queues it behind the write in progress
// and returns nil; with a limit, once limit bytes are queued it first waits
// for the writer to take them. Each write call is bounded by timeout. A
// failed write drops what was queued behind it, calls fail (which must
// close nc: the stream may hold half a frame) and returns the error to the
// writer; the queued writers see the connection end as if it had failed
// after their write, and a waiting one gets the closed connection's error.
//
// With gather, the writer first yields its P for one scheduling round, so
// that goroutines made ready with it (the answers to one segment read) add
// their frames to the same write; see Config.GatherWrites.
func (w *Coalescer) write(nc net.Conn, f Framing, timeout time.Duration, gather bool, msg []byte, fail func(error)) error {
	w.mu.Lock()
	for w.writing && w.limit > 0 && len(w.queue) >= w.limit {
		w.wait()
	}
	if w.writing {
		q, err := AppendFrame(w.queue, f, msg)
		if err == nil {
			w.queue = q
		}
		w.mu.Unlock()
		return err
	}
	b, err := AppendFrame(w.spare[:0], f, msg)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	return w.lead(nc, timeout, gather, b, fail)
}

// WriteFrames is write for frames the caller has framed itself (each with
// its length prefix): it writes them, and whatever is queued behind them,
// or queues them behind the write in progress and returns nil. frames is
// copied; the caller may reuse it once WriteFrames returns. Failures are as
// for write.
func (w *Coalescer) WriteFrames(nc net.Conn, timeout time.Duration, frames []byte, fail func(error)) error {
	w.mu.Lock()
	if w.writing {
		w.queue = append(w.queue, frames...)
		w.mu.Unlock()
		return nil
	}
	return w.lead(nc, timeout, false, append(w.spare[:0], frames...), fail)
}

// lead writes b, then the frames queued meanwhile, until the queue stays
// empty; w.mu is held on entry and released on return.
func (w *Coalescer) lead(nc net.Conn, timeout time.Duration, gather bool, b []byte, fail func(error)) error {
	w.spare = nil
	w.writing = true
	if gather {
		w.mu.Unlock()
		runtime.Gosched()
		w.mu.Lock()
		b, w.queue = append(b, w.queue...), w.queue[:0]
		w.wake()
	}
	for {
		w.mu.Unlock()
		_ = nc.SetWriteDeadline(time.Now().Add(timeout))
		_, err := nc.Write(b)
		w.mu.Lock()
		if err != nil {
			w.queue = w.queue[:0]
			w.done()
			w.mu.Unlock()
			fail(err)
			return fmt.Errorf("iso8583: write: %w", err)
		}
		if len(w.queue) == 0 {
			break
		}
		b, w.queue = w.queue, b[:0]
		w.wake()
	}
	w.spare = b[:0]
	w.done()
	w.mu.Unlock()
	return nil
}
