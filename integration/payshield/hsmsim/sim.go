// Package hsmsim is a payShield host-command simulator for development, the
// demo and CI: it speaks the protocol package payshield speaks (2-byte
// length, echoed header, command/response codes, error codes) and does the
// cryptography with pinblock's software functions under the published
// Thales test variant LMK, or with Config.KeyBlock the published test
// key-block LMK (keys as Thales key blocks, key scheme S; keyblock.go). It is
// not a security device: its LMKs are public.
//
// Commands: NC, B2, CA, CC, A0 (modes 0 and 1), A4, A6, FA, BU, JA, JG, PE.
// Keys under a ZMK are TDES-ECB (ANSI X9.17, schemes X and Y; U is read the
// same way — the simulator applies no ZMK variants). The PIN under LMK of JA
// (LN+1 digits) is the simulator's own reversible encoding under LMK pair
// 02-03, not the payShield's; clients treat it as opaque.
package hsmsim

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"pingate/pinblock"
)

// Config configures a Server.
type Config struct {
	// HeaderLen is the message header length, echoed in every response.
	HeaderLen int
	// Printer prints PE mailers; nil answers PE with error 16 (printer not
	// ready).
	Printer pinblock.MailerPrinter
	// Logger receives one line per connection event; never data.
	Logger *slog.Logger
	// Firmware is the NC firmware number; default "1500-0000".
	Firmware string
	// KeyBlock runs the published Thales test key-block LMK (LMK identifier
	// 01) in place of the test variant LMK: keys under it are Thales key
	// blocks (key scheme S), and the commands take the key-block fields
	// (key type FFF, '#' key usage, mode of use, …; see docs/hsm.md).
	KeyBlock bool
}

// Server is a running simulator. Create it with New, run Serve, stop it with
// Close.
type Server struct {
	cfg Config
	lmk lmkSet
	kb  []byte // the key-block LMK with Config.KeyBlock, else nil

	// keys are the working keys (TPKs, ZPKs) deciphered from their tokens
	// under the LMK, kept so that a translation pays no LMK decryption and
	// no TDES key schedule per command; zeroized by Close.
	keysMu sync.RWMutex
	keys   map[keyID]pinblock.Key

	mu    sync.Mutex
	lns   []net.Listener
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
}

// New returns a simulator with the Thales test LMK.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Firmware == "" {
		cfg.Firmware = "1500-0000"
	}
	s := &Server{cfg: cfg, lmk: testLMKSet(), conns: map[net.Conn]struct{}{}, keys: map[keyID]pinblock.Key{}}
	if cfg.KeyBlock {
		s.kb, _ = hex.DecodeString(testKeyBlockLMK)
	}
	return s
}

// LMKCheckValue is the check value NC reports: of pair 00-01 of the variant
// LMK, or of the key-block LMK.
func (s *Server) LMKCheckValue() string {
	if s.kb == nil {
		return s.lmk.checkValue()
	}
	out := ecb(s.kb, make([]byte, 8), false)
	return strings.ToUpper(hex.EncodeToString(out))
}

