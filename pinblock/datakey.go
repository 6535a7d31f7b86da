package pinblock

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrSealedData: sealed data that does not open (wrong key, altered or
// truncated). The error never carries the data.
var ErrSealedData = errors.New("pinblock: sealed data does not open")

// DataSealer enciphers data at rest (AES-256-GCM, NIST SP 800-38D) under a
// data key the security module derives from a key it holds and keeps to
// itself: there is no accessor for the key, and it prints as the base key's
// id and KCV. The gateway seals the reversal advices it owes issuers (they
// carry the PAN, PCI DSS 3.5) with one.
type DataSealer struct {
	aead cipher.AEAD
	base string // id and KCV of the key the data key derives from
}

// DataSealer derives the data key for purpose from the current version of
// the key ref names, with the KDF in counter mode of NIST SP 800-108r1
// (§4.1) over CMAC (SP 800-38B) under that key: label "pingate data key",
// context purpose, 256 bits. The base key's bytes are not read outside its
// cipher, and the derived bytes are cleared once the AEAD holds them
// (best-effort: the AES key schedule keeps its own copy). The same base key
// and purpose always give the same data key, so data sealed before a restart
// opens after it; rotating the base key changes the data key (see
// docs/operations.md).
func (m *SoftwareModule) DataSealer(ref KeyRef, purpose string) (*DataSealer, error) {
	k, err := m.ring.Lookup(ref, m.now())
	if err != nil {
		return nil, err
	}
	if k.Usage().PINKey() {
		return nil, fmt.Errorf("%w: data keys do not derive from PIN key %s", ErrKeyUsage, k.ID())
	}
	b, err := k.blockCipher()
	if err != nil {
		return nil, err
	}
	const bits = 256
	var dk []byte
	for i := uint32(1); len(dk) < bits/8; i++ {
		msg := binary.BigEndian.AppendUint32(nil, i)
		msg = append(msg, "pingate data key"...)
		msg = append(msg, 0)
		msg = append(msg, purpose...)
		msg = binary.BigEndian.AppendUint32(msg, bits)
		dk = append(dk, cmac(b, msg)...)
	}
	defer clear(dk)
	blk, err := aes.NewCipher(dk[:bits/8])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &DataSealer{aead: aead, base: k.ID() + " kcv=" + k.KCV()}, nil
}

// DataSealerFromSecret derives the data key for purpose from a secret the
// gateway holds outside any module (the card-token key), with the same KDF
// over HMAC-SHA-256 instead of CMAC. It is the fallback for a security module
// that holds no key a data key may derive from here (a payShield, whose keys
// stay inside it): the data key then depends on that secret's custody, not on
// the module's. The secret is not kept.
func DataSealerFromSecret(secret []byte, purpose string) (*DataSealer, error) {
	if len(secret) < 32 {
		return nil, errors.New("pinblock: a data key derives from a secret of at least 32 bytes")
	}
	msg := binary.BigEndian.AppendUint32(nil, 1)
	msg = append(msg, "pingate data key"...)
	msg = append(msg, 0)
	msg = append(msg, purpose...)
	msg = binary.BigEndian.AppendUint32(msg, 256)
	h := hmac.New(sha256.New, secret)
	h.Write(msg)
	dk := h.Sum(nil)
	defer clear(dk)
	blk, err := aes.NewCipher(dk)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &DataSealer{aead: aead, base: "the card-token key"}, nil
}

// Seal returns a random nonce followed by plaintext enciphered and
// authenticated together with aad (which is not enciphered).
func (s *DataSealer) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, out); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return s.aead.Seal(out, out, plaintext, aad), nil
}

// Open reverses Seal; ErrSealedData if sealed is not Seal's output under
// this key and aad.
func (s *DataSealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrSealedData
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, ErrSealedData
	}
	return out, nil
}

// String names the data key by its base key's id and KCV.
func (s *DataSealer) String() string { return "data key derived from " + s.base }
