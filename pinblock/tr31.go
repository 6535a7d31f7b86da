package pinblock

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// TR-31 / ANSI X9.143 key blocks.
//
// A key block is printable ASCII: a header (version, length, key usage,
// algorithm, mode of use, key version number, exportability, optional
// blocks), the enciphered key field in hex, and a MAC in hex. Versions B
// (TDES key derivation binding, TDES-CMAC, 8-byte MAC) and D (AES key
// derivation binding, AES-CMAC, 16-byte MAC) are wrapped and unwrapped;
// versions A and C (the key variant binding of TR-31:2005/2010, 4-byte CBC-MAC)
// are unwrapped only, to import keys from older peers.

// Errors that callers branch on. Every key block error wraps ErrKeyBlock;
// ErrKeyBlockMAC means the block is well formed but was not made under the
// key offered (or was altered). Messages never echo key bytes, the enciphered
// key field or the MAC.
var (
	ErrKeyBlock    = errors.New("invalid TR-31 key block")
	ErrKeyBlockMAC = fmt.Errorf("%w: MAC does not verify", ErrKeyBlock)
)

// Key block version identifiers.
const (
	KeyBlockVersionA byte = 'A' // TDES key variant binding (unwrap only)
	KeyBlockVersionB byte = 'B' // TDES key derivation binding
	KeyBlockVersionC byte = 'C' // TDES key variant binding, 2010 (unwrap only)
	KeyBlockVersionD byte = 'D' // AES key derivation binding
)

// maxKeyBlockLen is the largest length the 4-digit length field can carry.
const maxKeyBlockLen = 9999

// OptionalBlock is one optional header block: a two-character ID and
// printable-ASCII data. IDs starting with a digit are proprietary.
type OptionalBlock struct {
	ID   string
	Data string
}

// KeyBlockHeader is the clear, authenticated header of a TR-31 key block.
// ParseKeyBlockHeader fills Length from the block; WrapKeyBlock computes it
// and ignores the value given. The "PB" pad block is not kept in Optional:
// WrapKeyBlock adds one when the header needs padding.
type KeyBlockHeader struct {
	Version       byte   // 'A', 'B', 'C' or 'D'
	Length        int    // total key block length in characters
	KeyUsage      string // two characters, e.g. "P0" PIN encryption, "K0" key encryption
	Algorithm     byte   // 'T' TDES, 'A' AES, '4' SM4 (pingate's code, see TR31AlgorithmSM4; 'D' DES, 'H' HMAC, 'R' RSA, ... are parsed but not unwrapped)
	ModeOfUse     byte   // e.g. 'B' both, 'E' encrypt only, 'D' decrypt only, 'C' MAC both, 'N' none
	KeyVersion    string // two characters; "00" when not used
	Exportability byte   // 'E' exportable, 'N' not exportable, 'S' sensitive
	Optional      []OptionalBlock
}

// String renders the header as it appears at the head of a key block, with
// the length field as held in h.Length and no pad block. It carries no secret.
func (h KeyBlockHeader) String() string {
	s, _ := h.render(h.Length, 0)
	return s
}

// Usage maps the TR-31 key usage to pingate's: P0 → ZPK, K0 and K1 → ZMK,
// M0–M8 → TAK, V0–V4 → PVK. Any other usage (D0 data keys, B0 BDKs, C0 card
// verification keys, ...) has no pingate usage and is ErrKeyUsage. A P0 key
// may equally be imported as a TPK; see UsageAllowed.
func (h KeyBlockHeader) Usage() (Usage, error) {
	u := h.KeyUsage
	switch {
	case u == "P0":
		return UsageZPK, nil
	case u == "K0" || u == "K1":
		return UsageZMK, nil
	case len(u) == 2 && u[0] == 'M' && u[1] >= '0' && u[1] <= '8':
		return UsageTAK, nil
	case len(u) == 2 && u[0] == 'V' && u[1] >= '0' && u[1] <= '4':
		return UsagePVK, nil
	}
	return "", fmt.Errorf("%w: TR-31 key usage %q has no pingate usage", ErrKeyUsage, safeField(u))
}

