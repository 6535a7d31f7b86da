package iso8583

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Server. The zero value of each field selects its
// default.
type Config struct {
	Addr     string  // listen address for ListenAndServe, e.g. ":5010"
	Framing  Framing // message framing; default Binary2
	MaxFrame int     // largest message accepted; default DefaultMaxFrame

	// ReadTimeout bounds the time from the first byte of a frame to its
	// last: a client slower than that is cut off. Default 10s.
	ReadTimeout time.Duration
	// IdleTimeout closes a connection on which no frame starts for that
	// long. Acquirers keep links alive with echo tests. Default 5m.
	IdleTimeout time.Duration
	// WriteTimeout bounds the writing of one response frame. Default 10s.
	WriteTimeout time.Duration
	// MaxInFlightPerConn bounds the frames of one connection being handled
	// at once; when reached, the connection is not read until one finishes.
	// Default 64.
	MaxInFlightPerConn int
	// MaxConns bounds the open connections; one accepted beyond it is closed
	// at once. Default 1024.
	MaxConns int
	// GatherWrites makes a writer yield for one scheduling round before it
	// writes, so that answers made ready with its own (frames of one
	// segment, requests finished by one journal fsync) go out in the same
	// write. On one P (the load tool, the simulators) a write otherwise
	// holds the P and no other answer can queue behind it; on two, the
	// gateway measured 22 % fewer read and write syscalls per operation
	// with it (docs/optimisation-log.md, change 23). When nothing else is
	// runnable the yield returns at once.
	GatherWrites bool
}

// Config defaults.
const (
	DefaultReadTimeout        = 10 * time.Second
	DefaultIdleTimeout        = 5 * time.Minute
	DefaultWriteTimeout       = 10 * time.Second
	DefaultMaxInFlightPerConn = 64
	DefaultMaxConns           = 1024
)

// Validate reports the first invalid setting, naming it and its value.
// Zero values are valid: they select defaults.
func (c Config) Validate() error {
	switch {
	case !c.Framing.Valid():
		return fmt.Errorf("iso8583: framing %d unknown", int(c.Framing))
	case c.MaxFrame < 0:
		return fmt.Errorf("iso8583: max frame %d is negative", c.MaxFrame)
	case c.MaxFrame > c.Framing.Limit():
		return fmt.Errorf("iso8583: max frame %d exceeds the %s limit %d", c.MaxFrame, c.Framing, c.Framing.Limit())
	case c.ReadTimeout < 0:
		return fmt.Errorf("iso8583: read timeout %v is negative", c.ReadTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("iso8583: idle timeout %v is negative", c.IdleTimeout)
	case c.WriteTimeout < 0:
		return fmt.Errorf("iso8583: write timeout %v is negative", c.WriteTimeout)
	case c.MaxInFlightPerConn < 0:
		return fmt.Errorf("iso8583: max in-flight per connection %d is negative", c.MaxInFlightPerConn)
	case c.MaxConns < 0:
		return fmt.Errorf("iso8583: max connections %d is negative", c.MaxConns)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxFrame == 0 {
		c.MaxFrame = min(DefaultMaxFrame, c.Framing.Limit())
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxInFlightPerConn == 0 {
		c.MaxInFlightPerConn = DefaultMaxInFlightPerConn
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	return c
}

// Handler handles the frames of a server connection. ServeFrame is called in
// a goroutine of its own for every frame, concurrently with other frames of
// the same connection (up to Config.MaxInFlightPerConn); it owns frame. It
// answers, if at all, with c.WriteFrame, in any order relative to other
// frames (a frame that must not overtake the frames read before it waits
// with WaitEarlierFrames; see FramePassed). ctx is canceled when the
// connection is torn down (a protocol error,
// Server.Close, the Serve context ending, Shutdown running out of time);
// ServeFrame must then return promptly. A graceful Shutdown waits for it.
type Handler interface {
	ServeFrame(ctx context.Context, c *ServerConn, frame []byte)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *ServerConn, frame []byte)

// ServeFrame calls h.
func (h HandlerFunc) ServeFrame(ctx context.Context, c *ServerConn, frame []byte) { h(ctx, c, frame) }

// Errors reported by the server and its connections.
var (
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("iso8583: server closed")
	// ErrConnClosed is returned by writes on a closed connection, and is
	// the Err of a Conn closed by its owner.
	ErrConnClosed = errors.New("iso8583: connection closed")
	// ErrIdle: no frame started within the idle timeout.
	ErrIdle = errors.New("iso8583: connection idle too long")
	// ErrSlowClient: a frame was not complete within the read timeout.
	ErrSlowClient = errors.New("iso8583: frame not completed within the read timeout")
	// ErrHandlerPanic: a handler panicked; its connection was closed. The
	// panic value is not kept: it could hold secrets.
	ErrHandlerPanic = errors.New("iso8583: handler panicked")
)

// Server accepts connections carrying framed ISO 8583 messages and hands
// each frame to its Handler. Create it with NewServer; set OnConnClose
// before serving. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	handler Handler

	// OnConnClose, if set, is called once for every connection after it has
	// closed and all its handlers have returned, with the reason: nil for a
	// client that closed cleanly or a drain by Shutdown, ErrIdle,
	// ErrSlowClient, ErrBadFrame, ErrFrameTooLarge, ErrHandlerPanic,
	// ErrConnClosed (closed by a handler or the server), or a network
	// error. It runs on the connection's goroutine.
	OnConnClose func(c *ServerConn, err error)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*ServerConn]struct{}
	addr      net.Addr
	ready     chan struct{} // closed once a listener is registered
	readyOnce sync.Once
	connWG    sync.WaitGroup
	closing   atomic.Bool // Shutdown or Close called
	draining  atomic.Bool // Shutdown called
	nextID    atomic.Uint64
}

// NewServer validates cfg and returns a server for h.
func NewServer(cfg Config, h Handler) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("iso8583: nil handler")
	}
	return &Server{
		cfg:       cfg.withDefaults(),
		handler:   h,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*ServerConn]struct{}{},
		ready:     make(chan struct{}),
	}, nil
}

