package pinblock

import (
	"crypto/cipher"
	"crypto/subtle"
	"fmt"
	"io"
)

// TranslationAllowed reports whether PCI PIN Security Requirement 3-3 permits
// translating a block of format from into format to: formats 0, 3 and 4 only
// into 0, 3 or 4 (never into format 1, which carries no PAN); format 1 into
// 0, 1, 3 or 4; format 2 into and from nothing (it never travels enciphered).
//
// The SM4 formats extend the rule the way it reads: both are PAN-bound
// (Format0SM4 and Format4SM4 carry the PAN field, as 0, 3 and 4 do), so they
// translate into and from the other PAN-bound formats (0, 3, 4, SM4-0,
// SM4-4) and never into format 1; format 1 may go to either of them. So a
// block moves between SM4, TDES and AES zones in one call, and the only pairs
// refused are the ones into format 1 from a PAN-bound format and anything
// with format 2. docs/design.md gives the table.
func TranslationAllowed(from, to Format) bool {
	switch {
	case from.panBound():
		return to.panBound()
	case from == Format1:
		return to == Format1 || to.panBound()
	}
	return false
}

// panBound reports whether f binds the PIN to the PAN (formats 0, 3, 4 and
// the SM4 formats).
func (f Format) panBound() bool { return f.Valid() && f.usesPAN() }

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
// the same keys. The clear PINs exist only on translatePair's stack and in
// the caller's output buffers, and are cleared or overwritten before it
// returns.
type pairJob struct {
	pan        string
	old, new   []byte // enciphered under one of from; either may be nil
	fromFormat Format
	toFormat   Format
	fill       fillFrom
	policy     *PINPolicy // checked against the new PIN when not nil
}

// checkFor refuses keys whose algorithm does not fit the formats
// (ErrKeyAlgorithmMismatch), and format 2 (ErrForbiddenTranslation).
func (rk *routeKeys) checkFor(from, to Format) error {
	for _, k := range rk.from[:rk.nfrom] {
		if _, err := checkKeyFor(from, k); err != nil {
			return err
		}
	}
	_, err := checkKeyFor(to, rk.to)
	return err
}

// workSize is the length of the output buffers translatePair needs: the
// larger of the two block sizes, since each output is also the working space
// of its block's deciphering.
func workSize(from, to Format) int { return max(from.BlockSize(), to.BlockSize()) }

