package pinblock

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/emmansun/gmsm/sm4"
)

// Usage says what a key may be used for. A key is refused for any other use.
type Usage string

// Key usages, named as in ANSI X9.24 and the Thales payShield key types.
const (
	UsageZMK Usage = "ZMK" // zone master key: enciphers keys exchanged with another zone
	UsageZPK Usage = "ZPK" // zone PIN key: enciphers PIN blocks between zones
	UsageTPK Usage = "TPK" // terminal PIN key: enciphers PIN blocks from a terminal
	UsageTAK Usage = "TAK" // terminal authentication key: MACs
	UsagePVK Usage = "PVK" // PIN verification key: PVV / keyed PIN hashes
	UsageLMK Usage = "LMK" // local master key: enciphers keys at rest
)

// Valid reports whether u is one of the known usages.
func (u Usage) Valid() bool {
	switch u {
	case UsageZMK, UsageZPK, UsageTPK, UsageTAK, UsagePVK, UsageLMK:
		return true
	}
	return false
}

// PINKey reports whether u may encipher PIN blocks.
func (u Usage) PINKey() bool { return u == UsageZPK || u == UsageTPK }

// Algorithm is the block cipher a key belongs to.
type Algorithm string

// Algorithms.
const (
	TDES Algorithm = "tdes" // double- or triple-length TDES (16 or 24 bytes)
	AES  Algorithm = "aes"  // AES-128, -192 or -256
	// SM4 is the Chinese national block cipher (GB/T 32907-2016): 128-bit
	// key, 128-bit block. GB/T 21078.4-2023 (the Chinese adoption of ISO
	// 9564-2) approves it for PIN encipherment beside TDES and AES.
	SM4 Algorithm = "sm4"
)

// ParseAlgorithm accepts "tdes" / "3des" / "des3", "aes" and "sm4", in any
// case.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToLower(s) {
	case "tdes", "3des", "des3", "tdea":
		return TDES, nil
	case "aes":
		return AES, nil
	case "sm4":
		return SM4, nil
	}
	return "", fmt.Errorf("%w: unknown algorithm %q", ErrInvalidKey, s)
}

// Errors that callers branch on.
var (
	// ErrInvalidKey: key material of the wrong length or parity, an unknown usage or algorithm.
	ErrInvalidKey = errors.New("invalid key")
	// ErrKCVMismatch: a key's check value differs from the expected one.
	ErrKCVMismatch = errors.New("key check value mismatch")
	// ErrKeyUsage: a key was offered for a use its usage forbids.
	ErrKeyUsage = errors.New("key usage not permitted")
)

// Key is a cipher key under custody. Its bytes cannot be printed, logged or
// marshalled: every formatting path shows only the key id, usage, version and
// KCV. The zero Key is not usable.
//
// The bytes live behind a pointer to an unexported struct, like os.File, so a
// copy of Key shares them and Zeroize on any copy clears them for all.
type Key struct {
	k *key
}

type key struct {
	id       string
	usage    Usage
	alg      Algorithm
	version  int
	n        int // key length in bytes, kept after Zeroize
	material []byte
	// block is the cipher expanded once (a TDES key schedule costs about six
	// translations). It is atomic because Zeroize may run (a keyring removal or
	// pruning) while another goroutine is translating with the same key.
	block atomic.Pointer[cipher.Block]
	kcv   string
	// mode is the TR-31 mode of use the key's block carried; zero for a
	// key that came another way (see ModeOfUse). Set before the key is
	// shared, never changed after.
	mode ModeOfUse
}

