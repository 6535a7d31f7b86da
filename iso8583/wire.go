package iso8583

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	moovErrors "github.com/moov-io/iso8583/errors"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
)

// The message codec of Pack and Unpack. It walks the elements of a spec
// itself, in the order moov-io/iso8583's Message does (MTI, bitmap, then the
// elements the bitmap names, in ascending order), with moov's field types
// doing the work, but without a moov Message in between: no map of fields,
// no lock, no struct tags read, and the bytes each element takes are known
// as it is read, so a frame with bytes after its last element is refused
// without packing the message again.
//
// Elements whose encoding and prefix are pingate's own (codec.go: the n, an
// and ans character sets in ASCII, BCD digits, the strict LL/LLL prefixes,
// fixed lengths) and that have no padding are read and written straight from
// and into the frame, one allocation for the value at most; every other
// element goes through its moov field. What goes onto the wire and what is
// refused is the same either way: the golden, fuzz and dialect tests check
// both paths against the same frames.

// layout is what the codec needs to know about a spec, worked out once per
// spec (layoutOf).
type layout struct {
	mti    elemCodec
	bitmap *field.Bitmap
	// bitmapSameLength: the bitmap's encoding gives back as many bytes as
	// it read (raw or hex).
	bitmapSameLength bool
	elems            [129]elemCodec // by element number; proto nil where the spec has none
	err              error          // the spec cannot be used (no MTI or bitmap)
}

// elem returns the codec of element id (0 is the MTI).
func (l *layout) elem(id int) *elemCodec {
	if id == 0 {
		return &l.mti
	}
	return &l.elems[id]
}

// elemCodec is one element of a spec.
type elemCodec struct {
	proto field.Field // the spec's field; nil if the spec lacks the element
	text  *textCodec  // non-nil: read and written directly (see above)
	// sameLength: packing what was unpacked gives as many bytes as were
	// read, so the element needs no repacking to prove the frame's length.
	sameLength bool
}

// textCodec reads and writes a String element of pingate's own encodings:
// the same bytes, the same checks in the same order and the same errors as
// moov's default packer and unpacker calling charsetEncoder or bcdEncoder
// and asciiLen, bcdLen or a fixed prefix.
type textCodec struct {
	length  int             // the spec's length: the fixed length, or the maximum
	charset *charsetEncoder // nil: BCD digits
	pref    prefix.Prefixer // nil: fixed length
}

var layouts sync.Map // *moov.MessageSpec → *layout

// layoutOf returns the layout of spec, built on first use. Specs are never
// modified once built (Dialect.Spec), so a layout stays true.
func layoutOf(spec *moov.MessageSpec) *layout {
	if l, ok := layouts.Load(spec); ok {
		return l.(*layout)
	}
	l := newLayout(spec)
	actual, _ := layouts.LoadOrStore(spec, l)
	return actual.(*layout)
}

func newLayout(spec *moov.MessageSpec) *layout {
	l := &layout{}
	if err := spec.Validate(); err != nil {
		l.err = err
		return l
	}
	l.bitmap = spec.Fields[1].(*field.Bitmap) // Validate checked the type
	enc := l.bitmap.Spec().Enc
	l.bitmapSameLength = enc == encoding.Binary || enc == encoding.BytesToASCIIHex
	for id, f := range spec.Fields {
		if id < 0 || id > 128 || id == 1 {
			continue
		}
		e := elemCodec{proto: f, text: textCodecOf(f)}
		e.sameLength = e.text != nil || isPINBlockOfFixedWidth(f)
		if id == 0 {
			l.mti = e
		} else {
			l.elems[id] = e
		}
	}
	return l
}

