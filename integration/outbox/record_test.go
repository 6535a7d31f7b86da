package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"pingate/integration/events"
)

func TestRecordRoundTrip(t *testing.T) {
	enc, err := events.NewEncoder("/pingate/test")
	if err != nil {
		t.Fatal(err)
	}
	full, err := enc.Encode(testEvent(5))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give events.Message
	}{
		{"encoded event", full},
		{"empty key and headers", events.Message{Headers: []events.Header{}, Value: []byte(`{}`)}},
		{"empty header value", events.Message{Key: []byte("k"), Headers: []events.Header{{Key: "a", Value: []byte{}}}, Value: []byte("v")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := appendRecord(nil, 1234567890, tt.give)
			if len(v) > recordSize(tt.give) {
				t.Errorf("appendRecord wrote %d bytes, recordSize said %d", len(v), recordSize(tt.give))
			}
			at, got, err := parseRecord(v)
			if err != nil {
				t.Fatalf("parseRecord() error = %v", err)
			}
			if at != 1234567890 || !bytes.Equal(got.Key, tt.give.Key) || !bytes.Equal(got.Value, tt.give.Value) ||
				len(got.Headers) != len(tt.give.Headers) {
				t.Fatalf("parseRecord() = %d %+v, want 1234567890 %+v", at, got, tt.give)
			}
			for i, h := range tt.give.Headers {
				if got.Headers[i].Key != h.Key || !bytes.Equal(got.Headers[i].Value, h.Value) {
					t.Errorf("header %d = %q:%q, want %q:%q", i, got.Headers[i].Key, got.Headers[i].Value, h.Key, h.Value)
				}
			}
			// Every strict prefix is refused, never read as a shorter record
			// that happens to parse, except where only the value is cut.
			for n := 0; n < len(v)-len(tt.give.Value); n++ {
				if _, _, err := parseRecord(v[:n]); err == nil {
					t.Errorf("parseRecord(first %d of %d bytes) = nil error", n, len(v))
				}
			}
		})
	}
	// Values of the reading side are copies: a changed source leaves them.
	v := appendRecord(nil, 1, full)
	_, got, _ := parseRecord(v)
	want := append([]byte(nil), got.Value...)
	clear(v)
	if !bytes.Equal(got.Value, want) {
		t.Error("parseRecord's message shares the value's bytes")
	}
}

// TestJournalReadsFirstFormEntries: a journal left by a gateway that stored
// entries as JSON (the first form) drains after an upgrade, beside entries
// of the binary form, in order and with the same bytes.
func TestJournalReadsFirstFormEntries(t *testing.T) {
	dir := t.TempDir()
	enc, err := events.NewEncoder("/pingate/test")
	if err != nil {
		t.Fatal(err)
	}
	old, err := enc.Encode(testEvent(1))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	v, err := json.Marshal(record{Appended: at.UnixNano(), Message: old})
	if err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(entryKey(1), v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	j := mustOpen(t, Config{Dir: dir, Source: "/pingate/test"})
	defer shutdown(t, j)
	if err := j.Publish(context.Background(), testEvent(2)); err != nil {
		t.Fatal(err)
	}
	es, err := j.Entries(1, 10)
	if err != nil || len(es) != 2 {
		t.Fatalf("Entries() = %d entries, %v; want 2", len(es), err)
	}
	if es[0].Seq != 1 || !es[0].Appended.Equal(at) || !reflect.DeepEqual(es[0].Message, old) {
		t.Errorf("first-form entry = %d %v %+v, want 1 %v %+v", es[0].Seq, es[0].Appended, es[0].Message, at, old)
	}
	for i, e := range es {
		ev, err := events.Decode(e.Message)
		if err != nil {
			t.Fatalf("entry %d: Decode() = %v", e.Seq, err)
		}
		if want := testEvent(i + 1).ID; ev.ID != want {
			t.Errorf("entry %d: event id %s, want %s", e.Seq, ev.ID, want)
		}
	}
}
