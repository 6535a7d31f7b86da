package pinblock

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

// SoftwareModule is a SecurityModule that holds its keys in a Keyring in
// process memory. It is for development, test and simulation only: PCI PIN
// expects production translation inside an approved HSM (see doc.go).
type SoftwareModule struct {
	ring   *Keyring
	policy PINPolicy
	rnd    io.Reader // generated keys; nil: crypto/rand
	fill   fillFrom  // random fill of PIN blocks: rnd, or a fillSource over crypto/rand
	now    func() time.Time
	mail   moduleMailing // PIN mailer printer and seal key (generate.go)
}

var _ SecurityModule = (*SoftwareModule)(nil)

// NewSoftwareModule returns a module over ring. policy is applied when a
// PairRequest sets CheckNewPIN. rnd is the source of random fill and generated
// keys; nil means crypto/rand (tests pass a fixed reader to reproduce published
// vectors). With rnd nil, PIN-block fill is read from crypto/rand in 512-byte
// chunks through a per-module buffer (see fillSource); keys are always read
// from crypto/rand directly. The module does not own ring: the caller zeroizes
// it on shutdown.
func NewSoftwareModule(ring *Keyring, policy PINPolicy, rnd io.Reader) *SoftwareModule {
	m := &SoftwareModule{ring: ring, policy: policy, rnd: rnd, fill: fillFrom{r: rnd}, now: time.Now}
	if rnd == nil {
		m.fill = fillFrom{src: newFillSource()}
	}
	return m
}

// fillSource is a buffered reader over crypto/rand for PIN-block fill: one
// crypto/rand read per fillChunk bytes instead of one per block (a format 4
// block takes 8 bytes; the system call cost more than the four AES
// operations around it). Bytes are handed out once, in order, and cleared in
// the buffer as they are handed out, so the fill stays as unpredictable as
// crypto/rand itself and no used fill lingers. Safe for concurrent use.
type fillSource struct {
	mu  sync.Mutex
	off int // next unread byte of buf; len(buf) means empty
	buf [fillChunk]byte
}

const fillChunk = 512

func newFillSource() *fillSource { return &fillSource{off: fillChunk} }

// Read fills p completely; it never fails (crypto/rand never does, Go 1.24+).
func (s *fillSource) Read(p []byte) (int, error) {
	s.take(p)
	return len(p), nil
}

// take fills p completely.
func (s *fillSource) take(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n := 0; n < len(p); {
		if s.off == len(s.buf) {
			_, _ = rand.Read(s.buf[:])
			s.off = 0
		}
		c := copy(p[n:], s.buf[s.off:])
		clear(s.buf[s.off : s.off+c])
		s.off += c
		n += c
	}
}

// word is the next 8 bytes as a big-endian word.
func (s *fillSource) word() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf)-s.off < 8 {
		// fillChunk is a multiple of 8 and every draw on the translation
		// path is 8 bytes, so this drops at most the tail of an odd read.
		_, _ = rand.Read(s.buf[:])
		s.off = 0
	}
	w := binary.BigEndian.Uint64(s.buf[s.off:])
	clear(s.buf[s.off : s.off+8])
	s.off += 8
	return w
}

// maxVersions bounds the deciphering candidates of one translation; a ring
// rarely holds more than the current and one previous version.
const maxVersions = 4

// resolve fills rk for a translation from one key to another, reading the
// keyring once (one read lock). The deciphering candidates are the exact
// version if from names one, else the current version and the previous ones
// still in their grace window. Every key must be a PIN key (ErrKeyUsage)
// whose algorithm fits its format (ErrKeyAlgorithmMismatch). Errors about
// from come before errors about to.
func (m *SoftwareModule) resolve(rk *routeKeys, r Route) error {
	from, to := r.From, r.To
	fromErr, toErr := m.ring.translationKeys(rk, from, to, m.now)
	if fromErr != nil {
		return fromErr
	}
	for _, k := range rk.from[:rk.nfrom] {
		if !k.Usage().PINKey() {
			return fmt.Errorf("%w: %s key %s cannot decipher PIN blocks", ErrKeyUsage, k.Usage(), k.ID())
		}
	}
	if toErr != nil {
		return toErr
	}
	if !rk.to.Usage().PINKey() {
		return fmt.Errorf("%w: %s key %s cannot encipher PIN blocks", ErrKeyUsage, rk.to.Usage(), rk.to.ID())
	}
	return rk.checkFor(r.FromFormat, r.ToFormat)
}