// NewKey copies material into a new key. TDES keys must be 16 or 24 bytes and
// AES keys 16, 24 or 32. DES parity is not enforced (many published test keys
// ignore it), but a TDES key whose adjacent 8-byte parts are equal (K1 = K2,
// or K2 = K3 in a triple-length key), parity bits ignored, is refused: EDE
// then cancels to single DES under the remaining part. SM4 keys are 16 bytes;
// the cipher is github.com/emmansun/gmsm/sm4 (constant-time, assembly on
// amd64 and arm64).
func NewKey(id string, usage Usage, alg Algorithm, version int, material []byte) (Key, error) {
	if id == "" {
		return Key{}, fmt.Errorf("%w: empty key id", ErrInvalidKey)
	}
	if !usage.Valid() {
		return Key{}, fmt.Errorf("%w: key %s: unknown usage %q", ErrInvalidKey, id, usage)
	}
	// Room for the K1 K2 K1 expansion of a double-length TDES key, so that
	// the append below does not leave an uncleared copy of the key behind.
	m := make([]byte, len(material), max(len(material), 24))
	copy(m, material)
	var (
		b   cipher.Block
		err error
	)
	switch alg {
	case TDES:
		if len(m) != 16 && len(m) != 24 {
			clear(m)
			return Key{}, fmt.Errorf("%w: key %s: TDES key must be 16 or 24 bytes, got %d", ErrInvalidKey, id, len(material))
		}
		if weakTDES(m) {
			clear(m)
			return Key{}, fmt.Errorf("%w: key %s: TDES key degenerates to single DES (equal 8-byte parts)", ErrInvalidKey, id)
		}
		if len(m) == 16 {
			m = append(m, m[:8]...) // K1 K2 K1
		}
		b, err = des.NewTripleDESCipher(m)
		m = m[:len(material)]
	case AES:
		b, err = aes.NewCipher(m)
	case SM4:
		if len(m) != sm4.BlockSize {
			clear(m)
			return Key{}, fmt.Errorf("%w: key %s: SM4 key must be 16 bytes, got %d", ErrInvalidKey, id, len(material))
		}
		b, err = sm4.NewCipher(m)
	default:
		clear(m)
		return Key{}, fmt.Errorf("%w: key %s: unknown algorithm %q", ErrInvalidKey, id, alg)
	}
	if err != nil {
		clear(m)
		return Key{}, fmt.Errorf("%w: key %s: wrong length", ErrInvalidKey, id)
	}
	k := &key{id: id, usage: usage, alg: alg, version: version, n: len(m), material: m}
	k.block.Store(&b)
	k.kcv = computeKCV(alg, b)
	return Key{k}, nil
}

// ParseHexKey decodes a hex key; the error never repeats the input.
func ParseHexKey(id string, usage Usage, alg Algorithm, version int, hexKey string) (Key, error) {
	raw, err := hex.DecodeString(strings.TrimSpace(hexKey))
	if err != nil {
		return Key{}, fmt.Errorf("%w: key %s: not hexadecimal", ErrInvalidKey, id)
	}
	defer clear(raw)
	return NewKey(id, usage, alg, version, raw)
}

// computeKCV: TDES = leftmost 3 bytes of E(K, 0^8); AES = leftmost 5 bytes of
// AES-CMAC(K, 0^16) (ANSI X9.24-1:2017, ASC X9 TR 31); SM4 = leftmost 8
// bytes of SM4(K, 0^16), the check value Chinese bank sign-on messages and
// PIN pads carry with an SM4 working key (see SM4KCVLength).
func computeKCV(alg Algorithm, b cipher.Block) string {
	switch alg {
	case AES:
		mac := cmac(b, make([]byte, 16))
		return strings.ToUpper(hex.EncodeToString(mac[:5]))
	case SM4:
		out := make([]byte, 16)
		b.Encrypt(out, out)
		return strings.ToUpper(hex.EncodeToString(out[:SM4KCVLength]))
	}
	out := make([]byte, 8)
	b.Encrypt(out, make([]byte, 8))
	return strings.ToUpper(hex.EncodeToString(out[:3]))
}

// Valid reports whether k holds key material.
func (k Key) Valid() bool { return k.k != nil && k.k.block.Load() != nil }

// ID is the key's label.
func (k Key) ID() string {
	if k.k == nil {
		return ""
	}
	return k.k.id
}

// Usage is what the key may be used for.
func (k Key) Usage() Usage {
	if k.k == nil {
		return ""
	}
	return k.k.usage
}

// Algorithm is the key's cipher.
func (k Key) Algorithm() Algorithm {
	if k.k == nil {
		return ""
	}
	return k.k.alg
}

// Version is the key's version within its id; rotation increments it.
func (k Key) Version() int {
	if k.k == nil {
		return 0
	}
	return k.k.version
}

// Len is the key length in bytes.
func (k Key) Len() int {
	if k.k == nil {
		return 0
	}
	return k.k.n
}

// SM4KCVLength is the length in bytes of an SM4 key's check value: the
// leftmost 8 bytes of SM4(K, 0¹⁶). That is the check value a published
// Chinese bank PIN pad integration example carries with an SM4 working key
// at sign-on (testdata/sm4-vectors.json, "csdn-104625499"); GB/T 32907-2016
// itself defines no check value. CheckKCV also accepts its leading 4 bytes
// (8 hex digits), the shortest form peers quote.
const SM4KCVLength = 8

// KCV is the key check value in upper-case hex (6 digits for TDES, 10 for
// AES, 16 for SM4).
func (k Key) KCV() string {
	if k.k == nil {
		return ""
	}
	return k.k.kcv
}

