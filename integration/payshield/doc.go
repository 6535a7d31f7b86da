// Package payshield is a pinblock.SecurityModule that runs every PIN and key
// operation inside a Thales payShield 9000 / 10K hardware security module,
// through its published host-command protocol (payShield Host Command
// Reference): a 2-byte big-endian length, a message header of configurable
// length that the HSM echoes, a 2-character command code and its fields; the
// response carries the command code with its second character incremented
// (CA → CB) and a 2-digit error code.
//
// The gateway never holds a clear key or a clear PIN in this mode: keys are
// held as tokens enciphered under the HSM's LMK (variant scheme U, T or X,
// or under a key-block LMK Thales key blocks, scheme S, whose header the
// client checks for key usage and mode of use), with the check values the
// HSM reported, and PIN blocks are handed to the HSM as they arrived.
//
// Commands used: NC (diagnostics) and B2 (echo) for health; CA (TPK → ZPK)
// and CC (ZPK → ZPK) for translation; A0 (generate), A6 (import under ZMK),
// FA (ZPK from ZMK to LMK), BU (check value) for keys; JA (random PIN), JG
// (PIN from LMK to ZPK) and PE (print a PIN mailer) for generated-PIN resets.
// PIN block format codes: ISO 0 = 01, ISO 1 = 05, ISO 3 = 47; ISO 4 (48)
// needs AES keys under an AES key-block LMK, which this client does not support:
// such routes are refused with pinblock.ErrUnsupportedFormat. Keys of any
// algorithm other than TDES (AES, SM4) are refused with ErrAlgorithm: the
// module never falls back to software.
//
// The package hsmsim beside it is a simulator of the same protocol over the
// software module with the published Thales test LMK, for development, the
// demo and CI; the tests also run this client against pythales, an
// implementation not written here.
package payshield
