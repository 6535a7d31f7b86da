package pinblock

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
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

// Valid reports whether f is one of the ISO 9564-1 formats 0–4.
func (f Format) Valid() bool { return f >= Format0 && f <= Format4 }

// BlockSize is the length in bytes of an f block: 16 for format 4 (AES),
// 8 otherwise; 0 for an unknown format.
func (f Format) BlockSize() int {
	switch {
	case f == Format4:
		return 16
	case f.Valid():
		return 8
	}
	return 0
}

// Algorithm is the cipher that enciphers f blocks: AES for format 4, TDES for
// 0, 1 and 3; "" for format 2, which is never enciphered for interchange.
func (f Format) Algorithm() Algorithm {
	switch f {
	case Format0, Format1, Format3:
		return TDES
	case Format4:
		return AES
	}
	return ""
}

// String is "ISO-n".
func (f Format) String() string { return fmt.Sprintf("ISO-%d", int(f)) }

// ParseFormat accepts "0"–"4" (optionally prefixed "ISO-" or "iso"); the error
// names the value, which is not secret.
func ParseFormat(s string) (Format, error) {
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

// accountField returns the 12 account digits formats 0 and 3 use: the 12
// rightmost PAN digits excluding the check digit, left-padded with '0'.
func accountField(pan string) (acct [12]byte, err error) {
	if err := checkPAN(pan); err != nil {
		return acct, err
	}
	body := pan[:len(pan)-1] // drop the check digit
	if len(body) > 12 {
		body = body[len(body)-12:]
	}
	for i := range acct {
		acct[i] = '0'
	}
	copy(acct[12-len(body):], body)
	return acct, nil
}

// panField8 is the format 0/3 PAN field: 0000 followed by the 12 account digits.
func panField8(dst *[8]byte, acct *[12]byte) {
	dst[0], dst[1] = 0, 0
	for i := 0; i < 6; i++ {
		dst[2+i] = (acct[2*i]-'0')<<4 | (acct[2*i+1] - '0')
	}
}

// panField16 is the format 4 PAN field: M (PAN length − 12, 0 below 12), the
// PAN right-justified in at least 12 digits (left-padded with 0), then 0s to
// 32 nibbles.
func panField16(dst *[16]byte, pan string) error {
	if err := checkPAN(pan); err != nil {
		return err
	}
	*dst = [16]byte{}
	m := max(len(pan)-12, 0)
	// nibble 0 is M; the PAN occupies nibbles 1 .. 12+m, right-justified, so
	// PAN digit i is nibble start+i. dst is zero, so each digit is ORed in.
	dst[0] = byte(m) << 4
	start := 1 + 12 + m - len(pan)
	for i := 0; i < len(pan); i++ {
		k := start + i
		dst[k>>1] |= (pan[i] - '0') << (4 * (1 - k&1))
	}
	return nil
}

func setNibble(b []byte, i int, v byte) {
	if i%2 == 0 {
		b[i/2] = b[i/2]&0x0F | v<<4
	} else {
		b[i/2] = b[i/2]&0xF0 | v&0x0F
	}
}

func nibble(b []byte, i int) byte {
	if i%2 == 0 {
		return b[i/2] >> 4
	}
	return b[i/2] & 0x0F
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

// pinField8 writes the 8-byte PIN field of formats 0–3: control nibble, length,
// PIN digits, then fill: F for formats 0 and 2, random 0–F for format 1,
// random A–F for format 3. Random nibbles come from rnd in order (for format 3
// nibbles below A are skipped, so the fill is uniform over A–F), read into r,
// which the caller clears.
func pinField8(dst *[8]byte, f Format, pin *SecretPIN, rnd io.Reader, r *[8]byte) error {
	n := pin.Len()
	if n < MinPINLength || n > MaxPINLength {
		return fmt.Errorf("%w: must be %d to %d digits", ErrInvalidPIN, MinPINLength, MaxPINLength)
	}
	var fill [16]byte // fill nibbles, positions 2+n .. 15
	defer clear(fill[:])
	need := 14 - n
	switch f {
	case Format0, Format2:
		for i := range need {
			fill[i] = 0xF
		}
	case Format1:
		if err := readFill(rnd, r[:]); err != nil {
			return err
		}
		for i := range need {
			fill[i] = nibble(r[:], i)
		}
	case Format3:
		got := 0
		for got < need {
			if err := readFill(rnd, r[:]); err != nil {
				return err
			}
			for i := 0; i < 16 && got < need; i++ {
				if v := nibble(r[:], i); v >= 0xA {
					fill[got] = v
					got++
				}
			}
		}
	default:
		return fmt.Errorf("%w: %d", ErrUnsupportedFormat, int(f))
	}
	setNibble(dst[:], 0, byte(f))
	setNibble(dst[:], 1, byte(n))
	for i, c := range pin.digits() {
		setNibble(dst[:], 2+i, c-'0')
	}
	for i := range need {
		setNibble(dst[:], 2+n+i, fill[i])
	}
	return nil
}

// parsePINField8 checks an 8-byte PIN field of format f (already XORed with
// the PAN field for formats 0 and 3) and extracts the PIN into pin. Any fault
// — control nibble, length, a non-digit PIN nibble, a wrong fill — is
// ErrInvalidPINBlock, without saying which.
func parsePINField8(src *[8]byte, f Format, pin *SecretPIN) error {
	n := int(nibble(src[:], 1))
	ok := int(nibble(src[:], 0)) == int(f) && n >= MinPINLength && n <= MaxPINLength
	if !ok {
		return ErrInvalidPINBlock
	}
	bad := 0
	for i := range n {
		v := nibble(src[:], 2+i)
		bad |= boolInt(v > 9)
		pin.d[i] = '0' + v
	}
	for i := 2 + n; i < 16; i++ {
		v := nibble(src[:], i)
		switch f {
		case Format0, Format2:
			bad |= boolInt(v != 0xF)
		case Format3:
			bad |= boolInt(v < 0xA)
		}
	}
	if bad != 0 {
		pin.Zeroize()
		return ErrInvalidPINBlock
	}
	pin.n = uint8(n)
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pinField16 writes the format 4 plain-text PIN field: 4, length, PIN, fill A
// to nibble 16, then 8 random bytes from rnd.
func pinField16(dst *[16]byte, pin *SecretPIN, rnd io.Reader) error {
	n := pin.Len()
	if n < MinPINLength || n > MaxPINLength {
		return fmt.Errorf("%w: must be %d to %d digits", ErrInvalidPIN, MinPINLength, MaxPINLength)
	}
	if err := readFill(rnd, dst[8:]); err != nil {
		return err
	}
	// Nibbles 0 and 1 are 4 and the length; 2 .. 15 the fill A, over which
	// the PIN digits are written from nibble 2.
	dst[0] = 4<<4 | byte(n)
	for i := 1; i < 8; i++ {
		dst[i] = 0xAA
	}
	for i, c := range pin.digits() {
		k := 2 + i
		sh := 4 * (1 - k&1)
		dst[k>>1] = dst[k>>1]&^(0xF<<sh) | (c-'0')<<sh
	}
	return nil
}

// parsePINField16 checks a format 4 plain-text PIN field and extracts the PIN;
// any fault is ErrInvalidPINBlock. The random half is not checked.
func parsePINField16(src *[16]byte, pin *SecretPIN) error {
	n := int(nibble(src[:], 1))
	if nibble(src[:], 0) != 4 || n < MinPINLength || n > MaxPINLength {
		return ErrInvalidPINBlock
	}
	bad := 0
	for i := range n {
		v := nibble(src[:], 2+i)
		bad |= boolInt(v > 9)
		pin.d[i] = '0' + v
	}
	for i := 2 + n; i < 16; i++ {
		bad |= boolInt(nibble(src[:], i) != 0xA)
	}
	if bad != 0 {
		pin.Zeroize()
		return ErrInvalidPINBlock
	}
	pin.n = uint8(n)
	return nil
}

// EncodeClear builds the clear (not enciphered) block of pin in format f. For
// formats 0–3 that is the 8-byte ISO 9564-1 PIN block (PIN field XOR PAN field
// for 0 and 3); format 1 and 2 ignore pan. For format 4 it is the 16-byte
// plain-text PIN field, since the PAN only enters when enciphering; pan is
// ignored. Random fill comes from crypto/rand. The caller owns the result and
// should clear it after use.
func EncodeClear(f Format, pin SecretPIN, pan string) ([]byte, error) {
	defer pin.Zeroize()
	return encodeClear(f, &pin, pan, nil)
}

func encodeClear(f Format, pin *SecretPIN, pan string, rnd io.Reader) ([]byte, error) {
	s := getScratch()
	defer s.put()
	switch f {
	case Format4:
		if err := pinField16(&s.x, pin, rnd); err != nil {
			return nil, err
		}
		return append([]byte(nil), s.x[:]...), nil
	case Format0, Format3:
		acct, err := accountField(pan)
		if err != nil {
			return nil, err
		}
		cb, p := (*[8]byte)(s.x[:8]), (*[8]byte)(s.pan[:8])
		if err := pinField8(cb, f, pin, rnd, &s.rnd); err != nil {
			return nil, err
		}
		panField8(p, &acct)
		subtle.XORBytes(cb[:], cb[:], p[:])
		return append([]byte(nil), cb[:]...), nil
	case Format1, Format2:
		cb := (*[8]byte)(s.x[:8])
		if err := pinField8(cb, f, pin, rnd, &s.rnd); err != nil {
			return nil, err
		}
		return append([]byte(nil), cb[:]...), nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnsupportedFormat, int(f))
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
	if f == Format4 {
		var b [16]byte
		defer clear(b[:])
		copy(b[:], block)
		return parsePINField16(&b, pin)
	}
	var b [8]byte
	defer clear(b[:])
	copy(b[:], block)
	if f == Format0 || f == Format3 {
		acct, err := accountField(pan)
		if err != nil {
			return err
		}
		var p [8]byte
		panField8(&p, &acct)
		subtle.XORBytes(b[:], b[:], p[:])
	}
	return parsePINField8(&b, f, pin)
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

// blockScratch is the working space of encipher and decipher. The
// cipher.Block methods are interface calls, so every buffer handed to them
// escapes to the heap: kept on the stack, the intermediate blocks cost one
// allocation each per call. A pooled scratch costs none. put clears it before
// it goes back to the pool (best-effort zeroization, like every buffer here).
type blockScratch struct {
	x   [16]byte // the block being enciphered or deciphered
	pan [16]byte // the PAN field
	rnd [8]byte  // random bytes of the format 1 and 3 fill
}

var scratchPool = sync.Pool{New: func() any { return new(blockScratch) }}

func getScratch() *blockScratch { return scratchPool.Get().(*blockScratch) }

// put clears s and returns it to the pool; s must not be used afterwards.
func (s *blockScratch) put() {
	*s = blockScratch{}
	scratchPool.Put(s)
}

// encipher builds pin's block in format f and enciphers it under b into dst
// (f.BlockSize() bytes). All intermediate buffers are cleared.
func encipher(dst []byte, f Format, pin *SecretPIN, pan string, b cipher.Block, rnd io.Reader) error {
	s := getScratch()
	defer s.put()
	return encipherIn(dst, f, pin, pan, b, rnd, s)
}

// decipher deciphers an f block under b, checks it and extracts the PIN. All
// intermediate buffers are cleared.
func decipher(f Format, block []byte, pan string, b cipher.Block, pin *SecretPIN) error {
	s := getScratch()
	defer s.put()
	return decipherIn(f, block, pan, b, pin, s)
}

// encipherIn is encipher working in s, which the caller clears (put): a
// translation uses one scratch for all its cipher calls.
func encipherIn(dst []byte, f Format, pin *SecretPIN, pan string, b cipher.Block, rnd io.Reader, s *blockScratch) error {
	if f == Format4 {
		if err := panField16(&s.pan, pan); err != nil {
			return err
		}
		if err := pinField16(&s.x, pin, rnd); err != nil {
			return err
		}
		// E(K, E(K, PIN field) XOR PAN field)
		b.Encrypt(s.x[:], s.x[:])
		subtle.XORBytes(s.x[:], s.x[:], s.pan[:])
		b.Encrypt(dst[:16], s.x[:])
		return nil
	}
	cb := (*[8]byte)(s.x[:8])
	if err := pinField8(cb, f, pin, rnd, &s.rnd); err != nil {
		return err
	}
	if f == Format0 || f == Format3 {
		acct, err := accountField(pan)
		if err != nil {
			return err
		}
		p := (*[8]byte)(s.pan[:8])
		panField8(p, &acct)
		subtle.XORBytes(cb[:], cb[:], p[:])
	}
	b.Encrypt(dst[:8], cb[:])
	return nil
}

// decipherIn is decipher working in s, which the caller clears (put).
func decipherIn(f Format, block []byte, pan string, b cipher.Block, pin *SecretPIN, s *blockScratch) error {
	if len(block) != f.BlockSize() {
		return ErrInvalidPINBlock
	}
	if f == Format4 {
		if err := panField16(&s.pan, pan); err != nil {
			return err
		}
		b.Decrypt(s.x[:], block)
		subtle.XORBytes(s.x[:], s.x[:], s.pan[:])
		b.Decrypt(s.x[:], s.x[:])
		return parsePINField16(&s.x, pin)
	}
	cb := (*[8]byte)(s.x[:8])
	if f == Format0 || f == Format3 {
		acct, err := accountField(pan)
		if err != nil {
			return err
		}
		p := (*[8]byte)(s.pan[:8])
		panField8(p, &acct)
		b.Decrypt(cb[:], block)
		subtle.XORBytes(cb[:], cb[:], p[:])
	} else {
		b.Decrypt(cb[:], block)
	}
	return parsePINField8(cb, f, pin)
}

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