// encipherKey resolves the enciphering key for ref, which must be a PIN key.
func (m *SoftwareModule) encipherKey(ref KeyRef) (Key, error) {
	k, err := m.ring.Lookup(ref, m.now())
	if err != nil {
		return Key{}, err
	}
	if !k.Usage().PINKey() {
		return Key{}, fmt.Errorf("%w: %s key %s cannot encipher PIN blocks", ErrKeyUsage, k.Usage(), k.ID())
	}
	return k, nil
}

// Translate deciphers req.Block under req.From, checks it, and re-enciphers it
// under req.To in req.ToFormat, enforcing PCI PIN 3-3 and the key usages (both
// keys ZPK or TPK, else ErrKeyUsage). When req.From.Version is 0 and a rotation
// is in its grace window, a block that does not check out under the current
// version is tried under the previous ones. The result is a new slice. Errors
// are those of translatePair plus ErrUnknownKey, ErrKeyExpired and ctx.Err().
func (m *SoftwareModule) Translate(ctx context.Context, req TranslateRequest) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTranslation(req.FromFormat, req.ToFormat); err != nil {
		return nil, err
	}
	var keys routeKeys
	job := pairJob{pan: req.PAN, old: req.Block, fromFormat: req.FromFormat, toFormat: req.ToFormat, fill: m.fill}
	if err := m.resolve(&keys, Route{From: req.From, FromFormat: req.FromFormat, To: req.To, ToFormat: req.ToFormat}); err != nil {
		return nil, err
	}
	if req.Block == nil {
		return nil, fmt.Errorf("%w: no block", ErrInvalidPINBlock)
	}
	out, _, err := translateTo(&job, &keys, nil)
	return out, err
}

// TranslatePair translates the old and new blocks of one operation in one
// call, with the same rules as Translate; both blocks must decipher under the
// same key version. A nil block in the request gives a nil block back; both
// nil is ErrInvalidPINBlock. With req.CheckNewPIN, a new PIN refused by the
// module's PINPolicy (or equal to the old one, if the policy says so) is
// ErrNewPINRejected and nothing is returned.
func (m *SoftwareModule) TranslatePair(ctx context.Context, req PairRequest) (oldOut, newOut []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := checkTranslation(req.FromFormat, req.ToFormat); err != nil {
		return nil, nil, err
	}
	var keys routeKeys
	job := pairJob{
		pan: req.PAN, old: req.Old, new: req.New, fromFormat: req.FromFormat, toFormat: req.ToFormat, fill: m.fill,
	}
	if err := m.resolve(&keys, Route{From: req.From, FromFormat: req.FromFormat, To: req.To, ToFormat: req.ToFormat}); err != nil {
		return nil, nil, err
	}
	if req.CheckNewPIN {
		job.policy = &m.policy
	}
	return translateTo(&job, &keys, nil) // one allocation for both results
}

