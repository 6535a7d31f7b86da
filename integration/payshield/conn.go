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

	"pingate/iso8583"
	"pingate/pinblock"
)

// maxFrame is the largest message the 2-byte length prefix can carry.
const maxFrame = 0xFFFF

// errTooLong is a command longer than the length prefix can carry.
var errTooLong = errors.New("message exceeds the length prefix")

// errExpired is a command whose ctx ended before it was written.
var errExpired = errors.New("deadline passed before the write")

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

	w iso8583.Coalescer // commands written while another write is in progress go out with it

	serial chan struct{} // hdrLen 0: one command at a time

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]chan []byte // by header (its decimal value); nil: abandoned
	// abandoned counts the headers of commands whose caller stopped
	// waiting: kept out of use until their late response arrives, so that
	// it cannot be taken for the response of a later command under the
	// same header (the header sequence wraps at modulus).
	abandoned int
	err       error // set once, when the reader stops
	done      chan struct{}
}

// maxAbandoned bounds the headers a connection keeps out of use for
// responses that have not come: past it the HSM is not answering what it
// was sent, and the connection is closed (the pool dials another).
func (c *conn) maxAbandoned() int {
	if c.modulus != 0 && c.modulus/2 < 1024 {
		return int(c.modulus / 2)
	}
	return 1024
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
		addr: addr, nc: nc, hdrLen: hdrLen,
		pending: make(map[uint64]chan []byte), done: make(chan struct{}),
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

// header returns the next free header (as its decimal value), one neither
// awaiting a response nor abandoned; ok is false when every header is. The
// caller holds c.mu.
func (c *conn) header() (n uint64, ok bool) {
	if c.modulus != 0 && uint64(len(c.pending)) >= c.modulus {
		return 0, false
	}
	for {
		c.seq++
		n = c.seq
		if c.modulus != 0 {
			n %= c.modulus
		}
		if _, busy := c.pending[n]; !busy {
			return n, true
		}
	}
}

// maxBatch is the most commands roundTrip sends in one write (a PIN
// change's two translations).
const maxBatch = 2

// roundTrip sends the commands code+fields[i], all in one write, and sets
// resp[i] to each response after the header (response code, error code,
// fields). It stops waiting when ctx ends and returns ctx.Err(); a response
// that arrives later is dropped (on a header-less connection the connection
// is closed instead, since later responses could no longer be paired).
// Transport failures are ErrModuleUnavailable. A header-less connection
// sends the commands one at a time.
func (c *conn) roundTrip(ctx context.Context, code string, fields, resp [][]byte) error {
	if len(fields) > maxBatch || len(resp) != len(fields) {
		return fmt.Errorf("%w: %d commands in one batch", ErrProtocol, len(fields))
	}
	if c.serial != nil {
		for i := range fields {
			if err := c.serialTrip(ctx, code, fields[i:i+1], resp[i:i+1]); err != nil {
				return err
			}
		}
		return nil
	}
	return c.pipelined(ctx, code, fields, resp)
}

// serialTrip is roundTrip on a header-less connection: one command at a
// time.
func (c *conn) serialTrip(ctx context.Context, code string, fields, resp [][]byte) error {
	select {
	case c.serial <- struct{}{}:
		defer func() { <-c.serial }()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.deadErr()
	}
	err := c.pipelined(ctx, code, fields, resp)
	if err != nil && ctx.Err() != nil {
		c.fail(errors.New("abandoned a command on a connection without headers"))
	}
	return err
}

func (c *conn) pipelined(ctx context.Context, code string, fields, resp [][]byte) error {
	var (
		hs  [maxBatch]uint64
		chs [maxBatch]chan []byte
	)
	n := len(fields)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.deadErr()
	}
	for i := range n {
		if c.hdrLen > 0 {
			h, ok := c.header()
			if !ok {
				for _, h := range hs[:i] {
					delete(c.pending, h)
				}
				c.mu.Unlock()
				return fmt.Errorf("%w: hsm %s: every message header of the connection is in use", pinblock.ErrModuleUnavailable, c.addr)
			}
			hs[i] = h
		}
		chs[i] = make(chan []byte, 1)
		c.pending[hs[i]] = chs[i]
	}
	c.mu.Unlock()

	if err := c.write(ctx, code, hs[:n], fields); err != nil {
		c.forget(hs[:n])
		switch {
		case errors.Is(err, errTooLong):
			return fmt.Errorf("%w: %v", ErrProtocol, err) // nothing was written: the connection lives
		case errors.Is(err, errExpired):
			return ctx.Err() // nor here
		}
		return c.deadErr()
	}
	for i := range n {
		select {
		case resp[i] = <-chs[i]:
		case <-c.done:
			return c.deadErr()
		case <-ctx.Done():
			c.abandon(hs[i:n])
			return ctx.Err()
		}
	}
	return nil
}

