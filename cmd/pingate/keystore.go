package main

import "pingate/pinblock"

// loadKeyStore loads the key store named by cfg into ring; with no key store
// configured there is nothing to load.
func loadKeyStore(cfg SecurityConfig, ring *pinblock.Keyring) error {
	if cfg.KeyStore == "" {
		return nil
	}
	return errKeyStoreNotWired
}
