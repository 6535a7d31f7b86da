package iso8583

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
)

// The building blocks of the two specs that moov-io/iso8583 lacks: character
// set checks for n, an and ans data, a strict ASCII length prefix, and the PIN
// block codec. None of their errors repeats the data it refused.

// errCharset is returned by the character-set encoders. It names the class of
// character expected, never the character found.
var (
	errNotDigits    = errors.New("not numeric")
	errNotAlnum     = errors.New("not alphanumeric")
	errNotPrintable = errors.New("not printable ASCII")
	errShortData    = errors.New("not enough data")
	errBadLength    = errors.New("bad length prefix")
)

// charsetEncoder is an ASCII encoding.Encoder that accepts only bytes for
// which ok is true, in both directions.
type charsetEncoder struct {
	ok  func(byte) bool
	err error
}

var (
	// asciiN is ISO 8583 "n" in ASCII: the digits 0-9 only.
	// (Pointers, so that two specs using the same encoder compare equal.)
	asciiN encoding.Encoder = &charsetEncoder{ok: isDigit, err: errNotDigits}
	// asciiAN is "an": the letters A-Z, a-z and the digits.
	asciiAN encoding.Encoder = &charsetEncoder{ok: isAlnum, err: errNotAlnum}
	// asciiANS is "ans" restricted to printable ASCII (0x20-0x7E): control
	// characters would let a sender forge lines in our logs.
	asciiANS encoding.Encoder = &charsetEncoder{ok: isPrintable, err: errNotPrintable}
)

func isDigit(b byte) bool     { return b >= '0' && b <= '9' }
func isPrintable(b byte) bool { return b >= 0x20 && b <= 0x7e }
func isAlnum(b byte) bool {
	return isDigit(b) || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z')
}

func (e charsetEncoder) check(b []byte) error {
	for _, c := range b {
		if !e.ok(c) {
			return e.err
		}
	}
	return nil
}

// Encode returns a copy of data if every byte is in the character set.
func (e charsetEncoder) Encode(data []byte) ([]byte, error) {
	if err := e.check(data); err != nil {
		return nil, err
	}
	return append([]byte(nil), data...), nil
}

// Decode reads length bytes, each of which must be in the character set.
func (e charsetEncoder) Decode(data []byte, length int) ([]byte, int, error) {
	if length < 0 || length > len(data) {
		return nil, 0, errShortData
	}
	if err := e.check(data[:length]); err != nil {
		return nil, 0, err
	}
	return append([]byte(nil), data[:length]...), length, nil
}

// asciiLen is a variable-length prefix of exactly digits ASCII digits. Unlike
// moov's prefix.ASCII it refuses signs and spaces ("+5", " 5") and its errors
// do not quote the prefix.
type asciiLen struct{ digits int }

var (
	asciiLL  prefix.Prefixer = asciiLen{2}
	asciiLLL prefix.Prefixer = asciiLen{3}
)

// EncodeLength writes n as digits zero-padded digits.
func (p asciiLen) EncodeLength(maxLen, n int) ([]byte, error) {
	return p.appendLength(make([]byte, 0, p.digits), maxLen, n)
}

// appendLength appends n as digits zero-padded digits to dst.
func (p asciiLen) appendLength(dst []byte, maxLen, n int) ([]byte, error) {
	if n < 0 || n > maxLen {
		return nil, fmt.Errorf("length %d exceeds maximum %d", n, maxLen)
	}
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], int64(n), 10)
	if len(s) > p.digits {
		return nil, fmt.Errorf("length %d does not fit %d digits", n, p.digits)
	}
	for range p.digits - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...), nil
}

// DecodeLength reads digits ASCII digits.
func (p asciiLen) DecodeLength(maxLen int, data []byte) (int, int, error) {
	if len(data) < p.digits {
		return 0, 0, errShortData
	}
	n := 0
	for _, c := range data[:p.digits] {
		if !isDigit(c) {
			return 0, 0, errBadLength
		}
		n = n*10 + int(c-'0')
	}
	if n > maxLen {
		return 0, 0, fmt.Errorf("length %d exceeds maximum %d", n, maxLen)
	}
	return n, p.digits, nil
}

// Inspect returns the prefix's name in spec files (dialect.go).
func (p asciiLen) Inspect() string {
	if p.digits == 2 {
		return "pingate.ASCII.LL"
	}
	return "pingate.ASCII.LLL"
}

// pinBlockCodec packs and unpacks a PIN block field (DE 52, DE 125): an
// ISO 9564-1 block of 8 bytes (formats 0, 1, 3) or 16 bytes (format 4) and
// nothing else. With hexASCII the block travels as upper-case hex digits and
// the length prefix counts those digits (16 or 32); otherwise the block is raw
// and the prefix counts bytes (8 or 16). spec.Length is the maximum in the
// prefix's unit. It is both the field's Packer and its Unpacker.
type pinBlockCodec struct{ hexASCII bool }

var errPINBlockLength = errors.New("PIN block must be 8 or 16 bytes")

