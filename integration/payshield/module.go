package payshield

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"pingate/pinblock"
)

// Module is a pinblock.SecurityModule whose every PIN and key operation runs
// in the payShield HSMs behind a Client. It holds keys only as LMK tokens
// (Keys).
//
// What it does not do: the weak-PIN exclusion of PairRequest.CheckNewPIN
// (CA and CC never reveal the PIN; the issuer's own PIN checks apply, see
// docs/hsm.md), and ISO 4 or non-TDES keys (refused, never done in
// software).
type Module struct {
	c    *Client
	keys *Keys
}

var _ pinblock.SecurityModule = (*Module)(nil)

// NewModule returns a module over c with the keys in keys. It does not own
// c: the caller closes it.
func NewModule(c *Client, keys *Keys) *Module { return &Module{c: c, keys: keys} }

// Keys is the module's key set.
func (m *Module) Keys() *Keys { return m.keys }

// Client is the module's HSM client.
func (m *Module) Client() *Client { return m.c }

// resolved is a route's keys and codes, looked up once.
type resolved struct {
	code           string // CA or CC
	from           []Key  // current first, then versions in grace
	to             Key
	fromFmt, toFmt string
	gen            uint64
	until          time.Time // earliest grace end among from; zero if none
}

func checkRoute(r pinblock.Route) (fromFmt, toFmt string, err error) {
	if !r.FromFormat.Valid() || !r.ToFormat.Valid() {
		return "", "", fmt.Errorf("%w: from %d to %d", pinblock.ErrUnsupportedFormat, int(r.FromFormat), int(r.ToFormat))
	}
	// PCI PIN 3-3, enforced by the gateway before the HSM is asked.
	if !pinblock.TranslationAllowed(r.FromFormat, r.ToFormat) {
		return "", "", fmt.Errorf("%w: %s to %s", pinblock.ErrForbiddenTranslation, r.FromFormat, r.ToFormat)
	}
	if r.FromFormat == pinblock.Format4 || r.ToFormat == pinblock.Format4 {
		return "", "", fmt.Errorf("%w: ISO-4 needs AES keys under a key-block LMK, which the payShield module does not support", pinblock.ErrUnsupportedFormat)
	}
	fromFmt, _ = formatCode(r.FromFormat)
	toFmt, _ = formatCode(r.ToFormat)
	return fromFmt, toFmt, nil
}

func (m *Module) resolve(r pinblock.Route) (*resolved, error) {
	fromFmt, toFmt, err := checkRoute(r)
	if err != nil {
		return nil, err
	}
	rs := &resolved{fromFmt: fromFmt, toFmt: toFmt, gen: m.keys.Generation()}
	if rs.from, err = m.keys.candidates(r.From); err != nil {
		return nil, err
	}
	switch rs.from[0].Usage {
	case pinblock.UsageTPK:
		rs.code = "CA"
	case pinblock.UsageZPK:
		rs.code = "CC"
	default:
		return nil, fmt.Errorf("%w: %s key %s cannot decipher PIN blocks", pinblock.ErrKeyUsage, rs.from[0].Usage, r.From.ID)
	}
	for _, k := range rs.from {
		if k.Algorithm != pinblock.TDES {
			return nil, fmt.Errorf("%w (key %s is %s)", ErrAlgorithm, k.ID, k.Algorithm)
		}
		if err := checkBlock(k, k.Usage, true); err != nil {
			return nil, err
		}
		if !k.Until.IsZero() && (rs.until.IsZero() || k.Until.Before(rs.until)) {
			rs.until = k.Until
		}
	}
	if rs.to, err = m.keys.Lookup(r.To); err != nil {
		return nil, err
	}
	if rs.to.Usage != pinblock.UsageZPK {
		return nil, fmt.Errorf("%w: %s key %s cannot be a payShield translation's destination", pinblock.ErrKeyUsage, rs.to.Usage, rs.to.ID)
	}
	if rs.to.Algorithm != pinblock.TDES {
		return nil, fmt.Errorf("%w (key %s is %s)", ErrAlgorithm, rs.to.ID, rs.to.Algorithm)
	}
	if err := checkBlock(rs.to, pinblock.UsageZPK, false); err != nil {
		return nil, err
	}
	return rs, nil
}