// UsageAllowed reports whether the block's TR-31 key usage permits pingate
// usage u: the mapped usage, or TPK for a P0 block.
func (h KeyBlockHeader) UsageAllowed(u Usage) bool {
	m, err := h.Usage()
	if err != nil {
		return false
	}
	return m == u || (m == UsageZPK && u == UsageTPK)
}

// TR31AlgorithmSM4 is the header algorithm byte pingate writes for an SM4
// key. ANSI X9.143 and TR-31:2018 assign SM4 no code; pingate uses '4',
// which they do not assign either, so its SM4 blocks (under the LMK in the
// key store, or exported) are read only by pingate and peers that agree.
// No key block version is protected by an SM4 KBPK (X9.143 defines none):
// wrapping or unwrapping under an SM4 key is ErrKeyBlock.
const TR31AlgorithmSM4 byte = '4'

// NewKeyBlockHeader returns the header pingate uses to wrap k under kbpk:
// version B for a TDES KBPK, D for an AES one; the TR-31 key usage for k's
// usage (ZPK/TPK → P0, ZMK → K0, TAK → M3 or M6, PVK → V2 or V0) and k's
// own mode of use (Key.ModeOfUse: the mode its block arrived with; for a key
// that came another way B, or C for a TAK or PVK); key
// version number "00"; exportable only under a KEK ('E'). An LMK is never
// wrapped (ErrKeyUsage).
func NewKeyBlockHeader(k, kbpk Key) (KeyBlockHeader, error) {
	h := KeyBlockHeader{KeyVersion: "00", Exportability: 'E'}
	switch kbpk.Algorithm() {
	case TDES:
		h.Version = KeyBlockVersionB
	case AES:
		h.Version = KeyBlockVersionD
	case SM4:
		return h, fmt.Errorf("%w: no key block version is protected by an SM4 key (%s)", ErrKeyBlock, kbpk.ID())
	default:
		return h, fmt.Errorf("%w: KBPK not loaded", ErrInvalidKey)
	}
	switch k.Algorithm() {
	case TDES:
		h.Algorithm = 'T'
	case AES:
		h.Algorithm = 'A'
	case SM4:
		h.Algorithm = TR31AlgorithmSM4
	default:
		return h, fmt.Errorf("%w: key not loaded", ErrInvalidKey)
	}
	switch k.Usage() {
	case UsageZPK, UsageTPK:
		h.KeyUsage, h.ModeOfUse = "P0", byte(k.ModeOfUse())
	case UsageZMK:
		h.KeyUsage, h.ModeOfUse = "K0", byte(k.ModeOfUse())
	case UsageTAK:
		h.KeyUsage, h.ModeOfUse = "M3", byte(k.ModeOfUse()) // ISO 9797-1 MAC algorithm 3
		if k.Algorithm() == AES {
			h.KeyUsage = "M6" // ISO 9797-1:2011 MAC algorithm 5 (CMAC)
		}
	case UsagePVK:
		h.KeyUsage, h.ModeOfUse = "V2", byte(k.ModeOfUse()) // Visa PVV
		if k.Algorithm() == AES {
			h.KeyUsage = "V0"
		}
	default:
		return h, fmt.Errorf("%w: a %s key is not wrapped in a key block", ErrKeyUsage, k.Usage())
	}
	return h, nil
}

// ParseKeyBlockHeader parses and checks the header of a key block without
// deciphering anything: the version, that the length field matches the
// block, every fixed field, and the optional blocks. The error never repeats
// the block.
func ParseKeyBlockHeader(block string) (KeyBlockHeader, error) {
	h, _, err := parseHeader(block)
	return h, err
}

