package hsmsim

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"pingate/pinblock"
)

// testKeyBlockLMK is the published Thales test key-block LMK, a triple-length
// TDES key (rkbalgi/libiso hsm/keyblock/test_key_block_lmk.go). That it is
// the LMK of a payShield running the test key-block LMK is checked in
// keyblock_test.go against key blocks recorded from one in
// softwaregroup-bg/ut-codec-payshield test/config/test.js: their
// authenticators verify under it and the keys they carry have the check
// values the HSM answered.
const testKeyBlockLMK = "0123456789ABCDEF8080808080808080FEDCBA9876543210"

// keyBlockLMKID is the LMK identifier the simulator's key-block LMK has
// (header bytes 14-15 of each key block under it; "%01" in commands).
const keyBlockLMKID = "01"

// kbHeader is the clear header of a Thales key block (key scheme 'S'):
// version '0' (TDES key-block LMK), length, key usage, algorithm, mode of
// use, key version number, exportability, number of optional blocks (the
// simulator writes none) and LMK identifier.
type kbHeader struct {
	Usage  string // e.g. P0 ZPK, 71 TPK, K0 ZMK, V2 PVK, M3 TAK
	Alg    byte   // 'T' TDES
	Mode   byte   // 'B' both, 'E' encrypt, 'D' decrypt, 'N' no restriction, 'C' MAC
	KVN    string // "00"
	Export byte   // 'E', 'N' or 'S'
}

// kbParse reads the header of token (with its 'S'); it checks the length
// field against the token.
func kbParse(tok string) (kbHeader, string, error) {
	if len(tok) < 1+16+16+8 || tok[0] != 'S' || tok[1] != '0' {
		return kbHeader{}, "", errToken
	}
	n, err := strconv.Atoi(tok[2:6])
	if err != nil || n != len(tok)-1 {
		return kbHeader{}, "", errToken
	}
	b := tok[1:]
	if b[12:14] != "00" {
		return kbHeader{}, "", errToken // the simulator takes no optional blocks
	}
	return kbHeader{Usage: b[5:7], Alg: b[7], Mode: b[8], KVN: b[9:11], Export: b[11]}, b[14:16], nil
}

// kbKeys are the key block encryption and authentication keys of kbpk: the
// key variant binding of TR-31 version A/C (every byte XOR 0x45 and 0x4D),
// which is what a payShield's version-0 key blocks verify under (see
// testKeyBlockLMK).
func kbKeys(kbpk []byte) (enc, mac cipher.Block) {
	k := make([]byte, 24)
	copy(k, kbpk)
	if len(kbpk) == 16 {
		copy(k[16:], kbpk[:8])
	}
	defer clear(k)
	e, m := make([]byte, 24), make([]byte, 24)
	defer clear(e)
	defer clear(m)
	for i, c := range k {
		e[i], m[i] = c^0x45, c^0x4D
	}
	return tdesFull(e), tdesFull(m)
}

// cbcMAC4 is the leftmost 4 bytes of the ISO 9797-1 MAC algorithm 1 (CBC-MAC,
// zero IV) of msg, a multiple of 8 bytes long.
func cbcMAC4(b cipher.Block, msg []byte) []byte {
	x := make([]byte, 8)
	for i := 0; i+8 <= len(msg); i += 8 {
		for j := range x {
			x[j] ^= msg[i+j]
		}
		b.Encrypt(x, x)
	}
	return x[:4]
}

// kbWrap enciphers raw under kbpk as a Thales key block with header h and
// LMK identifier lmkID: 'S', the 16-character header, the key field (2-byte
// bit length, key, random padding to a multiple of 8 bytes) TDES-CBC under
// the encryption key with the first 8 header bytes as IV, in hex, and the
// 4-byte CBC-MAC of header and enciphered field under the authentication
// key, in hex.
func kbWrap(kbpk []byte, h kbHeader, lmkID string, raw []byte) string {
	plen := 2 + len(raw)
	plen += (8 - plen%8) % 8
	p := make([]byte, plen)
	defer clear(p)
	p[0], p[1] = byte(len(raw)*8>>8), byte(len(raw)*8)
	copy(p[2:], raw)
	_, _ = rand.Read(p[2+len(raw):])
	total := 16 + 2*plen + 8
	hdr := fmt.Sprintf("0%04d%-2.2s%c%c%-2.2s%c00%-2.2s", total, h.Usage, h.Alg, h.Mode, h.KVN, h.Export, lmkID)
	ek, mk := kbKeys(kbpk)
	enc := make([]byte, plen)
	cipher.NewCBCEncrypter(ek, []byte(hdr[:8])).CryptBlocks(enc, p)
	mac := cbcMAC4(mk, append([]byte(hdr), enc...))
	return "S" + hdr + strings.ToUpper(hex.EncodeToString(enc)+hex.EncodeToString(mac))
}

