package main

import (
	"fmt"
	"time"

	"pingate/pinblock"
)

// loadKeyStore loads the key store named by cfg into ring; with no key store
// configured there is nothing to load.
func loadKeyStore(cfg SecurityConfig, ring *pinblock.Keyring) error {
	if cfg.KeyStore == "" {
		return nil
	}
	st, err := pinblock.OpenStore(pinblock.StoreConfig{
		Path: cfg.KeyStore, LogPath: cfg.CustodyLog, Grace: cfg.RotationGrace,
		LMK: pinblock.LMKRef{File: cfg.LMKFile, Env: cfg.LMKEnv},
	})
	if err != nil {
		return fmt.Errorf("security.key_store: %w", err)
	}
	defer st.Close()
	if _, err := st.Load(ring, time.Now()); err != nil {
		return fmt.Errorf("security.key_store: %w", err)
	}
	return nil
}
