package payshield

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"pingate/pinblock"
)

// maxFrame is the largest message the 2-byte length prefix can carry.
const maxFrame = 0xFFFF

// errClosed is the cause of ErrModuleUnavailable once a connection is closed.
var errClosed = errors.New("connection closed")

// conn is one TCP (or TLS) connection to one HSM. With a header length above
// zero, several commands are in flight at once, each with its own header
// (a decimal sequence number the HSM echoes), and responses are matched by
// it; with header length 0 the connection carries one command at a time.
//
// A conn is safe for concurrent use. Once its reader fails it is dead:
// every waiting and later call gets ErrModuleUnavailable, and the owner dials
// a new one.
type conn struct {
	addr    string
	nc      net.Conn
	hdrLen  int
	modulus uint64 // 10^hdrLen, 0 when hdrLen is 0 or ≥ 19

	wmu sync.Mutex // serializes writes
	bw  *bufio.Writer

	serial chan struct{} // hdrLen 0: one command at a time

	mu      sync.Mutex
	seq     uint64
	pending map[string]chan []byte
	err     error // set once, when the reader stops
	done    chan struct{}
}

func dialConn(ctx context.Context, addr string, hdrLen int, tlsConf *tls.Config) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: hsm %s: %v", pinblock.ErrModuleUnavailable, addr, err)
	}
	if tlsConf != nil {
		tc := tls.Client(nc, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%w: hsm %s: tls: %v", pinblock.ErrModuleUnavailable, addr, err)
		}
		nc = tc
	}
	c := &conn{
		addr: addr, nc: nc, hdrLen: hdrLen, bw: bufio.NewWriter(nc),
		pending: make(map[string]chan []byte), done: make(chan struct{}),
	}
	if hdrLen == 0 {
		c.serial = make(chan struct{}, 1)
	} else if hdrLen < 19 {
		c.modulus = 1
		for range hdrLen {
			c.modulus *= 10
		}
	}
	go c.readLoop()
	return c, nil
}

// header returns the next free header; the caller holds c.mu.
func (c *conn) header() string {
	for {
		c.seq++
		n := c.seq
		if c.modulus != 0 {
			n %= c.modulus
		}
		s := strconv.FormatUint(n, 10)
		for len(s) < c.hdrLen {
			s = "0" + s
		}
		if _, busy := c.pending[s]; !busy {
			return s
		}
	}
}

// roundTrip sends body (command code and fields) and returns the response
// after the header (response code, error code, fields). It stops waiting
// when ctx ends and returns ctx.Err(); a response that arrives later is
// dropped (on a header-less connection the connection is closed instead,
// since later responses could no longer be paired). Transport failures are
// ErrModuleUnavailable.
func (c *conn) roundTrip(ctx context.Context, body []byte) ([]byte, error) {
	if c.serial != nil {
		select {
		case c.serial <- struct{}{}:
			defer func() { <-c.serial }()
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, c.deadErr()
		}
	}
	ch := make(chan []byte, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.deadErr()
	}
	h := ""
	if c.hdrLen > 0 {
		h = c.header()
	}
	c.pending[h] = ch
	c.mu.Unlock()

	if err := c.write(ctx, h, body); err != nil {
		c.forget(h)
		c.fail(err)
		return nil, c.deadErr()
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-c.done:
		return nil, c.deadErr()
	case <-ctx.Done():
		c.forget(h)
		if c.serial != nil {
			c.fail(errors.New("abandoned a command on a connection without headers"))
		}
		return nil, ctx.Err()
	}
}

func (c *conn) write(ctx context.Context, h string, body []byte) error {
	n := len(h) + len(body)
	if n > maxFrame {
		return fmt.Errorf("message of %d bytes exceeds the length prefix", n)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetWriteDeadline(dl)
	} else {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(n))
	c.bw.Write(p[:])
	c.bw.WriteString(h)
	c.bw.Write(body)
	return c.bw.Flush()
}

func (c *conn) forget(h string) {
	c.mu.Lock()
	delete(c.pending, h)
	c.mu.Unlock()
}

func (c *conn) readLoop() {
	br := bufio.NewReader(c.nc)
	var p [2]byte
	for {
		if _, err := io.ReadFull(br, p[:]); err != nil {
			c.fail(err)
			return
		}
		n := int(binary.BigEndian.Uint16(p[:]))
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			c.fail(err)
			return
		}
		if n < c.hdrLen {
			c.fail(errors.New("response shorter than its header"))
			return
		}
		h := string(msg[:c.hdrLen])
		c.mu.Lock()
		ch, ok := c.pending[h]
		delete(c.pending, h)
		c.mu.Unlock()
		if ok {
			ch <- msg[c.hdrLen:]
		}
		// A response nobody waits for belongs to a call whose ctx ended.
	}
}

// fail marks the connection dead with cause err and closes it.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	close(c.done)
	c.mu.Unlock()
	c.nc.Close()
}

func (c *conn) deadErr() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err == nil {
		err = errClosed
	}
	return fmt.Errorf("%w: hsm %s: %v", pinblock.ErrModuleUnavailable, c.addr, err)
}

// alive reports whether the reader still runs.
func (c *conn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *conn) close() { c.fail(errClosed) }

// inFlight is the number of commands awaiting a response.
func (c *conn) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
