package pinblock

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// PIN lengths allowed by ISO 9564-1 in every format.
const (
	MinPINLength = 4
	MaxPINLength = 12
)

// MaxPANLength is the longest PAN (ISO/IEC 7812-1).
const MaxPANLength = 19

// SecretPIN is a clear PIN of 4 to 12 decimal digits. It never prints: every
// fmt verb, slog and JSON show "PIN(redacted)" and nothing about its length.
// It exists for tools and simulators (the `pingate pin` CLI, tests); the
// gateway itself only ever handles enciphered PIN blocks. Zeroize it after use.
type SecretPIN struct {
	d [MaxPINLength]byte // ASCII digits
	n uint8
}

// NewSecretPIN checks that digits is 4–12 decimal digits and copies it. The
// error (ErrInvalidPIN) never repeats the input.
func NewSecretPIN(digits string) (SecretPIN, error) {
	var p SecretPIN
	if len(digits) < MinPINLength || len(digits) > MaxPINLength {
		return SecretPIN{}, fmt.Errorf("%w: must be %d to %d digits", ErrInvalidPIN, MinPINLength, MaxPINLength)
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			p.Zeroize()
			return SecretPIN{}, fmt.Errorf("%w: not all decimal digits", ErrInvalidPIN)
		}
		p.d[i] = c
	}
	p.n = uint8(len(digits))
	return p, nil
}

// Len is the number of digits; 0 for the zero value.
func (p *SecretPIN) Len() int { return int(p.n) }

// digits is the PIN as ASCII digits, aliasing p.
func (p *SecretPIN) digits() []byte { return p.d[:p.n] }

// Reveal returns the clear PIN as a string. Only operator tools that must show
// a PIN to the person entitled to it (the `pingate pin decode` CLI, a PIN
// mailer) may call it; the string cannot be zeroized.
func (p *SecretPIN) Reveal() string { return string(p.digits()) }

// Zeroize clears the PIN (best-effort: copies of the value are not reached).
func (p *SecretPIN) Zeroize() { clear(p.d[:]); p.n = 0 }

// String never shows the PIN.
func (p SecretPIN) String() string { return "PIN(redacted)" }

// Format makes every fmt verb print String.
func (p SecretPIN) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// GoString keeps %#v from reaching the digits.
func (p SecretPIN) GoString() string { return p.String() }

// LogValue keeps slog from reaching the digits.
func (p SecretPIN) LogValue() slog.Value { return slog.StringValue(p.String()) }

// MarshalJSON refuses, like Key.
func (p SecretPIN) MarshalJSON() ([]byte, error) { return nil, ErrMarshalPIN }

// MarshalText refuses as well.
func (p SecretPIN) MarshalText() ([]byte, error) { return nil, ErrMarshalPIN }

// ErrMarshalPIN is returned by every attempt to marshal a SecretPIN.
var ErrMarshalPIN = fmt.Errorf("pinblock: a clear PIN cannot be marshalled")

// Valid reports whether f is one of the ISO 9564-1 formats 0–4 or one of
// the SM4 formats Format0SM4 and Format4SM4.
func (f Format) Valid() bool { return f >= Format0 && f <= Format4 || f.IsSM4() }

// IsSM4 reports whether f is an SM4 PIN block format (Format0SM4 or
// Format4SM4). A security module that has no SM4 (a payShield without the
// Chinese algorithm licence, say) refuses routes whose formats are SM4 with
// ErrSM4Unsupported, never a silent fall-back to software.
func (f Format) IsSM4() bool { return f == Format0SM4 || f == Format4SM4 }

// Number is the ISO 9564-1 format number a block of f travels under: the
// number DE 53 carries (0 for Format0SM4, 4 for Format4SM4). The cipher is
// not on the wire; both ends know it from their configuration.
func (f Format) Number() int {
	if f.IsSM4() {
		return int(f & 0xF)
	}
	return int(f)
}

