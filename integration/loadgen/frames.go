package loadgen

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"pingate/iso8583"
)

// requestTemplate builds the 0100s of one kind of load request (acquirer,
// operation, PIN block format) without packing each: a frame packed once by
// iso8583.Pack is copied and the elements that change from one request to
// the next are written in place — the PAN (DE 2), DE 7, 11, 12, 13, the
// terminal (DE 41) and the PIN blocks (DE 52, DE 125). In the acquirer
// dialect each of these is ASCII (digits, characters or upper-case hex) whose
// length does not change within a kind: the population's PANs all have one
// length, a format's blocks one size; build refuses any other length. Packing
// each 0100 was half the load tool's own CPU per request (moov-io/iso8583
// builds a message, a map of fields and their encodings every time:
// docs/optimisation-log.md); TestRequestTemplateMatchesPack checks that the
// bytes are Pack's.
type requestTemplate struct {
	frame []byte
	// Where each element's data (after its length prefix) lies in frame;
	// n 0 for an element the kind does not carry.
	pan, transmission, stan, localTime, localDate, terminal, pinBlock, newPINBlock span
}

type span struct{ off, n int }

// errTemplate: an element's value does not fit the template's (another
// length), or the template could not be made.
var errTemplate = errors.New("request template")

// newRequestTemplate packs f, a request of the kind with its PAN, terminal
// and PIN blocks of the lengths every request of the kind has, and finds
// where each changing element's data lies in the frame by unpacking it and
// packing its elements one by one in the order moov writes them (MTI,
// bitmap, then by number).
func newRequestTemplate(f *iso8583.Fields) (*requestTemplate, error) {
	v := *f
	v.STAN, v.TransmissionTime, v.LocalTime, v.LocalDate = "000000", "0101000000", "000000", "0101"
	frame, err := iso8583.Pack(iso8583.AcquirerSpec, &v)
	if err != nil {
		return nil, err
	}
	msg, err := iso8583.UnpackMessage(iso8583.AcquirerSpec, frame)
	if err != nil {
		return nil, err
	}
	elems := msg.GetFields()
	t := &requestTemplate{frame: frame}
	want := map[int]struct {
		at   *span
		data string // the element's data as the frame carries it
	}{
		2: {&t.pan, v.PAN}, 7: {&t.transmission, v.TransmissionTime}, 11: {&t.stan, v.STAN},
		12: {&t.localTime, v.LocalTime}, 13: {&t.localDate, v.LocalDate}, 41: {&t.terminal, v.TerminalID},
		52: {&t.pinBlock, upperHex(v.PINBlock)}, 125: {&t.newPINBlock, upperHex(v.NewPINBlock)},
	}
	off := 0
	for _, id := range slices.Sorted(maps.Keys(elems)) {
		b, err := elems[id].Pack()
		if err != nil {
			return nil, fmt.Errorf("%w: element %d does not pack", errTemplate, id)
		}
		if w, ok := want[id]; ok && w.data != "" {
			start := off + len(b) - len(w.data)
			if start < off || string(frame[start:off+len(b)]) != w.data {
				return nil, fmt.Errorf("%w: element %d is not where its data should be", errTemplate, id)
			}
			*w.at = span{start, len(w.data)}
		}
		off += len(b)
	}
	if off != len(frame) {
		return nil, fmt.Errorf("%w: the elements do not make up the frame", errTemplate)
	}
	return t, nil
}

// build appends to dst the 0100 of the template's kind with these values
// (DE 12 and 13 are taken from DE 7, as Client.Do sets them). A value of
// another length than the template's, or one the template does not carry,
// is errTemplate.
func (t *requestTemplate) build(dst []byte, pan, stan, transmission, terminal string, pinBlock, newPINBlock []byte) ([]byte, error) {
	if len(pan) != t.pan.n || len(stan) != t.stan.n || len(transmission) != t.transmission.n || len(terminal) != t.terminal.n ||
		2*len(pinBlock) != t.pinBlock.n || 2*len(newPINBlock) != t.newPINBlock.n {
		return dst, errTemplate
	}
	out := append(dst, t.frame...)
	b := out[len(dst):]
	copy(b[t.pan.off:], pan)
	copy(b[t.stan.off:], stan)
	copy(b[t.transmission.off:], transmission)
	copy(b[t.localTime.off:], transmission[4:])
	copy(b[t.localDate.off:], transmission[:4])
	copy(b[t.terminal.off:], terminal)
	putUpperHex(b[t.pinBlock.off:], pinBlock)
	putUpperHex(b[t.newPINBlock.off:], newPINBlock)
	return out, nil
}

const hexDigits = "0123456789ABCDEF"

func putUpperHex(dst, src []byte) {
	for i, c := range src {
		dst[2*i], dst[2*i+1] = hexDigits[c>>4], hexDigits[c&15]
	}
}

func upperHex(b []byte) string {
	out := make([]byte, 2*len(b))
	putUpperHex(out, b)
	return string(out)
}

// transmissionTime is DE 7 of t, MMDDhhmmss in UTC, as
// t.UTC().Format("0102150405") writes it.
func transmissionTime(t time.Time) string {
	t = t.UTC()
	_, mo, d := t.Date()
	h, mi, s := t.Clock()
	var b [10]byte
	for i, v := range [5]int{int(mo), d, h, mi, s} {
		b[2*i], b[2*i+1] = byte('0'+v/10), byte('0'+v%10)
	}
	return string(b[:])
}
