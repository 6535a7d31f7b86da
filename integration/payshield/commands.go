package payshield

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"pingate/pinblock"
)

// formatCode is the payShield PIN block format code of an ISO 9564-1 format:
// ISO 0 = 01 (ANSI X9.8), ISO 1 = 05, ISO 3 = 47, ISO 4 = 48. Format 4 is
// known but refused by checkRoute (it needs AES keys under a key-block LMK).
func formatCode(f pinblock.Format) (string, bool) {
	switch f {
	case pinblock.Format0:
		return "01", true
	case pinblock.Format1:
		return "05", true
	case pinblock.Format3:
		return "47", true
	case pinblock.Format4:
		return "48", true
	}
	return "", false
}

// keyType is the payShield variant-LMK key type code of a usage: ZMK 000
// (LMK pair 04-05), ZPK 001 (06-07), TPK and PVK 002 (14-15), TAK 003
// (16-17).
func keyType(u pinblock.Usage) (string, bool) {
	switch u {
	case pinblock.UsageZMK:
		return "000", true
	case pinblock.UsageZPK:
		return "001", true
	case pinblock.UsageTPK, pinblock.UsagePVK:
		return "002", true
	case pinblock.UsageTAK:
		return "003", true
	}
	return "", false
}

// accountNumber is the 12-digit account field of CA, CC, JA, JG and PE: the
// 12 rightmost PAN digits excluding the check digit, left-padded with zeros.
func accountNumber(pan string) (string, error) {
	if len(pan) < 2 || len(pan) > pinblock.MaxPANLength {
		return "", fmt.Errorf("%w: must be 2 to %d digits", pinblock.ErrInvalidPAN, pinblock.MaxPANLength)
	}
	for i := 0; i < len(pan); i++ {
		if pan[i] < '0' || pan[i] > '9' {
			return "", fmt.Errorf("%w: not all decimal digits", pinblock.ErrInvalidPAN)
		}
	}
	body := pan[:len(pan)-1]
	if len(body) > 12 {
		body = body[len(body)-12:]
	}
	return strings.Repeat("0", 12-len(body)) + body, nil
}

// tokenLen is the length of a key token that starts with scheme letter s.
func tokenLen(s byte) int {
	switch s {
	case 'U', 'X':
		return 33
	case 'T', 'Y':
		return 49
	case 'Z':
		return 17
	}
	return 0
}

// takeToken splits a key token off the front of b: a variant-scheme token,
// or a key block (S), whose length field counts what follows the S.
func takeToken(code string, b []byte) (string, []byte, error) {
	if len(b) == 0 {
		return "", nil, fmt.Errorf("%w: %s response has no key", ErrProtocol, code)
	}
	if b[0] == 'S' {
		if len(b) < 6 {
			return "", nil, fmt.Errorf("%w: %s response key block is truncated", ErrProtocol, code)
		}
		n, err := strconv.Atoi(string(b[2:6]))
		if err != nil || n < 16+16+8 || len(b) < 1+n {
			return "", nil, fmt.Errorf("%w: %s response key block has a bad length", ErrProtocol, code)
		}
		if _, err := ParseBlockHeader(string(b[:1+n])); err != nil {
			return "", nil, fmt.Errorf("%w: %s response key block: %v", ErrProtocol, code, err)
		}
		return string(b[:1+n]), b[1+n:], nil
	}
	n := tokenLen(b[0])
	if n == 0 || len(b) < n || !isHex(b[1:n]) {
		return "", nil, fmt.Errorf("%w: %s response key is not a variant-scheme token", ErrProtocol, code)
	}
	return string(b[:n]), b[n:], nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return len(b) > 0
}

// Diagnostics is the NC response: the LMK check value and firmware number.
type Diagnostics struct {
	LMKCheck string
	Firmware string
}

// Diagnostics sends NC to one HSM of the pool.
func (c *Client) Diagnostics(ctx context.Context) (Diagnostics, error) {
	r, err := c.do(ctx, "NC", nil, true)
	if err != nil {
		return Diagnostics{}, err
	}
	if len(r) < 16 {
		return Diagnostics{}, fmt.Errorf("%w: NC response of %d bytes", ErrProtocol, len(r))
	}
	return Diagnostics{LMKCheck: string(r[:16]), Firmware: strings.TrimSpace(string(r[16:]))}, nil
}

// Echo sends data with B2 and checks that it comes back unchanged.
func (c *Client) Echo(ctx context.Context, data string) error {
	if len(data) > 0xFFFF-8 {
		return fmt.Errorf("payshield: echo of %d bytes is too long", len(data))
	}
	f := fmt.Sprintf("%04X%s", len(data), data)
	r, err := c.do(ctx, "B2", []byte(f), true)
	if err != nil {
		return err
	}
	if string(r) != data {
		return fmt.Errorf("%w: B2 echo came back different", ErrProtocol)
	}
	return nil
}