// FormatFor is the format whose blocks carry ISO 9564-1 format number n
// enciphered under alg: n itself for TDES (0, 1, 3) and AES (4),
// Format0SM4 and Format4SM4 for SM4 (0 and 4); alg "" means the number's
// own cipher (TDES for 0, 1, 3; AES for 4). Other pairs are
// ErrUnsupportedFormat; the error names them, which are not secret.
func FormatFor(n int, alg Algorithm) (Format, error) {
	switch {
	case alg == TDES && (n == 0 || n == 1 || n == 3):
		return Format(n), nil
	case alg == AES && n == 4:
		return Format4, nil
	case alg == SM4 && n == 0:
		return Format0SM4, nil
	case alg == SM4 && n == 4:
		return Format4SM4, nil
	case alg == "" && n >= 0 && n <= 4 && n != 2:
		return Format(n), nil
	}
	return 0, fmt.Errorf("%w: format %d under %s", ErrUnsupportedFormat, n, alg)
}

// iso4 reports whether f has the format 4 construction (Format4, Format4SM4).
func (f Format) iso4() bool { return f == Format4 || f == Format4SM4 }

// BlockSize is the length in bytes of an f block: 16 for format 4 (AES) and
// the SM4 formats, 8 otherwise; 0 for an unknown format.
func (f Format) BlockSize() int {
	switch {
	case f == Format4 || f.IsSM4():
		return 16
	case f.Valid():
		return 8
	}
	return 0
}

// Algorithm is the cipher that enciphers f blocks: AES for format 4, TDES for
// 0, 1 and 3, SM4 for Format0SM4 and Format4SM4; "" for format 2, which is
// never enciphered for interchange.
func (f Format) Algorithm() Algorithm {
	switch f {
	case Format0, Format1, Format3:
		return TDES
	case Format4:
		return AES
	case Format0SM4, Format4SM4:
		return SM4
	}
	return ""
}

// String is "ISO-n", or "SM4-0" / "SM4-4" for the SM4 formats.
func (f Format) String() string {
	if f.IsSM4() {
		return fmt.Sprintf("SM4-%d", f.Number())
	}
	return fmt.Sprintf("ISO-%d", int(f))
}

// ParseFormat accepts "0"–"4" (optionally prefixed "ISO-" or "iso"), and
// "SM4-0" / "SM4-4" in any case; the error names the value, which is not
// secret.
func ParseFormat(s string) (Format, error) {
	switch strings.ToUpper(s) {
	case "SM4-0":
		return Format0SM4, nil
	case "SM4-4":
		return Format4SM4, nil
	}
	t := s
	for _, p := range []string{"ISO-", "iso-", "ISO", "iso"} {
		if len(t) > len(p) && t[:len(p)] == p {
			t = t[len(p):]
			break
		}
	}
	if len(t) == 1 && t[0] >= '0' && t[0] <= '4' {
		return Format(t[0] - '0'), nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnsupportedFormat, s)
}

// checkPAN validates a PAN: 1 to 19 decimal digits. ISO 9564-1 lets formats 0,
// 3 and 4 use PANs shorter than 12 digits (right-justified, zero-padded); a
// caller that needs ISO/IEC 7812 lengths checks them itself.
func checkPAN(pan string) error {
	if len(pan) == 0 || len(pan) > MaxPANLength {
		return fmt.Errorf("%w: must be 1 to %d digits", ErrInvalidPAN, MaxPANLength)
	}
	for i := 0; i < len(pan); i++ {
		if pan[i] < '0' || pan[i] > '9' {
			return fmt.Errorf("%w: not all decimal digits", ErrInvalidPAN)
		}
	}
	return nil
}

// The fields of a PIN block are built and checked as big-endian 64-bit words:
// nibble i of an 8-byte field is bits 60−4i .. 63−4i of its word. Words stay
// in registers and on the stack; only the cipher calls see a byte slice.

// usesPAN reports whether blocks of format f carry the PAN (formats 0, 3, 4
// and both SM4 formats).
func (f Format) usesPAN() bool {
	return f == Format0 || f == Format3 || f == Format4 || f.IsSM4()
}

