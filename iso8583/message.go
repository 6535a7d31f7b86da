package iso8583

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	moov "github.com/moov-io/iso8583"
	moovErrors "github.com/moov-io/iso8583/errors"
)

// ErrFormat is wrapped by every error about a message's bytes or fields: a
// field that does not unpack or pack, a missing mandatory field, a field not
// allowed in the message, trailing bytes. Routing answers it with response
// code 30 (RCFormatError) when the acquirer sent it.
var ErrFormat = errors.New("message format error")

// FieldError says which data element of a message is wrong and how, without
// its value. Field is the element number, "48.01" for a DE 48 subfield, or ""
// for the message as a whole. It wraps ErrFormat.
type FieldError struct {
	Field   string
	Problem string // e.g. "missing", "not allowed", "not numeric", "malformed"
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "iso8583: " + e.Problem
	}
	return "iso8583: field " + e.Field + ": " + e.Problem
}

// Unwrap returns ErrFormat.
func (e *FieldError) Unwrap() error { return ErrFormat }

// problem turns an error from moov or from our codecs into a fixed
// description: moov's own texts can quote the data (strconv errors do), so
// they never reach our errors.
func problem(err error) string {
	for _, known := range []error{errNotDigits, errNotAlnum, errNotPrintable, errShortData, errBadLength, errPINBlockLength} {
		if errors.Is(err, known) {
			return known.Error()
		}
	}
	return "malformed"
}

// Fields is the typed view of every message of both dialects: the union of
// the data elements pingate uses, tagged for moov's Marshal and Unmarshal.
// An empty string or nil slice means the element is absent. Which elements
// each message type carries is checked by Check (see usage.go).
//
// Fields holds a PAN and PIN blocks: its String, Format, GoString and
// LogValue methods show the PAN masked and redact the PIN blocks and key
// exchange data, so printing or logging a Fields is safe.
type Fields struct {
	MTI                  string          `iso8583:"0"`   // message type indicator, e.g. MTIAuthRequest
	PAN                  string          `iso8583:"2"`   // primary account number, secret: see MaskPAN
	ProcessingCode       string          `iso8583:"3"`   // DE 3: ProcPINChange, ProcPINReset or ProcPINUnblock
	TransmissionTime     string          `iso8583:"7"`   // DE 7, MMDDhhmmss UTC
	STAN                 string          `iso8583:"11"`  // DE 11, 6 digits
	LocalTime            string          `iso8583:"12"`  // DE 12, hhmmss
	LocalDate            string          `iso8583:"13"`  // DE 13, MMDD
	AcquirerID           string          `iso8583:"32"`  // DE 32, up to 11 digits
	RRN                  string          `iso8583:"37"`  // DE 37, 12 letters or digits
	ResponseCode         string          `iso8583:"39"`  // DE 39, codes.go
	TerminalID           string          `iso8583:"41"`  // DE 41, 8 characters
	CardAcceptorID       string          `iso8583:"42"`  // DE 42, 15 characters
	Additional           *AdditionalData `iso8583:"48"`  // DE 48; nil or empty is absent
	PINBlock             []byte          `iso8583:"52"`  // DE 52, current PIN block, 8 or 16 bytes; secret
	SecurityControl      string          `iso8583:"53"`  // DE 53, see SecurityControl
	NetworkCode          string          `iso8583:"70"`  // DE 70, NMISignOn etc.
	OriginalData         string          `iso8583:"90"`  // DE 90, see OriginalData
	ReceivingInstitution string          `iso8583:"100"` // DE 100, issuer id, up to 11 digits
	KeyExchange          string          `iso8583:"123"` // DE 123, see KeyExchange; secret
	NewPINBlock          []byte          `iso8583:"125"` // DE 125, new PIN block, 8 or 16 bytes; secret
}

// AdditionalData is DE 48, the private additional data of branch operations.
type AdditionalData struct {
	TellerID     string `iso8583:"01"` // 48.01, up to 16 characters
	IdentityRef  string `iso8583:"02"` // 48.02 identity-check reference, up to 32; never an ID number
	SupervisorID string `iso8583:"03"` // 48.03, up to 16
	BranchID     string `iso8583:"04"` // 48.04, up to 16
}