// abandon keeps the headers of written commands whose caller stopped
// waiting out of use until their responses arrive (readLoop frees them),
// and closes the connection when too many are owed.
func (c *conn) abandon(hs []uint64) {
	c.mu.Lock()
	for _, h := range hs {
		if ch, ok := c.pending[h]; ok && ch != nil {
			c.pending[h] = nil
			c.abandoned++
		}
	}
	over := c.abandoned > c.maxAbandoned()
	c.mu.Unlock()
	if over {
		c.fail(errors.New("too many commands without a response"))
	}
}

// write sends one frame per command (2-byte length, header, code, fields)
// in one write call, together with the commands other callers send
// meanwhile on this connection (iso8583.Coalescer): commands ready together
// cost one syscall and one TCP segment. The write is bounded by ctx's
// deadline; a write that fails kills the connection. A ctx already ended
// writes nothing (errExpired) and leaves the connection alone.
func (c *conn) write(ctx context.Context, code string, hs []uint64, fields [][]byte) error {
	timeout := defaultWriteTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 || ctx.Err() != nil {
		// A write with its deadline passed would fail at once and close the
		// connection under every other command on it.
		return errExpired
	}
	var scratch [512]byte // a PIN change's two commands fit
	b := scratch[:0]
	for i, f := range fields {
		n := c.hdrLen + len(code) + len(f)
		if n > maxFrame {
			return fmt.Errorf("%w: %d bytes", errTooLong, n)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = appendHeader(b, hs[i], c.hdrLen)
		b = append(b, code...)
		b = append(b, f...)
	}
	return c.w.WriteFrames(c.nc, timeout, b, c.fail)
}

// defaultWriteTimeout bounds a write whose ctx has no deadline (the client
// always gives one: Config.Timeout).
const defaultWriteTimeout = 2 * time.Second

// appendHeader appends h as hdrLen decimal digits, zero-padded on the left.
func appendHeader(b []byte, h uint64, hdrLen int) []byte {
	if hdrLen == 0 {
		return b
	}
	var d [20]byte
	digits := strconv.AppendUint(d[:0], h, 10)
	for range hdrLen - len(digits) {
		b = append(b, '0')
	}
	return append(b, digits...)
}

func (c *conn) forget(hs []uint64) {
	c.mu.Lock()
	for _, h := range hs {
		delete(c.pending, h)
	}
	c.mu.Unlock()
}

// parseHeader is the decimal value of a response header; ok is false when
// it is not all digits (no command of ours has that header).
func parseHeader(b []byte) (uint64, bool) {
	var n uint64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + uint64(d-'0') // a header over 19 digits wraps, as the sequence never reaches it
	}
	return n, true
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
		h, ok := parseHeader(msg[:c.hdrLen])
		if !ok {
			continue // not a header we sent
		}
		c.mu.Lock()
		ch, ok := c.pending[h]
		delete(c.pending, h)
		if ok && ch == nil {
			c.abandoned-- // the late response of an abandoned command: its header is free again
		}
		c.mu.Unlock()
		if ch != nil {
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

// inFlight is the number of commands awaiting a response, abandoned ones
// included (the HSM still owes them).
func (c *conn) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