// parseHeader returns the header and its length in characters.
func parseHeader(block string) (KeyBlockHeader, int, error) {
	var h KeyBlockHeader
	if len(block) < 16 {
		return h, 0, fmt.Errorf("%w: %d characters, a header alone is 16", ErrKeyBlock, len(block))
	}
	for i := 0; i < len(block); i++ {
		if block[i] < 0x20 || block[i] > 0x7e {
			return h, 0, fmt.Errorf("%w: non-printable character at offset %d", ErrKeyBlock, i)
		}
	}
	h.Version = block[0]
	switch h.Version {
	case KeyBlockVersionA, KeyBlockVersionB, KeyBlockVersionC, KeyBlockVersionD:
	default:
		return h, 0, fmt.Errorf("%w: unsupported version %q", ErrKeyBlock, safeField(block[:1]))
	}
	n, ok := digits(block[1:5])
	if !ok {
		return h, 0, fmt.Errorf("%w: length field is not 4 digits", ErrKeyBlock)
	}
	if n != len(block) {
		return h, 0, fmt.Errorf("%w: length field says %d, block has %d characters", ErrKeyBlock, n, len(block))
	}
	h.Length = n
	h.KeyUsage = block[5:7]
	h.Algorithm = block[7]
	h.ModeOfUse = block[8]
	h.KeyVersion = block[9:11]
	h.Exportability = block[11]
	if !alnum(h.KeyUsage) {
		return h, 0, fmt.Errorf("%w: key usage %q is not 2 alphanumerics", ErrKeyBlock, safeField(h.KeyUsage))
	}
	if !alnum(string(h.Algorithm)) {
		return h, 0, fmt.Errorf("%w: algorithm %q is not alphanumeric", ErrKeyBlock, safeField(block[7:8]))
	}
	if !alnum(string(h.ModeOfUse)) {
		return h, 0, fmt.Errorf("%w: mode of use %q is not alphanumeric", ErrKeyBlock, safeField(block[8:9]))
	}
	if !alnum(h.KeyVersion) {
		return h, 0, fmt.Errorf("%w: key version number %q is not 2 alphanumerics", ErrKeyBlock, safeField(h.KeyVersion))
	}
	switch h.Exportability {
	case 'E', 'N', 'S':
	default:
		return h, 0, fmt.Errorf("%w: exportability %q is not E, N or S", ErrKeyBlock, safeField(block[11:12]))
	}
	count, ok := digits(block[12:14])
	if !ok {
		return h, 0, fmt.Errorf("%w: optional block count is not 2 digits", ErrKeyBlock)
	}
	if block[14:16] != "00" {
		return h, 0, fmt.Errorf("%w: reserved field is not 00", ErrKeyBlock)
	}
	pos := 16
	for i := 0; i < count; i++ {
		ob, next, err := parseOptional(block, pos, i+1)
		if err != nil {
			return h, 0, err
		}
		pos = next
		if ob.ID == "PB" {
			continue
		}
		h.Optional = append(h.Optional, ob)
	}
	return h, pos, nil
}

// parseOptional parses optional block number n starting at pos.
func parseOptional(block string, pos, n int) (OptionalBlock, int, error) {
	rest := block[pos:]
	if len(rest) < 4 {
		return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %d truncated", ErrKeyBlock, n)
	}
	id := rest[:2]
	if !alnum(id) {
		return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %d: ID %q is not 2 alphanumerics", ErrKeyBlock, n, safeField(id))
	}
	l, ok := hexNum(rest[2:4])
	if !ok {
		return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %s: length is not 2 hex digits", ErrKeyBlock, id)
	}
	hdr := 4
	if l == 0 { // extended length: 2 hex digits giving the byte count of the length that follows
		if len(rest) < 6 {
			return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %s: extended length truncated", ErrKeyBlock, id)
		}
		ll, ok := hexNum(rest[4:6])
		if !ok || ll == 0 || ll > 2 {
			return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %s: extended length-of-length must be 01 or 02", ErrKeyBlock, id)
		}
		if len(rest) < 6+2*ll {
			return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %s: extended length truncated", ErrKeyBlock, id)
		}
		l, ok = hexNum(rest[6 : 6+2*ll])
		if !ok {
			return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %s: extended length is not hex", ErrKeyBlock, id)
		}
		hdr = 6 + 2*ll
	}
	if l < hdr {
		return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %s: length %d is shorter than its own ID and length", ErrKeyBlock, id, l)
	}
	if l > len(rest) {
		return OptionalBlock{}, 0, fmt.Errorf("%w: optional block %s: length %d runs past the block", ErrKeyBlock, id, l)
	}
	return OptionalBlock{ID: id, Data: rest[hdr:l]}, pos + l, nil
}