// Pack encodes f in the dialect of spec (AcquirerSpec or IssuerSpec). It
// checks only what the encoding needs (character sets, lengths, PIN block
// sizes); use Check for the fields each message type requires. Errors are
// *FieldError and never contain field values.
func Pack(spec *moov.MessageSpec, f *Fields) ([]byte, error) {
	if f == nil || f.MTI == "" {
		return nil, &FieldError{Field: "0", Problem: "missing"}
	}
	v := *f
	if v.Additional != nil && *v.Additional == (AdditionalData{}) {
		v.Additional = nil
	}
	if id := missingFrom(spec, &v); id != "" {
		return nil, &FieldError{Field: id, Problem: "not in this dialect"}
	}
	return packFields(spec, &v)
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// UnpackMessage decodes a frame into a moov message of spec, with the checks
// of Unpack: any bytes after the last field make it a format error. Errors
// are *FieldError; they never contain the frame's bytes (moov's own
// *UnpackError carries the raw message and is not returned). The request
// path uses Unpack, which builds no moov message.
func UnpackMessage(spec *moov.MessageSpec, frame []byte) (*moov.Message, error) {
	if err := unpackFields(spec, frame, ElementSet{}, new(Fields)); err != nil {
		return nil, err
	}
	msg := moov.NewMessage(spec)
	if err := msg.Unpack(frame); err != nil {
		// unpackFields read the same elements with the same codecs.
		return nil, &FieldError{Problem: "malformed"}
	}
	return msg, nil
}

// Unpack decodes a frame of spec's dialect into Fields. Every element the
// bitmap names is read and checked (character set, length, PIN block size),
// and the frame must end where its last element does: bytes after it, which
// moov-io/iso8583 itself would ignore, make it a format error. Errors are
// *FieldError naming the element ("2", "48.01", or "" for the message as a
// whole) and never contain the frame's bytes.
func Unpack(spec *moov.MessageSpec, frame []byte) (*Fields, error) {
	f := new(Fields)
	if err := unpackFields(spec, frame, allElements, f); err != nil {
		return nil, err
	}
	return f, nil
}

// UnpackSelected decodes a frame like Unpack, with every element read and
// checked, but copies into f only the elements in want (Fields' elements by
// number: 0 the MTI, 48 the whole of Additional); the others are left as
// they are. It is for a reader that needs a few elements of a message, such
// as the issuer link reading an 0110: it does not copy the PAN and the rest
// into new strings. On error f may hold some of the elements.
func UnpackSelected(spec *moov.MessageSpec, frame []byte, want ElementSet, f *Fields) error {
	return unpackFields(spec, frame, want, f)
}

// UnpackReadable decodes what can be read of a frame that Unpack refused, to
// answer it with the elements a client matches on (DE 11, 37, 41, 32, 7…):
// every element before the first one that does not unpack — elements are
// read in order and variable ones have no fixed place, so nothing after it
// can be found. A frame that unpacks but has bytes left over gives all its
// elements. PIN blocks (DE 52, DE 125) and DE 123 are never returned; DE 48
// is returned only whole. The result is not checked (see Check) and is empty,
// with no MTI, when not even the MTI could be read.
func UnpackReadable(spec *moov.MessageSpec, frame []byte) *Fields {
	msg := moov.NewMessage(spec)
	failed := -1
	if err := msg.Unpack(frame); err != nil {
		var ue *moovErrors.UnpackError
		if !errors.As(err, &ue) {
			return &Fields{}
		}
		if failed, err = strconv.Atoi(ue.FieldID); err != nil {
			return &Fields{}
		}
	}
	f := new(Fields)
	for _, e := range stringElems {
		if e.id == failed || e.id == 123 {
			continue
		}
		if fl := msg.GetField(e.id); fl != nil {
			if v, err := fl.String(); err == nil {
				*e.ptr(f) = v
			}
		}
	}
	if failed != 48 && msg.GetField(48) != nil {
		var a additionalElem
		if msg.Unmarshal(&a) == nil && a.Additional != nil && *a.Additional != (AdditionalData{}) {
			f.Additional = a.Additional
		}
	}
	return f
}

// FieldsOf copies the data elements of msg into a new Fields. An empty DE 48
// (length 000) becomes a nil Additional, as Pack treats it.
func FieldsOf(msg *moov.Message) (*Fields, error) {
	f := new(Fields)
	if err := unmarshalFields(msg, f); err != nil {
		return nil, &FieldError{Problem: "cannot unmarshal"}
	}
	if f.Additional != nil && *f.Additional == (AdditionalData{}) {
		f.Additional = nil
	}
	return f, nil
}

// Clear overwrites the PIN blocks held by f with zeros and drops them, and
// drops the key exchange data. It is best-effort: copies made by moov while
// packing or unpacking, and by the garbage collector, are out of its reach.
func (f *Fields) Clear() {
	clear(f.PINBlock)
	clear(f.NewPINBlock)
	f.PINBlock, f.NewPINBlock, f.KeyExchange = nil, nil, ""
}

// items lists f's present elements as (id, display value) pairs, with the
// PAN masked and secrets redacted.
func (f Fields) items() []item {
	var it []item
	add := func(id, v string) {
		if v != "" {
			it = append(it, item{id, v})
		}
	}
	add("2", f.PAN)
	add("3", f.ProcessingCode)
	add("7", f.TransmissionTime)
	add("11", f.STAN)
	add("12", f.LocalTime)
	add("13", f.LocalDate)
	add("32", f.AcquirerID)
	add("37", f.RRN)
	add("39", f.ResponseCode)
	add("41", f.TerminalID)
	add("42", f.CardAcceptorID)
	if a := f.Additional; a != nil {
		add("48.01", a.TellerID)
		add("48.02", a.IdentityRef)
		add("48.03", a.SupervisorID)
		add("48.04", a.BranchID)
	}
	if len(f.PINBlock) > 0 {
		add("52", "x")
	}
	add("53", f.SecurityControl)
	add("70", f.NetworkCode)
	add("90", f.OriginalData)
	add("100", f.ReceivingInstitution)
	add("123", f.KeyExchange)
	if len(f.NewPINBlock) > 0 {
		add("125", "x")
	}
	return it
}

// String is a one-line dump safe for logs: the PAN masked, DE 52, DE 123 and
// DE 125 redacted whole.
func (f Fields) String() string { return line(f.MTI, f.items()) }

// Format makes every fmt verb print String.
func (f Fields) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte(f.String())) }