// Import deciphers req.Enciphered under the ZMK req.ZMK (which must have
// usage ZMK), checks the result against req.KCV (required), and adds it to the
// ring as version 1 of req.ID, or with req.Rotate as the next version of the
// ID the ring holds (ErrUnknownKey if none; ErrKeyUsage or
// ErrKeyAlgorithmMismatch if usage or algorithm differ from the current
// version's).
//
// The key is enciphered under a TDES ZMK with TDES-ECB (each 8-byte block on
// its own), as Thales and most interchange agreements do. Under an AES ZMK it
// is wrapped with AES Key Wrap (NIST SP 800-38F KW, RFC 3394): ECB over a
// padded key would leak equal halves and has no integrity check, while KW
// authenticates the key and fits every key length that is a multiple of 8.
// Under an SM4 ZMK it is SM4-ECB, as Chinese bank sign-on messages deliver
// SM4 working keys: a 16-byte key is one SM4 block, so ECB leaks nothing
// about equal halves (testdata/sm4-vectors.json, "csdn-104625499").
// Who and Why are not recorded here: custody logging wraps the module.
func (m *SoftwareModule) Import(ctx context.Context, req ImportRequest) (KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, err
	}
	if req.KCV == "" && req.KeyBlock == "" {
		return KeyInfo{}, fmt.Errorf("%w: import %s: no KCV given", ErrKCVMismatch, req.ID)
	}
	if req.KeyBlock != "" && req.Enciphered != nil {
		return KeyInfo{}, fmt.Errorf("%w: import %s: give a key block or an enciphered key, not both", ErrInvalidKey, req.ID)
	}
	zmk, err := m.ring.Lookup(req.ZMK, m.now())
	if err != nil {
		return KeyInfo{}, err
	}
	if zmk.Usage() != UsageZMK {
		return KeyInfo{}, fmt.Errorf("%w: import %s: %s key %s is not a ZMK", ErrKeyUsage, req.ID, zmk.Usage(), zmk.ID())
	}
	if err := zmk.Permits(OpUnwrap); err != nil {
		return KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if req.KeyBlock != "" {
		return m.importKeyBlock(req, zmk)
	}
	version := 1
	var cur Key
	if req.Rotate {
		if cur, err = m.ring.Lookup(KeyRef{ID: req.ID}, m.now()); err != nil {
			return KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
		}
		version = cur.Version() + 1
	}
	k, err := UnwrapKey(zmk, req.ID, req.Usage, req.Algorithm, version, req.Enciphered)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if cur.k != nil {
		// A key enciphered under a ZMK carries no mode of use: the new
		// version keeps the current one's, so a rotation never widens it.
		k.k.mode = cur.k.mode
	}
	if err := k.CheckKCV(req.KCV); err != nil {
		k.Zeroize()
		return KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if req.Rotate {
		err = m.ring.Rotate(k, m.now())
	} else {
		err = m.ring.Add(k)
	}
	if err != nil {
		k.Zeroize()
		return KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	return m.info(k), nil
}

// importKeyBlock is Import of a TR-31 key block under zmk (UnwrapKeyBlock):
// the block's MAC must verify, its key usage permit req.Usage, and the ZMK be
// at least as strong as the key it carries (ErrWeakKEK).
func (m *SoftwareModule) importKeyBlock(req ImportRequest, zmk Key) (KeyInfo, error) {
	version := 1
	if req.Rotate {
		cur, err := m.ring.Lookup(KeyRef{ID: req.ID}, m.now())
		if err != nil {
			return KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
		}
		version = cur.Version() + 1
	}
	k, _, err := UnwrapKeyBlock(zmk, req.KeyBlock, UnwrapOptions{ID: req.ID, Version: version, Usage: req.Usage})
	if err != nil {
		return KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	fail := func(err error) (KeyInfo, error) {
		k.Zeroize()
		return KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if req.Algorithm != "" && k.Algorithm() != req.Algorithm {
		return fail(fmt.Errorf("%w: key block carries %s, want %s", ErrKeyAlgorithmMismatch, k.Algorithm(), req.Algorithm))
	}
	if err := CheckKEKStrength(zmk, k); err != nil {
		return fail(err)
	}
	if req.KCV != "" {
		if err := k.CheckKCV(req.KCV); err != nil {
			return fail(err)
		}
	}
	if req.Rotate {
		err = m.ring.Rotate(k, m.now())
	} else {
		err = m.ring.Add(k)
	}
	if err != nil {
		return fail(err)
	}
	return m.info(k), nil
}

func (m *SoftwareModule) info(k Key) KeyInfo {
	for _, i := range m.ring.List() {
		if i.ID == k.ID() && i.Version == k.Version() {
			return i
		}
	}
	return KeyInfo{ID: k.ID(), Usage: k.Usage(), Algorithm: k.Algorithm(), Length: k.Len(), Version: k.Version(), KCV: k.KCV()}
}

// ecbDecrypt deciphers in block by block; the length must be a multiple of
// the block size.
func ecbDecrypt(b cipher.Block, in []byte) ([]byte, error) {
	bs := b.BlockSize()
	if len(in) == 0 || len(in)%bs != 0 {
		return nil, fmt.Errorf("%w: enciphered key length %d is not a multiple of %d", ErrInvalidKey, len(in), bs)
	}
	out := make([]byte, len(in))
	for i := 0; i < len(in); i += bs {
		b.Decrypt(out[i:i+bs], in[i:i+bs])
	}
	return out, nil
}

// kwIV is the default initial value of RFC 3394 §2.2.3.1.
var kwIV = [8]byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// aesKeyUnwrap is the KW-AD function of NIST SP 800-38F (RFC 3394 §2.2.2,
// index-based form). A wrapped key that fails the integrity check is
// ErrInvalidKey.
func aesKeyUnwrap(b cipher.Block, in []byte) ([]byte, error) {
	if len(in) < 24 || len(in)%8 != 0 {
		return nil, fmt.Errorf("%w: wrapped key length %d", ErrInvalidKey, len(in))
	}
	n := len(in)/8 - 1
	var a, blk [16]byte
	defer clear(blk[:])
	copy(a[:8], in[:8])
	r := make([]byte, 8*n)
	copy(r, in[8:])
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			for s := 0; s < 8; s++ {
				a[s] ^= byte(t >> (56 - 8*s))
			}
			copy(blk[:8], a[:8])
			copy(blk[8:], r[(i-1)*8:i*8])
			b.Decrypt(blk[:], blk[:])
			copy(a[:8], blk[:8])
			copy(r[(i-1)*8:i*8], blk[8:])
		}
	}
	if subtle.ConstantTimeCompare(a[:8], kwIV[:]) != 1 {
		clear(r)
		return nil, fmt.Errorf("%w: key unwrap integrity check failed", ErrInvalidKey)
	}
	return r, nil
}

// aesKeyWrap is the KW-AE function of NIST SP 800-38F (RFC 3394 §2.2.1); it
// is the inverse of aesKeyUnwrap, used by tests and simulators.
func aesKeyWrap(b cipher.Block, key []byte) ([]byte, error) {
	if len(key) < 16 || len(key)%8 != 0 {
		return nil, fmt.Errorf("%w: key length %d cannot be wrapped", ErrInvalidKey, len(key))
	}
	n := len(key) / 8
	out := make([]byte, 8*(n+1))
	copy(out[:8], kwIV[:])
	copy(out[8:], key)
	var blk [16]byte
	defer clear(blk[:])
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			copy(blk[:8], out[:8])
			copy(blk[8:], out[8*i:8*i+8])
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			copy(out[:8], blk[:8])
			for s := 0; s < 8; s++ {
				out[s] ^= byte(t >> (56 - 8*s))
			}
			copy(out[8*i:8*i+8], blk[8:])
		}
	}
	return out, nil
}