// render builds the header text for a block of total length total, padded
// with a PB block to a multiple of bs when bs > 0.
func (h KeyBlockHeader) render(total, bs int) (string, error) {
	var b strings.Builder
	count := len(h.Optional)
	var opt strings.Builder
	for _, ob := range h.Optional {
		if len(ob.ID) != 2 || !alnum(ob.ID) || ob.ID == "PB" {
			return "", fmt.Errorf("%w: optional block ID %q is not 2 alphanumerics (PB is added by wrap)", ErrKeyBlock, safeField(ob.ID))
		}
		for i := 0; i < len(ob.Data); i++ {
			if ob.Data[i] < 0x20 || ob.Data[i] > 0x7e {
				return "", fmt.Errorf("%w: optional block %s: data is not printable ASCII", ErrKeyBlock, ob.ID)
			}
		}
		writeOptional(&opt, ob)
	}
	if bs > 0 {
		if r := (16 + opt.Len()) % bs; r != 0 {
			pad := bs - r
			if pad < 4 {
				pad += bs
			}
			writeOptional(&opt, OptionalBlock{ID: "PB", Data: strings.Repeat("0", pad-4)})
			count++
		}
	}
	if count > 99 {
		return "", fmt.Errorf("%w: %d optional blocks, at most 99", ErrKeyBlock, count)
	}
	fmt.Fprintf(&b, "%c%04d%-2.2s%c%c%-2.2s%c%02d00", h.Version, total%10000, h.KeyUsage, h.Algorithm, h.ModeOfUse, h.KeyVersion, h.Exportability, count)
	b.WriteString(opt.String())
	return b.String(), nil
}

func writeOptional(b *strings.Builder, ob OptionalBlock) {
	if l := 4 + len(ob.Data); l <= 0xff {
		fmt.Fprintf(b, "%s%02X%s", ob.ID, l, ob.Data)
		return
	}
	fmt.Fprintf(b, "%s0002%04X%s", ob.ID, 10+len(ob.Data), ob.Data)
}

// kbParams are the per-version sizes.
func kbParams(v byte) (bs, macLen int) {
	switch v {
	case KeyBlockVersionD:
		return 16, 16
	case KeyBlockVersionB:
		return 8, 8
	default: // A, C
		return 8, 4
	}
}

// UnwrapOptions names the key an unwrapped block becomes.
type UnwrapOptions struct {
	ID      string
	Version int
	// Usage is the pingate usage to give the key; empty means the one the
	// block's TR-31 key usage maps to (KeyBlockHeader.Usage). A usage the
	// block does not permit is ErrKeyUsage.
	Usage Usage
}

// UnwrapKeyBlock verifies block under the key block protection key kbpk (a
// ZMK or the LMK) and returns the key it carries with its header. The MAC is
// checked in constant time before the key is used; a block made under another
// key, or altered, is ErrKeyBlockMAC. A block whose key version number
// marks a key component ("c1", "c2", ...) is ErrKeyBlock: a component is not
// a key. The key keeps the block's mode of use (Key.ModeOfUse); a PIN key or
// ZMK whose mode is not B, D, E or N is ErrModeOfUse. Versions A, B, C and D
// are accepted;
// the key must be TDES ('T', 16 or 24 bytes) or AES ('A', 16, 24 or 32
// bytes). The clear key bytes are zeroized before returning.
func UnwrapKeyBlock(kbpk Key, block string, opt UnwrapOptions) (Key, KeyBlockHeader, error) {
	h, raw, err := unwrapKeyBlock(kbpk, block)
	if err != nil {
		return Key{}, h, err
	}
	defer clear(raw)
	if h.KeyVersion[0] == 'c' {
		// TR-31:2018 A.5.4, ANSI X9.143 6.2: a key version number "cN"
		// marks the block's key as component N of a key, not the key.
		return Key{}, h, fmt.Errorf("%w: key version number %s: the block carries a key component, not a key (combine components with key combine)", ErrKeyBlock, safeField(h.KeyVersion))
	}
	u := opt.Usage
	if u == "" {
		if u, err = h.Usage(); err != nil {
			return Key{}, h, err
		}
	} else if !h.UsageAllowed(u) {
		return Key{}, h, fmt.Errorf("%w: TR-31 key usage %s does not permit %s", ErrKeyUsage, h.KeyUsage, u)
	}
	if err := errModeForUsage(ModeOfUse(h.ModeOfUse), u); err != nil {
		return Key{}, h, err
	}
	alg, err := h.keyAlgorithm()
	if err != nil {
		return Key{}, h, err
	}
	k, err := NewKey(opt.ID, u, alg, opt.Version, raw)
	if err != nil {
		return Key{}, h, fmt.Errorf("%w: %w", ErrKeyBlock, err)
	}
	k.k.mode = ModeOfUse(h.ModeOfUse) // before k is shared
	if err := h.checkKCVBlocks(k, kbpk); err != nil {
		k.Zeroize()
		return Key{}, h, err
	}
	return k, h, nil
}

