package iso8583

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wrappingListener passes every connection it accepts through wrap.
type wrappingListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l *wrappingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(nc), nil
}

// testServer starts s on a loopback port and stops it when the test ends.
// It returns the address and a channel that receives Serve's result.
func testServer(t *testing.T, cfg Config, h Handler, onClose func(*ServerConn, error)) (*Server, string, <-chan error) {
	t.Helper()
	return testServerOn(t, cfg, h, onClose, nil)
}

// testServerOn is testServer with every accepted connection passed through
// wrap (nil: as accepted), for tests that watch what the server does on it.
func testServerOn(t *testing.T, cfg Config, h Handler, onClose func(*ServerConn, error), wrap func(net.Conn) net.Conn) (*Server, string, <-chan error) {
	t.Helper()
	s, err := NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	s.OnConnClose = onClose
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served net.Listener = ln
	if wrap != nil {
		served = &wrappingListener{Listener: ln, wrap: wrap} // a pointer: Serve keeps its listeners in a map
	}
	result := make(chan error, 1)
	go func() { result <- s.Serve(context.Background(), served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		s.Wait()
	})
	return s, ln.Addr().String(), result
}

// echo answers every frame with "re:" + frame.
var echo = HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
	_ = c.WriteFrame(append([]byte("re:"), frame...))
})

// rawClient is a test client speaking Binary2 framing directly.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawClient) send(msg string) {
	c.t.Helper()
	if err := WriteFrame(c.nc, Binary2, []byte(msg)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *rawClient) recv() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := ReadFrame(c.br, Binary2, 0, nil)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return string(b)
}

// closeReasons collects OnConnClose reports.
type closeReasons struct {
	ch chan error
}

func newCloseReasons() *closeReasons { return &closeReasons{ch: make(chan error, 64)} }

func (r *closeReasons) hook(_ *ServerConn, err error) { r.ch <- err }

func (r *closeReasons) next(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no connection closed")
		return nil
	}
}

func TestServerEcho(t *testing.T) {
	_, addr, _ := testServer(t, Config{}, echo, nil)
	c := dialRaw(t, addr)
	for _, m := range []string{"0800", "0100", "0420"} {
		c.send(m)
		if got := c.recv(); got != "re:"+m {
			t.Errorf("response to %q = %q, want %q", m, got, "re:"+m)
		}
	}
}

func TestServerRespondsOutOfOrder(t *testing.T) {
	secondDone := make(chan struct{})
	h := HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
		if string(frame) == "first" {
			<-secondDone // answer only after the second frame was answered
		}
		_ = c.WriteFrame(frame)
		if string(frame) == "second" {
			close(secondDone)
		}
	})
	_, addr, _ := testServer(t, Config{}, h, nil)
	c := dialRaw(t, addr)
	c.send("first")
	c.send("second")
	if a, b := c.recv(), c.recv(); a != "second" || b != "first" {
		t.Errorf("responses = %q, %q; want second, first", a, b)
	}
}

func TestServerConcurrentFrames(t *testing.T) {
	const n = 50
	var mu sync.Mutex
	inFlight, peak := 0, 0
	release := make(chan struct{})
	var once sync.Once
	h := HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		if inFlight == 8 {
			once.Do(func() { close(release) }) // 8 handlers ran at once
		}
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		_ = c.WriteFrame(frame)
	})
	_, addr, _ := testServer(t, Config{MaxInFlightPerConn: 8}, h, nil)
	c := dialRaw(t, addr)
	for i := 0; i < n; i++ {
		c.send("m")
	}
	for i := 0; i < n; i++ {
		c.recv()
	}
	if peak != 8 {
		t.Errorf("peak handlers in flight = %d, want 8 (MaxInFlightPerConn)", peak)
	}
}

