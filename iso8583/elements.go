package iso8583

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Layouts of the structured data elements: DE 53, DE 90 and DE 123. Their
// parse errors are *FieldError and never repeat the input.

// PIN block formats allowed in DE 53 positions 1-2 (ISO 9564-1 format
// numbers).
var pinFormats = map[int]bool{0: true, 1: true, 3: true, 4: true}

// SecurityControl is DE 53, n16: positions 1-2 the ISO 9564-1 format of the
// PIN blocks in DE 52 and DE 125 (00, 01, 03 or 04), positions 3-4 the index
// of the acquirer's zone PIN key that enciphers them (00-99), positions 5-16
// zeros.
type SecurityControl struct {
	Format   int
	KeyIndex int
}

// String encodes s as the 16 digits of DE 53. It returns "" if the format is
// not 0, 1, 3 or 4 or the key index is outside 0-99; Validate says which.
func (s SecurityControl) String() string {
	if s.Validate() != nil {
		return ""
	}
	return fmt.Sprintf("%02d%02d000000000000", s.Format, s.KeyIndex)
}

// Validate checks the format and key index ranges.
func (s SecurityControl) Validate() error {
	if !pinFormats[s.Format] {
		return &FieldError{Field: "53", Problem: "PIN block format not 0, 1, 3 or 4"}
	}
	if s.KeyIndex < 0 || s.KeyIndex > 99 {
		return &FieldError{Field: "53", Problem: "key index outside 0-99"}
	}
	return nil
}

// ParseSecurityControl decodes DE 53. Positions 5-16 must be zeros.
func ParseSecurityControl(v string) (SecurityControl, error) {
	if len(v) != 16 || !allDigits(v) {
		return SecurityControl{}, &FieldError{Field: "53", Problem: "not 16 digits"}
	}
	if strings.Trim(v[4:], "0") != "" {
		return SecurityControl{}, &FieldError{Field: "53", Problem: "positions 5-16 not zero"}
	}
	f, _ := strconv.Atoi(v[:2])
	k, _ := strconv.Atoi(v[2:4])
	s := SecurityControl{Format: f, KeyIndex: k}
	return s, s.Validate()
}

// OriginalData is DE 90, n42, in a reversal (0420) and its response (0430):
// the original request's MTI (4 digits), STAN (6), transmission date and
// time (10, MMDDhhmmss), acquiring institution id (11, right-justified and
// zero-filled) and forwarding institution id (11; zeros, pingate does not
// forward).
type OriginalData struct {
	MTI          string
	STAN         string
	Transmission string
	Acquirer     string // as in DE 32 of the original: up to 11 digits
	Forwarding   string // up to 11 digits; "" encodes as zeros
}

// Encode builds the 42 digits of DE 90.
func (o OriginalData) Encode() (string, error) {
	bad := func(p string) error { return &FieldError{Field: "90", Problem: p} }
	switch {
	case len(o.MTI) != 4 || !allDigits(o.MTI):
		return "", bad("original MTI not 4 digits")
	case len(o.STAN) != 6 || !allDigits(o.STAN):
		return "", bad("original STAN not 6 digits")
	case len(o.Transmission) != 10 || !allDigits(o.Transmission):
		return "", bad("original transmission time not 10 digits")
	case len(o.Acquirer) > 11 || !allDigits(o.Acquirer):
		return "", bad("original acquirer id not up to 11 digits")
	case len(o.Forwarding) > 11 || !allDigits(o.Forwarding):
		return "", bad("forwarding institution id not up to 11 digits")
	}
	return o.MTI + o.STAN + o.Transmission + zeroPad(o.Acquirer, 11) + zeroPad(o.Forwarding, 11), nil
}

// ParseOriginalData decodes DE 90. Acquirer and Forwarding keep their 11
// digits, leading zeros included; compare an acquirer with SameAcquirer.
func ParseOriginalData(v string) (OriginalData, error) {
	if len(v) != 42 || !allDigits(v) {
		return OriginalData{}, &FieldError{Field: "90", Problem: "not 42 digits"}
	}
	return OriginalData{MTI: v[:4], STAN: v[4:10], Transmission: v[10:20], Acquirer: v[20:31], Forwarding: v[31:42]}, nil
}

