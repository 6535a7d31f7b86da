package routing

import (
	"encoding/binary"
	"time"
)

// The duplicate window's binary layout of an Outcome (dedupe): strings as a
// uvarint length and the bytes, the duration as a varint, then 0, or 1 and
// the approval's form (appendApproval) to the end of the record. It lives only
// in this process's memory, so it has no version: a field added to Outcome
// is added here too (TestOutcomeCodecRoundTrip fills every field).

func appendOutcome(b []byte, o *Outcome) []byte {
	b = appendString(b, o.Code)
	b = appendString(b, o.Outcome)
	b = appendString(b, o.Reason)
	b = appendString(b, o.Issuer)
	b = appendString(b, o.EventID)
	b = binary.AppendVarint(b, int64(o.Duration))
	if o.undo == nil {
		return append(b, 0)
	}
	return appendApproval(append(b, 1), o.undo)
}

func readOutcome(f *fieldReader) Outcome {
	o := Outcome{
		Code: f.string(), Outcome: f.string(), Reason: f.string(), Issuer: f.string(), EventID: f.string(),
		Duration: time.Duration(f.varint()),
	}
	if f.byte() == 1 {
		// The form appendApproval wrote, in this process's memory. It fails
		// to parse only for a Created time whose zone appendApproval could
		// not write; then the outcome has no undo, as one without an
		// approval (a reversal advice finds nothing to undo here).
		var a Approval
		if parseApproval(f.b, &a) == nil {
			o.undo = &a
		}
		f.b = nil
	}
	return o
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// fieldReader reads what the append functions above wrote. The bytes are
// this process's own, written whole under the window's lock, so a short
// read is a bug: it panics (index out of range), like any other.
type fieldReader struct{ b []byte }

func (f *fieldReader) bytes() []byte {
	n, k := binary.Uvarint(f.b)
	v := f.b[k : k+int(n)]
	f.b = f.b[k+int(n):]
	return v
}

// string returns a copy: the log's bytes are reused once a record expires.
func (f *fieldReader) string() string { return string(f.bytes()) }

func (f *fieldReader) varint() int64 {
	v, k := binary.Varint(f.b)
	f.b = f.b[k:]
	return v
}

func (f *fieldReader) byte() byte {
	v := f.b[0]
	f.b = f.b[1:]
	return v
}