// checkKCVBlocks verifies the optional blocks KC (check value of the wrapped
// key) and KP (check value of the KBPK), when present (ANSI X9.143:2021
// 6.3.6.7 and 6.3.6.12; TR-31:2018 A.5.8): two hex digits naming the KCV
// algorithm — 00 the legacy one, the leftmost bytes of E(K, 0); 01 the
// CMAC-based one, the leftmost bytes of CMAC(K, 0) — then the check value in
// hex, 2 to 5 bytes. A check value that does not match is ErrKCVMismatch: a
// block whose MAC verifies but whose declared key differs from the one it
// carries was built wrong, and is refused.
func (h KeyBlockHeader) checkKCVBlocks(k, kbpk Key) error {
	for _, ob := range h.Optional {
		var of Key
		switch ob.ID {
		case "KC":
			of = k
		case "KP":
			of = kbpk
		default:
			continue
		}
		if err := checkKCVBlock(ob, of); err != nil {
			return err
		}
	}
	return nil
}

func checkKCVBlock(ob OptionalBlock, k Key) error {
	d := strings.ToUpper(ob.Data)
	n := len(d) - 2
	if _, isHex := hexNum(d); n < 4 || n > 10 || n%2 != 0 || !isHex {
		return fmt.Errorf("%w: optional block %s: want a 2-digit KCV algorithm and a 2- to 5-byte check value in hex", ErrKeyBlock, ob.ID)
	}
	b, err := k.blockCipher()
	if err != nil {
		return err
	}
	var kcv []byte
	switch d[:2] {
	case "00":
		kcv = make([]byte, b.BlockSize())
		b.Encrypt(kcv, kcv)
	case "01":
		kcv = cmac(b, make([]byte, b.BlockSize()))
	default:
		return fmt.Errorf("%w: optional block %s: KCV algorithm %s is neither 00 (legacy) nor 01 (CMAC)", ErrKeyBlock, ob.ID, d[:2])
	}
	want := strings.ToUpper(hex.EncodeToString(kcv[:n/2]))
	if subtle.ConstantTimeCompare([]byte(want), []byte(d[2:])) != 1 {
		return fmt.Errorf("%w: optional block %s does not match key %s", ErrKCVMismatch, ob.ID, k.ID())
	}
	return nil
}

func (h KeyBlockHeader) keyAlgorithm() (Algorithm, error) {
	switch h.Algorithm {
	case 'T':
		return TDES, nil
	case 'A':
		return AES, nil
	case TR31AlgorithmSM4:
		return SM4, nil
	}
	return "", fmt.Errorf("%w: key algorithm %q is not T, A or 4 (SM4)", ErrKeyBlock, safeField(string(h.Algorithm)))
}

