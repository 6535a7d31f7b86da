// Package devkeys is pingate's published development key set, for tests,
// demos and the embedded default only. The keys are public (printed in
// standards and test suites), so nothing enciphered under them is secret;
// the gateway refuses them under production (security.dev_keys, see
// integration/gateway), and docs/dev-keys.md lists them. The package is
// named for its job and kept out of pinblock so the library holds no key
// material of its own.
package devkeys

import (
	"fmt"
	"slices"

	"pingate/pinblock"
)

// DevKey is one key of the published development key set that the embedded
// default runs on. These keys are public — they are printed in standards and
// test suites — so nothing enciphered under them is secret. pingate refuses
// them under --production (see cmd/pingate), and docs/dev-keys.md lists them.
type DevKey struct {
	ID        string
	Usage     pinblock.Usage
	Algorithm pinblock.Algorithm
	Hex       string
	Source    string
}

// Labels of the development keys, as the embedded configuration names them.
const (
	ATMZPK    = "dev-atm-zpk"    // ATM network's zone PIN key (pinblock.TDES, formats 0/1/3)
	BranchZPK = "dev-branch-zpk" // branch PIN pads' zone PIN key (pinblock.AES-128, format 4)
	ATMZMK    = "dev-atm-zmk"    // zone master key shared with the ATM network (key changes)
	IssuerZPK = "dev-issuer-zpk" // zone PIN key shared with the simulated issuer (pinblock.AES-128, format 4)
	IssuerPVK = "dev-issuer-pvk" // the simulated issuer's PIN verification key

	SM4ATMZPK    = "dev-sm4-atm-zpk"    // pinblock.SM4 ATM network's zone PIN key (pinblock.SM4-0 blocks)
	SM4ATMZMK    = "dev-sm4-atm-zmk"    // pinblock.SM4 zone master key shared with the pinblock.SM4 ATM network (key changes)
	SM4IssuerZPK = "dev-sm4-issuer-zpk" // zone PIN key shared with the simulated pinblock.SM4 issuer (pinblock.SM4-4 blocks)
)

// devKeys is the published development key set; All hands out
// copies, so no caller can change the set another relies on.
var devKeys = [...]DevKey{
	{ATMZPK, pinblock.UsageZPK, pinblock.TDES, "0123456789ABCDEFFEDCBA9876543210", "the classic double-length pinblock.TDES test key (KCV 08D7B4), e.g. ANSI X9.24 examples"},
	{BranchZPK, pinblock.UsageZPK, pinblock.AES, "000102030405060708090A0B0C0D0E0F", "FIPS-197 Appendix C.1 pinblock.AES-128 example key"},
	{ATMZMK, pinblock.UsageZMK, pinblock.TDES, "89E88CF7931444F334BD7547FC3F380C", "ASC X9 TR-31:2018 Annex A key block protection key"},
	{IssuerZPK, pinblock.UsageZPK, pinblock.AES, "2B7E151628AED2A6ABF7158809CF4F3C", "NIST SP 800-38A F.1 pinblock.AES-128 example key"},
	{IssuerPVK, pinblock.UsagePVK, pinblock.TDES, "FEDCBA98765432100123456789ABCDEF", "the classic pinblock.TDES test key, halves swapped"},
	{SM4ATMZPK, pinblock.UsageZPK, pinblock.SM4, "0123456789ABCDEFFEDCBA9876543210", "GB/T 32907-2016 Appendix A example key"},
	{SM4ATMZMK, pinblock.UsageZMK, pinblock.SM4, "1234567890ABCDEFABCDEF0987654321", "the bank test master key of the published pinblock.SM4 PIN pad example csdn-104625499 (pinblock/testdata/sm4-vectors.json)"},
	{SM4IssuerZPK, pinblock.UsageZPK, pinblock.SM4, "FEDCBA98765432100123456789ABCDEF", "the GB/T 32907-2016 Appendix A example key, halves swapped"},
}

// All returns a fresh copy of the published development key
// set, for tests, demos and the embedded default only: the gateway refuses
// these keys under production (security.dev_keys, see integration/gateway).
func All() []DevKey { return slices.Clone(devKeys[:]) }

// Key returns a new Key (its own copy of the bytes) for the
// development key with the given label; test and demo use only, like
// All.
func Key(id string) (pinblock.Key, error) {
	for _, d := range devKeys {
		if d.ID == id {
			return pinblock.ParseHexKey(d.ID, d.Usage, d.Algorithm, 1, d.Hex)
		}
	}
	return pinblock.Key{}, fmt.Errorf("%w: %s is not a development key", pinblock.ErrUnknownKey, id)
}

// Load adds the whole development key set to ring; test and
// demo use only, like All.
func Load(ring *pinblock.Keyring) error {
	for _, d := range devKeys {
		k, err := Key(d.ID)
		if err != nil {
			return err
		}
		if err := ring.Add(k); err != nil {
			return fmt.Errorf("development key %s: %w", d.ID, err)
		}
	}
	return nil
}