func TestServerBadClientsDoNotDisturbOthers(t *testing.T) {
	reasons := newCloseReasons()
	cfg := Config{MaxFrame: 512, ReadTimeout: 300 * time.Millisecond, IdleTimeout: 600 * time.Millisecond}
	_, addr, _ := testServer(t, cfg, echo, reasons.hook)

	good := dialRaw(t, addr)
	good.send("hello")
	if got := good.recv(); got != "re:hello" {
		t.Fatalf("good client got %q", got)
	}

	tests := []struct {
		name string
		send string // raw bytes, no framing
		want error
	}{
		{"zero length", "\x00\x00", ErrBadFrame},
		{"oversized length", "\xff\xff", ErrFrameTooLarge},
		{"slow: frame never completes", "\x00\x10abc", ErrSlowClient},
		// The first frame is whole in the buffer and read without a
		// deadline; the second still gets one.
		{"slow: second frame of one write never completes", "\x00\x02ab\x00\x10abc", ErrSlowClient},
		{"silent: nothing at all", "", ErrIdle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := dialRaw(t, addr)
			if tt.send != "" {
				if _, err := bad.nc.Write([]byte(tt.send)); err != nil {
					t.Fatal(err)
				}
			}
			// The good client keeps working, well within its own idle
			// timeout, until the bad connection has been closed.
			var reason error
			for closed := false; !closed; {
				good.send("ping")
				if got := good.recv(); got != "re:ping" {
					t.Fatalf("good client got %q while a bad one was connected", got)
				}
				select {
				case reason = <-reasons.ch:
					closed = true
				case <-time.After(50 * time.Millisecond):
				}
			}
			if !errors.Is(reason, tt.want) {
				t.Errorf("bad connection closed with %v, want %v", reason, tt.want)
			}
			// Closed: what it was answered (the whole first frame of
			// one case) then the end, not a read that times out.
			_ = bad.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, bad.br); isTimeout(err) {
				t.Error("bad connection still open")
			}
		})
	}
	good.send("bye")
	if got := good.recv(); got != "re:bye" {
		t.Errorf("good client got %q at the end", got)
	}
}

func TestServerShutdownDrains(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, c *ServerConn, frame []byte) {
		close(started)
		<-release
		if ctx.Err() != nil {
			t.Error("handler context canceled during a graceful shutdown")
		}
		_ = c.WriteFrame(append([]byte("re:"), frame...))
	})
	reasons := newCloseReasons()
	s, addr, served := testServer(t, Config{}, h, reasons.hook)
	c := dialRaw(t, addr)
	c.send("inflight")
	<-started

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("server still accepts after Shutdown")
	}
	close(release)
	if got := c.recv(); got != "re:inflight" {
		t.Errorf("in-flight response = %q, want re:inflight", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if err := reasons.next(t); err != nil {
		t.Errorf("drained connection closed with %v, want nil", err)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after Shutdown read = %v, want EOF", err)
	}
}

func TestServerShutdownDeadlineCancelsHandlers(t *testing.T) {
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, c *ServerConn, frame []byte) {
		close(started)
		<-ctx.Done() // a handler that only stops when told to
	})
	s, addr, _ := testServer(t, Config{}, h, nil)
	c := dialRaw(t, addr)
	c.send("stuck")
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown(canceled) = %v, want context.Canceled", err)
	}
	s.Wait()
}

func TestServeContextCancel(t *testing.T) {
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, c *ServerConn, frame []byte) {
		close(started)
		<-ctx.Done()
	})
	s, err := NewServer(Config{Addr: "127.0.0.1:0"}, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe(ctx) }()
	addr := s.Addr(context.Background())
	c := dialRaw(t, addr.String())
	c.send("x")
	<-started
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve after cancel = %v, want context.Canceled", err)
	}
	// Serve has waited for the connection and its handler.
}

func TestServerMaxConns(t *testing.T) {
	_, addr, _ := testServer(t, Config{MaxConns: 1}, echo, nil)
	first := dialRaw(t, addr)
	first.send("a")
	first.recv()
	second := dialRaw(t, addr)
	_ = second.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("connection beyond MaxConns: read = %v, want EOF", err)
	}
	first.send("b")
	if got := first.recv(); got != "re:b" {
		t.Errorf("first connection got %q", got)
	}
}