// one translates a block on rs, trying the versions in grace when the
// current one finds the block invalid.
func (m *Module) one(ctx context.Context, rs *resolved, pan string, block []byte) ([]byte, error) {
	if block == nil {
		return nil, fmt.Errorf("%w: no block", pinblock.ErrInvalidPINBlock)
	}
	acct, err := accountNumber(pan)
	if err != nil {
		return nil, err
	}
	for i, k := range rs.from {
		var out [1][]byte
		err := m.c.translate(ctx, rs.code, k.Token, rs.to.Token, [][]byte{block}, rs.fromFmt, rs.toFmt, acct, out[:])
		if err == nil {
			return out[0], nil
		}
		clear(out[0])
		if !errors.Is(err, pinblock.ErrInvalidPINBlock) || i == len(rs.from)-1 {
			return nil, err
		}
	}
	panic("unreachable")
}

// pair translates old and new as two commands sent together (one write, in
// flight at once), under the same key version. With both blocks the results
// are dst[0:8] and dst[8:16] (dst is allocated when nil).
func (m *Module) pair(ctx context.Context, rs *resolved, pan string, old, nw, dst []byte) ([]byte, []byte, error) {
	if old == nil && nw == nil {
		return nil, nil, fmt.Errorf("%w: no block to translate", pinblock.ErrInvalidPINBlock)
	}
	if old == nil || nw == nil {
		b := old
		if b == nil {
			b = nw
		}
		out, err := m.one(ctx, rs, pan, b)
		if err != nil {
			return nil, nil, err
		}
		if old == nil {
			return nil, out, nil
		}
		return out, nil, nil
	}
	acct, err := accountNumber(pan)
	if err != nil {
		return nil, nil, err
	}
	if len(dst) < 16 {
		dst = make([]byte, 16)
	}
	dst = dst[:16]
	for i, k := range rs.from {
		out := [2][]byte{dst[0:8:8], dst[8:16:16]}
		err := m.c.translate(ctx, rs.code, k.Token, rs.to.Token, [][]byte{old, nw}, rs.fromFmt, rs.toFmt, acct, out[:])
		if err == nil {
			return out[0], out[1], nil
		}
		clear(dst)
		if !errors.Is(err, pinblock.ErrInvalidPINBlock) || i == len(rs.from)-1 {
			return nil, nil, err
		}
	}
	panic("unreachable")
}

// Translate translates one block in the HSM (CA from a TPK, CC from a ZPK).
// PCI PIN 3-3 is checked before the HSM is asked.
func (m *Module) Translate(ctx context.Context, req pinblock.TranslateRequest) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rs, err := m.resolve(pinblock.Route{From: req.From, FromFormat: req.FromFormat, To: req.To, ToFormat: req.ToFormat})
	if err != nil {
		return nil, err
	}
	return m.one(ctx, rs, req.PAN, req.Block)
}

// TranslatePair sends the old and new blocks as two commands in flight at
// once. CheckNewPIN is not enforced here (see Module).
func (m *Module) TranslatePair(ctx context.Context, req pinblock.PairRequest) ([]byte, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	rs, err := m.resolve(pinblock.Route{From: req.From, FromFormat: req.FromFormat, To: req.To, ToFormat: req.ToFormat})
	if err != nil {
		return nil, nil, err
	}
	return m.pair(ctx, rs, req.PAN, req.Old, req.New, nil)
}

// translator is a prepared route: its LMK tokens are looked up once and
// again only when the key set changes or a grace window ends.
type translator struct {
	m     *Module
	route pinblock.Route
	rs    atomic.Pointer[resolved]
}

var _ pinblock.Translator = (*translator)(nil)

// Prepare checks r and keeps its keys' LMK tokens, so a translation on it
// looks nothing up.
func (m *Module) Prepare(ctx context.Context, r pinblock.Route) (pinblock.Translator, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rs, err := m.resolve(r)
	if err != nil {
		return nil, err
	}
	t := &translator{m: m, route: r}
	t.rs.Store(rs)
	return t, nil
}

func (t *translator) current() (*resolved, error) {
	rs := t.rs.Load()
	if rs.gen == t.m.keys.Generation() && (rs.until.IsZero() || time.Now().Before(rs.until)) {
		return rs, nil
	}
	rs, err := t.m.resolve(t.route)
	if err != nil {
		return nil, err
	}
	t.rs.Store(rs)
	return rs, nil
}