// panFields holds the PAN fields of one PAN, computed once for every block of
// a job.
type panFields struct {
	acct uint64 // formats 0 and 3: 0000 then the 12 account digits
	// f4 is the format 4 PAN field as bytes: XORed into a block with one
	// 16-byte operation, so the AES call that reads the block next is not
	// stalled waiting for two 8-byte stores to land.
	f4 [16]byte
}

// set checks pan (checkPAN) and computes its PAN fields into pf (in place:
// returned by value, the 16-byte field was copied in 8-byte halves):
//   - formats 0 and 3: 0000 followed by the 12 rightmost PAN digits excluding
//     the check digit, left-padded with 0;
//   - format 4: M (PAN length − 12, 0 below 12), the PAN right-justified in at
//     least 12 digits (left-padded with 0), then 0s to 32 nibbles.
func (pf *panFields) set(pan string) error {
	if len(pan) == 0 || len(pan) > MaxPANLength {
		return fmt.Errorf("%w: must be 1 to %d digits", ErrInvalidPAN, MaxPANLength)
	}
	// The digits are shifted, as nibbles, into a 128-bit register (hi:lo),
	// eight at a time while eight remain. Below 12 digits the register's
	// leading zeros are the left padding; M is 0 then and is ORed in later.
	var hi, lo uint64
	i := 0
	for ; i+8 <= len(pan); i += 8 {
		d, ok := digits8(pan[i : i+8])
		if !ok {
			return errPANDigits
		}
		hi, lo = hi<<32|lo>>32, lo<<32|d
	}
	for ; i < len(pan); i++ {
		d := uint64(pan[i]) - '0'
		if d > 9 {
			return errPANDigits
		}
		hi, lo = hi<<4|lo>>60, lo<<4|d
	}
	// Formats 0 and 3: the 12 digits before the check digit.
	pf.acct = lo >> 4 & (1<<48 - 1)
	// Format 4: M and the digits fill the first t nibbles; shift them to the
	// top of the 32-nibble field.
	m := max(len(pan)-12, 0)
	t := 1 + 12 + m
	if s := uint(128 - 4*t); s >= 64 { // t ≤ 16
		hi, lo = lo<<(s-64), 0
	} else {
		hi, lo = hi<<s|lo>>(64-s), lo<<s
	}
	binary.BigEndian.PutUint64(pf.f4[:8], hi|uint64(m)<<60)
	binary.BigEndian.PutUint64(pf.f4[8:], lo)
	return nil
}

var errPANDigits = fmt.Errorf("%w: not all decimal digits", ErrInvalidPAN)

// digits8 packs the 8 ASCII decimal digits of s into 8 nibbles, the first
// digit highest; ok is false if any byte is not a digit. It works on all
// eight bytes at once (SWAR): a PAN field costs a few word operations
// instead of a branch and two shifts per digit.
func digits8(s string) (d uint64, ok bool) {
	_ = s[7]
	x := uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
		uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
	const hi4, lo4 = 0xF0F0F0F0F0F0F0F0, 0x0F0F0F0F0F0F0F0F
	// A digit is 0x30–0x39: high nibble 3, and a low nibble that does not
	// carry out when 6 is added.
	if x&hi4 != 0x3030303030303030 || (x&lo4+0x0606060606060606)&hi4 != 0 {
		return 0, false
	}
	d = x & lo4                                   // one digit a byte
	d = (d>>4 | d) & 0x00FF00FF00FF00FF           // two a 16-bit lane
	d = (d>>8 | d) & 0x0000FFFF0000FFFF           // four a 32-bit lane
	return (d>>16 | d) & 0x00000000FFFFFFFF, true // eight
}

// fillFrom is where the random fill of PIN blocks comes from: the module's
// buffered source, else a reader (tests pass fixed bytes to reproduce
// published vectors), else crypto/rand.
type fillFrom struct {
	src *fillSource
	r   io.Reader
}

// read fills p completely.
func (f fillFrom) read(p []byte) error {
	if f.src != nil {
		f.src.take(p)
		return nil
	}
	return readFill(f.r, p)
}