// unwrapKeyBlock returns the header and the clear key bytes; the caller
// clears them.
func unwrapKeyBlock(kbpk Key, block string) (KeyBlockHeader, []byte, error) {
	h, hl, err := parseHeader(block)
	if err != nil {
		return h, nil, err
	}
	if u := kbpk.Usage(); u != UsageZMK && u != UsageLMK {
		return h, nil, fmt.Errorf("%w: KBPK %s is a %s, not a key-encrypting key", ErrKeyUsage, kbpk.ID(), u)
	}
	bs, macLen := kbParams(h.Version)
	if want := kbpkAlgorithm(h.Version); kbpk.Algorithm() != want {
		return h, nil, fmt.Errorf("%w: version %c needs a %s KBPK, %s is %s", ErrKeyBlock, h.Version, want, kbpk.ID(), kbpk.Algorithm())
	}
	if hl%bs != 0 {
		return h, nil, fmt.Errorf("%w: header length %d is not a multiple of %d", ErrKeyBlock, hl, bs)
	}
	body := block[hl:]
	encLen := len(body) - 2*macLen
	if encLen <= 0 || encLen%(2*bs) != 0 {
		return h, nil, fmt.Errorf("%w: enciphered key field of %d characters is not a positive multiple of %d", ErrKeyBlock, max(encLen, 0), 2*bs)
	}
	enc, err := hex.DecodeString(body[:encLen])
	if err != nil {
		return h, nil, fmt.Errorf("%w: enciphered key field is not hexadecimal", ErrKeyBlock)
	}
	mac, err := hex.DecodeString(body[encLen:])
	if err != nil {
		return h, nil, fmt.Errorf("%w: MAC is not hexadecimal", ErrKeyBlock)
	}
	header := []byte(block[:hl])

	var payload []byte
	switch h.Version {
	case KeyBlockVersionB, KeyBlockVersionD:
		kbek, kbak, err := deriveKeyBlockKeys(kbpk)
		if err != nil {
			return h, nil, err
		}
		payload = make([]byte, len(enc))
		cipher.NewCBCDecrypter(kbek, mac).CryptBlocks(payload, enc)
		want := cmac(kbak, append(header, payload...))
		if subtle.ConstantTimeCompare(want, mac) != 1 {
			clear(payload)
			return h, nil, ErrKeyBlockMAC
		}
	default: // A, C: MAC over header and enciphered field, then decipher
		kbek, kbak, err := variantKeyBlockKeys(kbpk)
		if err != nil {
			return h, nil, err
		}
		want := cbcMAC(kbak, append(header, enc...))[:macLen]
		if subtle.ConstantTimeCompare(want, mac) != 1 {
			return h, nil, ErrKeyBlockMAC
		}
		payload = make([]byte, len(enc))
		cipher.NewCBCDecrypter(kbek, header[:8]).CryptBlocks(payload, enc)
	}
	bits := int(payload[0])<<8 | int(payload[1])
	n := bits / 8
	if bits%8 != 0 || n == 0 || n > len(payload)-2 {
		clear(payload)
		return h, nil, fmt.Errorf("%w: deciphered key length field is invalid", ErrKeyBlock)
	}
	raw := append([]byte(nil), payload[2:2+n]...)
	clear(payload)
	return h, raw, nil
}

// WrapKeyBlock enciphers k under kbpk as a TR-31 key block with header h
// (version B for a TDES KBPK, D for an AES one; see NewKeyBlockHeader). The
// key field is padded with random bytes to the KBPK's length when the key is
// shorter, so the block does not reveal the key length. h.Length is ignored.
// A TDES key wrapped under version B may not be longer than the KBPK, and an
// AES key cannot be wrapped under version B.
func WrapKeyBlock(kbpk Key, h KeyBlockHeader, k Key) (string, error) {
	raw, err := keyBytes(k)
	if err != nil {
		return "", err
	}
	defer clear(raw)
	alg, err := h.keyAlgorithm()
	if err != nil {
		return "", err
	}
	if alg != k.Algorithm() {
		return "", fmt.Errorf("%w: header algorithm %c does not match key %s (%s)", ErrKeyBlock, h.Algorithm, k.ID(), k.Algorithm())
	}
	return wrapKeyBlock(kbpk, h, raw, max(len(raw), kbpk.Len()), rand.Reader)
}

