// Package pinblock builds, parses, enciphers and translates ISO 9564-1 PIN
// blocks, and holds the keys that do it.
//
// Standards followed:
//   - ISO 9564-1:2017 PIN block formats 0, 1, 2, 3 (8 bytes, TDES) and 4 (16
//     bytes, AES; the PIN field and PAN field are combined as
//     E(K, E(K, PIN field) XOR PAN field)). A PIN is 4 to 12 digits.
//   - GB/T 32907-2016 SM4 (through github.com/emmansun/gmsm/sm4), approved
//     for PIN encipherment by GB/T 21078.4-2023 (the Chinese adoption of ISO
//     9564-2), in two 16-byte PIN block formats: Format4SM4 ("SM4-4", the
//     format 4 construction with SM4 as the cipher) and Format0SM4 ("SM4-0",
//     the 128-bit extension of format 0 Chinese bank PIN pads use: 0, L,
//     PIN, F fill over 32 nibbles XOR 20 zero nibbles and the 12 account
//     digits, enciphered once). On the wire they travel as format numbers 4
//     and 0; the cipher comes from configuration (FormatFor, Format.Number).
//     SM4 keys are 16 bytes; their check value is the leftmost 8 bytes of
//     SM4(K, 0¹⁶) (SM4KCVLength), and keys under an SM4 ZMK are SM4-ECB.
//   - PCI PIN Security Requirements v3.1, requirement 3-3: a block in format 0,
//     3 or 4 is only ever translated into 0, 3 or 4; format 1 may go to 0, 1, 3
//     or 4; format 2 (IC card offline PIN) is never translated. See
//     TranslationAllowed. Both SM4 formats are PAN-bound and join 0, 3 and 4
//     in that rule.
//   - ANSI X9.24-1:2017 and ASC X9 TR-31 key check values: the leftmost 3 bytes
//     of E(K, 0⁸) for TDES, the leftmost 5 bytes of AES-CMAC(K, 0¹⁶) for AES
//     (SM4: see above).
//   - NIST SP 800-38F / RFC 3394 AES Key Wrap for keys imported under an AES
//     ZMK; TDES-ECB for keys under a TDES ZMK.
//   - ANSI X9.143 / ASC X9 TR-31:2018 key blocks, versions B and D (wrap and
//     unwrap) and A and C (unwrap only): see WrapKeyBlock, UnwrapKeyBlock.
//   - Split knowledge (ANSI X9.24-1 key components): a ZMK combined by XOR from
//     2–3 clear components, each checked against its own KCV.
//
// # Key custody
//
// The key store and the custody log are package pinblock/keystore. This
// package gives it the few cipher steps it needs without handing out key
// bytes: UnwrapKey (a key enciphered under a ZMK), RandomKeyMaterial,
// NewDerivedMAC (MACs under a key derived from the LMK), CheckKEKStrength and
// the TR-31 functions. docs/key-custody.md describes the hierarchy and the
// ceremonies.
//
// # Secrets
//
// Keys are opaque (Key prints as id, usage, version and KCV). A clear PIN
// exists only as a SecretPIN, which never prints, or inside the local buffers
// of a translation, which are cleared before it returns; clearing is
// best-effort, since the Go runtime may copy memory where we cannot reach it.
// Errors never carry a PIN, a PIN block, a PAN or key bytes, and a malformed
// block is ErrInvalidPINBlock without saying what is wrong with it.
//
// # Security modules
//
// Callers reach keys and PINs only through the SecurityModule interface. The
// SoftwareModule in this package keeps its keys in an in-memory Keyring and
// does the cryptography in process: it is for development, test and
// simulation. PCI PIN expects production PIN translation inside an approved
// HSM; a client for one (a Thales payShield mapping Translate to the CA/CC host
// commands) must fit behind SecurityModule without changing its callers. A
// module without SM4 refuses SM4 routes (Route.UsesSM4) and keys with
// ErrSM4Unsupported: never a silent fall-back to software.
//
// # Prepared routes
//
// The gateway translates along a handful of routes (an acquirer's zone PIN
// key and format to an issuer's) millions of times. SecurityModule.Prepare
// checks a Route once and returns its Translator, which does not look the
// key labels up on every call: it resolves them again only when the keyring
// has changed since (a rotation, an import, an online key change, a reload)
// or when a grace window among its keys has ended. A hardware client maps
// the same idea onto what it has: the route's keys under the LMK for a
// payShield, key object handles for a PKCS #11 module. A Translator writes
// into the caller's buffer, so a translation allocates nothing.
//
// A translation from format 4 to format 4 re-enciphers the plain-text PIN
// field it deciphered and checked, random half included: that half was drawn
// fresh by whoever built the block, and only the key changes. Every other
// translation builds the new block's PIN field, with fresh fill from
// crypto/rand where the format has any.
//
// # Keyring
//
// A Keyring holds keys by id with versions. Rotating a key makes the new
// version current; the previous one still deciphers for a grace window, so
// blocks enciphered by a peer that has not switched yet still translate.
package pinblock