// TestServerStopsReadingClientThatDoesNotRead: a client that sends
// requests and never reads the answers is not read either once its unread
// answers back up, so the answers the server holds for it stay bounded
// (they used to queue without limit until the write timeout), and it is cut
// off after the write timeout; other clients are served meanwhile.
func TestServerStopsReadingClientThatDoesNotRead(t *testing.T) {
	const (
		requests = 4000
		answer   = 32 << 10 // each answer far larger than its request
	)
	var handled atomic.Int64
	h := HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
		handled.Add(1)
		if string(frame) == "ping" {
			_ = c.WriteFrame([]byte("pong"))
			return
		}
		_ = c.WriteFrame(make([]byte, answer))
	})
	reasons := newCloseReasons()
	_, addr, _ := testServer(t, Config{WriteTimeout: time.Second}, h, reasons.hook)
	good := dialRaw(t, addr)

	bad := dialRaw(t, addr)
	if err := bad.nc.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	// Under 30 kB of requests: the kernel takes them all at once, whether
	// the server reads them or not.
	if _, err := bad.nc.Write(framesOf(t, requests)); err != nil {
		t.Fatal(err)
	}
	good.send("ping")
	if got := good.recv(); got != "pong" {
		t.Errorf("another client got %q while one did not read its answers", got)
	}
	if err := reasons.next(t); !isTimeout(err) {
		t.Errorf("the client that does not read was cut off with %v, want a write timeout", err)
	}
	// Answers the kernel buffers take (some MB), plus those queued and in
	// flight: far fewer than the requests sent.
	got := handled.Load() - 1
	t.Logf("read %d of %d requests from the client that does not read", got, requests)
	if got > requests/4 {
		t.Errorf("the server read %d of %d requests from a client that reads no answer (%d MB of answers held), want it to stop reading", got, requests, got*answer>>20)
	}
	good.send("ping")
	if got := good.recv(); got != "pong" {
		t.Errorf("another client got %q after", got)
	}
}

func TestServerHandlerPanic(t *testing.T) {
	reasons := newCloseReasons()
	h := HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
		if string(frame) == "boom" {
			panic("PIN 1234") // the value must not be reported
		}
		_ = c.WriteFrame(frame)
	})
	_, addr, _ := testServer(t, Config{}, h, reasons.hook)
	other := dialRaw(t, addr)
	c := dialRaw(t, addr)
	c.send("boom")
	err := reasons.next(t)
	if !errors.Is(err, ErrHandlerPanic) || strings.Contains(err.Error(), "1234") {
		t.Errorf("close reason = %v, want ErrHandlerPanic without the panic value", err)
	}
	other.send("still")
	if got := other.recv(); got != "still" {
		t.Errorf("other connection got %q after a panic", got)
	}
}

func TestServerConnValueAndClose(t *testing.T) {
	reasons := newCloseReasons()
	h := HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
		switch string(frame) {
		case "signon":
			c.SetValue("acq-100001")
			_ = c.WriteFrame([]byte("ok"))
		case "who":
			v, _ := c.Value().(string)
			_ = c.WriteFrame([]byte(v))
		case "signoff":
			_ = c.WriteFrame([]byte("bye"))
			_ = c.Close()
			if err := c.WriteFrame([]byte("late")); !errors.Is(err, ErrConnClosed) {
				t.Errorf("WriteFrame after Close = %v, want ErrConnClosed", err)
			}
		}
	})
	_, addr, _ := testServer(t, Config{}, h, reasons.hook)
	c := dialRaw(t, addr)
	c.send("signon")
	c.recv()
	c.send("who")
	if got := c.recv(); got != "acq-100001" {
		t.Errorf("Value = %q, want acq-100001", got)
	}
	c.send("signoff")
	if got := c.recv(); got != "bye" {
		t.Errorf("got %q, want bye", got)
	}
	if err := reasons.next(t); !errors.Is(err, ErrConnClosed) {
		t.Errorf("close reason = %v, want ErrConnClosed", err)
	}
}

