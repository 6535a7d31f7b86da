package iso8583

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ClientConfig configures a client link (Conn) to an issuer host. The zero
// value of each field selects its default.
type ClientConfig struct {
	Framing  Framing // message framing; default Binary2
	MaxFrame int     // largest message accepted; default DefaultMaxFrame

	// DialTimeout bounds the TCP connect, within Dial's context. Default 10s.
	DialTimeout time.Duration
	// ReadTimeout bounds the time from a frame's first byte to its last.
	// Default 10s.
	ReadTimeout time.Duration
	// IdleTimeout, if positive, closes the link when no frame starts for
	// that long. Default 0: no limit (routing keeps the link alive with
	// echo tests and notices a dead issuer by its unanswered requests).
	IdleTimeout time.Duration
	// WriteTimeout bounds the writing of one frame. Default 10s.
	WriteTimeout time.Duration
	// GatherWrites: as Config.GatherWrites, for the frames Send writes.
	GatherWrites bool

	// OnFrame receives every frame read, in order, on the link's read
	// goroutine; it owns the frame. It must not block for long: the link is
	// not read meanwhile. Required.
	OnFrame func(frame []byte)
}

// Validate reports the first invalid setting, naming it and its value.
func (c ClientConfig) Validate() error {
	switch {
	case !c.Framing.Valid():
		return fmt.Errorf("iso8583: framing %d unknown", int(c.Framing))
	case c.MaxFrame < 0 || c.MaxFrame > c.Framing.Limit():
		return fmt.Errorf("iso8583: max frame %d outside 0-%d", c.MaxFrame, c.Framing.Limit())
	case c.DialTimeout < 0:
		return fmt.Errorf("iso8583: dial timeout %v is negative", c.DialTimeout)
	case c.ReadTimeout < 0:
		return fmt.Errorf("iso8583: read timeout %v is negative", c.ReadTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("iso8583: idle timeout %v is negative", c.IdleTimeout)
	case c.WriteTimeout < 0:
		return fmt.Errorf("iso8583: write timeout %v is negative", c.WriteTimeout)
	case c.OnFrame == nil:
		return errors.New("iso8583: OnFrame is required")
	}
	return nil
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.MaxFrame == 0 {
		c.MaxFrame = min(DefaultMaxFrame, c.Framing.Limit())
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	return c
}

// Conn is a client link carrying framed messages: Send writes, a read
// goroutine delivers every frame received to ClientConfig.OnFrame. Matching
// responses to requests is the caller's job. Its methods are safe for
// concurrent use.
type Conn struct {
	cfg  ClientConfig
	nc   net.Conn
	br   *bufio.Reader
	done chan struct{}

	w Coalescer // one Send at a time writes; frames sent meanwhile are queued

	mu     sync.Mutex
	closed bool
	err    error
}

// Dial connects to addr over TCP and starts the read goroutine. ctx bounds
// the connect only; the link lives until Close or a failure.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := net.Dialer{Timeout: cfg.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("iso8583: dial: %w", err)
	}
	return newConn(nc, cfg), nil
}

// NewConn wraps an established connection (e.g. a TLS one) and starts the
// read goroutine. The Conn owns nc from then on.
func NewConn(nc net.Conn, cfg ClientConfig) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newConn(nc, cfg.withDefaults()), nil
}

func newConn(nc net.Conn, cfg ClientConfig) *Conn {
	c := &Conn{cfg: cfg, nc: nc, br: bufio.NewReaderSize(nc, 4096), done: make(chan struct{})}
	go c.readLoop()
	return c
}

// Send writes one framed message. A frame sent while another Send is
// writing is queued, and that Send writes every queued frame in one call
// when its own write has returned: frames ready together cost one write
// (a syscall, a TCP segment) instead of one each (docs/optimisation-log.md).
// Each write is bounded by WriteTimeout. Send returns nil once its frame is
// written or queued behind a write in progress; a failed write closes the
// link (the stream may hold half a frame) with every frame queued behind it,
// returns the error to the Send that wrote, and shows in Done and Err for
// the others, as a link lost after the write would. After the link ended
// Send returns ErrConnClosed.
func (c *Conn) Send(msg []byte) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrConnClosed
	}
	return c.w.write(c.nc, c.cfg.Framing, c.cfg.WriteTimeout, c.cfg.GatherWrites, msg, c.fail)
}

// Close ends the link at once. It does not wait for the read goroutine (it
// may be called from OnFrame); Done is closed when that has returned. Err
// then reports ErrConnClosed.
func (c *Conn) Close() error {
	c.fail(ErrConnClosed)
	return nil
}

// Done is closed once the link has ended and the read goroutine, with any
// OnFrame call in progress, has returned.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the link ended: nil while it is up; ErrConnClosed after Close;
// io.EOF when the peer closed; ErrIdle, ErrSlowClient, ErrBadFrame,
// ErrFrameTooLarge, or a network error.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr is our address of the link.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	c.mu.Unlock()
	c.nc.Close()
}

func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		// Deadlines only for reads that can block: a frame the last read
		// brought in whole is taken from the buffer without one.
		if c.br.Buffered() == 0 {
			if c.cfg.IdleTimeout > 0 {
				_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout))
			} else {
				_ = c.nc.SetReadDeadline(time.Time{})
			}
			if _, err := c.br.Peek(1); err != nil {
				if isTimeout(err) {
					err = ErrIdle
				}
				c.fail(err)
				return
			}
		}
		if !FrameBuffered(c.br, c.cfg.Framing) {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.ReadTimeout))
		}
		frame, err := ReadFrame(c.br, c.cfg.Framing, c.cfg.MaxFrame, nil)
		if err != nil {
			if isTimeout(err) {
				err = ErrSlowClient
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.fail(err)
			return
		}
		c.cfg.OnFrame(frame)
	}
}