// kbUnwrap verifies token (a key block under kbpk) and returns its header,
// LMK identifier and the clear key, which the caller clears. A token whose
// authenticator does not verify is errToken.
func kbUnwrap(kbpk []byte, tok string) (kbHeader, string, []byte, error) {
	h, id, err := kbParse(tok)
	if err != nil {
		return h, id, nil, err
	}
	b := tok[1:]
	enc, err := hex.DecodeString(b[16 : len(b)-8])
	if err != nil || len(enc) == 0 || len(enc)%8 != 0 {
		return h, id, nil, errToken
	}
	mac, err := hex.DecodeString(b[len(b)-8:])
	if err != nil {
		return h, id, nil, errToken
	}
	ek, mk := kbKeys(kbpk)
	if got := cbcMAC4(mk, append([]byte(b[:16]), enc...)); string(got) != string(mac) {
		return h, id, nil, errToken
	}
	p := make([]byte, len(enc))
	defer clear(p)
	cipher.NewCBCDecrypter(ek, []byte(b[:8])).CryptBlocks(p, enc)
	bits := int(p[0])<<8 | int(p[1])
	n := bits / 8
	if bits%8 != 0 || n == 0 || n > len(p)-2 {
		return h, id, nil, errToken
	}
	return h, id, append([]byte(nil), p[2:2+n]...), nil
}

// kbUsages are the key block key usages the simulator takes for each role:
// the TR-31 code and the payShield's own (71 TPK, 72 ZPK, 52 ZMK).
var kbUsages = map[string][]string{
	"tpk": {"71", "P0"},
	"zpk": {"P0", "72"},
	"zmk": {"K0", "52"},
}

func usageIs(h kbHeader, role string) bool {
	for _, u := range kbUsages[role] {
		if h.Usage == u {
			return true
		}
	}
	return false
}

// modeAllows reports whether mode of use m permits decrypt (dec) or encrypt.
// It repeats payshield's blockModeAllows on purpose: the simulator shares no
// code with the client it tests.
func modeAllows(m byte, dec bool) bool {
	switch m {
	case 'B', 'N':
		return true
	case 'D':
		return dec
	case 'E':
		return !dec
	}
	return false
}

// WrapUnderTestKeyBlockLMK returns clearKey as a key block under the
// published test key-block LMK, with key usage usage (P0, 71, K0, V2, M3 …)
// and mode of use mode, exportable. It exists, as EncipherUnderTestLMK does,
// because that LMK is public: tests and the demo load development keys with
// it the way a key ceremony loads them into a real HSM.
func WrapUnderTestKeyBlockLMK(usage string, mode byte, clearKey []byte) (string, error) {
	if len(usage) != 2 || (len(clearKey) != 16 && len(clearKey) != 24) {
		return "", fmt.Errorf("hsmsim: key block of usage %q and %d bytes", usage, len(clearKey))
	}
	lmk, _ := hex.DecodeString(testKeyBlockLMK)
	return kbWrap(lmk, kbHeader{Usage: usage, Alg: 'T', Mode: mode, KVN: "00", Export: 'E'}, keyBlockLMKID, clearKey), nil
}

// cutLMKID removes the LMK identifier field ('%' and 2 digits) from a
// command's fields. The simulator holds one LMK: identifier 01 in key-block
// mode, 00 otherwise; another is error 15.
func (s *Server) cutLMKID(f string) (string, error) {
	i := strings.IndexByte(f, '%')
	if i < 0 {
		return f, nil
	}
	want := "00"
	if s.kb != nil {
		want = keyBlockLMKID
	}
	if len(f) < i+3 || f[i+1:i+3] != want {
		return "", codeErr("15")
	}
	return f[:i] + f[i+3:], nil
}