func TestServerASCII4(t *testing.T) {
	_, addr, _ := testServer(t, Config{Framing: ASCII4}, echo, nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write([]byte("00040800")); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := ReadFrame(bufio.NewReader(nc), ASCII4, 0, nil)
	if err != nil || string(got) != "re:0800" {
		t.Errorf("ASCII4 response = %q, %v", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want string // part of the error naming the setting
	}{
		{"unknown framing", Config{Framing: 7}, "framing"},
		{"negative max frame", Config{MaxFrame: -1}, "max frame -1"},
		{"max frame above ascii4", Config{Framing: ASCII4, MaxFrame: 10000}, "max frame 10000"},
		{"negative read timeout", Config{ReadTimeout: -time.Second}, "read timeout -1s"},
		{"negative idle timeout", Config{IdleTimeout: -time.Second}, "idle timeout"},
		{"negative write timeout", Config{WriteTimeout: -time.Second}, "write timeout"},
		{"negative in-flight", Config{MaxInFlightPerConn: -1}, "in-flight"},
		{"negative conns", Config{MaxConns: -1}, "max connections"},
	}
	for _, tt := range tests {
		err := tt.give.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %q", tt.name, err, tt.want)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: Validate() = %v, want nil", err)
	}
}

func TestClientConn(t *testing.T) {
	_, addr, _ := testServer(t, Config{}, echo, nil)
	got := make(chan string, 4)
	c, err := Dial(context.Background(), addr, ClientConfig{OnFrame: func(f []byte) { got <- string(f) }})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, m := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Send([]byte(m)); err != nil {
				t.Errorf("Send(%q) = %v", m, err)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for range 3 {
		seen[<-got] = true
	}
	if !seen["re:a"] || !seen["re:b"] || !seen["re:c"] {
		t.Errorf("client received %v, want re:a, re:b, re:c", seen)
	}
	c.Close()
	<-c.Done()
	if !errors.Is(c.Err(), ErrConnClosed) {
		t.Errorf("Err after Close = %v, want ErrConnClosed", c.Err())
	}
	if err := c.Send([]byte("x")); !errors.Is(err, ErrConnClosed) {
		t.Errorf("Send after Close = %v, want ErrConnClosed", err)
	}
}

func TestClientConnPeerFailures(t *testing.T) {
	tests := []struct {
		name  string
		reply string
		want  error
	}{
		{"peer closes", "", io.EOF},
		{"peer sends zero length", "\x00\x00", ErrBadFrame},
		{"peer sends oversized", "\x7f\xff", ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			peerDone := make(chan struct{})
			go func() {
				defer close(peerDone)
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = nc.Write([]byte(tt.reply))
				nc.Close()
			}()
			c, err := Dial(context.Background(), ln.Addr().String(), ClientConfig{MaxFrame: 1024, OnFrame: func([]byte) {}})
			if err != nil {
				t.Fatal(err)
			}
			<-c.Done()
			<-peerDone
			if !errors.Is(c.Err(), tt.want) {
				t.Errorf("Err = %v, want %v", c.Err(), tt.want)
			}
		})
	}
}

func TestClientConfigValidate(t *testing.T) {
	if err := (ClientConfig{}).Validate(); err == nil || !strings.Contains(err.Error(), "OnFrame") {
		t.Errorf("ClientConfig without OnFrame: Validate() = %v, want an error naming OnFrame", err)
	}
	if err := (ClientConfig{OnFrame: func([]byte) {}, ReadTimeout: -1}).Validate(); err == nil {
		t.Error("negative read timeout accepted")
	}
}

// gatedConn holds its first Write until release is closed and records the
// bytes of every Write call.
type gatedConn struct {
	net.Conn
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	writes  [][]byte
}

func (g *gatedConn) Write(b []byte) (int, error) {
	g.mu.Lock()
	first := len(g.writes) == 0
	g.writes = append(g.writes, append([]byte(nil), b...))
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
	return g.Conn.Write(b)
}

// TestClientConnCoalescesSends: frames sent while a write is in progress
// are written together, in one Write call, right after it, and each is
// answered.
func TestClientConnCoalescesSends(t *testing.T) {
	_, addr, _ := testServer(t, Config{}, echo, nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedConn{Conn: nc, entered: make(chan struct{}), release: make(chan struct{})}
	got := make(chan string, 8)
	c, err := NewConn(g, ClientConfig{OnFrame: func(f []byte) { got <- string(f) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); <-c.Done() }()
	first := make(chan error, 1)
	go func() { first <- c.Send([]byte("first")) }()
	<-g.entered
	for _, m := range []string{"b", "cc", "ddd"} {
		if err := c.Send([]byte(m)); err != nil { // queued: returns at once
			t.Fatalf("Send(%q) during a write = %v", m, err)
		}
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatalf("Send(first) = %v", err)
	}
	seen := map[string]bool{}
	for range 4 {
		select {
		case s := <-got:
			seen[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("answers so far %v, want 4", seen)
		}
	}
	for _, m := range []string{"re:first", "re:b", "re:cc", "re:ddd"} {
		if !seen[m] {
			t.Errorf("answers %v lack %q", seen, m)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var want []byte
	for _, m := range []string{"b", "cc", "ddd"} {
		want, _ = AppendFrame(want, Binary2, []byte(m))
	}
	if len(g.writes) != 2 || string(g.writes[1]) != string(want) {
		t.Errorf("writes = %q, want the first frame, then the three queued ones in one write %q", g.writes, want)
	}
}

// TestClientConnQueuedSendsOnFailedWrite: when the write in progress fails,
// the link closes, and frames queued behind it are not written.
func TestClientConnQueuedSendsOnFailedWrite(t *testing.T) {
	_, addr, _ := testServer(t, Config{}, echo, nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedConn{Conn: nc, entered: make(chan struct{}), release: make(chan struct{})}
	c, err := NewConn(g, ClientConfig{OnFrame: func([]byte) {}})
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- c.Send([]byte("first")) }()
	<-g.entered
	if err := c.Send([]byte("queued")); err != nil {
		t.Fatalf("Send during a write = %v", err)
	}
	nc.Close() // the held write fails once released
	close(g.release)
	if err := <-first; err == nil {
		t.Fatal("Send(first) on a closed socket = nil, want an error")
	}
	<-c.Done()
	if err := c.Send([]byte("after")); !errors.Is(err, ErrConnClosed) {
		t.Errorf("Send after the failed write = %v, want ErrConnClosed", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.writes) != 1 {
		t.Errorf("%d writes, want 1: the queued frame must not follow a failed write", len(g.writes))
	}
}

// goroutineID is the running goroutine's number, from its stack header.
func goroutineID() string {
	var b [64]byte
	f := strings.Fields(string(b[:runtime.Stack(b[:], false)]))
	return f[1]
}

// TestServerReusesHandlerGoroutines: frames of one connection answered one
// after the other are handled by a goroutine that stays for the next frame,
// not by a new goroutine each (whose stack grows anew every time).
func TestServerReusesHandlerGoroutines(t *testing.T) {
	var mu sync.Mutex
	ids := map[string]bool{}
	h := HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
		mu.Lock()
		ids[goroutineID()] = true
		mu.Unlock()
		_ = c.WriteFrame(frame)
	})
	_, addr, _ := testServer(t, Config{}, h, nil)
	c := dialRaw(t, addr)
	const n = 50
	for i := range n {
		c.send(fmt.Sprint(i))
		if got := c.recv(); got != fmt.Sprint(i) {
			t.Fatalf("answer %q to frame %d", got, i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) > n/5 {
		t.Errorf("%d frames answered one at a time ran on %d goroutines, want them reused", n, len(ids))
	}
}

// countedConn counts the read deadlines set on it.
type countedConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c countedConn) SetReadDeadline(t time.Time) error {
	c.reads.Add(1)
	return c.Conn.SetReadDeadline(t)
}

// framesOf is n Binary2 frames "f00", "f01", … back to back, for one write.
func framesOf(t *testing.T, n int) []byte {
	t.Helper()
	var b []byte
	for i := range n {
		var err error
		if b, err = AppendFrame(b, Binary2, []byte(fmt.Sprintf("f%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestServerFramesOfOneWriteNeedNoDeadlines: frames that arrive in one
// segment are read from the buffer without a read deadline each (two per
// frame before): only reads that can block get one.
func TestServerFramesOfOneWriteNeedNoDeadlines(t *testing.T) {
	var reads atomic.Int64
	_, addr, _ := testServerOn(t, Config{}, echo, nil, func(nc net.Conn) net.Conn { return countedConn{Conn: nc, reads: &reads} })
	c := dialRaw(t, addr)
	const n = 20
	if _, err := c.nc.Write(framesOf(t, n)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range n {
		seen[c.recv()] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct answers to %d frames", len(seen), n)
	}
	// The idle wait before the batch, its first frame's read (if the
	// segment came in parts), and the idle wait after it.
	if got := reads.Load(); got > 6 {
		t.Errorf("%d frames of one write set %d read deadlines, want a few, not two a frame", n, got)
	}
}

// TestClientConnFramesOfOneWriteNeedNoDeadlines: the client link, too, reads
// frames that came in one segment without a read deadline each.
func TestClientConnFramesOfOneWriteNeedNoDeadlines(t *testing.T) {
	peer, ours := net.Pipe()
	defer peer.Close()
	var reads atomic.Int64
	got := make(chan string, 32)
	c, err := NewConn(countedConn{Conn: ours, reads: &reads}, ClientConfig{OnFrame: func(f []byte) { got <- string(f) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); <-c.Done() }()
	const n = 20
	if _, err := peer.Write(framesOf(t, n)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		select {
		case f := <-got:
			if want := fmt.Sprintf("f%02d", i); f != want {
				t.Fatalf("frame %d = %q, want %q", i, f, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("frame %d never arrived", i)
		}
	}
	if r := reads.Load(); r > 6 {
		t.Errorf("%d frames of one write set %d read deadlines, want a few, not two a frame", n, r)
	}
}

// gate puts g in front of the connection the server accepts (the tests
// make one).
func (g *gatedConn) gate(nc net.Conn) net.Conn {
	g.Conn = nc
	return g
}

// TestServerCoalescesAnswers: answers written while the connection's write
// is in progress go out together, in one Write call, right after it.
func TestServerCoalescesAnswers(t *testing.T) {
	g := &gatedConn{entered: make(chan struct{}), release: make(chan struct{})}
	var queued sync.WaitGroup // the answers after the first
	queued.Add(3)
	h := HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
		first := string(frame) == "first"
		if !first {
			<-g.entered // answered while the first answer's write is held
		}
		if err := c.WriteFrame(frame); err != nil {
			t.Errorf("WriteFrame(%q) = %v", frame, err)
		}
		if !first {
			queued.Done()
		}
	})
	_, addr, _ := testServerOn(t, Config{}, h, nil, g.gate)
	c := dialRaw(t, addr)
	c.send("first")
	<-g.entered
	for _, m := range []string{"b", "cc", "ddd"} {
		c.send(m)
	}
	// The three queued answers return from WriteFrame before the held
	// write is let go.
	waited := make(chan struct{})
	go func() { queued.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		close(g.release)
		t.Fatal("answers written while an answer's write is held waited for it")
	}
	close(g.release)
	seen := map[string]bool{}
	for range 4 {
		seen[c.recv()] = true
	}
	if len(seen) != 4 {
		t.Errorf("answers %v, want first, b, cc, ddd", seen)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.writes) != 2 {
		t.Errorf("%d Write calls %q, want the first answer, then the three queued ones in one", len(g.writes), g.writes)
	}
}

// TestServerCloseSendsQueuedAnswers: an answer queued behind a write in
// progress still goes out when its handler closes the connection right
// after it (a sign-off, a refused sign-on), before the connection closes.
func TestServerCloseSendsQueuedAnswers(t *testing.T) {
	g := &gatedConn{entered: make(chan struct{}), release: make(chan struct{})}
	closed := make(chan struct{})
	h := HandlerFunc(func(_ context.Context, c *ServerConn, frame []byte) {
		if string(frame) == "first" {
			_ = c.WriteFrame(frame) // held by g until release
			return
		}
		<-g.entered
		if err := c.WriteFrame([]byte("bye")); err != nil {
			t.Errorf("WriteFrame(bye) = %v", err)
		}
		_ = c.Close()
		close(closed)
	})
	_, addr, _ := testServerOn(t, Config{}, h, nil, g.gate)
	c := dialRaw(t, addr)
	c.send("first")
	<-g.entered
	c.send("signoff")
	select {
	case <-closed:
		close(g.release)
		t.Fatal("Close returned while an answer it must send waited behind a held write")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.release)
	if a, b := c.recv(), c.recv(); a != "first" || b != "bye" {
		t.Errorf("answers %q, %q; want first, bye", a, b)
	}
	<-closed
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("after Close the connection reads %v, want its end", err)
	}
}

// writeCountedConn counts the Write calls on it.
type writeCountedConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c writeCountedConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestServerGatherWrites: on one P, the answers to frames that arrived in
// one segment go out in one write with Config.GatherWrites (a write holds
// the P, so without it nothing queues behind it: one write per answer).
func TestServerGatherWrites(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, tt := range []struct {
		gather    bool
		maxWrites int64
	}{{true, 2}, {false, 1 << 30}} {
		var writes atomic.Int64
		_, addr, _ := testServerOn(t, Config{GatherWrites: tt.gather}, echo, nil, func(nc net.Conn) net.Conn {
			return writeCountedConn{Conn: nc, writes: &writes}
		})
		c := dialRaw(t, addr)
		const n = 8
		if _, err := c.nc.Write(framesOf(t, n)); err != nil {
			t.Fatal(err)
		}
		for range n {
			c.recv()
		}
		if got := writes.Load(); got > tt.maxWrites {
			t.Errorf("GatherWrites %v: %d answers to one segment took %d writes, want at most %d", tt.gather, n, got, tt.maxWrites)
		}
		t.Logf("GatherWrites %v: %d answers, %d writes", tt.gather, n, writes.Load())
	}
}
