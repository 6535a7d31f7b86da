package pinblock

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
)

// PINVerificationData is an issuer's keyed hash of a card's PIN:
// HMAC-SHA-256 under the PIN verification key over the PAN, a separator and
// the PIN digits. An issuer stores it instead of the PIN; without the PVK it
// cannot be checked against guessed PINs.
func PINVerificationData(pvk Key, pan string, pin SecretPIN) ([32]byte, error) {
	var out [32]byte
	if !pvk.Valid() {
		return out, fmt.Errorf("%w: PIN verification key not loaded", ErrInvalidKey)
	}
	if pvk.Usage() != UsagePVK {
		return out, fmt.Errorf("%w: key %s is not a PVK", ErrKeyUsage, pvk.ID())
	}
	m := hmac.New(sha256.New, pvk.k.material)
	m.Write([]byte(pan))
	m.Write([]byte{'|'})
	m.Write(pin.digits())
	m.Sum(out[:0])
	return out, nil
}
