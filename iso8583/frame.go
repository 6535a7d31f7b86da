package iso8583

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Framing is how messages are delimited on a TCP stream: each message is
// preceded by its length in bytes, the header not included.
type Framing int

// Framings.
const (
	// Binary2 is a 2-byte big-endian length (1 to 65535). The default.
	Binary2 Framing = iota
	// ASCII4 is 4 ASCII decimal digits, "0001" to "9999".
	ASCII4
)

// DefaultMaxFrame is the largest message accepted when a maximum is not
// configured. A PIN operation message of either dialect is under 400 bytes.
const DefaultMaxFrame = 8192

// Errors of the framing layer. After ErrBadFrame or ErrFrameTooLarge the
// stream cannot be resynchronised: the connection must be closed.
var (
	// ErrFrameTooLarge: a frame header announces more than the maximum, or
	// a message is too long for the framing.
	ErrFrameTooLarge = errors.New("iso8583: frame too large")
	// ErrBadFrame: a zero length, or an ASCII4 header that is not 4 digits.
	ErrBadFrame = errors.New("iso8583: bad frame header")
)

// ParseFraming accepts "binary2" (also "binary" and "") and "ascii4" (also
// "ascii"), in any case.
func ParseFraming(s string) (Framing, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "binary2", "binary":
		return Binary2, nil
	case "ascii4", "ascii":
		return ASCII4, nil
	}
	return 0, fmt.Errorf("iso8583: unknown framing %q (want binary2 or ascii4)", s)
}

// String returns "binary2" or "ascii4".
func (f Framing) String() string {
	switch f {
	case Binary2:
		return "binary2"
	case ASCII4:
		return "ascii4"
	}
	return fmt.Sprintf("framing(%d)", int(f))
}

// HeaderLen is the size of the length header: 2 or 4 bytes.
func (f Framing) HeaderLen() int {
	if f == ASCII4 {
		return 4
	}
	return 2
}

// Limit is the longest message the framing can carry: 65535 or 9999.
func (f Framing) Limit() int {
	if f == ASCII4 {
		return 9999
	}
	return 65535
}

// Valid reports whether f is a known framing.
func (f Framing) Valid() bool { return f == Binary2 || f == ASCII4 }

// FrameBuffered reports whether r's buffer holds a whole frame (or a header
// ReadFrame refuses without reading on), so that reading it makes no read
// call.
func FrameBuffered(r *bufio.Reader, f Framing) bool {
	n := f.HeaderLen()
	if r.Buffered() < n {
		return false
	}
	h, _ := r.Peek(n)
	l := 0
	if f == ASCII4 {
		for _, c := range h {
			if !isDigit(c) {
				return true
			}
			l = l*10 + int(c-'0')
		}
	} else {
		l = int(binary.BigEndian.Uint16(h))
	}
	return r.Buffered() >= n+l
}

// ReadFrame reads one framed message from r. max is the largest message
// accepted (DefaultMaxFrame if max <= 0). The message is read into buf when
// it fits its capacity, into a new slice otherwise; the caller owns the
// result, which aliases buf when it fits.
//
// Errors: io.EOF when r ends cleanly before a header; io.ErrUnexpectedEOF when
// it ends inside a header or message; ErrBadFrame for a zero length or an
// ASCII4 header that is not 4 digits; ErrFrameTooLarge for a length above
// max; the reader's own error otherwise (a deadline, a reset). Only io.EOF
// leaves the stream usable; after any other error close the connection.
// Errors never contain the bytes read.
func ReadFrame(r *bufio.Reader, f Framing, max int, buf []byte) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	var hdr [4]byte
	h := hdr[:f.HeaderLen()]
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, err
	}
	var n int
	if f == ASCII4 {
		for _, c := range h {
			if !isDigit(c) {
				return nil, ErrBadFrame
			}
			n = n*10 + int(c-'0')
		}
	} else {
		n = int(binary.BigEndian.Uint16(h))
	}
	if n == 0 {
		return nil, ErrBadFrame
	}
	if n > max {
		return nil, ErrFrameTooLarge
	}
	var msg []byte
	if cap(buf) >= n {
		msg = buf[:n]
	} else {
		msg = make([]byte, n)
	}
	if _, err := io.ReadFull(r, msg); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return msg, nil
}

// AppendFrame appends the header and msg to dst and returns the result.
func AppendFrame(dst []byte, f Framing, msg []byte) ([]byte, error) {
	if len(msg) == 0 {
		return dst, ErrBadFrame
	}
	if len(msg) > f.Limit() {
		return dst, ErrFrameTooLarge
	}
	if f == ASCII4 {
		dst = fmt.Appendf(dst, "%04d", len(msg))
	} else {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	}
	return append(dst, msg...), nil
}

// WriteFrame writes the header and msg with a single Write call, so frames
// written concurrently through a serializing writer never interleave. An
// empty message is ErrBadFrame, one longer than the framing allows
// ErrFrameTooLarge; otherwise the error is w's.
func WriteFrame(w io.Writer, f Framing, msg []byte) error {
	b, err := AppendFrame(make([]byte, 0, f.HeaderLen()+len(msg)), f, msg)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