// place copies results into buf when it is large enough (old at 0, new at 8).
func place(buf, o, n []byte) ([]byte, []byte) {
	if cap(buf) < pinblock.BufferSize {
		return o, n
	}
	buf = buf[:pinblock.BufferSize]
	clear(buf)
	var ro, rn []byte
	if o != nil {
		ro = buf[0:8:8]
		copy(ro, o)
		clear(o)
	}
	if n != nil {
		rn = buf[8:16:16]
		copy(rn, n)
		clear(n)
	}
	return ro, rn
}

func (t *translator) Translate(ctx context.Context, buf []byte, pan string, block []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rs, err := t.current()
	if err != nil {
		return nil, err
	}
	out, err := t.m.one(ctx, rs, pan, block)
	if err != nil {
		if cap(buf) >= pinblock.BufferSize {
			clear(buf[:pinblock.BufferSize])
		}
		return nil, err
	}
	o, _ := place(buf, out, nil)
	return o, nil
}

func (t *translator) TranslatePair(ctx context.Context, buf []byte, req pinblock.PairBlocks) ([]byte, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	rs, err := t.current()
	if err != nil {
		return nil, nil, err
	}
	var dst []byte
	if cap(buf) >= pinblock.BufferSize {
		dst = buf[:pinblock.BufferSize]
		clear(dst)
	}
	o, n, err := t.m.pair(ctx, rs, req.PAN, req.Old, req.New, dst)
	if err != nil {
		clear(dst)
		return nil, nil, err
	}
	if req.Old != nil && req.New != nil {
		return o, n, nil // decoded into dst (buf) already
	}
	o, n = place(buf, o, n)
	return o, n, nil
}

// scheme is the LMK key scheme for a TDES key length.
func scheme(length int) (byte, error) {
	switch length {
	case 16:
		return 'U', nil
	case 24:
		return 'T', nil
	}
	return 0, fmt.Errorf("%w: payShield variant keys are 16 or 24 bytes, not %d", pinblock.ErrInvalidKey, length)
}

// keyBlockLMK reports whether the HSMs run a key-block LMK.
func (m *Module) keyBlockLMK() bool { return m.c.cfg.KeyBlockLMK }

// lmkScheme is the key type and LMK key scheme of a new key of usage u and
// length bytes: the variant type code and U or T, or under a key-block LMK
// FFF and S with the key-block fields kb.
func (m *Module) lmkScheme(u pinblock.Usage, length int, withAlg bool) (typ string, sc byte, kb string, err error) {
	if sc, err = scheme(length); err != nil {
		return "", 0, "", err
	}
	if !m.keyBlockLMK() {
		t, ok := keyType(u)
		if !ok {
			return "", 0, "", fmt.Errorf("%w: usage %s", pinblock.ErrKeyUsage, u)
		}
		return t, sc, "", nil
	}
	if kb, err = blockFields(u, length, withAlg); err != nil {
		return "", 0, "", err
	}
	return "FFF", 'S', kb, nil
}

// checkNewBlock checks that a key block the HSM returned for a key of usage
// u is one: the HSM answered another key usage than asked (ErrProtocol).
func checkNewBlock(tok string, u pinblock.Usage) error {
	if tok == "" || tok[0] != 'S' {
		return nil
	}
	h, err := ParseBlockHeader(tok)
	if err != nil || !blockUsageFits(h, u) {
		return fmt.Errorf("%w: the HSM returned a key block that is not a %s", ErrProtocol, u)
	}
	return nil
}