// Serve accepts connections on ln until Close; it returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.done
			s.mu.Unlock()
			if done {
				return nil
			}
			return err
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.done = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.keysMu.Lock()
	for _, k := range s.keys {
		k.Zeroize()
	}
	clear(s.keys)
	s.keysMu.Unlock()
	return nil
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var (
		wmu sync.Mutex // bw: the reader's answers and PE's
		cwg sync.WaitGroup
	)
	defer cwg.Wait()
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	var p [2]byte
	buf := make([]byte, 0, 512)
	for {
		if _, err := io.ReadFull(br, p[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(p[:]))
		if cap(buf) < n {
			buf = make([]byte, 0, n)
		}
		msg := buf[:n]
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		if len(msg) < s.cfg.HeaderLen+2 {
			return
		}
		h := string(msg[:s.cfg.HeaderLen])
		m := string(msg[len(h):])
		if m[:2] == "PE" {
			// A mailer waits for the printer: it runs on its own, like a
			// payShield's print queue, and the commands behind it go on.
			cwg.Add(1)
			go func() {
				defer cwg.Done()
				resp := s.handle(m)
				wmu.Lock()
				writeFrame(bw, h, resp)
				_ = bw.Flush()
				wmu.Unlock()
			}()
			continue
		}
		// Every other command is answered in turn, and answers to commands
		// that arrived together go out in one write: flush only when no
		// whole command is waiting in the read buffer.
		resp := s.handle(m)
		wmu.Lock()
		writeFrame(bw, h, resp)
		var err error
		if !frameBuffered(br) {
			err = bw.Flush()
		}
		wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// writeFrame writes one response: the 2-byte length, the header, resp.
func writeFrame(bw *bufio.Writer, h, resp string) {
	b := bw.AvailableBuffer()
	b = binary.BigEndian.AppendUint16(b, uint16(len(h)+len(resp)))
	b = append(b, h...)
	b = append(b, resp...)
	_, _ = bw.Write(b)
}

// frameBuffered reports whether br holds a whole frame, so reading it will
// not block.
func frameBuffered(br *bufio.Reader) bool {
	if br.Buffered() < 2 {
		return false
	}
	p, _ := br.Peek(2)
	return br.Buffered() >= 2+int(binary.BigEndian.Uint16(p))
}

// handle answers one command (code and fields) with response code, error
// code and fields.
func (s *Server) handle(m string) string {
	code, f := m[:2], m[2:]
	rc := string([]byte{code[0], code[1] + 1})
	var (
		out string
		err error
	)
	if code != "PE" && code != "B2" {
		if f, err = s.cutLMKID(f); err != nil {
			return rc + errCode(err)
		}
	}
	if s.kb != nil {
		switch code {
		case "A0":
			out, err = s.kbGenerate(f)
		case "A6":
			out, err = s.kbImport(f)
		case "BU":
			out, err = s.kbCheckValue(f)
		case "A4":
			out, err = s.kbFormKey(f)
		case "FA":
			err = codeErr("68") // the simulator's key-block mode imports ZPKs with A6
		}
		switch code {
		case "A0", "A6", "BU", "A4", "FA":
			if err != nil {
				return rc + errCode(err)
			}
			return rc + "00" + out
		}
	}
	switch code {
	case "NC":
		out = s.LMKCheckValue() + s.cfg.Firmware
	case "B2":
		out, err = echo(f)
	case "CA":
		out, err = s.translate(f, "002")
	case "CC":
		out, err = s.translate(f, "001")
	case "A0":
		out, err = s.generate(f)
	case "FA":
		out, err = s.importKey("001", f)
	case "A6":
		if len(f) < 3 {
			err = codeErr("15")
		} else {
			out, err = s.importKey(f[:3], f[3:])
		}
	case "BU":
		out, err = s.checkValue(f)
	case "A4":
		out, err = s.formKey(f)
	case "JA":
		out, err = s.randomPIN(f)
	case "JG":
		out, err = s.pinToZPK(f)
	case "PE":
		err = s.printMailer(f)
	default:
		return "ZZ00"
	}
	if err != nil {
		return rc + errCode(err)
	}
	return rc + "00" + out
}

// codeErr is an HSM error code as an error.
type codeErr string

func (e codeErr) Error() string { return "error " + string(e) }

// errCode maps an error to a payShield error code.
func errCode(err error) string {
	var c codeErr
	switch {
	case errors.As(err, &c):
		return string(c)
	case errors.Is(err, pinblock.ErrInvalidPINBlock):
		return "20"
	case errors.Is(err, pinblock.ErrInvalidPIN):
		return "24"
	case errors.Is(err, pinblock.ErrInvalidPAN):
		return "22"
	case errors.Is(err, pinblock.ErrUnsupportedFormat), errors.Is(err, pinblock.ErrForbiddenTranslation):
		return "23"
	case errors.Is(err, pinblock.ErrKCVMismatch):
		return "01"
	case errors.Is(err, pinblock.ErrMailerUnavailable):
		return "16"
	}
	return "15"
}

func echo(f string) (string, error) {
	if len(f) < 4 {
		return "", codeErr("15")
	}
	n, err := strconv.ParseUint(f[:4], 16, 16)
	if err != nil || int(n) != len(f)-4 {
		return "", codeErr("80")
	}
	return f[4:], nil
}

// token splits a key token off f.
func token(f string) (string, string, error) {
	if f == "" {
		return "", "", codeErr("15")
	}
	n := 0
	switch f[0] {
	case 'U', 'X':
		n = 33
	case 'T', 'Y':
		n = 49
	case 'S': // a key block: its length field counts what follows the S
		if len(f) < 6 {
			return "", "", codeErr("15")
		}
		l, err := strconv.Atoi(f[2:6])
		if err != nil || l < 16 {
			return "", "", codeErr("15")
		}
		n = 1 + l
	default:
		return "", "", codeErr("26")
	}
	if len(f) < n {
		return "", "", codeErr("15")
	}
	return f[:n], f[n:], nil
}

// key deciphers a token of key type typ into a pinblock.Key; parity is the
// error code for a parity failure (10 source, 11 destination). Under the
// key-block LMK the block's key usage must fit typ (002 TPK, 001 ZPK) and
// its mode of use must permit decrypting (dec) or encrypting. The key is
// the simulator's cached one (Server.keys): callers must not zeroize it.
func (s *Server) key(typ, tok string, usage pinblock.Usage, parity string, dec bool) (pinblock.Key, error) {
	id := keyID{typ: typ, usage: usage, dec: dec, tok: tok}
	s.keysMu.RLock()
	k, ok := s.keys[id]
	s.keysMu.RUnlock()
	if ok {
		return k, nil
	}
	k, err := s.openKey(typ, tok, usage, parity, dec)
	if err != nil {
		return pinblock.Key{}, err
	}
	id.tok = strings.Clone(tok) // tok is a slice of the command's message
	s.keysMu.Lock()
	if len(s.keys) >= maxCachedKeys {
		for _, old := range s.keys {
			old.Zeroize()
		}
		clear(s.keys)
	}
	if held, ok := s.keys[id]; ok {
		k.Zeroize()
		k = held
	} else {
		s.keys[id] = k
	}
	s.keysMu.Unlock()
	return k, nil
}

// keyID names a deciphered working key in the cache: the token under the
// LMK and everything key checked it against.
type keyID struct {
	typ   string
	usage pinblock.Usage
	dec   bool
	tok   string
}

// maxCachedKeys bounds the working-key cache; when it is full it is emptied
// (zeroized) and refills with the keys in use.
const maxCachedKeys = 4096

// openKey is key without the cache: the LMK decryption, the checks and the
// TDES key schedule a translation would otherwise pay per command.
func (s *Server) openKey(typ, tok string, usage pinblock.Usage, parity string, dec bool) (pinblock.Key, error) {
	var (
		raw []byte
		err error
	)
	if s.kb != nil {
		role := map[string]string{"002": "tpk", "001": "zpk"}[typ]
		raw, err = s.kbOpen(tok, role)
		if err != nil {
			return pinblock.Key{}, err
		}
		if h, _, _ := kbParse(tok); !modeAllows(h.Mode, dec) {
			clear(raw)
			return pinblock.Key{}, codeErr("04")
		}
	} else if raw, err = s.lmk.decipher(typ, tok); err != nil {
		return pinblock.Key{}, codeErr("26")
	}
	defer clear(raw)
	if !pinblock.OddParity(raw) {
		return pinblock.Key{}, codeErr(parity)
	}
	k, err := pinblock.NewKey("hsm", usage, pinblock.TDES, 1, raw)
	if err != nil {
		return pinblock.Key{}, codeErr("27")
	}
	return k, nil
}

var formats = map[string]pinblock.Format{"01": pinblock.Format0, "05": pinblock.Format1, "47": pinblock.Format3}

func formatCode(f pinblock.Format) string {
	for c, v := range formats {
		if v == f {
			return c
		}
	}
	return "??"
}

// translate handles CA (source type 002, TPK) and CC (001, ZPK).
func (s *Server) translate(f, srcType string) (string, error) {
	src, f, err := token(f)
	if err != nil {
		return "", err
	}
	dst, f, err := token(f)
	if err != nil {
		return "", err
	}
	if len(f) != 2+16+2+2+12 {
		return "", codeErr("15")
	}
	if f[:2] != "12" {
		return "", codeErr("15")
	}
	var block [8]byte
	if _, err := hex.Decode(block[:], []byte(f[2:18])); err != nil {
		return "", codeErr("15")
	}
	from, ok1 := formats[f[18:20]]
	to, ok2 := formats[f[20:22]]
	if !ok1 || !ok2 {
		return "", codeErr("23")
	}
	if !pinblock.TranslationAllowed(from, to) {
		return "", codeErr("23")
	}
	acct := f[22:34]
	usage := pinblock.UsageTPK
	if srcType == "001" {
		usage = pinblock.UsageZPK
	}
	kf, err := s.key(srcType, src, usage, "10", true)
	if err != nil {
		return "", err
	}
	kt, err := s.key("001", dst, pinblock.UsageZPK, "11", false)
	if err != nil {
		return "", err
	}
	pan := acct + "0" // the account field is what formats 0 and 3 use
	pin, err := pinblock.Decipher(from, block[:], pan, kf)
	if err != nil {
		return "", err
	}
	defer pin.Zeroize()
	out, err := pinblock.Encipher(to, pin, pan, kt)
	if err != nil {
		return "", err
	}
	r := make([]byte, 0, 2+16+2)
	r = append(r, byte('0'+pin.Len()/10), byte('0'+pin.Len()%10))
	r = hex.AppendEncode(r, out)
	clear(out)
	r = append(r, formatCode(to)...)
	return strings.ToUpper(string(r)), nil
}

func randomKey(n int) []byte {
	k := make([]byte, n)
	for {
		_, _ = rand.Read(k)
		pinblock.SetOddParity(k)
		if string(k[:8]) != string(k[8:16]) {
			return k
		}
	}
}

func kcv(raw []byte) string {
	k, err := pinblock.NewKey("kcv", pinblock.UsageZPK, pinblock.TDES, 1, raw)
	if err != nil {
		return "000000"
	}
	defer k.Zeroize()
	return k.KCV()
}

// ecb enciphers or deciphers key material under a clear TDES key.
func ecb(kek, data []byte, decrypt bool) []byte {
	k := make([]byte, 24)
	copy(k, kek)
	if len(kek) == 16 {
		copy(k[16:], kek[:8])
	}
	b := tdesFull(k)
	out := make([]byte, len(data))
	for i := 0; i+8 <= len(data); i += 8 {
		if decrypt {
			b.Decrypt(out[i:i+8], data[i:i+8])
		} else {
			b.Encrypt(out[i:i+8], data[i:i+8])
		}
	}
	return out
}

// generate handles A0 modes 0 and 1.
func (s *Server) generate(f string) (string, error) {
	if len(f) < 5 {
		return "", codeErr("15")
	}
	mode, typ, scheme, f := f[0], f[1:4], f[4], f[5:]
	n := 16
	switch scheme {
	case 'U', 'X':
	case 'T', 'Y':
		n = 24
	default:
		return "", codeErr("26")
	}
	raw := randomKey(n)
	defer clear(raw)
	under, err := s.lmk.encipher(typ, scheme, raw)
	if err != nil {
		return "", codeErr("04")
	}
	if mode == '0' {
		return under + kcv(raw), nil
	}
	if mode != '1' {
		return "", codeErr("15")
	}
	if strings.HasPrefix(f, ";") && len(f) >= 2 {
		f = f[2:]
	}
	zt, _, err := token(f)
	if err != nil {
		return "", err
	}
	zmk, err := s.lmk.decipher("000", zt)
	if err != nil {
		return "", codeErr("26")
	}
	defer clear(zmk)
	if !pinblock.OddParity(zmk) {
		return "", codeErr("10")
	}
	zs := "X"
	if n == 24 {
		zs = "Y"
	}
	return under + zs + strings.ToUpper(hex.EncodeToString(ecb(zmk, raw, false))) + kcv(raw), nil
}

// importKey handles FA (typ 001) and A6: a key under a ZMK to under the LMK.
func (s *Server) importKey(typ, f string) (string, error) {
	zt, f, err := token(f)
	if err != nil {
		return "", err
	}
	kt, f, err := token(f)
	if err != nil {
		return "", err
	}
	scheme := byte('U')
	if len(kt) == 49 {
		scheme = 'T'
	}
	if typ != "001" && len(f) >= 1 {
		scheme = f[0]
	}
	zmk, err := s.lmk.decipher("000", zt)
	if err != nil {
		return "", codeErr("26")
	}
	defer clear(zmk)
	if !pinblock.OddParity(zmk) {
		return "", codeErr("10")
	}
	enc, err := hex.DecodeString(kt[1:])
	if err != nil {
		return "", codeErr("15")
	}
	raw := ecb(zmk, enc, true)
	defer clear(raw)
	if !pinblock.OddParity(raw) {
		return "", codeErr("11")
	}
	under, err := s.lmk.encipher(typ, scheme, raw)
	if err != nil {
		return "", codeErr("04")
	}
	return under + kcv(raw), nil
}

// checkValue handles BU: LMK code (2), length flag (1), token.
func (s *Server) checkValue(f string) (string, error) {
	if len(f) < 4 {
		return "", codeErr("15")
	}
	tok, _, err := token(f[3:])
	if err != nil {
		return "", err
	}
	raw, err := s.lmk.decipher("0"+f[:2], tok)
	if err != nil {
		return "", codeErr("04")
	}
	defer clear(raw)
	return kcv(raw) + "0000000000", nil // 16H; only the first 6 are the KCV
}

// pinKeystream is the simulator's encoding of a PIN under LMK pair 02-03:
// digit i is (pin digit + keystream digit) mod 10, the keystream being the
// nibbles (mod 10) of TDES(LMK 02-03, account number and a random salt
// digit). The salt is the first of the LN+1 characters.
func (s *Server) pinKeystream(acct string, salt byte) []byte {
	in, _ := hex.DecodeString(acct + "0" + string(salt) + "00")
	out := make([]byte, 8)
	tdes(s.lmk[1][:]).Encrypt(out, in)
	ks := make([]byte, 16)
	for i, c := range out {
		ks[2*i], ks[2*i+1] = (c>>4)%10, (c&15)%10
	}
	return ks
}

func (s *Server) sealPIN(acct, digits string) string {
	n, _ := rand.Int(rand.Reader, big.NewInt(10))
	salt := byte('0' + n.Int64())
	ks := s.pinKeystream(acct, salt)
	b := []byte{salt}
	for i := 0; i < len(digits); i++ {
		b = append(b, '0'+(digits[i]-'0'+ks[i])%10)
	}
	return string(b)
}

func (s *Server) openPIN(acct, sealed string) (pinblock.SecretPIN, error) {
	if len(sealed) < 5 || len(sealed) > 13 {
		return pinblock.SecretPIN{}, codeErr("14")
	}
	ks := s.pinKeystream(acct, sealed[0])
	b := make([]byte, 0, 12)
	for i := 1; i < len(sealed); i++ {
		c := sealed[i]
		if c < '0' || c > '9' {
			return pinblock.SecretPIN{}, codeErr("14")
		}
		b = append(b, '0'+(c-'0'+10-ks[i-1])%10)
	}
	defer clear(b)
	return pinblock.NewSecretPIN(string(b))
}

// randomPIN handles JA: account number (12N), PIN length (2N).
func (s *Server) randomPIN(f string) (string, error) {
	if len(f) < 14 {
		return "", codeErr("15")
	}
	n, err := strconv.Atoi(f[12:14])
	if err != nil || n < 4 || n > 12 {
		return "", codeErr("24")
	}
	d := make([]byte, n)
	for i := range d {
		v, _ := rand.Int(rand.Reader, big.NewInt(10))
		d[i] = byte('0' + v.Int64())
	}
	defer clear(d)
	return s.sealPIN(f[:12], string(d)), nil
}

// pinToZPK handles JG: ZPK, format code, account number, PIN under LMK.
func (s *Server) pinToZPK(f string) (string, error) {
	zt, f, err := token(f)
	if err != nil {
		return "", err
	}
	if len(f) < 14+5 {
		return "", codeErr("15")
	}
	format, ok := formats[f[:2]]
	if !ok {
		return "", codeErr("23")
	}
	acct := f[2:14]
	pin, err := s.openPIN(acct, f[14:])
	if err != nil {
		return "", err
	}
	defer pin.Zeroize()
	k, err := s.key("001", zt, pinblock.UsageZPK, "10", false)
	if err != nil {
		return "", err
	}
	out, err := pinblock.Encipher(format, pin, acct+"0", k)
	if err != nil {
		return "", err
	}
	return strings.ToUpper(hex.EncodeToString(out)), nil
}

// printMailer handles PE: document type, account number, PIN under LMK,
// print fields, each preceded by ';', ended by 0x19. The first print field is
// the mailer's reference, the others its address lines.
func (s *Server) printMailer(f string) error {
	if s.cfg.Printer == nil {
		return codeErr("16")
	}
	end := strings.IndexByte(f, 0x19)
	if len(f) < 1+12+5 || end < 0 || f[0] != 'C' {
		return codeErr("15")
	}
	acct := f[1:13]
	rest := f[13:end]
	// The PIN field (LN+1 digits) runs to the first ';', which starts the
	// print fields.
	semi := strings.IndexByte(rest, ';')
	if semi < 0 {
		return codeErr("15")
	}
	pin, err := s.openPIN(acct, rest[:semi])
	if err != nil {
		return err
	}
	defer pin.Zeroize()
	fields := strings.Split(rest[semi+1:], ";")
	m := pinblock.MailerContent{Reference: fields[0], MaskedPAN: acct[:2] + "******" + acct[8:], Issued: time.Now().UTC()}
	if len(fields) > 1 {
		m.AddressLines = fields[1:]
	}
	if err := s.cfg.Printer.PrintMailer(context.Background(), m, &pin); err != nil {
		return codeErr("16")
	}
	return nil
}

// EncipherUnderLMK returns clear key under the simulator's LMK as key type
// typ (e.g. "000" ZMK, "001" ZPK, "002" TPK) in scheme U (16 bytes) or T
// (24). It exists because the simulator's LMK is public: tests and the demo
// use it to load development keys the way a key ceremony (GG, A4) loads them
// into a real HSM. Odd DES parity is not set for the caller.
func (s *Server) EncipherUnderLMK(typ string, clearKey []byte) (string, error) {
	scheme := byte('U')
	if len(clearKey) == 24 {
		scheme = 'T'
	}
	return s.lmk.encipher(typ, scheme, clearKey)
}

// EncipherUnderTestLMK is EncipherUnderLMK for any simulator: they all run
// under the same published test LMK.
func EncipherUnderTestLMK(typ string, clearKey []byte) (string, error) {
	l := testLMKSet()
	return (&Server{lmk: l}).EncipherUnderLMK(typ, clearKey)
}

// combine deciphers components of key type typ (each a token) and XORs
// them; the result gets odd parity, as a payShield sets it. A component
// without odd parity is error 10 (the first) or 11 (another).
func (s *Server) combine(typ string, toks []string) ([]byte, error) {
	var out []byte
	for i, t := range toks {
		raw, err := s.lmk.decipher(typ, t)
		if err != nil {
			return nil, codeErr("26")
		}
		if !pinblock.OddParity(raw) || (out != nil && len(raw) != len(out)) {
			clear(raw)
			clear(out)
			if i == 0 {
				return nil, codeErr("10")
			}
			return nil, codeErr("11")
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
	pinblock.SetOddParity(out)
	return out, nil
}

// formKey handles A4: number of components (1N, 2-9), key type (3H), key
// scheme LMK (1A), the components under the LMK; it answers the key under
// the LMK and its check value (6H).
func (s *Server) formKey(f string) (string, error) {
	if len(f) < 5 {
		return "", codeErr("15")
	}
	n, typ, scheme, f := int(f[0]-'0'), f[1:4], f[4], f[5:]
	if n < 2 || n > 9 {
		return "", codeErr("03")
	}
	toks := make([]string, n)
	for i := range toks {
		var err error
		if toks[i], f, err = token(f); err != nil {
			return "", err
		}
	}
	raw, err := s.combine(typ, toks)
	if err != nil {
		return "", err
	}
	defer clear(raw)
	under, err := s.lmk.encipher(typ, scheme, raw)
	if err != nil {
		return "", codeErr("26")
	}
	return under + kcv(raw), nil
}