// word is the next 8 random bytes as a big-endian word. The module's buffered
// source is read without a slice reaching an interface call, so nothing
// escapes to the heap on the translation path.
func (f fillFrom) word() (uint64, error) {
	if f.src != nil {
		return f.src.word(), nil
	}
	b := make([]byte, 8)
	defer clear(b)
	if err := readFill(f.r, b); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

// readFill fills dst from rnd with io.ReadFull; rnd nil means crypto/rand.
func readFill(rnd io.Reader, dst []byte) error {
	if rnd == nil {
		_, _ = rand.Read(dst) // never fails (crypto/rand, Go 1.24+)
		return nil
	}
	if _, err := io.ReadFull(rnd, dst); err != nil {
		return fmt.Errorf("pinblock: read random fill: %w", err)
	}
	return nil
}

// checkPINLen refuses a PIN of a length ISO 9564-1 does not allow.
func checkPINLen(n int) error {
	if n < MinPINLength || n > MaxPINLength {
		return fmt.Errorf("%w: must be %d to %d digits", ErrInvalidPIN, MinPINLength, MaxPINLength)
	}
	return nil
}

// pinDigits writes pin's digits into v from nibble 2 on.
func pinDigits(v uint64, pin *SecretPIN) uint64 {
	for i, c := range pin.digits() {
		v |= uint64(c-'0') << (52 - 4*i)
	}
	return v
}

// fillMask covers the fill nibbles after an n-digit PIN: nibbles 2+n .. 15.
func fillMask(n int) uint64 { return 1<<(4*(14-n)) - 1 }

// pinField8 is the 8-byte PIN field of formats 0–3: control nibble, length,
// PIN digits, then fill: F for formats 0 and 2, random 0–F for format 1,
// random A–F for format 3. Random nibbles are taken from fill in order; for
// format 3 nibbles below A are skipped, so the fill is uniform over A–F.
func pinField8(f Format, pin *SecretPIN, fill fillFrom) (uint64, error) {
	n := pin.Len()
	if err := checkPINLen(n); err != nil {
		return 0, err
	}
	v := pinDigits(uint64(f)<<60|uint64(n)<<56, pin)
	need := 14 - n
	switch f {
	case Format0, Format2:
		v |= fillMask(n)
	case Format1:
		r, err := fill.word()
		if err != nil {
			return 0, err
		}
		v |= r >> (64 - 4*need) // the first need nibbles of r, in order
	case Format3:
		for got := 0; got < need; {
			r, err := fill.word()
			if err != nil {
				return 0, err
			}
			for i := 0; i < 16 && got < need; i++ {
				if d := r >> (60 - 4*i) & 0xF; d >= 0xA {
					v |= d << (4 * (need - 1 - got))
					got++
				}
			}
		}
	default:
		return 0, fmt.Errorf("%w: %d", ErrUnsupportedFormat, int(f))
	}
	return v, nil
}

// nibbles1 has bit 0 of every nibble set.
const nibbles1 = 0x1111111111111111

// aboveNine has bit 0 of each nibble set where that nibble of x is A–F
// (b3 and (b2 or b1)), for all sixteen nibbles at once.
func aboveNine(x uint64) uint64 { return x >> 3 & (x>>2 | x>>1) & nibbles1 }

// digitMask covers the nibbles of an n-digit PIN: nibbles 2 .. n+1.
func digitMask(n int) uint64 { return (1<<(4*n) - 1) << (4 * (14 - n)) }

// pinDigitsOut writes the n PIN digits of the checked field v into pin.
func pinDigitsOut(v uint64, n int, pin *SecretPIN) {
	for i := range n {
		pin.d[i] = '0' + byte(v>>(52-4*i)&0xF)
	}
	pin.n = uint8(n)
}

// parsePINField8 checks an 8-byte PIN field of format f (already XORed with
// the PAN field for formats 0 and 3) and, when pin is not nil, extracts the
// PIN into it. Any fault — control nibble, length, a non-digit PIN nibble, a
// wrong fill — is ErrInvalidPINBlock, without saying which; pin is then left
// as it was.
func parsePINField8(v uint64, f Format, pin *SecretPIN) error {
	n := int(v >> 56 & 0xF)
	if Format(v>>60) != f || n < MinPINLength || n > MaxPINLength {
		return ErrInvalidPINBlock
	}
	mask := fillMask(n)
	fill := v & mask
	bad := aboveNine(v) & digitMask(n)
	switch f {
	case Format0, Format2:
		bad |= fill ^ mask // every fill nibble F
	case Format3:
		bad |= aboveNine(fill) ^ mask&nibbles1 // every fill nibble A–F
	}
	if bad != 0 {
		return ErrInvalidPINBlock
	}
	if pin != nil {
		pinDigitsOut(v, n, pin)
	}
	return nil
}

// pinField16 is the first half of the format 4 plain-text PIN field: 4, the
// length, the PIN, then fill A to nibble 15. The second half is 8 random
// bytes, which the caller draws.
func pinField16(pin *SecretPIN) (uint64, error) {
	n := pin.Len()
	if err := checkPINLen(n); err != nil {
		return 0, err
	}
	return pinDigits(4<<60|uint64(n)<<56, pin) | 0xAAAAAAAAAAAAAAAA&fillMask(n), nil
}

// parsePINField16 checks the first half of a format 4 plain-text PIN field
// and, when pin is not nil, extracts the PIN into it; any fault is
// ErrInvalidPINBlock and leaves pin as it was. The random half is not
// checked.
func parsePINField16(hi uint64, pin *SecretPIN) error {
	n := int(hi >> 56 & 0xF)
	if hi>>60 != 4 || n < MinPINLength || n > MaxPINLength {
		return ErrInvalidPINBlock
	}
	mask := fillMask(n)
	if aboveNine(hi)&digitMask(n)|(hi&mask^0xAAAAAAAAAAAAAAAA&mask) != 0 {
		return ErrInvalidPINBlock
	}
	if pin != nil {
		pinDigitsOut(hi, n, pin)
	}
	return nil
}

// EncodeClear builds the clear (not enciphered) block of pin in format f. For
// formats 0–3 that is the 8-byte ISO 9564-1 PIN block (PIN field XOR PAN field
// for 0 and 3); format 1 and 2 ignore pan. For format 4 (and Format4SM4) it
// is the 16-byte plain-text PIN field, since the PAN only enters when
// enciphering; pan is ignored. For Format0SM4 it is the 16-byte PIN field XOR
// PAN field. Random fill comes from crypto/rand. The caller owns the result
// and should clear it after use.
func EncodeClear(f Format, pin SecretPIN, pan string) ([]byte, error) {
	defer pin.Zeroize()
	return encodeClear(f, &pin, pan, nil)
}

func encodeClear(f Format, pin *SecretPIN, pan string, rnd io.Reader) ([]byte, error) {
	fill := fillFrom{r: rnd}
	if f.iso4() {
		hi, err := pinField16(pin)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 16)
		binary.BigEndian.PutUint64(out, hi)
		if err := fill.read(out[8:]); err != nil {
			clear(out)
			return nil, err
		}
		return out, nil
	}
	if !f.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedFormat, int(f))
	}
	var pf panFields
	if f.usesPAN() {
		if err := pf.set(pan); err != nil {
			return nil, err
		}
	}
	if f == Format0SM4 {
		hi, lo, err := pinField0SM4(pin, &pf)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, hi), lo), nil
	}
	v, err := pinField8(f, pin, fill)
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint64(nil, v^pf.acct), nil
}

