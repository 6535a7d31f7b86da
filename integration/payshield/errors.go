package payshield

import (
	"errors"
	"fmt"

	"pingate/pinblock"
)

// ErrAlgorithm is returned for a key or route whose algorithm this client
// cannot use on a variant-LMK payShield (AES, SM4): the route is refused, it
// never falls back to software. It wraps pinblock.ErrKeyAlgorithmMismatch.
var ErrAlgorithm = fmt.Errorf("%w: not a TDES key; the payShield module does not translate it", pinblock.ErrKeyAlgorithmMismatch)

// ErrNotSupported is a request this client cannot send to a payShield yet;
// nothing was sent, and nothing falls back to software.
var ErrNotSupported = errors.New("not supported by the payShield module")

// ErrProtocol marks a response the client cannot read (wrong response code,
// short fields) or an HSM complaint about the client's own message format.
// It wraps pinblock.ErrModuleUnavailable: the caller answers "system
// unavailable" and an operator is alerted.
var ErrProtocol = fmt.Errorf("%w: payShield protocol error", pinblock.ErrModuleUnavailable)

// Error is an error code other than 00 returned by the HSM. It unwraps to the
// pinblock error the code means (see codeTable), so callers branch with
// errors.Is on pinblock's sentinels.
type Error struct {
	Command string // the command code sent, e.g. "CC"
	Code    string // the HSM's 2-digit error code
	// Alert is set for codes that mean the HSM or our use of it is broken
	// (LMK parity, command disabled, bad message format) rather than the
	// request's data: someone must look.
	Alert bool
	err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("payShield %s error %s (%s): %v", e.Command, e.Code, codeText(e.Code), e.err)
}

func (e *Error) Unwrap() error { return e.err }

// codeRow is one published error code and what it means to the gateway.
type codeRow struct {
	text  string
	err   error
	alert bool
}

// codeTable maps the payShield host-command error codes (payShield Host
// Command Reference, "Error codes" appendix) to the module's typed errors.
// It is the ONE place that does so; errors_test.go checks it row by row.
// Codes not listed become ErrModuleUnavailable with an alert.
var codeTable = map[string]codeRow{
	"01": {"verification failure or warning", pinblock.ErrKCVMismatch, false},
	"02": {"key inappropriate length for algorithm", pinblock.ErrInvalidKey, true},
	"03": {"invalid number of components", pinblock.ErrInvalidKey, false},
	"04": {"invalid key type code", pinblock.ErrKeyUsage, true},
	"05": {"invalid key length flag", pinblock.ErrInvalidKey, true},
	"10": {"source key parity error", pinblock.ErrInvalidKey, true},
	"11": {"destination key parity error", pinblock.ErrInvalidKey, true},
	"12": {"contents of user storage not available", pinblock.ErrModuleUnavailable, true},
	"13": {"master key (LMK) parity error", pinblock.ErrModuleUnavailable, true},
	"14": {"PIN encrypted under LMK pair 02-03 is invalid", pinblock.ErrInvalidPINBlock, false},
	"15": {"invalid input data", ErrProtocol, true},
	"16": {"console or printer not ready", pinblock.ErrMailerUnavailable, true},
	"17": {"HSM not in the authorised state", pinblock.ErrModuleUnavailable, true},
	"20": {"PIN block does not contain valid values", pinblock.ErrInvalidPINBlock, false},
	"22": {"invalid account number", pinblock.ErrInvalidPAN, false},
	"23": {"invalid PIN block format code", pinblock.ErrUnsupportedFormat, false},
	"24": {"PIN is fewer than 4 or more than 12 digits", pinblock.ErrInvalidPIN, false},
	"26": {"invalid key scheme", pinblock.ErrInvalidKey, true},
	"27": {"incompatible key length", pinblock.ErrInvalidKey, true},
	"28": {"invalid key type", pinblock.ErrKeyUsage, true},
	"29": {"key function not permitted", pinblock.ErrKeyUsage, true},
	"41": {"internal hardware/software error", pinblock.ErrModuleUnavailable, true},
	"42": {"DES failure", pinblock.ErrModuleUnavailable, true},
	"68": {"command has been disabled", pinblock.ErrModuleUnavailable, true},
	"69": {"PIN block format has been disabled", pinblock.ErrUnsupportedFormat, true},
	"80": {"data length error", ErrProtocol, true},
	"90": {"data parity error in the request message", ErrProtocol, true},
	"91": {"longitudinal redundancy check error", ErrProtocol, true},
}

func codeText(code string) string {
	if r, ok := codeTable[code]; ok {
		return r.text
	}
	return "unknown error code"
}

// errorFor is the error for an HSM error code other than "00".
func errorFor(command, code string) *Error {
	r, ok := codeTable[code]
	if !ok {
		return &Error{Command: command, Code: code, Alert: true, err: pinblock.ErrModuleUnavailable}
	}
	return &Error{Command: command, Code: code, Alert: r.alert, err: r.err}
}

// IsAlert reports whether err is an HSM error an operator must look at.
func IsAlert(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Alert
	}
	return errors.Is(err, ErrProtocol)
}