// wrapKeyBlock is WrapKeyBlock on raw bytes, masking the key to maskedLen
// bytes and reading padding from rnd (tests pass the published padding).
func wrapKeyBlock(kbpk Key, h KeyBlockHeader, raw []byte, maskedLen int, rnd io.Reader) (string, error) {
	if u := kbpk.Usage(); u != UsageZMK && u != UsageLMK {
		return "", fmt.Errorf("%w: KBPK %s is a %s, not a key-encrypting key", ErrKeyUsage, kbpk.ID(), u)
	}
	switch h.Version {
	case KeyBlockVersionB, KeyBlockVersionD:
	default:
		return "", fmt.Errorf("%w: wrap supports versions B and D, not %q", ErrKeyBlock, safeField(string(h.Version)))
	}
	if want := kbpkAlgorithm(h.Version); kbpk.Algorithm() != want {
		return "", fmt.Errorf("%w: version %c needs a %s KBPK, %s is %s", ErrKeyBlock, h.Version, want, kbpk.ID(), kbpk.Algorithm())
	}
	if h.Version == KeyBlockVersionB && (h.Algorithm != 'T' || len(raw) > kbpk.Len()) {
		return "", fmt.Errorf("%w: version B wraps TDES keys no longer than the KBPK", ErrKeyBlock)
	}
	if !alnum(h.KeyUsage) || len(h.KeyUsage) != 2 || !alnum(h.KeyVersion) || len(h.KeyVersion) != 2 ||
		!alnum(string(h.ModeOfUse)) || !alnum(string(h.Algorithm)) {
		return "", fmt.Errorf("%w: header fields must be alphanumeric", ErrKeyBlock)
	}
	switch h.Exportability {
	case 'E', 'N', 'S':
	default:
		return "", fmt.Errorf("%w: exportability must be E, N or S", ErrKeyBlock)
	}
	bs, macLen := kbParams(h.Version)
	plen := 2 + max(len(raw), maskedLen)
	plen += (bs - plen%bs) % bs
	hdr, err := h.render(0, bs)
	if err != nil {
		return "", err
	}
	total := len(hdr) + 2*plen + 2*macLen
	if total > maxKeyBlockLen {
		return "", fmt.Errorf("%w: block of %d characters exceeds %d", ErrKeyBlock, total, maxKeyBlockLen)
	}
	if hdr, err = h.render(total, bs); err != nil {
		return "", err
	}

	payload := make([]byte, plen)
	defer clear(payload)
	payload[0], payload[1] = byte(len(raw)*8>>8), byte(len(raw)*8)
	copy(payload[2:], raw)
	if _, err := io.ReadFull(rnd, payload[2+len(raw):]); err != nil {
		return "", fmt.Errorf("%w: random padding: %w", ErrKeyBlock, err)
	}
	kbek, kbak, err := deriveKeyBlockKeys(kbpk)
	if err != nil {
		return "", err
	}
	mac := cmac(kbak, append([]byte(hdr), payload...))
	enc := make([]byte, plen)
	cipher.NewCBCEncrypter(kbek, mac).CryptBlocks(enc, payload)
	return hdr + strings.ToUpper(hex.EncodeToString(enc)) + strings.ToUpper(hex.EncodeToString(mac)), nil
}

func kbpkAlgorithm(v byte) Algorithm {
	if v == KeyBlockVersionD {
		return AES
	}
	return TDES
}