// pinField0SM4 is the Format0SM4 PIN field XOR PAN field as two words: the
// format 0 PIN field (0, L, PIN, F fill) and 16 more F nibbles, XOR 20 zero
// nibbles and the 12 account digits.
func pinField0SM4(pin *SecretPIN, pf *panFields) (hi, lo uint64, err error) {
	v, err := pinField8(Format0, pin, fillFrom{})
	if err != nil {
		return 0, 0, err
	}
	return v, ^uint64(0) ^ pf.acct, nil
}

// parsePINField0SM4 checks a clear Format0SM4 block (hi:lo, PAN field still
// XORed in) and, when pin is not nil, extracts the PIN; any fault is
// ErrInvalidPINBlock and leaves pin as it was.
func parsePINField0SM4(hi, lo uint64, pf *panFields, pin *SecretPIN) error {
	if lo^pf.acct != ^uint64(0) {
		return ErrInvalidPINBlock
	}
	return parsePINField8(hi, Format0, pin)
}

// DecodeClear checks a clear block of format f (see EncodeClear) and returns
// its PIN. A malformed block is ErrInvalidPINBlock whatever the fault; a bad
// PAN (formats 0 and 3) is ErrInvalidPAN. It never panics on any input.
func DecodeClear(f Format, block []byte, pan string) (SecretPIN, error) {
	var pin SecretPIN
	err := decodeClear(f, block, pan, &pin)
	return pin, err
}