// translate sends CA or CC for each of blocks (one, or a PIN change's two
// together in one write) and decodes each destination PIN block into out[i]
// (8 bytes; allocated when nil). The error is the first block's that
// failed; out holds the others' results.
func (c *Client) translate(ctx context.Context, code, fromTok, toTok string, blocks [][]byte, fromCode, toCode, acct string, out [][]byte) error {
	var (
		fb     [maxBatch][192]byte
		fields [maxBatch][]byte
		resp   [maxBatch][]byte
	)
	n := len(blocks)
	if n > maxBatch || len(out) != n {
		return fmt.Errorf("%w: %d blocks in one batch", ErrProtocol, n)
	}
	for i, block := range blocks {
		if len(block) != 8 {
			return fmt.Errorf("%w: block of %d bytes", pinblock.ErrInvalidPINBlock, len(block))
		}
		f := fb[i][:0]
		f = append(f, fromTok...)
		f = append(f, toTok...)
		f = append(f, "12"...)
		f = hex.AppendEncode(f, block)
		upper(f[len(f)-16:])
		f = append(f, fromCode...)
		f = append(f, toCode...)
		f = append(f, acct...)
		f = append(f, c.lmkID()...)
		fields[i] = f
	}
	err := c.doN(ctx, code, fields[:n], resp[:n], true)
	for i := range n {
		clear(fields[i])
	}
	for i, r := range resp[:n] {
		if r == nil {
			continue // that command failed
		}
		// PIN length (2N), destination PIN block (16H), format (2N).
		if len(r) < 20 || !isHex(r[2:18]) {
			clear(r)
			if err == nil {
				err = fmt.Errorf("%w: %s response of %d bytes", ErrProtocol, code, len(r))
			}
			continue
		}
		if out[i] == nil {
			out[i] = make([]byte, 8)
		}
		_, _ = hex.Decode(out[i][:8], r[2:18])
		clear(r)
	}
	return err
}

