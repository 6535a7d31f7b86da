package pinblock

import (
	"errors"
	"fmt"
)

// ErrWeakKEK: a key would be protected by a weaker key (ANSI X9.24-1 and
// PCI PIN requirement 18-3 forbid it), e.g. an AES-256 key under a
// double-length TDES ZMK.
var ErrWeakKEK = errors.New("key-encrypting key is weaker than the key it protects")

// keyStrength is the security strength in bits (NIST SP 800-57 part 1).
// SM4 is counted at its key length, 128 bits, like AES-128: no attack on it
// is known better than exhaustive search.
func keyStrength(k Key) int {
	if k.Algorithm() == AES || k.Algorithm() == SM4 {
		return 8 * k.Len()
	}
	if k.Len() == 24 {
		return 112
	}
	return 80
}

// CheckKEKStrength refuses (ErrWeakKEK) a key k protected by a weaker key
// kek: ANSI X9.24-1 and PCI PIN requirement 18-3 forbid it.
func CheckKEKStrength(kek, k Key) error {
	if keyStrength(kek) < keyStrength(k) {
		return fmt.Errorf("%w: %s (%d bits) under %s (%d bits)", ErrWeakKEK, k.ID(), keyStrength(k), kek.ID(), keyStrength(kek))
	}
	return nil
}
