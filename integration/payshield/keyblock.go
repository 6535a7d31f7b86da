package payshield

import (
	"fmt"
	"strconv"

	"pingate/pinblock"
)

// BlockHeader is the clear header of a key under a key-block LMK (a Thales
// key block, key scheme S): what the HSM enforces on the key. The client
// reads it to refuse a key of the wrong usage before the HSM is asked; the
// enciphered key and its authenticator stay opaque.
type BlockHeader struct {
	Version       byte   // '0' TDES key-block LMK, '1' AES key-block LMK
	KeyUsage      string // e.g. P0 (ZPK), 71 (TPK), K0 (ZMK), V2 (PVK), M3 (TAK)
	Algorithm     byte   // 'T' TDES, 'A' AES
	ModeOfUse     byte   // 'B' both, 'E' encrypt, 'D' decrypt, 'N' none, 'C' MAC
	KeyVersion    string // 2 characters
	Exportability byte   // 'E', 'N' or 'S'
	LMKID         string // the LMK the key is under
}

// ParseBlockHeader reads the header of a key-block token ('S', version,
// 4-digit length of what follows the S, …) and checks the length.
func ParseBlockHeader(tok string) (BlockHeader, error) {
	if len(tok) < 1+16 || tok[0] != 'S' {
		return BlockHeader{}, fmt.Errorf("%w: not a key block (scheme S)", pinblock.ErrInvalidKey)
	}
	n, err := strconv.Atoi(tok[2:6])
	if err != nil || n != len(tok)-1 || !alnumOK(tok[1:17]) {
		return BlockHeader{}, fmt.Errorf("%w: key block header or length is invalid", pinblock.ErrInvalidKey)
	}
	b := tok[1:]
	return BlockHeader{Version: b[0], KeyUsage: b[5:7], Algorithm: b[7], ModeOfUse: b[8], KeyVersion: b[9:11], Exportability: b[11], LMKID: b[14:16]}, nil
}

func alnumOK(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// BlockHeader is the key-block header of k's token, if it is a key block.
func (k Key) BlockHeader() (BlockHeader, bool) {
	h, err := ParseBlockHeader(k.Token)
	return h, err == nil
}

// blockUsage is the key usage and mode of use the client asks the HSM to
// give a new key of usage u under a key-block LMK: ZPK P0 B (TR-31), TPK 71 N
// (the payShield's TPK code), ZMK K0 B, PVK V2 C (Visa PVV), TAK M3 C.
func blockUsage(u pinblock.Usage) (string, byte, bool) {
	switch u {
	case pinblock.UsageZPK:
		return "P0", 'B', true
	case pinblock.UsageTPK:
		return "71", 'N', true
	case pinblock.UsageZMK:
		return "K0", 'B', true
	case pinblock.UsagePVK:
		return "V2", 'C', true
	case pinblock.UsageTAK:
		return "M3", 'C', true
	}
	return "", 0, false
}

// blockUsageFits reports whether a key block's key usage may serve as u:
// the TR-31 code or the payShield's own (72 ZPK, 71 TPK, 52 ZMK), a P0 key
// also as a TPK.
func blockUsageFits(h BlockHeader, u pinblock.Usage) bool {
	switch c := h.KeyUsage; u {
	case pinblock.UsageZPK:
		return c == "P0" || c == "72"
	case pinblock.UsageTPK:
		return c == "71" || c == "P0"
	case pinblock.UsageZMK:
		return c == "K0" || c == "52"
	case pinblock.UsagePVK:
		return c[0] == 'V'
	case pinblock.UsageTAK:
		return c[0] == 'M'
	}
	return false
}

// blockModeAllows reports whether mode of use m permits deciphering (dec)
// or enciphering PIN blocks.
func blockModeAllows(m byte, dec bool) bool {
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

// checkBlock refuses, before the HSM is asked, a key-block key whose header
// does not permit its use as usage u, deciphering (dec) or enciphering; a
// variant token passes (the HSM checks its key type by the LMK variant).
func checkBlock(k Key, u pinblock.Usage, dec bool) error {
	if len(k.Token) == 0 || k.Token[0] != 'S' {
		return nil
	}
	h, err := ParseBlockHeader(k.Token)
	if err != nil {
		return fmt.Errorf("key %s: %w", k.ID, err)
	}
	if !blockUsageFits(h, u) || !blockModeAllows(h.ModeOfUse, dec) {
		return fmt.Errorf("%w: key %s is a key block of usage %s, mode of use %c, not a %s that may %s", pinblock.ErrKeyUsage, k.ID, h.KeyUsage, h.ModeOfUse, u, map[bool]string{true: "decipher", false: "encipher"}[dec])
	}
	return nil
}
