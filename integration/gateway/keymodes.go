package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"pingate/pinblock"
	"pingate/pinblock/keystore"
	"pingate/routing"
)

// keyVersionMode is one version of a key a route names, as the mode check
// sees it: no key bytes.
type keyVersionMode struct {
	version int
	kcv     string
	mode    pinblock.ModeOfUse
}

// keyModes returns the versions of id that role op would use (every
// version still deciphering for OpDecrypt, the current one otherwise), or
// nil for an id it does not hold (checkKeyLabels names those).
type keyModes func(id string, op pinblock.KeyOp) []keyVersionMode

// checkKeyModes refuses a routing configuration that gives a key a role its
// TR-31 mode of use does not permit (ANSI X9.143 / TR-31:2018 Table 6; PCI
// PIN: a key is used only for its intended purpose). pingate deciphers an
// acquirer's PIN blocks under its zone PIN keys (keys[…]: B, D or N), takes
// its key changes under its ZMK (zmk: unwrap, B, D or N) and enciphers under
// an issuer's zone PIN key (key: B, E or N). It runs when a configuration is
// loaded — start-up, reload, check-config — so the translation path never
// looks at modes. Every refusal names the place in the config, the key id,
// version, KCV and mode, and wraps pinblock.ErrModeOfUse.
func checkKeyModes(rc routing.Config, modes keyModes) error {
	var errs []error
	check := func(where, id string, op pinblock.KeyOp) {
		for _, v := range modes(id, op) {
			if !v.mode.Allows(op) {
				errs = append(errs, fmt.Errorf("%s: %w: key %s v%d (KCV %s) has mode of use %s, which does not permit %s", where, pinblock.ErrModeOfUse, id, v.version, v.kcv, v.mode, op))
			}
		}
	}
	for _, a := range rc.Acquirers {
		idx := make([]int, 0, len(a.Keys))
		for i := range a.Keys {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		for _, i := range idx {
			check(fmt.Sprintf("routing.acquirers (%s): keys[%d]", a.ID, i), a.Keys[i], pinblock.OpDecrypt)
		}
		if a.ZMK != "" {
			check(fmt.Sprintf("routing.acquirers (%s): zmk", a.ID), a.ZMK, pinblock.OpUnwrap)
		}
	}
	for _, is := range rc.Issuers {
		check(fmt.Sprintf("routing.issuers (%s): key", is.ID), is.Key, pinblock.OpEncrypt)
	}
	return errors.Join(errs...)
}

// ringModes reads the modes of the keys ring holds at now.
func ringModes(ring *pinblock.Keyring, now time.Time) keyModes {
	return func(id string, op pinblock.KeyOp) []keyVersionMode {
		var ks []pinblock.Key
		if op == pinblock.OpDecrypt {
			ks = ring.Deciphering(id, now)
		} else if k, err := ring.Lookup(pinblock.KeyRef{ID: id}, now); err == nil {
			ks = []pinblock.Key{k}
		}
		out := make([]keyVersionMode, 0, len(ks))
		for _, k := range ks {
			out = append(out, keyVersionMode{version: k.Version(), kcv: k.KCV(), mode: k.ModeOfUse()})
		}
		return out
	}
}

// storeModes reads the modes of the versions stored, as Store.Load would
// load them at now with the grace window grace.
func storeModes(stored []keystore.StoredKey, grace time.Duration, now time.Time) keyModes {
	return func(id string, op pinblock.KeyOp) []keyVersionMode {
		var out []keyVersionMode
		for _, s := range stored { // by id, then version
			if s.ID != id || s.RetiredAt != nil && !now.Before(s.RetiredAt.Add(grace)) {
				continue
			}
			v := keyVersionMode{version: s.Version, kcv: s.KCV, mode: s.ModeOfUse}
			if op != pinblock.OpDecrypt && len(out) > 0 {
				out[0] = v // only the current (highest) version
				continue
			}
			out = append(out, v)
		}
		return out
	}
}

// CheckPayShieldFiles is, for pingate check-config, what the start-up
// reads of module payshield's files: the key file, and the TLS CA,
// certificate and key. One that is missing, unreadable or not what it
// should be is refused here as serve refuses it, rather than found when
// the gateway starts. Without module payshield it does nothing. Errors
// name every file at fault.
func CheckPayShieldFiles(cfg Config) error {
	sec := cfg.WithDefaults().Security
	if sec.Module != "payshield" {
		return nil
	}
	var errs []error
	if sec.PayShield.KeyFile != "" {
		if _, err := PayShieldKeys(sec, slog.New(slog.DiscardHandler)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := sec.PayShield.Client(slog.New(slog.DiscardHandler)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CheckKeyLabels is, for pingate check-config, the start-up's check that
// every key the routes name is held by the module that translates: the
// development keys and the key store's, or in payShield mode the key file's
// and the development keys under the test LMK. Errors name every key.
func CheckKeyLabels(cfg Config) error {
	cfg = cfg.WithDefaults()
	sec := cfg.Security
	var held []pinblock.KeyInfo
	if sec.Module == "payshield" {
		keys, err := PayShieldKeys(sec, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		for _, k := range keys.List() {
			held = append(held, pinblock.KeyInfo{ID: k.ID})
		}
	} else {
		ring, _, err := loadKeyring(sec)
		if err != nil {
			return err
		}
		defer ring.Zeroize()
		held = ring.List()
	}
	return checkKeyLabels(cfg.Routing, held)
}

// CheckKeyModes is checkKeyModes for pingate check-config: with a software
// key store (security.key_store, security.module software), it opens the
// store — the LMK must be readable, as it must be for serve — and checks the
// modes of use of the keys the routes name there. Keys outside the store
// (development keys) carry no restriction; keys in a payShield are checked
// by the HSM client when used. Errors name every refusal.
func CheckKeyModes(cfg Config) error {
	cfg = cfg.WithDefaults()
	sec := cfg.Security
	if sec.KeyStore == "" || sec.Module == "payshield" {
		return nil
	}
	stored, err := listKeyStore(sec)
	if err != nil {
		return err
	}
	return checkKeyModes(cfg.Routing, storeModes(stored, cmp.Or(sec.RotationGrace, keystore.DefaultGrace), time.Now()))
}