// Config returns the server's configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// ListenAndServe listens on Config.Addr over TCP and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if s.closing.Load() {
		return ErrServerClosed
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("iso8583: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Addr waits until the server listens and returns the listening address, or
// nil if ctx ends first. With Addr ":0" it tells which port was chosen.
func (s *Server) Addr(ctx context.Context) net.Addr {
	select {
	case <-s.ready:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.addr
	case <-ctx.Done():
		return nil
	}
}

// Serve accepts connections on ln until Shutdown or Close is called, ctx
// ends, or ln fails; it closes ln before returning. Each connection is served
// by its own goroutine, each frame by another (see Handler).
//
// Serve returns ErrServerClosed after Shutdown or Close. When ctx ends it
// closes every connection at once, as Close does, waits until their
// goroutines and handlers have returned, and returns ctx.Err(). Otherwise it
// returns the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	if s.addr == nil {
		s.addr = ln.Addr()
	}
	s.mu.Unlock()
	s.readyOnce.Do(func() { close(s.ready) })

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				s.closeAll()
				s.connWG.Wait()
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				// Transient (e.g. out of file descriptors reported as a
				// timeout): back off as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("iso8583: accept: %w", err)
		}
		backoff = 0
		s.serveConn(ctx, nc)
	}
}

// serveConn registers nc and starts its goroutine, or closes it when the
// server is full or closing.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	s.mu.Lock()
	if s.closing.Load() || len(s.conns) >= s.cfg.MaxConns {
		s.mu.Unlock()
		nc.Close()
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &ServerConn{
		srv:    s,
		id:     s.nextID.Add(1),
		nc:     nc,
		br:     bufio.NewReaderSize(nc, 4096),
		ctx:    cctx,
		cancel: cancel,
		sem:    make(chan struct{}, s.cfg.MaxInFlightPerConn),
		work:   make(chan inFrame),
		w:      Coalescer{limit: maxQueuedAnswers},
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	go c.serve()
}

// Shutdown stops the server gracefully: it closes the listeners, stops
// reading from connections that are between frames (a frame being received
// is read to its end and handled), lets every in-flight handler finish and
// write its response, then closes the connections. If ctx ends first it
// closes everything at once, cancels the handlers' contexts and returns
// ctx.Err() without waiting for them. Serve returns ErrServerClosed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.stopAccepting()
	s.mu.Lock()
	for c := range s.conns {
		c.interruptIdle()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeAll()
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once and cancels the
// handlers' contexts. It does not wait for the handlers; Serve, Shutdown or
// Wait does.
func (s *Server) Close() error {
	s.stopAccepting()
	s.closeAll()
	return nil
}

// Wait blocks until every connection goroutine, and so every handler, has
// returned.
func (s *Server) Wait() { s.connWG.Wait() }

func (s *Server) stopAccepting() {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.readyOnce.Do(func() { close(s.ready) })
}

func (s *Server) closeAll() {
	s.mu.Lock()
	conns := make([]*ServerConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.abort(ErrConnClosed)
	}
}

// ServerConn is one accepted connection. Its methods are safe for concurrent
// use by the handlers of its frames.
type ServerConn struct {
	srv    *Server
	id     uint64
	nc     net.Conn
	br     *bufio.Reader
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup // handler goroutines

	// work hands a frame to an idle handler goroutine (one blocked
	// receiving); readLoop starts a new goroutine only when none is idle.
	// A goroutine that handled a frame stays for the next one, so its grown
	// stack serves again, up to maxIdleHandlers idle per connection.
	work chan inFrame
	idle atomic.Int32 // handler goroutines waiting on work

	order   frameOrder // the order frames were read in (WaitEarlierFrames)
	nextSeq uint64     // the next frame's place in it; readLoop's alone

	w Coalescer // writes; answers ready while one is written go out with it

	smu     sync.Mutex // guards waiting and the read deadline changes
	waiting bool       // waiting for the first byte of a frame
	closed  bool
	reason  error // first reason the connection was torn down

	vmu   sync.Mutex
	value any
}

// ID is a number unique to the connection within its server, for logs.
func (c *ServerConn) ID() uint64 { return c.id }

// RemoteAddr is the client's address.
func (c *ServerConn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr is the server's address of the connection.
func (c *ServerConn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// Value returns the value stored by SetValue, or nil.
func (c *ServerConn) Value() any {
	c.vmu.Lock()
	defer c.vmu.Unlock()
	return c.value
}

// SetValue stores per-connection state of the handler, e.g. the acquirer
// that signed on.
func (c *ServerConn) SetValue(v any) {
	c.vmu.Lock()
	c.value = v
	c.vmu.Unlock()
}

// WriteFrame writes one framed message, each write call within
// Config.WriteTimeout. A frame written while another is being written is
// queued and goes out with the next write of the one in progress (answers
// ready together cost one syscall); WriteFrame then returns nil at once,
// unless 64 KiB of answers are queued already: then it first waits for the
// write in progress to take them (at most WriteTimeout), so a client that
// does not read its answers stops being read rather than filling memory. A
// failed write closes the connection (the stream may hold half a frame),
// with whatever was queued behind it. After the connection closed it
// returns ErrConnClosed.
func (c *ServerConn) WriteFrame(msg []byte) error {
	c.smu.Lock()
	closed := c.closed
	c.smu.Unlock()
	if closed {
		return ErrConnClosed
	}
	return c.w.write(c.nc, c.srv.cfg.Framing, c.srv.cfg.WriteTimeout, c.srv.cfg.GatherWrites, msg, c.abort)
}

// Close closes the connection, e.g. after a sign-off or a refused sign-on,
// once the answers already written (WriteFrame returned nil) are out; the
// handlers' contexts are canceled and later writes fail.
func (c *ServerConn) Close() error {
	c.w.flush()
	c.abort(ErrConnClosed)
	return nil
}

// abort tears the connection down with reason unless it already is.
func (c *ServerConn) abort(reason error) {
	c.smu.Lock()
	if c.closed {
		c.smu.Unlock()
		return
	}
	c.closed = true
	c.reason = reason
	c.smu.Unlock()
	c.cancel()
	c.nc.Close()
}

// interruptIdle makes a reader waiting for a new frame give up, for Shutdown.
func (c *ServerConn) interruptIdle() {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.waiting && !c.closed {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// setIdle records whether the reader waits for a new frame and sets the read
// deadline for that state. It reports false when the server drains and no
// new frame may start.
func (c *ServerConn) setIdle(idle bool) bool {
	c.smu.Lock()
	defer c.smu.Unlock()
	if idle && c.srv.draining.Load() {
		return false
	}
	c.waiting = idle
	d := c.srv.cfg.ReadTimeout
	if idle {
		d = c.srv.cfg.IdleTimeout
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	return true
}

// setBusy records that the reader is past a frame's first byte; deadline
// false keeps the read deadline as it is, for a frame already whole in the
// buffer (reading it makes no read call).
func (c *ServerConn) setBusy(deadline bool) {
	if !deadline {
		c.smu.Lock()
		c.waiting = false
		c.smu.Unlock()
		return
	}
	c.setIdle(false)
}

// serve is the connection's goroutine: it reads frames and starts their
// handlers until the stream ends or fails, then waits for the handlers,
// closes the connection and reports.
func (c *ServerConn) serve() {
	s := c.srv
	reason := c.readLoop()
	if reason != nil {
		// Protocol or network failure: nothing more can be written.
		c.abort(reason)
	}
	close(c.work) // idle handler goroutines return
	c.wg.Wait()
	c.abort(nil)
	c.smu.Lock()
	reason = c.reason
	c.smu.Unlock()

	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if s.OnConnClose != nil {
		s.OnConnClose(c, reason)
	}
	s.connWG.Done()
}

// readLoop returns nil when the client closed cleanly or the server drains.
func (c *ServerConn) readLoop() error {
	s := c.srv
	for {
		// Deadlines only for reads that can block: a frame the last read
		// brought in whole is taken from the buffer without one.
		if c.br.Buffered() == 0 {
			if !c.setIdle(true) {
				return nil
			}
			if _, err := c.br.Peek(1); err != nil {
				switch {
				case errors.Is(err, io.EOF):
					return nil
				case s.draining.Load() && isTimeout(err):
					return nil
				case isTimeout(err):
					return ErrIdle
				}
				return err
			}
		} else if s.draining.Load() {
			return nil
		}
		c.setBusy(!FrameBuffered(c.br, s.cfg.Framing))
		frame, err := ReadFrame(c.br, s.cfg.Framing, s.cfg.MaxFrame, nil)
		if err != nil {
			if isTimeout(err) {
				return ErrSlowClient
			}
			return err
		}
		select {
		case c.sem <- struct{}{}:
		case <-c.ctx.Done():
			return nil
		}
		in := inFrame{b: frame, seq: c.nextSeq}
		c.nextSeq++
		select {
		case c.work <- in:
		default:
			c.wg.Add(1)
			go c.handler(in)
		}
	}
}

// maxQueuedAnswers is the bytes of answers one connection queues behind
// its write in progress before its handlers wait for that write (and so,
// past MaxInFlightPerConn of them, its reader stops). Writes that take long
// mean a full socket buffer, a client that does not read; answers to a
// client that reads never come near it.
const maxQueuedAnswers = 64 << 10

// maxIdleHandlers bounds the handler goroutines of one connection kept
// waiting for its next frame.
const maxIdleHandlers = 16

// handler handles frame, then the frames readLoop hands it while it stays
// (see ServerConn.work).
func (c *ServerConn) handler(frame inFrame) {
	defer c.wg.Done()
	for {
		c.handle(frame)
		frame = inFrame{} // an idle goroutine keeps no frame alive (PAN, PIN block)
		if c.idle.Add(1) > maxIdleHandlers {
			c.idle.Add(-1)
			return
		}
		f, ok := <-c.work
		c.idle.Add(-1)
		if !ok {
			return
		}
		frame = f
	}
}

func (c *ServerConn) handle(frame inFrame) {
	turn := &frameTurn{o: &c.order, seq: frame.seq}
	defer func() {
		if r := recover(); r != nil {
			c.abort(ErrHandlerPanic)
		}
		turn.pass()
		<-c.sem
	}()
	c.srv.handler.ServeFrame(context.WithValue(c.ctx, frameTurnKey{}, turn), c, frame.b)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