func decodeClear(f Format, block []byte, pan string, pin *SecretPIN) error {
	if !f.Valid() {
		return fmt.Errorf("%w: %d", ErrUnsupportedFormat, int(f))
	}
	if len(block) != f.BlockSize() {
		return ErrInvalidPINBlock
	}
	if f.iso4() {
		return parsePINField16(binary.BigEndian.Uint64(block), pin)
	}
	var pf panFields
	if f == Format0 || f == Format3 || f == Format0SM4 {
		if err := pf.set(pan); err != nil {
			return err
		}
	}
	if f == Format0SM4 {
		return parsePINField0SM4(binary.BigEndian.Uint64(block), binary.BigEndian.Uint64(block[8:]), &pf, pin)
	}
	return parsePINField8(binary.BigEndian.Uint64(block)^pf.acct, f, pin)
}

// checkKeyFor refuses a key whose algorithm does not fit format f.
func checkKeyFor(f Format, k Key) (cipher.Block, error) {
	want := f.Algorithm()
	if want == "" {
		if !f.Valid() {
			return nil, fmt.Errorf("%w: %d", ErrUnsupportedFormat, int(f))
		}
		return nil, fmt.Errorf("%w: format 2 blocks are never enciphered", ErrForbiddenTranslation)
	}
	if k.Algorithm() != want {
		return nil, fmt.Errorf("%w: %s key %s for %s", ErrKeyAlgorithmMismatch, k.Algorithm(), k.ID(), f)
	}
	return k.blockCipher()
}

// encipherInto builds pin's block in format f (0, 1, 3 or 4) for the PAN of
// pf and enciphers it under b into w[:f.BlockSize()]. w is the only working
// space: a cipher.Block method is an interface call, so any buffer handed to
// it escapes to the heap, and working in the caller's output costs no
// allocation. On error w may hold part of a clear PIN field: the caller
// clears it.
func encipherInto(w []byte, f Format, pin *SecretPIN, pf *panFields, b cipher.Block, fill fillFrom) error {
	if f.iso4() {
		hi, err := pinField16(pin)
		if err != nil {
			return err
		}
		if err := fill.read(w[8:16]); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(w, hi)
		encipherField16(w, pf, b)
		return nil
	}
	if f == Format0SM4 {
		hi, lo, err := pinField0SM4(pin, pf)
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint64(w, hi)
		binary.BigEndian.PutUint64(w[8:], lo)
		b.Encrypt(w[:16], w[:16])
		return nil
	}
	v, err := pinField8(f, pin, fill)
	if err != nil {
		return err
	}
	if f == Format0 || f == Format3 {
		v ^= pf.acct
	}
	binary.BigEndian.PutUint64(w, v)
	b.Encrypt(w[:8], w[:8])
	return nil
}

