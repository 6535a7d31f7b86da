package pinblock

import "fmt"

// ModeOfUse is a TR-31 key block's mode of use (header byte 8; ANSI X9.143
// and ASC X9 TR 31-2018, Table 6): what a key may do within its key usage.
// pinblock keeps it with the key (Key.ModeOfUse) and refuses an operation it
// does not permit where the key's role is known (Key.Permits); the
// translation path itself does not look at it, so callers check the keys a
// configuration names when it is loaded.
type ModeOfUse byte

// Modes of use pinblock distinguishes (TR-31:2018 Table 6). The others
// (G generate only, S signature only, T sign and decrypt, V verify only,
// X derive keys, Y create variants) are kept as they arrived but permit
// none of the operations Permits checks, except T which permits decrypting.
const (
	ModeBoth        ModeOfUse = 'B' // encrypt and decrypt; wrap and unwrap
	ModeMAC         ModeOfUse = 'C' // generate and verify MACs
	ModeDecryptOnly ModeOfUse = 'D' // decrypt only; unwrap only
	ModeEncryptOnly ModeOfUse = 'E' // encrypt only; wrap only
	ModeNone        ModeOfUse = 'N' // no special restrictions beyond the key usage
)

// String names the mode: the header letter and what it means.
func (m ModeOfUse) String() string {
	if m == 0 {
		return "none given"
	}
	name, ok := map[ModeOfUse]string{
		ModeBoth: "both ways", ModeMAC: "MAC generate and verify", ModeDecryptOnly: "decrypt only",
		ModeEncryptOnly: "encrypt only", ModeNone: "no restriction", 'G': "generate only", 'S': "signature only",
		'T': "sign and decrypt", 'V': "verify only", 'X': "key derivation only", 'Y': "key variants only",
	}[m]
	if !ok {
		name = "unknown"
	}
	return fmt.Sprintf("%c (%s)", byte(m), name)
}

// MarshalText writes the header letter, so JSON shows "mode_of_use": "E".
func (m ModeOfUse) MarshalText() ([]byte, error) {
	if m == 0 {
		return nil, nil
	}
	return []byte{byte(m)}, nil
}

// UnmarshalText reads one header letter.
func (m *ModeOfUse) UnmarshalText(b []byte) error {
	if len(b) > 1 || len(b) == 1 && !alnum(string(b)) {
		return fmt.Errorf("%w: mode of use is one letter or digit", ErrKeyBlock)
	}
	*m = 0
	if len(b) == 1 {
		*m = ModeOfUse(b[0])
	}
	return nil
}

// KeyOp is what a role asks of a key, checked against its mode of use.
type KeyOp int

// The operations Permits checks. Decrypt and Encrypt are PIN blocks under a
// PIN key; Unwrap and Wrap are keys under a key-encryption key (TR-31:2018
// Table 6 gives D and E both meanings).
const (
	OpDecrypt KeyOp = iota // decipher PIN blocks (an acquirer's zone PIN key)
	OpEncrypt              // encipher PIN blocks (an issuer's zone PIN key)
	OpUnwrap               // unwrap an imported key (a ZMK / KBPK)
	OpWrap                 // wrap a key for export (a ZMK / KBPK)
)

func (op KeyOp) String() string {
	return [...]string{"deciphering PIN blocks", "enciphering PIN blocks", "unwrapping keys", "wrapping keys"}[op]
}

// ErrModeOfUse is the refusal of an operation a key's mode of use does not
// permit. It wraps ErrKeyUsage.
var ErrModeOfUse = fmt.Errorf("%w by the key's TR-31 mode of use", ErrKeyUsage)

// Allows reports whether mode m permits op (TR-31:2018 Table 6): B and N
// permit all four; D decrypting and unwrapping; E encrypting and wrapping;
// T (sign and decrypt) decrypting; the rest none of them.
func (m ModeOfUse) Allows(op KeyOp) bool {
	switch m {
	case ModeBoth, ModeNone:
		return true
	case ModeDecryptOnly:
		return op == OpDecrypt || op == OpUnwrap
	case ModeEncryptOnly:
		return op == OpEncrypt || op == OpWrap
	case 'T':
		return op == OpDecrypt
	}
	return false
}

// ModeOfUse is the key's TR-31 mode of use: the one its key block carried
// when it was unwrapped (UnwrapKeyBlock), or, for a key that came another
// way (components, generated, enciphered under a ZMK, a development key),
// the unrestricted mode for its usage: B for PIN keys and key-encryption
// keys, C for MAC and PIN verification keys (as NewKeyBlockHeader writes).
func (k Key) ModeOfUse() ModeOfUse {
	if k.k == nil {
		return 0
	}
	if k.k.mode != 0 {
		return k.k.mode
	}
	return defaultMode(k.k.usage)
}

func defaultMode(u Usage) ModeOfUse {
	if u == UsageTAK || u == UsagePVK {
		return ModeMAC
	}
	return ModeBoth
}

// Permits returns nil when the key's mode of use permits op, or an error
// wrapping ErrModeOfUse that names the key (id, version, KCV) and its mode,
// never its bytes.
func (k Key) Permits(op KeyOp) error {
	if m := k.ModeOfUse(); !m.Allows(op) {
		return fmt.Errorf("%w: key %s v%d (KCV %s) has mode of use %s, which does not permit %s", ErrModeOfUse, k.ID(), k.Version(), k.KCV(), m, op)
	}
	return nil
}

// errModeForUsage refuses, on import, a block whose mode of use makes no
// sense for the pingate usage it would get: a PIN key or a key-encryption
// key must be B, D, E or N (TR-31:2018 Table 6 and the usage/mode pairs of
// ANSI X9.143); MAC and verification keys are not restricted here.
func errModeForUsage(m ModeOfUse, u Usage) error {
	switch u {
	case UsageZPK, UsageTPK, UsageZMK:
		switch m {
		case ModeBoth, ModeDecryptOnly, ModeEncryptOnly, ModeNone:
			return nil
		}
		return fmt.Errorf("%w: mode of use %s is not one a %s may have (B, D, E or N)", ErrModeOfUse, m, u)
	}
	return nil
}

// BlockPermits reads the clear header of a TR-31 key block, without
// deciphering anything, and returns nil when its mode of use permits op for
// the key it carries, or an error wrapping ErrModeOfUse (ErrKeyBlock for a
// header that does not parse) that never repeats the block. It is the cheap
// check before an import whose role is known; the header is authenticated
// only when the block is unwrapped, which keeps the same mode with the key.
func BlockPermits(block string, op KeyOp) error {
	h, err := ParseKeyBlockHeader(block)
	if err != nil {
		return err
	}
	if m := ModeOfUse(h.ModeOfUse); !m.Allows(op) {
		return fmt.Errorf("%w: the key block (%s) has mode of use %s, which does not permit %s", ErrModeOfUse, safeField(h.KeyUsage), m, op)
	}
	return nil
}