// SameAcquirer reports whether id (a DE 32 value) is the original acquirer,
// ignoring the zero fill.
func (o OriginalData) SameAcquirer(id string) bool {
	return len(id) <= 11 && zeroPad(id, 11) == zeroPad(o.Acquirer, 11)
}

// KeyExchange is DE 123 of a key change (0800, NMI 161): the new zone PIN
// key under the zone master key shared with the acquirer, in one of two
// forms.
//
//   - A TR-31 / ANSI X9.143 key block (KeyBlock), the ZMK as key block
//     protection key: printable ASCII starting with the version (A, B, C or
//     D) and the block's length in 4 digits, which must equal the length of
//     DE 123. Example: "D0112P0AE00E0000…" (112 characters).
//   - The legacy form (KeyUnderZMK, KCV): the key enciphered under the ZMK,
//     as hex (32, 48 or 64 digits for a 16-, 24- or 32-byte key), a "/", and
//     the new key's check value as hex (4 to 16 digits: 6 for TDES, 10 for
//     AES, 16 for SM4 in pingate's own messages). Example: "0123...CDEF/08D7B4".
//
// Whether an acquirer may use the legacy form is routing's decision. The
// key material is treated as secret: DE 123 is redacted in every dump and
// String shows only the KCV.
type KeyExchange struct {
	KeyBlock    string // a TR-31 key block; the other fields are then empty
	KeyUnderZMK string // upper-case hex
	KCV         string // upper-case hex
}

// Encode builds DE 123.
func (k KeyExchange) Encode() (string, error) {
	if k.KeyBlock != "" {
		if !keyBlockShape(k.KeyBlock) {
			return "", &FieldError{Field: "123", Problem: "not a TR-31 key block"}
		}
		return k.KeyBlock, nil
	}
	if err := k.validate(); err != nil {
		return "", err
	}
	return strings.ToUpper(k.KeyUnderZMK) + "/" + strings.ToUpper(k.KCV), nil
}

func (k KeyExchange) validate() error {
	switch n := len(k.KeyUnderZMK); {
	case n != 32 && n != 48 && n != 64:
		return &FieldError{Field: "123", Problem: "enciphered key not 32, 48 or 64 hex digits"}
	case !isHex(k.KeyUnderZMK):
		return &FieldError{Field: "123", Problem: "enciphered key not hexadecimal"}
	case len(k.KCV) < 4 || len(k.KCV) > 16 || !isHex(k.KCV):
		return &FieldError{Field: "123", Problem: "KCV not 4 to 16 hex digits"}
	}
	return nil
}

// keyBlockShape reports whether v looks like a TR-31 key block: a version
// A-D, a 4-digit length equal to len(v), at least the 16-character header,
// printable ASCII. The block itself is checked when it is unwrapped.
func keyBlockShape(v string) bool {
	if len(v) < 16 || len(v) > 9999 || !strings.ContainsRune("ABCD", rune(v[0])) || !allDigits(v[1:5]) {
		return false
	}
	n, _ := strconv.Atoi(v[1:5])
	if n != len(v) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7E {
			return false
		}
	}
	return true
}

// ParseKeyExchange decodes DE 123. A value of the legacy form key/KCV is
// taken as such (hex digits returned upper-case); otherwise it must have the
// shape of a TR-31 key block, returned as sent.
func ParseKeyExchange(v string) (KeyExchange, error) {
	key, kcv, legacy := strings.Cut(v, "/")
	if legacy {
		k := KeyExchange{KeyUnderZMK: strings.ToUpper(key), KCV: strings.ToUpper(kcv)}
		err := k.validate()
		if err == nil {
			return k, nil
		}
		if !keyBlockShape(v) {
			return KeyExchange{}, err
		}
	}
	if keyBlockShape(v) {
		return KeyExchange{KeyBlock: v}, nil
	}
	return KeyExchange{}, &FieldError{Field: "123", Problem: "neither a TR-31 key block nor enciphered key \"/\" KCV"}
}

// String shows only the form and, for the legacy form, the KCV.
func (k KeyExchange) String() string {
	if k.KeyBlock != "" {
		return "key-exchange(tr31)"
	}
	return "key-exchange(kcv=" + k.KCV + ")"
}

// GoString keeps %#v from printing the enciphered key.
func (k KeyExchange) GoString() string { return k.String() }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	if len(s)%2 != 0 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func zeroPad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return strings.Repeat("0", n-len(s)) + s
}