// GoString keeps %#v from reaching the fields.
func (f Fields) GoString() string { return f.String() }

// LogValue shows f in slog as its String.
func (f Fields) LogValue() slog.Value { return slog.StringValue(f.String()) }

// The elements of Fields by number, for Pack, Unpack and FieldsOf. They do
// what moov's Message.Marshal and Unmarshal do with Fields' iso8583 tags —
// set every non-zero element, read every present one — without reflection:
// moov parses the struct tags of every field on every call, which cost about
// a third of a pack or an unpack. TestFieldsTags keeps these tables and the
// tags in step.
var (
	stringElems = [...]struct {
		id  int
		ptr func(*Fields) *string
	}{
		{0, func(f *Fields) *string { return &f.MTI }},
		{2, func(f *Fields) *string { return &f.PAN }},
		{3, func(f *Fields) *string { return &f.ProcessingCode }},
		{7, func(f *Fields) *string { return &f.TransmissionTime }},
		{11, func(f *Fields) *string { return &f.STAN }},
		{12, func(f *Fields) *string { return &f.LocalTime }},
		{13, func(f *Fields) *string { return &f.LocalDate }},
		{32, func(f *Fields) *string { return &f.AcquirerID }},
		{37, func(f *Fields) *string { return &f.RRN }},
		{39, func(f *Fields) *string { return &f.ResponseCode }},
		{41, func(f *Fields) *string { return &f.TerminalID }},
		{42, func(f *Fields) *string { return &f.CardAcceptorID }},
		{53, func(f *Fields) *string { return &f.SecurityControl }},
		{70, func(f *Fields) *string { return &f.NetworkCode }},
		{90, func(f *Fields) *string { return &f.OriginalData }},
		{100, func(f *Fields) *string { return &f.ReceivingInstitution }},
		{123, func(f *Fields) *string { return &f.KeyExchange }},
	}
	binaryElems = [...]struct {
		id  int
		ptr func(*Fields) *[]byte
	}{
		{52, func(f *Fields) *[]byte { return &f.PINBlock }},
		{125, func(f *Fields) *[]byte { return &f.NewPINBlock }},
	}
)

// additionalElem carries DE 48 through moov's Marshal and Unmarshal, the one
// composite element: only branch messages have it.
type additionalElem struct {
	Additional *AdditionalData `iso8583:"48"`
}

// missingFrom names the first element f carries that spec does not define,
// or returns "": a dialect may leave out elements pingate never sends it
// (DE 123 to an issuer, say).
func missingFrom(spec *moov.MessageSpec, f *Fields) string {
	for _, e := range stringElems {
		if _, ok := spec.Fields[e.id]; !ok && *e.ptr(f) != "" {
			return strconv.Itoa(e.id)
		}
	}
	for _, e := range binaryElems {
		if _, ok := spec.Fields[e.id]; !ok && *e.ptr(f) != nil {
			return strconv.Itoa(e.id)
		}
	}
	if _, ok := spec.Fields[48]; !ok && f.Additional != nil {
		return "48"
	}
	return ""
}

// unmarshalFields copies every element present in msg into f, as
// msg.Unmarshal(f) would.
func unmarshalFields(msg *moov.Message, f *Fields) error {
	for _, e := range stringElems {
		if fl := msg.GetField(e.id); fl != nil {
			v, err := fl.String()
			if err != nil {
				return err
			}
			*e.ptr(f) = v
		}
	}
	for _, e := range binaryElems {
		if fl := msg.GetField(e.id); fl != nil {
			v, err := fl.Bytes()
			if err != nil {
				return err
			}
			*e.ptr(f) = v
		}
	}
	if msg.GetField(48) != nil {
		var a additionalElem
		if err := msg.Unmarshal(&a); err != nil {
			return err
		}
		f.Additional = a.Additional
	}
	return nil
}
