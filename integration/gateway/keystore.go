package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"pingate/pinblock"
	"pingate/pinblock/keystore"
	"pingate/routing"
)

// loadKeyStore loads the key store named by cfg into ring; with no key store
// configured there is nothing to load.
func loadKeyStore(cfg SecurityConfig, ring *pinblock.Keyring) error {
	if cfg.KeyStore == "" {
		return nil
	}
	st, err := OpenKeyStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Load(ring, time.Now()); err != nil {
		return fmt.Errorf("security.key_store: %w", err)
	}
	return nil
}

// keyChanges takes acquirers' online key changes (0800/161) in a gateway with
// a key store. A key the store holds is rotated there first — kept under the
// LMK, the handover recorded in the custody log, so it survives a restart —
// and then in the running module. A key the store does not hold (a
// development key) changes in memory only, as it would without a store.
type keyChanges struct {
	sec SecurityConfig
	hsm pinblock.SecurityModule
	log *slog.Logger
}

var _ routing.KeyImporter = (*keyChanges)(nil)

func (s *keyChanges) Import(ctx context.Context, req pinblock.ImportRequest) (pinblock.KeyInfo, error) {
	if !req.Rotate {
		return s.hsm.Import(ctx, req)
	}
	st, err := OpenKeyStore(s.sec)
	if err != nil {
		return pinblock.KeyInfo{}, err
	}
	stored, held, err := rotateStored(st, req)
	if errors.Is(err, keystore.ErrCustodyPending) {
		// The new version is in the store, its custody record with it; only
		// the append to the log failed, and the next change completes it.
		s.log.WarnContext(ctx, "key change stored; its custody record waits in the key store for the log", "key", req.ID, "error", err)
		err = nil
	}
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("security.key_store: %w", cerr)
	}
	if err != nil {
		return stored, err
	}
	if !held {
		s.log.WarnContext(ctx, "key change for a key outside the key store: held in memory only", "key", req.ID)
		return s.hsm.Import(ctx, req)
	}
	info, err := s.hsm.Import(ctx, req)
	if err != nil {
		return info, fmt.Errorf("key %s v%d is in the key store but the running module refused it (a reload loads it): %w",
			req.ID, stored.Version, err)
	}
	return info, nil
}

// rotateStored rotates req.ID in st to the key req carries, if st holds that
// id (held).
func rotateStored(st *keystore.Store, req pinblock.ImportRequest) (stored pinblock.KeyInfo, held bool, err error) {
	keys, err := st.List()
	if err != nil {
		return stored, false, fmt.Errorf("security.key_store: %w", err)
	}
	if !slices.ContainsFunc(keys, func(k keystore.StoredKey) bool { return k.ID == req.ID }) {
		return stored, false, nil
	}
	rr := keystore.RotateRequest{
		ID: req.ID, Enciphered: req.Enciphered, ZMK: req.ZMK.ID, KCV: req.KCV,
		Custodian: keystore.Custodian{Who: req.Who, Why: req.Why},
	}
	if req.KeyBlock != "" {
		rr = keystore.RotateRequest{ID: req.ID, Block: req.KeyBlock, KBPK: req.ZMK.ID,
			Custodian: keystore.Custodian{Who: req.Who, Why: req.Why}}
	}
	stored, err = st.Rotate(rr)
	return stored, true, err
}