// deriveKeyBlockKeys derives the key block encryption and authentication keys
// from kbpk with the CMAC-based KDF of TR-31:2018 (NIST SP 800-108 counter
// mode): CMAC(KBPK, counter ‖ usage ‖ 00 ‖ algorithm ‖ length), usage 0000
// for the KBEK and 0001 for the KBAK, as many counters as the KBPK length
// needs.
func deriveKeyBlockKeys(kbpk Key) (kbek, kbak cipher.Block, err error) {
	b, err := kbpk.blockCipher()
	if err != nil {
		return nil, nil, err
	}
	var alg, bits uint16
	n := kbpk.Len()
	switch {
	case kbpk.Algorithm() == TDES && n == 16:
		alg, bits = 0, 128
	case kbpk.Algorithm() == TDES && n == 24:
		alg, bits = 1, 192
	case kbpk.Algorithm() == AES && n == 16:
		alg, bits = 2, 128
	case kbpk.Algorithm() == AES && n == 24:
		alg, bits = 3, 192
	case kbpk.Algorithm() == AES && n == 32:
		alg, bits = 4, 256
	default:
		return nil, nil, fmt.Errorf("%w: KBPK %s has an unsupported length", ErrKeyBlock, kbpk.ID())
	}
	derive := func(usage uint16) (cipher.Block, error) {
		// One buffer, sized up front, so that no partial copy of the derived
		// key is left behind by a growing append; every copy is cleared.
		out := make([]byte, 0, n+b.BlockSize())
		defer func() { clear(out[:cap(out)]) }()
		for i := byte(1); len(out) < n; i++ {
			in := []byte{i, byte(usage >> 8), byte(usage), 0, byte(alg >> 8), byte(alg), byte(bits >> 8), byte(bits)}
			blk := cmac(b, in)
			out = append(out, blk...)
			clear(blk)
		}
		if kbpk.Algorithm() == AES {
			return aes.NewCipher(out[:n])
		}
		return tripleDESCipher(out[:n])
	}
	if kbek, err = derive(0); err != nil {
		return nil, nil, fmt.Errorf("%w: derive KBEK: %w", ErrKeyBlock, err)
	}
	if kbak, err = derive(1); err != nil {
		return nil, nil, fmt.Errorf("%w: derive KBAK: %w", ErrKeyBlock, err)
	}
	return kbek, kbak, nil
}

// variantKeyBlockKeys are the version A/C keys: the KBPK XOR 0x45 (KBEK) and
// XOR 0x4D (KBAK) in every byte.
func variantKeyBlockKeys(kbpk Key) (kbek, kbak cipher.Block, err error) {
	k, err := keyBytes(kbpk)
	if err != nil {
		return nil, nil, err
	}
	raw := expandTDES(k)
	clear(k)
	defer clear(raw)
	v := make([]byte, len(raw))
	defer clear(v)
	for i := range raw {
		v[i] = raw[i] ^ 0x45
	}
	if kbek, err = des.NewTripleDESCipher(v); err != nil {
		return nil, nil, fmt.Errorf("%w: KBPK %s: %w", ErrKeyBlock, kbpk.ID(), err)
	}
	for i := range raw {
		v[i] = raw[i] ^ 0x4d
	}
	if kbak, err = des.NewTripleDESCipher(v); err != nil {
		return nil, nil, fmt.Errorf("%w: KBPK %s: %w", ErrKeyBlock, kbpk.ID(), err)
	}
	return kbek, kbak, nil
}

// expandTDES returns a new 24-byte TDES key from a 16-byte (K1 K2 → K1 K2
// K1) or 24-byte one, built in one allocation the caller clears.
func expandTDES(k []byte) []byte {
	out := make([]byte, 24)
	copy(out, k)
	if len(k) == 16 {
		copy(out[16:], k[:8])
	}
	return out
}

// tripleDESCipher is des.NewTripleDESCipher for a 16- or 24-byte key,
// clearing its expanded copy of the key.
func tripleDESCipher(k []byte) (cipher.Block, error) {
	k24 := expandTDES(k)
	defer clear(k24)
	return des.NewTripleDESCipher(k24)
}

// cbcMAC is the ISO 9797-1 MAC algorithm 1 (CBC-MAC, zero IV) over msg,
// whose length is a multiple of the block size.
func cbcMAC(b cipher.Block, msg []byte) []byte {
	x := make([]byte, b.BlockSize())
	for i := 0; i+len(x) <= len(msg); i += len(x) {
		subtle.XORBytes(x, x, msg[i:i+len(x)])
		b.Encrypt(x, x)
	}
	return x
}

// keyBytes returns a copy of k's bytes for the cipher code of this package;
// the caller clears it.
func keyBytes(k Key) ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("%w: key %s not loaded or zeroized", ErrInvalidKey, k.ID())
	}
	return append([]byte(nil), k.k.material[:k.Len()]...), nil
}

func digits(s string) (int, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func hexNum(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		n = n<<4 | int(d)
	}
	return n, true
}

func alnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// safeField quotes a short header field for an error message. Header fields
// are clear, authenticated attributes, never key material; anything
// non-printable is replaced so a message stays one clean line.
func safeField(s string) string {
	if len(s) > 4 {
		s = s[:4]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