// Import brings a key under a held ZMK in: FA for a ZPK (the online key
// change), A6 for other usages; under a key-block LMK A6 for every usage,
// with key type FFF, scheme S and the key-block fields (the key usage and
// mode of use of blockUsage). A key block (req.KeyBlock) is imported by
// importBlock: a Thales key block under a key-block LMK; a TR-31 block is
// ErrNotSupported (docs/hsm.md). The HSM's check value must match req.KCV.
// Import is never retried on another HSM.
func (m *Module) Import(ctx context.Context, req pinblock.ImportRequest) (pinblock.KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return pinblock.KeyInfo{}, err
	}
	if req.KeyBlock != "" {
		return m.importBlock(ctx, req)
	}
	if req.KCV == "" {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: import %s: no KCV given", pinblock.ErrKCVMismatch, req.ID)
	}
	if req.Algorithm != pinblock.TDES {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, ErrAlgorithm)
	}
	zmk, err := m.keys.Lookup(req.ZMK)
	if err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if zmk.Usage != pinblock.UsageZMK {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: import %s: %s key %s is not a ZMK", pinblock.ErrKeyUsage, req.ID, zmk.Usage, zmk.ID)
	}
	if err := checkBlock(zmk, pinblock.UsageZMK, true); err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	typ, sc, kb, err := m.lmkScheme(req.Usage, len(req.Enciphered), false)
	if err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	zmkScheme := "X"
	if len(req.Enciphered) == 24 {
		zmkScheme = "Y"
	}
	under := zmkScheme + strings.ToUpper(hex.EncodeToString(req.Enciphered))
	var tok, kcv string
	if req.Usage == pinblock.UsageZPK && kb == "" {
		tok, kcv, err = m.c.importZPK(ctx, zmk.Token, under)
	} else {
		tok, kcv, err = m.c.importKey(ctx, typ, zmk.Token, under, sc, kb)
	}
	if err == nil {
		err = checkNewBlock(tok, req.Usage)
	}
	if err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if !kcvMatches(kcv, req.KCV) {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: key %s", pinblock.ErrKCVMismatch, req.ID)
	}
	k, err := m.keys.Add(Key{ID: req.ID, Usage: req.Usage, Algorithm: req.Algorithm, Length: len(req.Enciphered), Token: tok, KCV: strings.ToUpper(kcv)}, req.Rotate)
	if err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	return k.Info(), nil
}

// importBlock imports a key block under a held ZMK. Under a key-block LMK a
// Thales key block (S, the form a payShield exports under a ZMK) goes to the
// HSM as A6 with key type FFF and scheme S and no key-block fields: the
// block's own header (usage, mode of use, exportability) carries over. A
// TR-31 block is ErrNotSupported, as is any block under a variant LMK: the
// public material gives no layout of A6 with key scheme R (docs/hsm.md).
func (m *Module) importBlock(ctx context.Context, req pinblock.ImportRequest) (pinblock.KeyInfo, error) {
	if !m.keyBlockLMK() || req.KeyBlock[0] != 'S' {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w: a TR-31 key block (payShield A6 key scheme R)", req.ID, ErrNotSupported)
	}
	h, err := ParseBlockHeader(req.KeyBlock)
	if err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if !blockUsageFits(h, req.Usage) {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: import %s: the key block's usage %s is not a %s", pinblock.ErrKeyUsage, req.ID, h.KeyUsage, req.Usage)
	}
	if h.Algorithm != 'T' {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, ErrAlgorithm)
	}
	if req.KCV == "" {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: import %s: no KCV given", pinblock.ErrKCVMismatch, req.ID)
	}
	zmk, err := m.keys.Lookup(req.ZMK)
	if err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if err := checkBlock(zmk, pinblock.UsageZMK, true); err != nil || zmk.Usage != pinblock.UsageZMK {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: import %s: %s is not a ZMK that may decipher", pinblock.ErrKeyUsage, req.ID, zmk.ID)
	}
	tok, kcv, err := m.c.importKey(ctx, "FFF", zmk.Token, req.KeyBlock, 'S', "")
	if err == nil {
		err = checkNewBlock(tok, req.Usage)
	}
	if err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	if !kcvMatches(kcv, req.KCV) {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: key %s", pinblock.ErrKCVMismatch, req.ID)
	}
	// The key length is what the block's key field holds: 2 length bytes, the
	// key, padding to 8 bytes.
	length := 16
	if (len(tok)-1-16-8)/2 > 24 {
		length = 24
	}
	k, err := m.keys.Add(Key{ID: req.ID, Usage: req.Usage, Algorithm: pinblock.TDES, Length: length, Token: tok, KCV: strings.ToUpper(kcv)}, req.Rotate)
	if err != nil {
		return pinblock.KeyInfo{}, fmt.Errorf("import %s: %w", req.ID, err)
	}
	return k.Info(), nil
}