// kbOpen verifies a key block under the key-block LMK and returns its clear
// key (the caller clears it); role, when not empty, is the usage it must
// have (tpk, zpk, zmk). A block that does not verify, or names another LMK,
// is error 26; one of another usage or algorithm error 04.
func (s *Server) kbOpen(tok, role string) ([]byte, error) {
	h, id, raw, err := kbUnwrap(s.kb, tok)
	if err != nil || id != keyBlockLMKID {
		clear(raw)
		return nil, codeErr("26")
	}
	if h.Alg != 'T' || (role != "" && !usageIs(h, role)) {
		clear(raw)
		return nil, codeErr("04")
	}
	return raw, nil
}

// kbFields parses the key-block fields after '#': key usage (2), [algorithm
// (2): T2 double, T3 triple — A0 only], mode of use (1), key version number
// (2), exportability (1), number of optional blocks (2, must be 00). It
// returns the header and the key length the algorithm names (0 without).
func kbFields(f string, withAlg bool) (kbHeader, int, error) {
	n := 8
	if withAlg {
		n = 10
	}
	if len(f) < n {
		return kbHeader{}, 0, codeErr("15")
	}
	h := kbHeader{Usage: f[:2], Alg: 'T'}
	length := 0
	if withAlg {
		switch f[2:4] {
		case "T2":
			length = 16
		case "T3":
			length = 24
		default:
			return kbHeader{}, 0, codeErr("26")
		}
		f = f[2:]
	}
	h.Mode, h.KVN, h.Export = f[2], f[3:5], f[5]
	if f[6:8] != "00" {
		return kbHeader{}, 0, codeErr("15")
	}
	switch h.Export {
	case 'E', 'N', 'S':
	default:
		return kbHeader{}, 0, codeErr("15")
	}
	return h, length, nil
}

// kbGenerate handles A0 under the key-block LMK: mode (0 or 1), key type
// FFF, key scheme S, with mode 1 a ZMK (key block) and the export scheme (X
// or Y: ANSI X9.17 TDES-ECB under the ZMK), then '#' and the key-block fields.
// It answers the key block, with mode 1 the key under the ZMK, and the KCV.
func (s *Server) kbGenerate(f string) (string, error) {
	if len(f) < 5 {
		return "", codeErr("15")
	}
	mode, typ, scheme, rest := f[0], f[1:4], f[4], f[5:]
	if typ != "FFF" || scheme != 'S' {
		return "", codeErr("26")
	}
	i := strings.IndexByte(rest, '#')
	if i < 0 {
		return "", codeErr("15")
	}
	h, n, err := kbFields(rest[i+1:], true)
	if err != nil {
		return "", err
	}
	raw := randomKey(n)
	defer clear(raw)
	under := kbWrap(s.kb, h, keyBlockLMKID, raw)
	switch {
	case mode == '0' && i == 0:
		return under + kcv(raw), nil
	case mode != '1':
		return "", codeErr("15")
	}
	pre := rest[:i]
	if strings.HasPrefix(pre, ";") && len(pre) >= 2 {
		pre = pre[2:]
	}
	zt, pre, err := token(pre)
	if err != nil {
		return "", err
	}
	zmk, err := s.kbOpen(zt, "zmk")
	if err != nil {
		return "", err
	}
	defer clear(zmk)
	if zh, _, _ := kbParse(zt); !modeAllows(zh.Mode, false) || h.Export == 'N' {
		return "", codeErr("04")
	}
	want := byte('X')
	if n == 24 {
		want = 'Y'
	}
	if pre != string(want) {
		return "", codeErr("26")
	}
	return under + pre + strings.ToUpper(hex.EncodeToString(ecb(zmk, raw, false))) + kcv(raw), nil
}