// translatePair deciphers job.old and job.new, checks them, and re-enciphers
// them into oldOut[:n] and newOut[:n], n = job.toFormat.BlockSize(). The
// caller has checked the formats (checkTranslation) and the keys' fit to them
// (checkKeys). Each output must be workSize(job.fromFormat, job.toFormat)
// bytes (or nil when its block is nil), owned by the caller; it is the only
// working space of its block, so nothing on this path reaches the heap. Bytes
// past n are zero on return, and on error both outputs are cleared. The first
// candidate key under which the first present block checks out is used for
// both blocks. The PAN never changes.
//
// Errors: ErrInvalidKey (zeroized key), ErrInvalidPAN, ErrInvalidPINBlock (no
// candidate key gives a valid block), ErrNewPINRejected.
func translatePair(job *pairJob, keys *routeKeys, oldOut, newOut []byte) (err error) {
	if job.old == nil && job.new == nil {
		return fmt.Errorf("%w: no block to translate", ErrInvalidPINBlock)
	}
	if keys.nfrom == 0 {
		return fmt.Errorf("%w: no deciphering key", ErrUnknownKey)
	}
	to, err := keys.to.blockCipher()
	if err != nil {
		return err
	}
	var pf panFields
	if job.fromFormat.usesPAN() || job.toFormat.usesPAN() {
		if err = pf.set(job.pan); err != nil {
			return err
		}
	}

	var oldPIN, newPIN SecretPIN
	n := job.toFormat.BlockSize()
	// One defer, not several: with many returns Go open-codes only a single
	// defer, and the deferred-call machinery cost a tenth of an AES translation.
	defer func() {
		oldPIN.Zeroize()
		newPIN.Zeroize()
		if err != nil {
			clear(oldOut)
			clear(newOut)
		} else {
			clear(oldOut[min(n, len(oldOut)):])
			clear(newOut[min(n, len(newOut)):])
		}
	}()

	// The clear PINs are taken out of their blocks only when they are
	// needed: to build another format's PIN field, or for the weak-PIN
	// policy. From format 4 to format 4 they otherwise stay in the checked
	// plain-text field, which is enciphered again as it is.
	oldP, newP := &oldPIN, &newPIN
	if job.fromFormat.iso4() && job.toFormat.iso4() {
		oldP, newP = nil, nil
		if job.policy != nil && job.new != nil {
			oldP, newP = &oldPIN, &newPIN
		}
	}
	first, firstOut, firstPIN := job.old, oldOut, oldP
	if first == nil {
		first, firstOut, firstPIN = job.new, newOut, newP
	}
	var from cipher.Block
	for i, k := range keys.from[:keys.nfrom] {
		if from, err = k.blockCipher(); err != nil {
			return err
		}
		if err = decipherInto(firstOut, job.fromFormat, first, &pf, from, firstPIN); err == nil {
			break
		}
		if i == keys.nfrom-1 {
			return err
		}
	}
	if job.old != nil && job.new != nil {
		if err := decipherInto(newOut, job.fromFormat, job.new, &pf, from, newP); err != nil {
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

	if job.fromFormat.iso4() && job.toFormat.iso4() {
		// Between Format4 and Format4SM4 too: the plain-text field is the
		// same in both; only the cipher changes with the key.
		//
		// Each output holds the plain-text PIN field it deciphered and
		// checked. It is enciphered again as it is, random half included:
		// that half was drawn fresh by whoever built the block, and the only
		// thing a translation changes is the key. (Every other pair builds
		// the new block's PIN field, with fresh fill where it has any.)
		if job.old != nil {
			encipherField16(oldOut, &pf, to)
		}
		if job.new != nil {
			encipherField16(newOut, &pf, to)
		}
		return nil
	}
	if job.old != nil {
		if err := encipherInto(oldOut, job.toFormat, &oldPIN, &pf, to, job.fill); err != nil {
			return err
		}
	}
	if job.new != nil {
		if err := encipherInto(newOut, job.toFormat, &newPIN, &pf, to, job.fill); err != nil {
			return err
		}
	}
	return nil
}

// translateTo runs job with keys in buf, or in a new buffer if buf's
// capacity is too small, and returns its results, which alias that buffer:
// each block's working area is workSize bytes, the old block's first.
func translateTo(job *pairJob, keys *routeKeys, buf []byte) (oldOut, newOut []byte, err error) {
	w, n := workSize(job.fromFormat, job.toFormat), job.toFormat.BlockSize()
	size := w
	if job.new != nil {
		size = 2 * w
	}
	var out []byte
	if cap(buf) >= size {
		out = buf[:size]
		clear(out)
	} else {
		out = make([]byte, size)
	}
	if err := translatePair(job, keys, out[:w:w], out[w:]); err != nil {
		return nil, nil, err
	}
	if job.old != nil {
		oldOut = out[:n:n]
	}
	if job.new != nil {
		newOut = out[w : w+n : w+n]
	}
	return oldOut, newOut, nil
}

// TranslateBlock deciphers block (format fromFormat, under from), checks it,
// and re-enciphers the same PIN for the same PAN in toFormat under to, with
// fresh random fill from crypto/rand. It enforces PCI PIN 3-3 (see
// TranslationAllowed) and the format/algorithm fit, but not key usages: that is
// the SecurityModule's job. The clear PIN exists only in local variables and
// the result's buffer, and is cleared or overwritten before return
// (best-effort). The result is a new slice.
func TranslateBlock(block []byte, pan string, from Key, fromFormat Format, to Key, toFormat Format) ([]byte, error) {
	return translateBlock(block, pan, from, fromFormat, to, toFormat, nil)
}

func translateBlock(block []byte, pan string, from Key, fromFormat Format, to Key, toFormat Format, rnd io.Reader) ([]byte, error) {
	if err := checkTranslation(fromFormat, toFormat); err != nil {
		return nil, err
	}
	keys := routeKeys{from: [maxVersions]Key{from}, nfrom: 1, to: to}
	if err := keys.checkFor(fromFormat, toFormat); err != nil {
		return nil, err
	}
	job := pairJob{pan: pan, old: block, fromFormat: fromFormat, toFormat: toFormat, fill: fillFrom{r: rnd}}
	out, _, err := translateTo(&job, &keys, nil)
	return out, err
}