// kcvMatches compares want (4 to 6 digits, any case) with the start of got.
func kcvMatches(got, want string) bool {
	g, w := strings.ToUpper(got), strings.ToUpper(strings.TrimSpace(want))
	if len(w) < 4 || len(w) > len(g) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(g[:len(w)]), []byte(w)) == 1
}

// Generate makes a key in the HSM (A0 mode 0) and keeps its LMK token.
// Never retried on another HSM.
func (m *Module) Generate(ctx context.Context, id string, usage pinblock.Usage, alg pinblock.Algorithm, length int) (pinblock.KeyInfo, error) {
	info, _, err := m.generate(ctx, id, usage, alg, length, pinblock.KeyRef{})
	return info, err
}

// GenerateExport makes a key in the HSM (A0 mode 1) and returns it also
// enciphered under the held ZMK zmk (ANSI X9.17, TDES-ECB), to send to the
// other zone, with its KCV in the KeyInfo.
func (m *Module) GenerateExport(ctx context.Context, id string, usage pinblock.Usage, length int, zmk pinblock.KeyRef) (pinblock.KeyInfo, []byte, error) {
	if zmk.ID == "" {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: no ZMK", pinblock.ErrUnknownKey)
	}
	return m.generate(ctx, id, usage, pinblock.TDES, length, zmk)
}

func (m *Module) generate(ctx context.Context, id string, usage pinblock.Usage, alg pinblock.Algorithm, length int, zmkRef pinblock.KeyRef) (pinblock.KeyInfo, []byte, error) {
	if err := ctx.Err(); err != nil {
		return pinblock.KeyInfo{}, nil, err
	}
	if alg != pinblock.TDES {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("generate %s: %w", id, ErrAlgorithm)
	}
	typ, sc, kb, err := m.lmkScheme(usage, length, true)
	if err != nil {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("generate %s: %w", id, err)
	}
	if _, err := m.keys.Lookup(pinblock.KeyRef{ID: id}); err == nil {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: %s", pinblock.ErrKeyExists, id)
	}
	zmkTok := ""
	if zmkRef.ID != "" {
		zmk, err := m.keys.Lookup(zmkRef)
		if err != nil {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("generate %s: %w", id, err)
		}
		if zmk.Usage != pinblock.UsageZMK {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: generate %s: %s is not a ZMK", pinblock.ErrKeyUsage, id, zmk.ID)
		}
		if err := checkBlock(zmk, pinblock.UsageZMK, false); err != nil {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("generate %s: %w", id, err)
		}
		zmkTok = zmk.Token
	}
	g, err := m.c.generateKey(ctx, typ, sc, zmkTok, kb, length)
	if err == nil {
		err = checkNewBlock(g.underLMK, usage)
	}
	if err != nil {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("generate %s: %w", id, err)
	}
	kcv := g.kcv
	if kcv == "" {
		if kcv, err = m.c.checkValue(ctx, typ, g.underLMK); err != nil {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("generate %s: check value: %w", id, err)
		}
	}
	k, err := m.keys.Add(Key{ID: id, Usage: usage, Algorithm: alg, Length: length, Token: g.underLMK, KCV: strings.ToUpper(kcv)}, false)
	if err != nil {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("generate %s: %w", id, err)
	}
	var under []byte
	if g.underZMK != "" {
		under, _ = hex.DecodeString(g.underZMK[1:])
	}
	return k.Info(), under, nil
}

// KCV asks the HSM (BU) for the check value of a held key.
func (m *Module) KCV(ctx context.Context, ref pinblock.KeyRef) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	k, err := m.keys.Lookup(ref)
	if err != nil {
		return "", err
	}
	typ, ok := keyType(k.Usage)
	if !ok && !strings.HasPrefix(k.Token, "S") {
		return "", fmt.Errorf("%w: %s", pinblock.ErrKeyUsage, k.ID)
	}
	return m.c.checkValue(ctx, typ, k.Token)
}