// encipherField16 enciphers the format 4 plain-text PIN field in w[:16] in
// place: E(K, E(K, PIN field) XOR PAN field), E being AES or SM4.
func encipherField16(w []byte, pf *panFields, b cipher.Block) {
	b.Encrypt(w[:16], w[:16])
	subtle.XORBytes(w[:16], w[:16], pf.f4[:])
	b.Encrypt(w[:16], w[:16])
}

// decipherInto deciphers an f block under b, checks it and, when pin is not
// nil, extracts the PIN, using w (at least f.BlockSize() bytes, not overlapping block) as working
// space. Afterwards w holds the clear block: the caller clears or overwrites
// it.
func decipherInto(w []byte, f Format, block []byte, pf *panFields, b cipher.Block, pin *SecretPIN) error {
	if len(block) != f.BlockSize() {
		return ErrInvalidPINBlock
	}
	if f.iso4() {
		b.Decrypt(w[:16], block)
		subtle.XORBytes(w[:16], w[:16], pf.f4[:])
		b.Decrypt(w[:16], w[:16])
		return parsePINField16(binary.BigEndian.Uint64(w), pin)
	}
	if f == Format0SM4 {
		b.Decrypt(w[:16], block)
		return parsePINField0SM4(binary.BigEndian.Uint64(w), binary.BigEndian.Uint64(w[8:]), pf, pin)
	}
	b.Decrypt(w[:8], block)
	v := binary.BigEndian.Uint64(w)
	if f == Format0 || f == Format3 {
		v ^= pf.acct
	}
	return parsePINField8(v, f, pin)
}

// encipher builds pin's block in format f and enciphers it under b into dst
// (f.BlockSize() bytes); rnd nil means crypto/rand. On error dst is cleared.
func encipher(dst []byte, f Format, pin *SecretPIN, pan string, b cipher.Block, rnd io.Reader) error {
	var pf panFields
	if f.usesPAN() {
		if err := pf.set(pan); err != nil {
			return err
		}
	}
	if err := encipherInto(dst, f, pin, &pf, b, fillFrom{r: rnd}); err != nil {
		clear(dst)
		return err
	}
	return nil
}

// decipher deciphers an f block under b, checks it and extracts the PIN. The
// working block comes from a pool and is cleared before it goes back.
func decipher(f Format, block []byte, pan string, b cipher.Block, pin *SecretPIN) error {
	var pf panFields
	if f.usesPAN() {
		if err := pf.set(pan); err != nil {
			return err
		}
	}
	w := scratchPool.Get().(*[16]byte)
	defer func() {
		clear(w[:])
		scratchPool.Put(w)
	}()
	return decipherInto(w[:], f, block, &pf, b, pin)
}

// scratchPool holds the working blocks of decipher (see encipherInto for why
// they cannot live on the stack).
var scratchPool = sync.Pool{New: func() any { return new([16]byte) }}

// Encipher builds pin's block in format f (0, 1, 3 or 4) and enciphers it
// under k, whose algorithm must fit the format (ErrKeyAlgorithmMismatch).
// Format 2 is refused (ErrForbiddenTranslation). Random fill comes from
// crypto/rand. The key's usage is not checked here; the SecurityModule does.
func Encipher(f Format, pin SecretPIN, pan string, k Key) ([]byte, error) {
	defer pin.Zeroize()
	return encipherWith(f, &pin, pan, k, nil)
}

func encipherWith(f Format, pin *SecretPIN, pan string, k Key, rnd io.Reader) ([]byte, error) {
	b, err := checkKeyFor(f, k)
	if err != nil {
		return nil, err
	}
	out := make([]byte, f.BlockSize())
	if err := encipher(out, f, pin, pan, b, rnd); err != nil {
		return nil, err
	}
	return out, nil
}

// Decipher deciphers an f block under k, checks it and returns the PIN. A
// block that does not check out is ErrInvalidPINBlock, never saying why.
func Decipher(f Format, block []byte, pan string, k Key) (SecretPIN, error) {
	var pin SecretPIN
	b, err := checkKeyFor(f, k)
	if err != nil {
		return pin, err
	}
	err = decipher(f, block, pan, b, &pin)
	return pin, err
}
