// Package keystore keeps pingate's keys at rest and their audit trail: the
// file key store, each key enciphered under the local master key (LMK) as an
// ANSI X9.143 (TR-31) key block, and the hash-chained, LMK-keyed custody log
// PCI PIN requirement 28 asks for (see store.go and custody.go for the
// commit order and the chain).
//
// It is named for its job, keeping keys (the store); the custody log lives
// here too because only the store writes keyed records and every change is
// committed to both together. Key ceremonies' cipher steps (combining
// components, unwrapping under a ZMK, TR-31, MACs derived from the LMK)
// stay in package pinblock, the only code that reads key bytes: this package
// handles keys as opaque pinblock.Key values and never sees their bytes.
package keystore
