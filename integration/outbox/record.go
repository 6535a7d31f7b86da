package outbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"pingate/integration/events"
)

// The stored value of an entry is the exact record to send, so a re-send
// after a crash is byte-for-byte the first one, and when it was appended
// (for the relay lag).
//
// Since session 5 a value is written in a length-prefixed binary form (one
// version byte, then the fields below), which the relay reads back without
// the base64-in-JSON decoding the first form cost it per entry (see
// docs/optimisation-log.md). Values in the first form, a JSON object, are
// still read: a journal written by an older gateway drains as before.
//
//	0x01                       version
//	appended                   8 bytes, big-endian Unix nanoseconds
//	len(key) key               uvarint length, bytes
//	n                          uvarint header count
//	n × (len(k) k len(v) v)    uvarint lengths, bytes
//	value                      the rest
const recordV1 = 0x01

// record is the first (JSON) form of an entry's value.
type record struct {
	Appended int64          `json:"appended"` // Unix nanoseconds
	Message  events.Message `json:"message"`
}

var errRecord = errors.New("truncated record")

// appendRecord appends the binary form of an entry's value to dst.
func appendRecord(dst []byte, appended int64, m events.Message) []byte {
	dst = append(dst, recordV1)
	dst = binary.BigEndian.AppendUint64(dst, uint64(appended))
	dst = binary.AppendUvarint(dst, uint64(len(m.Key)))
	dst = append(dst, m.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	return append(dst, m.Value...)
}

// recordSize is the length of appendRecord's output, to size its buffer.
func recordSize(m events.Message) int {
	n := 1 + 8 + binary.MaxVarintLen64*(2+2*len(m.Headers)) + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// parseRecord reads a value in either form. The returned message's byte
// slices are copies: v belongs to the store's iterator.
func parseRecord(v []byte) (int64, events.Message, error) {
	if len(v) > 0 && v[0] == '{' {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return 0, events.Message{}, err
		}
		return r.Appended, r.Message, nil
	}
	if len(v) < 9 || v[0] != recordV1 {
		return 0, events.Message{}, errRecord
	}
	// One copy of the whole value; the message's slices point into it.
	b := append([]byte(nil), v[9:]...)
	appended := int64(binary.BigEndian.Uint64(v[1:9]))
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		out := b[k : k+int(n) : k+int(n)]
		b = b[k+int(n):]
		return out, true
	}
	var m events.Message
	var ok bool
	if m.Key, ok = next(); !ok {
		return 0, m, errRecord
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return 0, m, errRecord
	}
	b = b[k:]
	m.Headers = make([]events.Header, n)
	for i := range m.Headers {
		key, ok1 := next()
		val, ok2 := next()
		if !ok1 || !ok2 {
			return 0, m, errRecord
		}
		m.Headers[i] = events.Header{Key: headerKey(key), Value: val}
	}
	m.Value = b
	return appended, m, nil
}

// headerKey returns the key as a string, the headers every event carries
// without an allocation.
func headerKey(k []byte) string {
	switch string(k) {
	case events.HeaderSpecVersion:
		return events.HeaderSpecVersion
	case events.HeaderID:
		return events.HeaderID
	case events.HeaderType:
		return events.HeaderType
	case events.HeaderSource:
		return events.HeaderSource
	case events.HeaderTime:
		return events.HeaderTime
	case events.HeaderContentType:
		return events.HeaderContentType
	case events.HeaderSubject:
		return events.HeaderSubject
	case events.HeaderPartitionKey:
		return events.HeaderPartitionKey
	case events.HeaderTraceParent:
		return events.HeaderTraceParent
	case events.HeaderReverses:
		return events.HeaderReverses
	}
	return string(k)
}

func decodeEntry(seq uint64, v []byte) (Entry, error) {
	appended, m, err := parseRecord(v)
	if err != nil {
		return Entry{}, fmt.Errorf("journal entry %d: undecodable value", seq)
	}
	return Entry{Seq: seq, Appended: time.Unix(0, appended), Message: m}, nil
}
