package pinblock

import (
	"fmt"
	"slices"
)

// DevKey is one key of the published development key set that the embedded
// default runs on. These keys are public — they are printed in standards and
// test suites — so nothing enciphered under them is secret. pingate refuses
// them under --production (see cmd/pingate), and docs/dev-keys.md lists them.
type DevKey struct {
	ID        string
	Usage     Usage
	Algorithm Algorithm
	Hex       string
	Source    string
}

// Labels of the development keys, as the embedded configuration names them.
const (
	DevATMZPK    = "dev-atm-zpk"    // ATM network's zone PIN key (TDES, formats 0/1/3)
	DevBranchZPK = "dev-branch-zpk" // branch PIN pads' zone PIN key (AES-128, format 4)
	DevATMZMK    = "dev-atm-zmk"    // zone master key shared with the ATM network (key changes)
	DevIssuerZPK = "dev-issuer-zpk" // zone PIN key shared with the simulated issuer (AES-128, format 4)
	DevIssuerPVK = "dev-issuer-pvk" // the simulated issuer's PIN verification key

	DevSM4ATMZPK    = "dev-sm4-atm-zpk"    // SM4 ATM network's zone PIN key (SM4-0 blocks)
	DevSM4ATMZMK    = "dev-sm4-atm-zmk"    // SM4 zone master key shared with the SM4 ATM network (key changes)
	DevSM4IssuerZPK = "dev-sm4-issuer-zpk" // zone PIN key shared with the simulated SM4 issuer (SM4-4 blocks)
)

// devKeys is the published development key set; DevelopmentKeys hands out
// copies, so no caller can change the set another relies on.
var devKeys = [...]DevKey{
	{DevATMZPK, UsageZPK, TDES, "0123456789ABCDEFFEDCBA9876543210", "the classic double-length TDES test key (KCV 08D7B4), e.g. ANSI X9.24 examples"},
	{DevBranchZPK, UsageZPK, AES, "000102030405060708090A0B0C0D0E0F", "FIPS-197 Appendix C.1 AES-128 example key"},
	{DevATMZMK, UsageZMK, TDES, "89E88CF7931444F334BD7547FC3F380C", "ASC X9 TR-31:2018 Annex A key block protection key"},
	{DevIssuerZPK, UsageZPK, AES, "2B7E151628AED2A6ABF7158809CF4F3C", "NIST SP 800-38A F.1 AES-128 example key"},
	{DevIssuerPVK, UsagePVK, TDES, "FEDCBA98765432100123456789ABCDEF", "the classic TDES test key, halves swapped"},
	{DevSM4ATMZPK, UsageZPK, SM4, "0123456789ABCDEFFEDCBA9876543210", "GB/T 32907-2016 Appendix A example key"},
	{DevSM4ATMZMK, UsageZMK, SM4, "1234567890ABCDEFABCDEF0987654321", "the bank test master key of the published SM4 PIN pad example csdn-104625499 (pinblock/testdata/sm4-vectors.json)"},
	{DevSM4IssuerZPK, UsageZPK, SM4, "FEDCBA98765432100123456789ABCDEF", "the GB/T 32907-2016 Appendix A example key, halves swapped"},
}

// DevelopmentKeys returns a fresh copy of the published development key
// set, for tests, demos and the embedded default only: the gateway refuses
// these keys under production (security.dev_keys, see integration/gateway).
func DevelopmentKeys() []DevKey { return slices.Clone(devKeys[:]) }

// DevelopmentKey returns a new Key (its own copy of the bytes) for the
// development key with the given label; test and demo use only, like
// DevelopmentKeys.
func DevelopmentKey(id string) (Key, error) {
	for _, d := range devKeys {
		if d.ID == id {
			return ParseHexKey(d.ID, d.Usage, d.Algorithm, 1, d.Hex)
		}
	}
	return Key{}, fmt.Errorf("%w: %s is not a development key", ErrUnknownKey, id)
}

// LoadDevelopmentKeys adds the whole development key set to ring; test and
// demo use only, like DevelopmentKeys.
func LoadDevelopmentKeys(ring *Keyring) error {
	for _, d := range devKeys {
		k, err := DevelopmentKey(d.ID)
		if err != nil {
			return err
		}
		if err := ring.Add(k); err != nil {
			return fmt.Errorf("development key %s: %w", d.ID, err)
		}
	}
	return nil
}