func upper(b []byte) {
	for i, c := range b {
		if 'a' <= c && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
}

// generated is an A0 response.
type generated struct {
	underLMK, underZMK, kcv string
}

// lmkID is the LMK identifier field of Config.LMKID ('%' and 2 digits), or
// nothing.
func (c *Client) lmkID() string {
	if c.cfg.LMKID == "" {
		return ""
	}
	return "%" + c.cfg.LMKID
}

// blockFields are the key-block fields of A0 and A6 under a key-block LMK
// for a key of usage u: '#', key usage, [algorithm T2 or T3 for A0], mode
// of use, key version number 00, exportability E, no optional blocks.
func blockFields(u pinblock.Usage, length int, withAlg bool) (string, error) {
	ku, mode, ok := blockUsage(u)
	if !ok {
		return "", fmt.Errorf("%w: no key-block usage for %s", pinblock.ErrKeyUsage, u)
	}
	alg := ""
	if withAlg {
		alg = "T2"
		if length == 24 {
			alg = "T3"
		}
	}
	return "#" + ku + alg + string(mode) + "00" + "E" + "00", nil
}

// generateKey sends A0: mode 0 (under LMK only), or with zmkTok mode 1 (also
// under that ZMK, ANSI X9.17 scheme X, or Y for a triple-length key). Under
// a key-block LMK (kb not empty: the key-block fields) the key type is FFF
// and the scheme S.
func (c *Client) generateKey(ctx context.Context, typ string, scheme byte, zmkTok, kb string, length int) (generated, error) {
	f := []byte{'0'}
	if zmkTok != "" {
		f[0] = '1'
	}
	f = append(f, typ...)
	f = append(f, scheme)
	if zmkTok != "" {
		f = append(f, zmkTok...)
		if length == 24 && kb != "" {
			f = append(f, 'Y')
		} else {
			f = append(f, 'X')
		}
	}
	if kb != "" {
		f = append(f, c.lmkID()...)
		f = append(f, kb...)
	}
	r, err := c.do(ctx, "A0", f, false)
	if err != nil {
		return generated{}, err
	}
	var g generated
	if g.underLMK, r, err = takeToken("A0", r); err != nil {
		return generated{}, err
	}
	if zmkTok != "" {
		if g.underZMK, r, err = takeToken("A0", r); err != nil {
			return generated{}, err
		}
	}
	if len(r) >= 6 {
		g.kcv = string(r[:6])
	}
	return g, nil
}

// importZPK sends FA: a ZPK under a ZMK to under the LMK, with its KCV.
func (c *Client) importZPK(ctx context.Context, zmkTok, zpkUnderZMK string) (tok, kcv string, err error) {
	r, err := c.do(ctx, "FA", []byte(zmkTok+zpkUnderZMK), false)
	if err != nil {
		return "", "", err
	}
	if tok, r, err = takeToken("FA", r); err != nil {
		return "", "", err
	}
	if len(r) < 6 {
		return "", "", fmt.Errorf("%w: FA response has no check value", ErrProtocol)
	}
	return tok, string(r[:6]), nil
}

// importKey sends A6: a key of type typ under a ZMK to under the LMK; under
// a key-block LMK typ is FFF, scheme S and kb the key-block fields.
func (c *Client) importKey(ctx context.Context, typ, zmkTok, underZMK string, scheme byte, kb string) (tok, kcv string, err error) {
	f := typ + zmkTok + underZMK + string(scheme)
	if scheme == 'S' {
		f += c.lmkID() + kb
	}
	r, err := c.do(ctx, "A6", []byte(f), false)
	if err != nil {
		return "", "", err
	}
	if tok, r, err = takeToken("A6", r); err != nil {
		return "", "", err
	}
	if len(r) < 6 {
		return "", "", fmt.Errorf("%w: A6 response has no check value", ErrProtocol)
	}
	return tok, string(r[:6]), nil
}

// checkValue sends BU for a key token of type typ and returns the first 6
// digits of the check value.
func (c *Client) checkValue(ctx context.Context, typ, tok string) (string, error) {
	flag := "1"
	switch len(tok) {
	case 17:
		flag = "0"
	case 49:
		flag = "2"
	}
	var f string
	switch {
	case tok != "" && tok[0] == 'S':
		// Key type code FF and length flag F: the key block says what it
		// is; key type FFF; KCV type 1 (6H).
		f = "FFF" + tok + ";FFF;001" + c.lmkID()
	case len(typ) == 3:
		f = typ[1:] + flag + tok
	default:
		return "", fmt.Errorf("%w: no key type for the check value", pinblock.ErrKeyUsage)
	}
	r, err := c.do(ctx, "BU", []byte(f), true)
	if err != nil {
		return "", err
	}
	if len(r) < 6 || !isHex(r[:6]) {
		return "", fmt.Errorf("%w: BU response has no check value", ErrProtocol)
	}
	return strings.ToUpper(string(r[:6])), nil
}

// randomPIN sends JA and returns the PIN under the LMK (LN+1 characters).
func (c *Client) randomPIN(ctx context.Context, acct string, length int) (string, error) {
	r, err := c.do(ctx, "JA", []byte(fmt.Sprintf("%s%02d", acct, length)), false)
	if err != nil {
		return "", err
	}
	if len(r) != length+1 {
		return "", fmt.Errorf("%w: JA returned a PIN field of %d characters", ErrProtocol, len(r))
	}
	return string(r), nil
}

// pinToZPK sends JG: a PIN under the LMK to a PIN block under a ZPK.
func (c *Client) pinToZPK(ctx context.Context, zpkTok, fmtCode, acct, pinLMK string) ([]byte, error) {
	r, err := c.do(ctx, "JG", []byte(zpkTok+fmtCode+acct+pinLMK+c.lmkID()), true)
	if err != nil {
		return nil, err
	}
	if len(r) < 16 || !isHex(r[:16]) {
		return nil, fmt.Errorf("%w: JG response of %d bytes", ErrProtocol, len(r))
	}
	out := make([]byte, 8)
	_, _ = hex.Decode(out, r[:16])
	return out, nil
}

// printMailer sends PE: print a PIN mailer with document type C (customer)
// on the HSM's printer. Each print field is preceded by ';' and the list
// ends with 0x19.
func (c *Client) printMailer(ctx context.Context, acct, pinLMK string, fields []string) error {
	var b strings.Builder
	b.WriteString("C")
	b.WriteString(acct)
	b.WriteString(pinLMK)
	for _, f := range fields {
		b.WriteByte(';')
		b.WriteString(f)
	}
	b.WriteByte(0x19)
	_, err := c.do(ctx, "PE", []byte(b.String()), false)
	return err
}

// formKey sends A4: form a key of type typ from 2 to 9 components, each
// enciphered under the LMK pair of that type, and returns the key under the
// LMK in scheme and its check value. Under a key-block LMK the components
// are key blocks, typ FFF, scheme S, followed by '#', key version number 00
// and no optional blocks.
func (c *Client) formKey(ctx context.Context, typ string, scheme byte, comps []string) (tok, kcv string, err error) {
	f := make([]byte, 0, 5+len(comps)*49)
	f = append(f, byte('0'+len(comps)))
	f = append(f, typ...)
	f = append(f, scheme)
	for _, t := range comps {
		f = append(f, t...)
	}
	if scheme == 'S' {
		f = append(f, c.lmkID()...)
		f = append(f, "#0000"...)
	}
	r, err := c.do(ctx, "A4", f, false)
	if err != nil {
		return "", "", err
	}
	if tok, r, err = takeToken("A4", r); err != nil {
		return "", "", err
	}
	if len(r) < 6 || !isHex(r[:6]) {
		return "", "", fmt.Errorf("%w: A4 response has no check value", ErrProtocol)
	}
	return tok, strings.ToUpper(string(r[:6])), nil
}