// CheckKCV compares want with the key's KCV in constant time; case is ignored.
func (k Key) CheckKCV(want string) error {
	if !k.Valid() {
		return fmt.Errorf("%w: key not loaded", ErrInvalidKey)
	}
	got := k.KCV()
	w := strings.ToUpper(strings.TrimSpace(want))
	// A TDES KCV is sometimes quoted with 4 or 6 digits, an AES one with 6 or
	// 10, an SM4 one with 8 or 16.
	least := 4
	if k.Algorithm() == SM4 {
		least = 8
	}
	if len(w) < least || len(w) > len(got) {
		return fmt.Errorf("%w: key %s", ErrKCVMismatch, k.ID())
	}
	if subtle.ConstantTimeCompare([]byte(got[:len(w)]), []byte(w)) != 1 {
		return fmt.Errorf("%w: key %s", ErrKCVMismatch, k.ID())
	}
	return nil
}

// String shows the key as id, usage, version and KCV: never its bytes.
func (k Key) String() string {
	if k.k == nil {
		return "key(none)"
	}
	return fmt.Sprintf("key(%s %s v%d kcv=%s)", k.k.id, k.k.usage, k.k.version, k.k.kcv)
}

// Format makes every fmt verb, %x and %#v included, print String.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// GoString keeps %#v from reaching the fields.
func (k Key) GoString() string { return k.String() }

// LogValue shows the key in slog as id, usage, version and KCV.
func (k Key) LogValue() slog.Value {
	if k.k == nil {
		return slog.StringValue("none")
	}
	return slog.GroupValue(
		slog.String("id", k.k.id),
		slog.String("usage", string(k.k.usage)),
		slog.Int("version", k.k.version),
		slog.String("kcv", k.k.kcv),
	)
}

// ErrMarshalKey is returned by every attempt to marshal a Key.
var ErrMarshalKey = errors.New("pinblock: a key cannot be marshalled; store it enciphered under the LMK")

// MarshalJSON refuses: key bytes never leave in JSON.
func (k Key) MarshalJSON() ([]byte, error) { return nil, ErrMarshalKey }

// MarshalText refuses as well, so encoders that prefer text cannot leak it.
func (k Key) MarshalText() ([]byte, error) { return nil, ErrMarshalKey }

// Zeroize overwrites the key bytes and drops the expanded cipher, for every
// copy of k. It is safe to call while another goroutine uses the key: an
// operation that already holds the expanded cipher finishes, later ones get
// ErrInvalidKey. It is best-effort: the Go runtime may have copied the bytes
// (the cipher's own key schedule, earlier stack frames) where we cannot reach
// them. Only the first call clears the bytes; later calls do nothing.
func (k Key) Zeroize() {
	if k.k == nil {
		return
	}
	if k.k.block.Swap(nil) == nil {
		return // already zeroized; material is cleared by the call that won
	}
	// The full capacity: a double-length TDES key keeps its K1 K2 K1 expansion
	// behind the 16 visible bytes.
	clear(k.k.material[:cap(k.k.material)])
}

// blockCipher is the expanded cipher for use inside this package only.
func (k Key) blockCipher() (cipher.Block, error) {
	if k.k != nil {
		if b := k.k.block.Load(); b != nil {
			return *b, nil
		}
	}
	return nil, fmt.Errorf("%w: key %s not loaded or zeroized", ErrInvalidKey, k.ID())
}

// cmac is AES-CMAC / TDES-CMAC (NIST SP 800-38B) over msg.
func cmac(b cipher.Block, msg []byte) []byte {
	bs := b.BlockSize()
	rb := byte(0x87)
	if bs == 8 {
		rb = 0x1b
	}
	l := make([]byte, bs)
	b.Encrypt(l, l)
	k1 := shiftLeft(l, rb)
	k2 := shiftLeft(k1, rb)

	n := (len(msg) + bs - 1) / bs
	complete := n > 0 && len(msg)%bs == 0
	if n == 0 {
		n = 1
	}
	last := make([]byte, bs)
	tail := msg[(n-1)*bs:]
	if complete {
		subtle.XORBytes(last, tail, k1)
	} else {
		copy(last, tail)
		last[len(tail)] = 0x80
		subtle.XORBytes(last, last, k2)
	}
	x := make([]byte, bs)
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x, x, msg[i*bs:(i+1)*bs])
		b.Encrypt(x, x)
	}
	subtle.XORBytes(x, x, last)
	b.Encrypt(x, x)
	return x
}

func shiftLeft(in []byte, rb byte) []byte {
	out := make([]byte, len(in))
	var carry byte
	for i := len(in) - 1; i >= 0; i-- {
		out[i] = in[i]<<1 | carry
		carry = in[i] >> 7
	}
	if carry != 0 {
		out[len(out)-1] ^= rb
	}
	return out
}
