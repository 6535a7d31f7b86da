package pinblock

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// TranslationAllowed reports whether PCI PIN Security Requirement 3-3 permits
// translating a block of format from into format to: formats 0, 3 and 4 only
// into 0, 3 or 4 (never into format 1, which carries no PAN); format 1 into
// 0, 1, 3 or 4; format 2 into and from nothing (it never travels enciphered).
func TranslationAllowed(from, to Format) bool {
	switch from {
	case Format0, Format3, Format4:
		return to == Format0 || to == Format3 || to == Format4
	case Format1:
		return to == Format0 || to == Format1 || to == Format3 || to == Format4
	}
	return false
}

// checkTranslation returns ErrUnsupportedFormat for an unknown format and
// ErrForbiddenTranslation for a pair PCI PIN 3-3 forbids.
func checkTranslation(from, to Format) error {
	if !from.Valid() || !to.Valid() {
		return fmt.Errorf("%w: from %d to %d", ErrUnsupportedFormat, int(from), int(to))
	}
	if !TranslationAllowed(from, to) {
		return fmt.Errorf("%w: %s to %s", ErrForbiddenTranslation, from, to)
	}
	return nil
}

// pairJob is one translation of up to two blocks of the same card between
// the same keys. The clear PINs exist only in the scratch space of
// translatePair and are cleared before it returns.
type pairJob struct {
	pan        string
	old, new   []byte // enciphered under one of from; either may be nil
	fromFormat Format
	toFormat   Format
	// from holds the deciphering candidates, tried in order (current version
	// first); nfrom of them are set. An array, not a slice: a slice would
	// carry the caller's backing array to the heap with the job.
	from   [maxVersions]Key
	nfrom  int
	to     Key
	rnd    io.Reader  // fill source; nil means crypto/rand
	policy *PINPolicy // checked against the new PIN when not nil
}

// translatePair deciphers job.old and job.new, checks them, and re-enciphers
// them into oldOut and newOut (each job.toFormat.BlockSize() bytes, owned by
// the caller). The first candidate key under which the first present block
// checks out is used for both blocks. The PAN never changes.
//
// Errors: ErrUnsupportedFormat, ErrForbiddenTranslation,
// ErrKeyAlgorithmMismatch, ErrInvalidKey (zeroized key), ErrInvalidPAN,
// ErrInvalidPINBlock (no candidate key gives a valid block), ErrNewPINRejected.
func translatePair(job *pairJob, oldOut, newOut []byte) error {
	if err := checkTranslation(job.fromFormat, job.toFormat); err != nil {
		return err
	}
	if job.old == nil && job.new == nil {
		return fmt.Errorf("%w: no block to translate", ErrInvalidPINBlock)
	}
	if job.nfrom == 0 {
		return fmt.Errorf("%w: no deciphering key", ErrUnknownKey)
	}
	to, err := checkKeyFor(job.toFormat, job.to)
	if err != nil {
		return err
	}

	var oldPIN, newPIN SecretPIN
	s := getScratch()
	// One defer, not three: with many returns Go open-codes only a single
	// defer, and the deferred-call machinery cost a tenth of an AES translation.
	defer func() {
		oldPIN.Zeroize()
		newPIN.Zeroize()
		s.put()
	}()

	first, firstPIN := job.old, &oldPIN
	if first == nil {
		first, firstPIN = job.new, &newPIN
	}
	var lastErr error
	found := false
	var fromKey Key
	for _, k := range job.from[:job.nfrom] {
		b, err := checkKeyFor(job.fromFormat, k)
		if err != nil {
			return err
		}
		err = decipherIn(job.fromFormat, first, job.pan, b, firstPIN, s)
		if err == nil {
			found, fromKey = true, k
			break
		}
		if !errors.Is(err, ErrInvalidPINBlock) {
			return err // a bad PAN fails under every key
		}
		lastErr = err
	}
	if !found {
		return lastErr
	}
	if job.old != nil && job.new != nil {
		b, _ := checkKeyFor(job.fromFormat, fromKey)
		if err := decipherIn(job.fromFormat, job.new, job.pan, b, &newPIN, s); err != nil {
			return err
		}
	}

	if job.policy != nil && job.new != nil {
		if job.policy.weak(newPIN.digits(), job.pan) {
			return ErrNewPINRejected
		}
		if job.policy.RejectUnchanged && job.old != nil &&
			subtle.ConstantTimeCompare(oldPIN.digits(), newPIN.digits()) == 1 {
			return ErrNewPINRejected
		}
	}

	if job.old != nil {
		if err := encipherIn(oldOut, job.toFormat, &oldPIN, job.pan, to, job.rnd, s); err != nil {
			return err
		}
	}
	if job.new != nil {
		if err := encipherIn(newOut, job.toFormat, &newPIN, job.pan, to, job.rnd, s); err != nil {
			return err
		}
	}
	return nil
}

// TranslateBlock deciphers block (format fromFormat, under from), checks it,
// and re-enciphers the same PIN for the same PAN in toFormat under to, with
// fresh random fill from crypto/rand. It enforces PCI PIN 3-3 (see
// TranslationAllowed) and the format/algorithm fit, but not key usages: that is
// the SecurityModule's job. The clear PIN exists only in local buffers that are
// cleared before return (best-effort). The result is a new slice.
func TranslateBlock(block []byte, pan string, from Key, fromFormat Format, to Key, toFormat Format) ([]byte, error) {
	return translateBlock(block, pan, from, fromFormat, to, toFormat, nil)
}

func translateBlock(block []byte, pan string, from Key, fromFormat Format, to Key, toFormat Format, rnd io.Reader) ([]byte, error) {
	if !toFormat.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedFormat, int(toFormat))
	}
	job := pairJob{
		pan: pan, old: block, fromFormat: fromFormat, toFormat: toFormat,
		from: [maxVersions]Key{from}, nfrom: 1, to: to, rnd: rnd,
	}
	out := make([]byte, toFormat.BlockSize())
	if err := translatePair(&job, out, nil); err != nil {
		return nil, err
	}
	return out, nil
}
