package pinblock

import (
	"context"
	"errors"
	"time"
)

// Format is an ISO 9564-1 PIN block format.
type Format int

// ISO 9564-1:2017 PIN block formats.
const (
	Format0 Format = 0 // PIN XOR PAN, TDES (ANSI X9.8)
	Format1 Format = 1 // PIN with random fill, no PAN, TDES
	Format2 Format = 2 // IC card offline PIN; never enciphered for interchange
	Format3 Format = 3 // PIN XOR PAN with A–F fill, TDES
	Format4 Format = 4 // AES, 128-bit, PIN field and PAN field enciphered twice

	// Format4SM4 is the ISO 9564-1 format 4 construction with SM4 as the
	// block cipher (GB/T 21078.4-2023 approves SM4 for PIN encipherment):
	// the same 16-byte plain-text PIN field and PAN field as Format4,
	// combined as SM4(K, SM4(K, PIN field) XOR PAN field).
	Format4SM4 Format = 0x14
	// Format0SM4 is the 128-bit extension of format 0 that Chinese bank PIN
	// pads and switches use with SM4 working keys: the PIN field 0, L, the
	// PIN, then F to 32 nibbles, XOR a PAN field of 20 zero nibbles and the
	// 12 rightmost PAN digits excluding the check digit; the 16 bytes are
	// enciphered once under SM4. Source: the published PIN pad example in
	// testdata/sm4-vectors.json ("csdn-104625499").
	Format0SM4 Format = 0x10
)

// Errors that the security module returns and callers branch on. Messages
// never carry a PIN, a PIN block, a PAN or key bytes.
var (
	ErrInvalidPINBlock      = errors.New("invalid PIN block")
	ErrInvalidPIN           = errors.New("invalid PIN")
	ErrInvalidPAN           = errors.New("invalid PAN")
	ErrUnsupportedFormat    = errors.New("unsupported PIN block format")
	ErrForbiddenTranslation = errors.New("translation not permitted") // PCI PIN 3-3
	ErrNewPINRejected       = errors.New("new PIN rejected")          // weak-PIN exclusion list
	ErrUnknownKey           = errors.New("unknown key")
	ErrKeyAlgorithmMismatch = errors.New("key algorithm does not fit the PIN block format")
	ErrModuleUnavailable    = errors.New("security module unavailable")
	// ErrSM4Unsupported is what a security module without SM4 returns for
	// an SM4 key or PIN block format (see Route.UsesSM4), so a route that
	// needs SM4 is refused clearly instead of falling back to software.
	ErrSM4Unsupported = errors.New("security module has no SM4")
)

// KeyRef names a key held by the security module by its label. Version 0 means
// the current version; during a rotation's grace window the module also tries
// the previous version when deciphering.
type KeyRef struct {
	ID      string
	Version int
}

// TranslateRequest moves one enciphered PIN block from one key and format to
// another. The PAN is the card's full PAN; it never changes in a translation.
type TranslateRequest struct {
	PAN        string
	Block      []byte
	From       KeyRef
	FromFormat Format
	To         KeyRef
	ToFormat   Format
}

// PairRequest translates the blocks of one PIN operation in one call: Old is the
// current PIN block (nil for a reset or unblock), New the new PIN block (nil for
// an unblock). When CheckNewPIN is set, a new PIN on the exclusion list is
// refused with ErrNewPINRejected.
type PairRequest struct {
	PAN         string
	Old, New    []byte
	From        KeyRef
	FromFormat  Format
	To          KeyRef
	ToFormat    Format
	CheckNewPIN bool
}

// KeyInfo describes a key without revealing it.
type KeyInfo struct {
	ID        string    `json:"id"`
	Usage     Usage     `json:"usage"`
	Algorithm Algorithm `json:"algorithm"`
	Length    int       `json:"length"`
	Version   int       `json:"version"`
	KCV       string    `json:"kcv"`
	Created   time.Time `json:"created"`
}

// ImportRequest brings a key in under a ZMK the module already holds:
// either as a TR-31 key block (KeyBlock, the ZMK as key block protection
// key) or, the legacy way, enciphered (Enciphered) and checked against KCV.
type ImportRequest struct {
	ID         string
	Usage      Usage
	Algorithm  Algorithm // with KeyBlock: empty, or the algorithm the block must carry
	Enciphered []byte    // the key under the ZMK (TDES ECB for TDES ZMKs); not with KeyBlock
	// KeyBlock is a TR-31 / ANSI X9.143 key block made under the ZMK. Its
	// MAC authenticates the key and binds it to its usage (it must permit
	// Usage); its KC and KP optional blocks are verified when present.
	KeyBlock string
	ZMK      KeyRef
	KCV      string // required with Enciphered; with KeyBlock, checked if given
	Who, Why string // recorded in the custody log
	// Rotate makes the key the next version of an ID the module already
	// holds (an online key change), with the same usage and algorithm; the
	// version it replaces keeps deciphering for the grace window. Without
	// it, an ID already held is ErrKeyExists.
	Rotate bool
}

// SecurityModule is what the rest of pingate calls for anything that touches a
// PIN or a key. The software implementation in this package is for
// development, test and simulation; PCI PIN requires production translation
// inside an approved HSM, which must fit behind this same interface (a payShield
// client would map Translate to the CC/CA host commands and TranslatePair to two
// of them).
//
// Every method honours ctx: a hardware client stops waiting when it expires.
type SecurityModule interface {
	// Translate deciphers req.Block under req.From, checks it, and re-enciphers
	// it under req.To in req.ToFormat, enforcing PCI PIN 3-3.
	Translate(ctx context.Context, req TranslateRequest) ([]byte, error)
	// TranslatePair translates the old and new blocks of one operation in one call.
	TranslatePair(ctx context.Context, req PairRequest) (oldOut, newOut []byte, err error)
	// Prepare checks a route once and returns its Translator, which
	// translates along it without resolving key labels on every call (a
	// payShield client would keep the route's keys under LMK; a PKCS #11
	// one, its key handles).
	Prepare(ctx context.Context, r Route) (Translator, error)
	// Import adds a key enciphered under a ZMK.
	Import(ctx context.Context, req ImportRequest) (KeyInfo, error)
	// Generate makes a random key of the given usage and algorithm.
	Generate(ctx context.Context, id string, usage Usage, alg Algorithm, length int) (KeyInfo, error)
	// KCV returns the check value of a held key.
	KCV(ctx context.Context, ref KeyRef) (string, error)
	// GeneratePIN draws a random PIN that passes the module's weak-PIN
	// policy and returns it enciphered for the issuer and sealed for
	// PrintMailer; the clear PIN never leaves the module (payShield JA + JG).
	GeneratePIN(ctx context.Context, req GeneratePINRequest) (GeneratedPIN, error)
	// PrintMailer prints the PIN mailer of a PIN sealed by GeneratePIN: the
	// one place that PIN exists in clear (payShield PE). Callers print only
	// once the issuer has taken the PIN, so no mailer carries a PIN that never
	// took effect.
	PrintMailer(ctx context.Context, req MailerRequest) error
}