// Generate makes a random key of the given usage, algorithm and length in
// bytes (TDES 16 or 24, with odd DES parity; AES 16, 24 or 32; SM4 16) and adds it to
// the ring as version 1 of id (ErrKeyExists if id is held). Only its KeyInfo
// comes back; the bytes stay in the module.
func (m *SoftwareModule) Generate(ctx context.Context, id string, usage Usage, alg Algorithm, length int) (KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, err
	}
	k, err := m.newRandomKey(id, usage, alg, 1, length)
	if err != nil {
		return KeyInfo{}, err
	}
	if err := m.ring.Add(k); err != nil {
		k.Zeroize()
		return KeyInfo{}, err
	}
	return m.info(k), nil
}

func (m *SoftwareModule) newRandomKey(id string, usage Usage, alg Algorithm, version, length int) (Key, error) {
	switch {
	case alg == TDES && (length == 16 || length == 24):
	case alg == AES && (length == 16 || length == 24 || length == 32):
	case alg == SM4 && length == 16:
	default:
		return Key{}, fmt.Errorf("%w: generate %s: %s key of %d bytes", ErrInvalidKey, id, alg, length)
	}
	raw, err := RandomKeyMaterial(m.rnd, alg, length)
	if err != nil {
		return Key{}, err
	}
	defer clear(raw)
	return NewKey(id, usage, alg, version, raw)
}

// weakTDES reports a 16- or 24-byte TDES key whose adjacent 8-byte parts are
// equal (K1 = K2, or K2 = K3), comparing in constant time and ignoring the
// parity bits DES does not use: encrypt-decrypt-encrypt then cancels to
// single DES. NewKey refuses such keys.
func weakTDES(k []byte) bool {
	var p [24]byte
	defer clear(p[:])
	n := copy(p[:], k)
	for i := range p[:n] {
		p[i] &^= 1
	}
	weak := subtle.ConstantTimeCompare(p[:8], p[8:16])
	if n == 24 {
		weak |= subtle.ConstantTimeCompare(p[8:16], p[16:24])
	}
	return weak == 1
}

// KCV returns the check value of a held key (6 hex digits for TDES, 10 for
// AES, 16 for SM4).
func (m *SoftwareModule) KCV(ctx context.Context, ref KeyRef) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	k, err := m.ring.Lookup(ref, m.now())
	if err != nil {
		return "", err
	}
	return k.KCV(), nil
}