// kbImport handles A6 under the key-block LMK: key type FFF, the ZMK (key
// block), the key under the ZMK (X, U, Y or T: TDES-ECB; or S: a key block
// under the ZMK, whose header the result keeps), key scheme S, then for an
// X/U/Y/T key '#' and the key-block fields (key usage, mode of use, key
// version number, exportability, optional blocks). It answers the key block
// under the LMK and the KCV.
func (s *Server) kbImport(f string) (string, error) {
	if len(f) < 3 || f[:3] != "FFF" {
		return "", codeErr("26")
	}
	zt, f, err := token(f[3:])
	if err != nil {
		return "", err
	}
	kt, f, err := token(f)
	if err != nil {
		return "", err
	}
	if f == "" || f[0] != 'S' {
		return "", codeErr("26")
	}
	f = f[1:]
	zmk, err := s.kbOpen(zt, "zmk")
	if err != nil {
		return "", err
	}
	defer clear(zmk)
	if zh, _, _ := kbParse(zt); !modeAllows(zh.Mode, true) {
		return "", codeErr("04")
	}
	var (
		h   kbHeader
		raw []byte
	)
	if kt[0] == 'S' {
		var e error
		if h, _, raw, e = kbUnwrap(zmk, kt); e != nil {
			return "", codeErr("11")
		}
	} else {
		enc, e := hex.DecodeString(kt[1:])
		if e != nil {
			return "", codeErr("15")
		}
		raw = ecb(zmk, enc, true)
	}
	defer clear(raw)
	if !pinblock.OddParity(raw) {
		return "", codeErr("11")
	}
	if strings.HasPrefix(f, "#") {
		if h, _, err = kbFields(f[1:], false); err != nil {
			return "", err
		}
	} else if kt[0] != 'S' {
		return "", codeErr("15")
	}
	h.Alg = 'T'
	return kbWrap(s.kb, h, keyBlockLMKID, raw) + kcv(raw), nil
}

// kbCheckValue handles BU under the key-block LMK: key type code FF, key
// length flag F, the key block, and optionally ';' key type FFF and ';' the
// KCV type (6H is what the simulator answers).
func (s *Server) kbCheckValue(f string) (string, error) {
	if len(f) < 4 || f[:3] != "FFF" {
		return "", codeErr("15")
	}
	tok, _, err := token(f[3:])
	if err != nil {
		return "", err
	}
	raw, err := s.kbOpen(tok, "")
	if err != nil {
		return "", err
	}
	defer clear(raw)
	return kcv(raw), nil
}

// kbFormKey handles A4 under the key-block LMK: number of components, key
// type FFF, key scheme S, the components (key blocks of one key usage), then
// optionally '#', the key version number (2) and the number of optional
// blocks (2). The key gets its components' usage, mode of use and
// exportability, and odd parity.
func (s *Server) kbFormKey(f string) (string, error) {
	if len(f) < 5 {
		return "", codeErr("15")
	}
	n, typ, scheme, f := int(f[0]-'0'), f[1:4], f[4], f[5:]
	if typ != "FFF" || scheme != 'S' {
		return "", codeErr("26")
	}
	if n < 2 || n > 9 {
		return "", codeErr("03")
	}
	var (
		out []byte
		h   kbHeader
	)
	defer func() { clear(out) }()
	for i := 0; i < n; i++ {
		tok, rest, err := token(f)
		if err != nil {
			return "", err
		}
		f = rest
		ch, _, err := kbParse(tok)
		if err != nil {
			return "", codeErr("26")
		}
		raw, err := s.kbOpen(tok, "")
		if err != nil {
			return "", err
		}
		parity := "11"
		if i == 0 {
			parity, h = "10", ch
		}
		if !pinblock.OddParity(raw) || ch.Usage != h.Usage || (out != nil && len(raw) != len(out)) {
			clear(raw)
			return "", codeErr(parity)
		}
		if out == nil {
			out = raw
			continue
		}
		for j := range out {
			out[j] ^= raw[j]
		}
		clear(raw)
	}
	if strings.HasPrefix(f, "#") && len(f) >= 5 {
		h.KVN = f[1:3]
	}
	pinblock.SetOddParity(out)
	return kbWrap(s.kb, h, keyBlockLMKID, out) + kcv(out), nil
}