// textCodecOf returns the direct codec of f, or nil when f is not a String
// of pingate's encodings with moov's default packer and unpacker and no
// padding.
func textCodecOf(f field.Field) *textCodec {
	s, ok := f.(*field.String)
	if !ok {
		return nil
	}
	spec := s.Spec()
	if spec.Pad != nil || spec.Packer != nil || spec.Unpacker != nil {
		return nil
	}
	t := &textCodec{length: spec.Length}
	switch e := spec.Enc.(type) {
	case *charsetEncoder:
		t.charset = e
	case bcdEncoder:
	default:
		return nil
	}
	switch p := spec.Pref.(type) {
	case asciiLen, bcdLen:
		t.pref = p
	default:
		if !isFixed(p) || p.Inspect() == "None.Fixed" {
			return nil
		}
	}
	return t
}

// isPINBlockOfFixedWidth: f is a PIN block element (pinBlockCodec, which
// writes back the length it read) whose prefix has a fixed number of digits
// or bytes.
func isPINBlockOfFixedWidth(f field.Field) bool {
	b, ok := f.(*field.Binary)
	if !ok {
		return false
	}
	if _, ok := b.Spec().Packer.(pinBlockCodec); !ok {
		return false
	}
	switch b.Spec().Pref.(type) {
	case asciiLen, bcdLen:
		return true
	}
	name := b.Spec().Pref.Inspect()
	for _, p := range []string{"ASCII.", "BCD.", "Binary.", "Hex.", "EBCDIC.", "EBCDIC1047."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// unpack reads the value of a text element at the start of data; it returns
// the value's bytes (inside data, or in buf for BCD) and the bytes read.
func (t *textCodec) unpack(data []byte, buf []byte) ([]byte, int, error) {
	n, pb := t.length, 0
	if t.pref != nil {
		var err error
		if n, pb, err = t.pref.DecodeLength(t.length, data); err != nil {
			return nil, 0, fmt.Errorf("failed to decode length: %w", err)
		}
	}
	body := data[pb:]
	if t.charset == nil {
		v, read, err := appendBCDDigits(buf[:0], body, n)
		if err != nil {
			return nil, 0, fmt.Errorf("failed to decode content: %w", err)
		}
		return v, pb + read, nil
	}
	if n < 0 || n > len(body) {
		return nil, 0, fmt.Errorf("failed to decode content: %w", errShortData)
	}
	if err := t.charset.check(body[:n]); err != nil {
		return nil, 0, fmt.Errorf("failed to decode content: %w", err)
	}
	return body[:n], pb + n, nil
}

// appendTo writes v as the element, prefix first.
func (t *textCodec) appendTo(dst []byte, v string) ([]byte, error) {
	// moov's default packer: encode (the character check), then the length.
	if t.charset != nil {
		for i := 0; i < len(v); i++ {
			if !t.charset.ok(v[i]) {
				return nil, fmt.Errorf("failed to encode content: %w", t.charset.err)
			}
		}
	} else if !allDigits(v) {
		return nil, fmt.Errorf("failed to encode content: %w", errNotDigits)
	}
	switch p := t.pref.(type) {
	case nil:
		if len(v) != t.length {
			return nil, fmt.Errorf("failed to encode length: field length %d should be fixed %d", len(v), t.length)
		}
	case asciiLen:
		var err error
		if dst, err = p.appendLength(dst, t.length, len(v)); err != nil {
			return nil, fmt.Errorf("failed to encode length: %w", err)
		}
	case bcdLen:
		var err error
		if dst, err = p.appendLength(dst, t.length, len(v)); err != nil {
			return nil, fmt.Errorf("failed to encode length: %w", err)
		}
	}
	if t.charset != nil {
		return append(dst, v...), nil
	}
	return appendBCD(dst, v), nil
}

// The elements of Fields by number: where the codec reads and writes each
// one. (Initialised with the variables, not in init: the built-in dialects
// are checked by packing samples while the package's variables are set.)
var (
	stringSlot = func() (s [129]func(*Fields) *string) {
		for _, e := range stringElems {
			s[e.id] = e.ptr
		}
		return s
	}()
	binarySlot = func() (s [129]func(*Fields) *[]byte) {
		for _, e := range binaryElems {
			s[e.id] = e.ptr
		}
		return s
	}()
)

// ElementSet is a set of data element numbers (0-128), for UnpackSelected.
type ElementSet struct{ bits [3]uint64 }

// Elements returns the set of ids; numbers outside 0-128 are ignored.
func Elements(ids ...int) ElementSet {
	var s ElementSet
	for _, id := range ids {
		if id >= 0 && id <= 128 {
			s.bits[id/64] |= 1 << (id % 64)
		}
	}
	return s
}

// Has reports whether id is in s.
func (s ElementSet) Has(id int) bool { return id >= 0 && id <= 128 && s.bits[id/64]&(1<<(id%64)) != 0 }

var allElements = func() ElementSet {
	var s ElementSet
	for id := 0; id <= 128; id++ {
		s.bits[id/64] |= 1 << (id % 64)
	}
	return s
}()

// errNotInSpec is the error of an element the bitmap names and the spec
// lacks (moov's Message refuses it the same way).
var errNotInSpec = errors.New("field is not defined in the spec")

// unpackError describes the failure of element id (or of a subfield inside
// it) as UnpackMessage always has: the path of ids, and the problem.
func unpackError(id int, err error) *FieldError {
	ue := &moovErrors.UnpackError{Err: err, FieldID: strconv.Itoa(id)}
	ids := slices.DeleteFunc(ue.FieldIDs(), func(s string) bool { return s == "" })
	return &FieldError{Field: strings.Join(ids, "."), Problem: problem(err)}
}

// unpackFields decodes frame into f, checking every element, and copies into
// f the elements in want. See Unpack for the errors.
func unpackFields(spec *moov.MessageSpec, frame []byte, want ElementSet, f *Fields) error {
	l := layoutOf(spec)
	if l.err != nil {
		return &FieldError{Problem: "malformed"}
	}
	var (
		buf       [64]byte // BCD digits of one element
		mismatch  bool     // an element repacks to another length than it read
		repackErr bool     // an element does not pack again
		convErr   bool     // an element's value does not convert into f
	)
	elem := func(id int, e *elemCodec, data []byte) (int, error) {
		if e.text != nil {
			v, read, err := e.text.unpack(data, buf[:])
			if err != nil {
				return 0, err
			}
			if slot := stringSlot[id]; slot != nil && want.Has(id) {
				*slot(f) = string(v)
			}
			return read, nil
		}
		fl := field.NewInstanceOf(e.proto)
		read, err := fl.Unpack(data)
		if err != nil {
			return 0, err
		}
		if !e.sameLength {
			if b, err := fl.Pack(); err != nil {
				repackErr = true
			} else if len(b) != read {
				mismatch = true
			}
		}
		if !want.Has(id) {
			return read, nil
		}
		switch {
		case stringSlot[id] != nil:
			v, err := fl.String()
			convErr = convErr || err != nil
			*stringSlot[id](f) = v
		case binarySlot[id] != nil:
			v, err := fl.Bytes()
			convErr = convErr || err != nil
			*binarySlot[id](f) = v
		case id == 48:
			a := new(AdditionalData)
			if err := fl.Unmarshal(a); err != nil {
				convErr = true
			} else if *a != (AdditionalData{}) {
				f.Additional = a
			}
		}
		return read, nil
	}

	off, err := elem(0, l.elem(0), frame)
	if err != nil {
		return unpackError(0, fmt.Errorf("failed to unpack MTI: %w", err))
	}
	bm := field.NewInstanceOf(l.bitmap).(*field.Bitmap)
	read, err := bm.Unpack(frame[off:])
	if err != nil {
		return unpackError(1, fmt.Errorf("failed to unpack bitmap: %w", err))
	}
	if !l.bitmapSameLength {
		if b, err := bm.Pack(); err != nil {
			repackErr = true
		} else if len(b) != read {
			mismatch = true
		}
	}
	off += read
	for id := 2; id <= bm.Len(); id++ {
		if bm.IsBitmapPresenceBit(id) || !bm.IsSet(id) {
			continue
		}
		if id > 128 || l.elems[id].proto == nil {
			return unpackError(id, fmt.Errorf("creating field %d: %w", id, errNotInSpec))
		}
		read, err := elem(id, &l.elems[id], frame[off:])
		if err != nil {
			return unpackError(id, fmt.Errorf("failed to unpack field %d: %w", id, err))
		}
		off += read
	}
	switch {
	case repackErr:
		return &FieldError{Problem: "malformed"}
	case mismatch || off != len(frame):
		// moov stops after the last element the bitmap names and ignores
		// the rest; a correctly framed message has no rest.
		return &FieldError{Problem: "length does not match its fields"}
	case convErr:
		return &FieldError{Problem: "cannot unmarshal"}
	}
	return nil
}

// packFields encodes f in spec. See Pack for the errors.
func packFields(spec *moov.MessageSpec, f *Fields) ([]byte, error) {
	l := layoutOf(spec)
	if l.err != nil {
		return nil, &FieldError{Problem: "cannot pack"}
	}
	// The elements that go through their moov field get their values
	// first, as moov's Marshal would: a value that does not convert is
	// reported before any element that does not pack.
	var (
		moovFields [129]field.Field
		present    [129]uint8
		n          int
	)
	for id := 0; id <= 128; id++ {
		var sv string
		var bv []byte
		switch {
		case stringSlot[id] != nil:
			if sv = *stringSlot[id](f); sv == "" {
				continue
			}
		case binarySlot[id] != nil:
			if bv = *binarySlot[id](f); bv == nil {
				continue
			}
		case id == 48:
			if f.Additional == nil {
				continue
			}
		default:
			continue
		}
		present[n], n = uint8(id), n+1
		e := l.elem(id)
		if e.proto == nil {
			return nil, &FieldError{Field: strconv.Itoa(id), Problem: "not in this dialect"}
		}
		if e.text != nil {
			continue
		}
		fl := field.NewInstanceOf(e.proto)
		var err error
		switch {
		case stringSlot[id] != nil:
			err = fl.SetBytes([]byte(sv))
		case binarySlot[id] != nil:
			err = fl.SetBytes(bv)
		default:
			err = fl.Marshal(f.Additional)
		}
		if err != nil {
			return nil, &FieldError{Problem: "cannot marshal"}
		}
		moovFields[id] = fl
	}

	bm := field.NewInstanceOf(l.bitmap).(*field.Bitmap)
	for _, id := range present[:n] {
		if id >= 2 && !bm.IsBitmapPresenceBit(int(id)) {
			bm.Set(int(id))
		}
	}
	out := make([]byte, 0, 256)
	for i, id8 := range present[:n] {
		id := int(id8)
		e := l.elem(id)
		var err error
		if e.text != nil {
			out, err = e.text.appendTo(out, *stringSlot[id](f))
		} else {
			var b []byte
			if b, err = moovFields[id].Pack(); err == nil {
				out = append(out, b...)
			}
		}
		if err != nil {
			return nil, packError(id, moovFields[id], err)
		}
		if i == 0 {
			// The bitmap follows the MTI (Pack makes sure there is one).
			b, err := bm.Pack()
			if err != nil {
				return nil, &FieldError{Problem: "cannot pack"}
			}
			out = append(out, b...)
		}
	}
	return out, nil
}

// packError describes the failure to pack element id (fl is its moov field,
// nil for a text element): the element, or the first subfield of a
// composite that does not pack, and the problem.
func packError(id int, fl field.Field, err error) error {
	fe := &FieldError{Field: strconv.Itoa(id), Problem: problem(err)}
	if c, ok := fl.(*field.Composite); ok {
		subs := c.GetSubfields()
		for _, tag := range slices.Sorted(mapsKeys(subs)) {
			if _, err := subs[tag].Pack(); err != nil {
				fe.Field += "." + tag
				fe.Problem = problem(err)
				break
			}
		}
	}
	if fe.Problem == "malformed" {
		fe.Problem = "invalid value or length"
	}
	return fe
}