// GeneratePIN draws a PIN in the HSM (JA) and has it enciphered for the
// issuer (JG). Sealed is the PIN under the LMK, for PrintMailer. The HSM's
// JA applies no weak-PIN list; the issuer's checks apply.
func (m *Module) GeneratePIN(ctx context.Context, req pinblock.GeneratePINRequest) (pinblock.GeneratedPIN, error) {
	if err := ctx.Err(); err != nil {
		return pinblock.GeneratedPIN{}, err
	}
	n := req.Length
	if n == 0 {
		n = pinblock.DefaultGeneratedPINLength
	}
	if n < pinblock.MinPINLength || n > pinblock.MaxPINLength {
		return pinblock.GeneratedPIN{}, fmt.Errorf("%w: length %d", pinblock.ErrInvalidPIN, n)
	}
	f, ok := formatCode(req.ToFormat)
	if !ok || req.ToFormat == pinblock.Format4 || req.ToFormat == pinblock.Format2 {
		return pinblock.GeneratedPIN{}, fmt.Errorf("%w: %s", pinblock.ErrUnsupportedFormat, req.ToFormat)
	}
	to, err := m.keys.Lookup(req.To)
	if err != nil {
		return pinblock.GeneratedPIN{}, err
	}
	if to.Usage != pinblock.UsageZPK {
		return pinblock.GeneratedPIN{}, fmt.Errorf("%w: %s is not a ZPK", pinblock.ErrKeyUsage, to.ID)
	}
	if to.Algorithm != pinblock.TDES {
		return pinblock.GeneratedPIN{}, ErrAlgorithm
	}
	if err := checkBlock(to, pinblock.UsageZPK, false); err != nil {
		return pinblock.GeneratedPIN{}, err
	}
	acct, err := accountNumber(req.PAN)
	if err != nil {
		return pinblock.GeneratedPIN{}, err
	}
	pin, err := m.c.randomPIN(ctx, acct, n)
	if err != nil {
		return pinblock.GeneratedPIN{}, err
	}
	block, err := m.c.pinToZPK(ctx, to.Token, f, acct, pin)
	if err != nil {
		return pinblock.GeneratedPIN{}, err
	}
	return pinblock.GeneratedPIN{Block: block, Sealed: []byte(pin)}, nil
}

// PrintMailer prints the mailer on the HSM's printer (PE): the reference,
// the address lines and, placed by the HSM, the PIN.
func (m *Module) PrintMailer(ctx context.Context, req pinblock.MailerRequest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	acct, err := accountNumber(req.PAN)
	if err != nil {
		return err
	}
	if len(req.Sealed) < pinblock.MinPINLength+1 {
		return fmt.Errorf("%w: no sealed PIN", pinblock.ErrInvalidPIN)
	}
	fields := []string{printable(req.Reference)}
	for _, l := range req.AddressLines {
		fields = append(fields, printable(l))
	}
	if err := m.c.printMailer(ctx, acct, string(req.Sealed), fields); err != nil {
		return fmt.Errorf("%w: %v", pinblock.ErrMailerUnavailable, err)
	}
	return nil
}

// printable replaces control characters and the PE field separator.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == ';' {
			return ' '
		}
		return r
	}, s)
}

// zeroKeyKCV is the check value of the all-zero TDES key, parity bits
// ignored (0101…01 with odd parity): DES of the zero block under it, which
// is the same for double- and triple-length keys.
const zeroKeyKCV = "8CA64DE9C1B123A7"

// MinComponents and MaxComponents bound the components of FormKey (A4
// takes 2 to 9).
const (
	MinComponents = 2
	MaxComponents = 9
)

// FormRequest forms a key from components inside the HSM.
type FormRequest struct {
	ID    string
	Usage pinblock.Usage
	// Components are the key components, each enciphered under the LMK as
	// the key type (a ZMK component under LMK pair 04-05), as a custodian
	// brings it from the HSM's console (Encrypt Clear Component) or from
	// A2. A payShield takes no clear component over the host port.
	Components []string
	// KCVs are the check values the custodians read for their components,
	// in the same order: each is compared with the HSM's (BU) before the
	// key is formed.
	KCVs   []string
	Rotate bool
}