// Pack encodes a PIN block with its length prefix.
func (p pinBlockCodec) Pack(value []byte, spec *field.Spec) ([]byte, error) {
	if len(value) != 8 && len(value) != 16 {
		return nil, errPINBlockLength
	}
	n := len(value)
	if p.hexASCII {
		n *= 2
	}
	pref, err := spec.Pref.EncodeLength(spec.Length, n)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(pref), len(pref)+n)
	copy(out, pref)
	if p.hexASCII {
		out = out[:len(pref)+n]
		hex.Encode(out[len(pref):], value)
		for i := len(pref); i < len(out); i++ {
			if out[i] >= 'a' {
				out[i] -= 'a' - 'A'
			}
		}
		return out, nil
	}
	return append(out, value...), nil
}

// Unpack decodes a PIN block; it returns the block and the bytes read.
func (p pinBlockCodec) Unpack(data []byte, spec *field.Spec) ([]byte, int, error) {
	n, read, err := spec.Pref.DecodeLength(spec.Length, data)
	if err != nil {
		return nil, 0, err
	}
	size := n
	if p.hexASCII {
		size = n / 2
		if n%2 != 0 {
			return nil, 0, errPINBlockLength
		}
	}
	if size != 8 && size != 16 {
		return nil, 0, errPINBlockLength
	}
	if len(data)-read < n {
		return nil, 0, errShortData
	}
	out := make([]byte, size)
	if p.hexASCII {
		if _, err := hex.Decode(out, data[read:read+n]); err != nil {
			return nil, 0, errors.New("PIN block is not hexadecimal")
		}
	} else {
		copy(out, data[read:read+n])
	}
	return out, read + n, nil
}

// bcdN is ISO 8583 "n" packed as BCD, two digits a byte, right-aligned: an
// odd number of digits is preceded by a zero nibble. Decoding refuses nibbles
// above 9 and a non-zero leading pad nibble. (moov's encoding.BCD builds its
// lookup tables on every call, which made the issuer dialect ten times slower
// than the acquirer one; this does the same conversion with plain loops.)
type bcdEncoder struct{}

var bcdN encoding.Encoder = bcdEncoder{}

// Encode packs decimal digits as BCD.
func (bcdEncoder) Encode(data []byte) ([]byte, error) {
	if !allDigits(string(data)) {
		return nil, errNotDigits
	}
	return appendBCD(make([]byte, 0, (len(data)+1)/2), string(data)), nil
}

// appendBCD appends the digits of s (which must all be 0-9) as BCD to dst.
func appendBCD(dst []byte, s string) []byte {
	i := 0
	if len(s)%2 == 1 {
		dst = append(dst, s[0]-'0')
		i = 1
	}
	for ; i < len(s); i += 2 {
		dst = append(dst, (s[i]-'0')<<4|(s[i+1]-'0'))
	}
	return dst
}

// Decode unpacks length digits from (length+1)/2 bytes.
func (bcdEncoder) Decode(data []byte, length int) ([]byte, int, error) {
	if length < 0 {
		return nil, 0, errShortData
	}
	return appendBCDDigits(make([]byte, 0, length), data, length)
}

// appendBCDDigits appends length digits read from (length+1)/2 bytes of data
// to dst and returns them with the bytes read.
func appendBCDDigits(dst, data []byte, length int) ([]byte, int, error) {
	n := (length + 1) / 2
	if length < 0 || n > len(data) {
		return nil, 0, errShortData
	}
	for i, b := range data[:n] {
		hi, lo := b>>4, b&0x0f
		if hi > 9 || lo > 9 {
			return nil, 0, errNotDigits
		}
		if i == 0 && length%2 == 1 {
			if hi != 0 {
				return nil, 0, errNotDigits
			}
		} else {
			dst = append(dst, '0'+hi)
		}
		dst = append(dst, '0'+lo)
	}
	return dst, n, nil
}

// bcdLen is a BCD length prefix of digits digits: LL in 1 byte, LLL in 2
// bytes (a zero nibble first).
type bcdLen struct{ digits int }

var (
	bcdLL  prefix.Prefixer = bcdLen{2}
	bcdLLL prefix.Prefixer = bcdLen{3}
)

// EncodeLength packs n as BCD.
func (p bcdLen) EncodeLength(maxLen, n int) ([]byte, error) {
	return p.appendLength(make([]byte, 0, (p.digits+1)/2), maxLen, n)
}

// appendLength appends n packed as BCD to dst.
func (p bcdLen) appendLength(dst []byte, maxLen, n int) ([]byte, error) {
	var buf [20]byte
	digits, err := asciiLen(p).appendLength(buf[:0], maxLen, n)
	if err != nil {
		return nil, err
	}
	return appendBCD(dst, string(digits)), nil
}

// DecodeLength unpacks a BCD length.
func (p bcdLen) DecodeLength(maxLen int, data []byte) (int, int, error) {
	var buf [4]byte
	digits, read, err := appendBCDDigits(buf[:0], data, p.digits)
	if err != nil {
		return 0, 0, errBadLength
	}
	n := 0
	for _, c := range digits {
		n = n*10 + int(c-'0')
	}
	if n > maxLen {
		return 0, 0, fmt.Errorf("length %d exceeds maximum %d", n, maxLen)
	}
	return n, read, nil
}

// Inspect returns the prefix's name in spec files (dialect.go).
func (p bcdLen) Inspect() string {
	if p.digits == 2 {
		return "pingate.BCD.LL"
	}
	return "pingate.BCD.LLL"
}
