package pinblock

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// This file holds the narrow cipher operations the key store
// (pinblock/keystore) needs and that must stay where key bytes are readable:
// a MAC under a key derived from the LMK, a key deciphered from its form
// under a ZMK, and fresh random key material. None of them hands out the
// bytes of an existing Key.

// DerivedMAC is an HMAC-SHA256 under a 32-byte key derived from a
// key-encrypting key (see NewDerivedMAC). The derived key never leaves it;
// it prints as its label only.
type DerivedMAC struct {
	label string
	key   []byte
}

// NewDerivedMAC derives a MAC key from kek: CMAC(kek, label ‖ counter) for
// counters 1, 2, ... until 32 bytes (NIST SP 800-108 counter mode with CMAC
// as the PRF, counter after the label). Distinct labels ("pingate key store
// MAC key", "pingate custody log MAC key") give distinct keys, and their
// inputs are distinct from the 8-byte TR-31 derivation inputs. Errors:
// ErrInvalidKey for a zero or zeroized kek.
func NewDerivedMAC(kek Key, label string) (*DerivedMAC, error) {
	b, err := kek.blockCipher()
	if err != nil {
		return nil, err
	}
	var out []byte
	for i := byte(1); len(out) < 32; i++ {
		out = append(out, cmac(b, append([]byte(label), i))...)
	}
	defer clear(out)
	return &DerivedMAC{label: label, key: append([]byte(nil), out[:32]...)}, nil
}

// Sum is the hex HMAC-SHA256 of msg. Compare sums with hmac.Equal.
func (m *DerivedMAC) Sum(msg []byte) string {
	h := hmac.New(sha256.New, m.key)
	h.Write(msg)
	return hex.EncodeToString(h.Sum(nil))
}

// String names the MAC by its label; it never shows the key.
func (m *DerivedMAC) String() string { return "mac(" + m.label + ")" }

// Zeroize clears the derived key (best-effort, see Key.Zeroize); Sum must
// not be called afterwards.
func (m *DerivedMAC) Zeroize() { clear(m.key) }

// UnwrapKey deciphers a key enciphered under kek, as ZMK-protected keys
// arrive: TDES-ECB under a TDES kek, AES Key Wrap (NIST SP 800-38F KW)
// under an AES one, SM4-ECB under an SM4 one, the same rules as
// SoftwareModule.Import. It builds the key from the result and clears the
// clear bytes; it does not check a KCV (call CheckKCV) nor the kek's strength
// (CheckKEKStrength). Errors never include key bytes.
func UnwrapKey(kek Key, id string, u Usage, alg Algorithm, version int, enciphered []byte) (Key, error) {
	b, err := kek.blockCipher()
	if err != nil {
		return Key{}, err
	}
	var raw []byte
	switch kek.Algorithm() {
	case AES:
		raw, err = aesKeyUnwrap(b, enciphered)
	case TDES, SM4:
		raw, err = ecbDecrypt(b, enciphered)
	default:
		err = fmt.Errorf("%w: key-encrypting key %s", ErrInvalidKey, kek.ID())
	}
	if err != nil {
		return Key{}, err
	}
	defer clear(raw)
	return NewKey(id, u, alg, version, raw)
}

// RandomKeyMaterial reads n random bytes for a key of alg from rnd
// (crypto/rand.Reader in production): TDES material gets odd parity and
// distinct 8-byte parts. The caller owns the result and must clear it once
// it has built its key (NewKey copies). It is for creating keys, such as an
// LMK file; it never reveals an existing Key.
func RandomKeyMaterial(rnd io.Reader, alg Algorithm, n int) ([]byte, error) {
	raw := make([]byte, n)
	for {
		if err := readFill(rnd, raw); err != nil {
			clear(raw)
			return nil, err
		}
		if alg != TDES {
			return raw, nil
		}
		SetOddParity(raw)
		if !weakTDES(raw) {
			return raw, nil
		}
	}
}