// FormKey checks each component's check value (BU) and forms the key by
// XOR inside the HSM (A4), keeping its LMK token. It returns the key's info
// (with the HSM's KCV of the formed key) and the HSM's KCV of each
// component. A component whose KCV differs from its custodian's is
// ErrKCVMismatch naming the component, and nothing is formed. Two
// components with the same check value (the same component entered twice,
// or differing only in the parity bits DES ignores) and a component with
// the check value of the all-zero key are ErrInvalidKey, as
// pinblock.CombineComponents refuses them: the XOR would leave the key known
// to fewer custodians than entered it. Never retried on another HSM.
func (m *Module) FormKey(ctx context.Context, req FormRequest) (pinblock.KeyInfo, []string, error) {
	if err := ctx.Err(); err != nil {
		return pinblock.KeyInfo{}, nil, err
	}
	n := len(req.Components)
	if n < MinComponents || n > MaxComponents {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: form %s: %d components, want %d to %d", pinblock.ErrInvalidKey, req.ID, n, MinComponents, MaxComponents)
	}
	if len(req.KCVs) != n {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: form %s: %d components, %d check values", pinblock.ErrKCVMismatch, req.ID, n, len(req.KCVs))
	}
	if !req.Rotate {
		if _, err := m.keys.Lookup(pinblock.KeyRef{ID: req.ID}); err == nil {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: %s", pinblock.ErrKeyExists, req.ID)
		}
	}
	comps := make([]string, n)
	for i, c := range req.Components {
		c = strings.TrimSpace(c)
		if !strings.HasPrefix(c, "S") {
			c = strings.ToUpper(c) // a key block's header is case-sensitive
		}
		tok, rest, err := takeToken("component", []byte(c))
		if err != nil || len(rest) != 0 || len(tok) == 17 || (i > 0 && len(tok) != len(comps[0])) || (tok[0] == 'S') != m.keyBlockLMK() {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: form %s: component %d is not a key under the LMK (a double- or triple-length token, or under a key-block LMK a key block, all of one length)", pinblock.ErrInvalidKey, req.ID, i+1)
		}
		if err := checkBlock(Key{ID: fmt.Sprintf("component %d", i+1), Token: tok}, req.Usage, true); err != nil {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("form %s: %w", req.ID, err)
		}
		comps[i] = tok
	}
	length := 16
	if len(comps[0]) == 49 || (comps[0][0] == 'S' && (len(comps[0])-1-16-8)/2 > 24) {
		length = 24
	}
	typ, sc, _, err := m.lmkScheme(req.Usage, length, false)
	if err != nil {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("form %s: %w", req.ID, err)
	}
	kcvs := make([]string, n)
	for i, tok := range comps {
		kcv, err := m.c.checkValue(ctx, typ, tok)
		if err != nil {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("form %s: component %d check value: %w", req.ID, i+1, err)
		}
		if !kcvMatches(kcv, req.KCVs[i]) {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: form %s: component %d: the HSM computes %s", pinblock.ErrKCVMismatch, req.ID, i+1, kcv)
		}
		if kcvMatches(zeroKeyKCV, kcv) {
			return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: form %s: component %d is all zeros", pinblock.ErrInvalidKey, req.ID, i+1)
		}
		for j := range i {
			if strings.EqualFold(kcvs[j], kcv) {
				return pinblock.KeyInfo{}, nil, fmt.Errorf("%w: form %s: components %d and %d are identical (check value %s)", pinblock.ErrInvalidKey, req.ID, j+1, i+1, kcv)
			}
		}
		kcvs[i] = kcv
	}
	tok, kcv, err := m.c.formKey(ctx, typ, sc, comps)
	if err != nil {
		// A4's parity errors are the ceremony's input: say which
		// component, as far as the code tells (10 the first, 11 another).
		var he *Error
		if errors.As(err, &he) && (he.Code == "10" || he.Code == "11") {
			which := "component 1"
			if he.Code == "11" {
				which = "a component after the first"
			}
			return pinblock.KeyInfo{}, nil, fmt.Errorf("form %s: %s does not have odd parity (a TDES component has odd parity in every byte): %w", req.ID, which, err)
		}
		return pinblock.KeyInfo{}, nil, fmt.Errorf("form %s: %w", req.ID, err)
	}
	k, err := m.keys.Add(Key{ID: req.ID, Usage: req.Usage, Algorithm: pinblock.TDES, Length: length, Token: tok, KCV: kcv}, req.Rotate)
	if err != nil {
		return pinblock.KeyInfo{}, nil, fmt.Errorf("form %s: %w", req.ID, err)
	}
	return k.Info(), kcvs, nil
}
