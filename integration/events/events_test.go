package events

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/routing"
)

// loadJSON reads testdata/name into v.
func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("testdata/%s: %v", name, err)
	}
}

// codeFor returns a plausible DE 39 code for an outcome class.
func codeFor(outcome string) string {
	switch outcome {
	case routing.OutcomeApproved:
		return "00"
	case routing.OutcomeDeclined:
		return "55"
	case routing.OutcomeReversed:
		return "91"
	case routing.OutcomeLimited:
		return "65"
	case routing.OutcomeRejected:
		return "14"
	default:
		return "96"
	}
}

// maskForTest masks like iso8583.MaskPAN is specified to (first 6, last 4).
func maskForTest(pan string) string {
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}

// eventFrom builds an event from a request the way routing's flow does (a
// copy of routing.Flow.publish's field mapping, kept here so the test feeds
// real request values — PAN and PIN blocks included — through the mapping).
func eventFrom(req *routing.Request, out routing.Outcome, now time.Time, traceparent string) routing.Event {
	ev := routing.Event{
		ID: out.EventID, Type: routing.EventType(req.Operation, out.Outcome), Time: now,
		Operation: req.Operation, Outcome: out.Outcome, Code: out.Code, Reason: out.Reason,
		Channel: req.Channel, Acquirer: req.Acquirer, Terminal: req.Terminal, Issuer: out.Issuer,
		MaskedPAN: maskForTest(req.PAN), CardToken: req.CardToken, Teller: req.Teller,
		Supervisor: req.Supervisor, Received: req.Received, Completed: now, TraceParent: traceparent,
	}
	if id, ok := TraceID(traceparent); ok {
		ev.TraceID = id
	}
	return ev
}

var (
	t0 = time.Date(2025, 11, 25, 9, 30, 0, 123456789, time.UTC)
	tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
)

func sampleRequest(op routing.Operation, pan string, block []byte) *routing.Request {
	req := &routing.Request{
		ID: "5f0c2b8e-0d6a-4c51-9a3e-2f0b7d9c1e44", Operation: op, Channel: routing.ChannelATM,
		Acquirer: "ACQ1", Terminal: "ATM00042", Merchant: "BRANCH-7", STAN: "000123",
		Transmit: "1125093000", RRN: "532909000123", PAN: pan,
		CardToken: "9b2d0c8f4e6a1b3c5d7e9f0a1b2c3d4e", Format: 0, KeyIndex: 1,
		AcquirerKey: "zpk-acq1", Received: t0.Add(-150 * time.Millisecond),
	}
	switch op {
	case routing.OpChange:
		req.OldBlock, req.NewBlock = bytes.Clone(block), bytes.Clone(block)
	case routing.OpReset:
		req.NewBlock = bytes.Clone(block)
		req.Channel, req.Teller, req.Supervisor, req.IdentityRef = routing.ChannelBranch, "T0107", "S0009", "IDCHK-77"
	case routing.OpUnblock:
		req.Channel, req.Teller, req.IdentityRef = routing.ChannelBranch, "T0107", "IDCHK-78"
	}
	return req
}

func sampleEvent(op routing.Operation, outcome string) routing.Event {
	req := sampleRequest(op, "4242424242424242", []byte{1, 2, 3, 4, 5, 6, 7, 8})
	out := routing.Outcome{Code: codeFor(outcome), Outcome: outcome, Reason: "r_" + outcome,
		Issuer: "ISS1", EventID: "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}
	if outcome == routing.OutcomeApproved {
		out.Reason = ""
	}
	return eventFrom(req, out, t0, tp)
}

func mustEncoder(t testing.TB) *Encoder {
	t.Helper()
	e, err := NewEncoder(Source("gw-1"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestTypesCoverEveryOperationAndOutcome(t *testing.T) {
	ts := Types()
	if got, want := len(ts), len(Operations)*len(Outcomes); got != want {
		t.Fatalf("len(Types()) = %d, want %d", got, want)
	}
	seen := map[string]bool{}
	for _, ty := range ts {
		if seen[ty] {
			t.Errorf("Types() repeats %q", ty)
		}
		seen[ty] = true
		if !strings.HasPrefix(ty, TypePrefix) || !strings.HasSuffix(ty, ".v1") {
			t.Errorf("type %q lacks prefix %q or suffix .v1", ty, TypePrefix)
		}
	}
}

// TestEncodeEveryType encodes every operation × outcome, checks key and
// headers, validates the body against the schema and decodes it back.
func TestEncodeEveryType(t *testing.T) {
	e := mustEncoder(t)
	for _, op := range Operations {
		for _, oc := range Outcomes {
			ev := sampleEvent(op, oc)
			t.Run(ev.Type, func(t *testing.T) {
				m, err := e.Encode(ev)
				if err != nil {
					t.Fatalf("Encode() error = %v", err)
				}
				if got := string(m.Key); got != ev.CardToken {
					t.Errorf("key = %q, want the card token %q", got, ev.CardToken)
				}
				wantHeaders := map[string]string{
					HeaderSpecVersion:  "1.0",
					HeaderID:           ev.ID,
					HeaderType:         ev.Type,
					HeaderSource:       "/pingate/gw-1",
					HeaderTime:         "2025-11-25T09:30:00.123456789Z",
					HeaderSubject:      ev.CardToken,
					HeaderPartitionKey: ev.CardToken,
					HeaderContentType:  "application/json",
					HeaderTraceParent:  tp,
				}
				if len(m.Headers) != len(wantHeaders) {
					t.Errorf("%d headers, want %d", len(m.Headers), len(wantHeaders))
				}
				for k, want := range wantHeaders {
					if got, _ := m.Header(k); got != want {
						t.Errorf("header %s = %q, want %q", k, got, want)
					}
				}
				if err := ValidateBody(m.Value); err != nil {
					t.Errorf("ValidateBody() = %v", err)
				}
				got, err := Decode(m)
				if err != nil {
					t.Fatalf("Decode() error = %v", err)
				}
				if !got.Time.Equal(ev.Time) || !got.Received.Equal(ev.Received) || !got.Completed.Equal(ev.Completed) {
					t.Errorf("Decode() times = %v %v %v, want %v %v %v", got.Time, got.Received, got.Completed, ev.Time, ev.Received, ev.Completed)
				}
				got.Time, got.Received, got.Completed = ev.Time, ev.Received, ev.Completed
				if got != ev {
					t.Errorf("Decode(Encode(ev)) = %+v, want %+v", got, ev)
				}
			})
		}
	}
}

func TestEncodeWithoutCardIsKeyedByEventID(t *testing.T) {
	ev := sampleEvent(routing.OpChange, routing.OutcomeRejected)
	ev.CardToken, ev.MaskedPAN, ev.TraceParent, ev.TraceID = "", "", "", ""
	m, err := mustEncoder(t).Encode(ev)
	if err != nil {
		t.Fatalf("Encode() error = %v", err)
	}
	if string(m.Key) != ev.ID {
		t.Errorf("key = %q, want event id %q", m.Key, ev.ID)
	}
	for _, h := range []string{HeaderSubject, HeaderPartitionKey, HeaderTraceParent} {
		if _, ok := m.Header(h); ok {
			t.Errorf("header %s present on an event without card or trace", h)
		}
	}
	if err := ValidateBody(m.Value); err != nil {
		t.Errorf("ValidateBody() = %v", err)
	}
}

func TestEncodeNormalisesMask(t *testing.T) {
	tests := []struct{ give, want string }{
		{"424242XXXXXX4242", "424242******4242"},
		{"424242…4242", "424242*4242"},
		{"424242******4242", "424242******4242"},
	}
	e := mustEncoder(t)
	for _, tt := range tests {
		ev := sampleEvent(routing.OpChange, routing.OutcomeApproved)
		ev.MaskedPAN = tt.give
		m, err := e.Encode(ev)
		if err != nil {
			t.Fatalf("Encode(masked %q) error = %v", tt.give, err)
		}
		got, err := Decode(m)
		if err != nil {
			t.Fatal(err)
		}
		if got.MaskedPAN != tt.want {
			t.Errorf("Encode(masked %q) masked_pan = %q, want %q", tt.give, got.MaskedPAN, tt.want)
		}
		if err := ValidateBody(m.Value); err != nil {
			t.Errorf("ValidateBody() = %v", err)
		}
	}
}

func TestEncodeDropsInvalidTraceParent(t *testing.T) {
	ev := sampleEvent(routing.OpReset, routing.OutcomeDeclined)
	ev.TraceParent, ev.TraceID = "not-a-traceparent", ""
	m, err := mustEncoder(t).Encode(ev)
	if err != nil {
		t.Fatalf("Encode() error = %v", err)
	}
	if _, ok := m.Header(HeaderTraceParent); ok {
		t.Error("invalid traceparent was forwarded")
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*routing.Event)
		want   error
	}{
		{"no id", func(e *routing.Event) { e.ID = "" }, ErrInvalidEvent},
		{"bad operation", func(e *routing.Event) { e.Operation = "steal" }, ErrInvalidEvent},
		{"bad outcome", func(e *routing.Event) { e.Outcome = "maybe" }, ErrInvalidEvent},
		{"type mismatch", func(e *routing.Event) { e.Type = "pingate.pin.reset.v1" }, ErrInvalidEvent},
		{"bad code", func(e *routing.Event) { e.Code = "0" }, ErrInvalidEvent},
		{"approved with 55", func(e *routing.Event) { e.Code = "55" }, ErrInvalidEvent},
		{"bad channel", func(e *routing.Event) { e.Channel = "fax" }, ErrInvalidEvent},
		{"no acquirer", func(e *routing.Event) { e.Acquirer = "" }, ErrInvalidEvent},
		{"no received", func(e *routing.Event) { e.Received = time.Time{} }, ErrInvalidEvent},
		{"no completed", func(e *routing.Event) { e.Completed = time.Time{} }, ErrInvalidEvent},
		{"bad trace id", func(e *routing.Event) { e.TraceID = "XYZ"; e.TraceParent = "" }, ErrInvalidEvent},
	}
	e := mustEncoder(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := sampleEvent(routing.OpChange, routing.OutcomeApproved)
			tt.change(&ev)
			if _, err := e.Encode(ev); !errors.Is(err, tt.want) {
				t.Errorf("Encode() error = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewEncoder(""); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("NewEncoder(\"\") error = %v, want %v", err, ErrInvalidEvent)
	}
}

type secretVector struct {
	Source   string `json:"source"`
	PAN      string `json:"pan"`
	PINBlock string `json:"pin_block"`
}

// secretForms lists every way a PAN or PIN block could show up in a
// serialized record.
func secretForms(t *testing.T, v secretVector) []string {
	t.Helper()
	block, err := hex.DecodeString(v.PINBlock)
	if err != nil {
		t.Fatalf("testdata/secrets.json: pin_block of %q is not hex", v.Source)
	}
	forms := []string{
		v.PAN,                             // the PAN
		v.PAN[:12], v.PAN[len(v.PAN)-12:], // any 12-digit run of it
		hex.EncodeToString([]byte(v.PAN)), // its ASCII digits in hex
		base64.StdEncoding.EncodeToString([]byte(v.PAN)),
		strings.ToUpper(v.PINBlock), strings.ToLower(v.PINBlock), // block hex
		string(block),                            // raw block bytes
		base64.StdEncoding.EncodeToString(block), // how encoding/json writes []byte
		base64.RawURLEncoding.EncodeToString(block),
	}
	return forms
}

// serialize writes every byte of a record: key, header names and values, value.
func serialize(m Message) []byte {
	var buf bytes.Buffer
	buf.Write(m.Key)
	for _, h := range m.Headers {
		buf.WriteString(h.Key)
		buf.Write(h.Value)
	}
	buf.Write(m.Value)
	j, _ := json.Marshal(m) // the journal's stored form too
	buf.Write(j)
	return buf.Bytes()
}

// TestNoSecretInAnyEvent feeds requests carrying published test PANs and PIN
// blocks through the mapping for every event type and searches the whole
// serialized record, headers included, for any form of them.
func TestNoSecretInAnyEvent(t *testing.T) {
	var vectors []secretVector
	loadJSON(t, "secrets.json", &vectors)
	e := mustEncoder(t)
	for _, v := range vectors {
		block, _ := hex.DecodeString(v.PINBlock)
		forms := secretForms(t, v)
		for _, op := range Operations {
			for _, oc := range Outcomes {
				req := sampleRequest(op, v.PAN, block)
				out := routing.Outcome{Code: codeFor(oc), Outcome: oc, Issuer: "ISS1",
					EventID: "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}
				m, err := e.Encode(eventFrom(req, out, t0, tp))
				if err != nil {
					t.Fatalf("Encode(%s, %s) for vector %q: %v", op, oc, v.Source, err)
				}
				all := serialize(m)
				for i, f := range forms {
					if bytes.Contains(all, []byte(f)) {
						// Name the form by index only: the failure message must not print the secret.
						t.Errorf("record of %s/%s for vector %q contains secret form #%d", op, oc, v.Source, i)
					}
				}
			}
		}
	}
}

// TestEncodeRefusesMisplacedSecrets puts a PAN or a PIN block into each free
// field of an event, as a buggy caller might, and expects ErrUnsafeEvent —
// with an error message that does not repeat the secret.
func TestEncodeRefusesMisplacedSecrets(t *testing.T) {
	var vectors []secretVector
	loadJSON(t, "secrets.json", &vectors)
	e := mustEncoder(t)
	for _, v := range vectors {
		for _, secret := range []string{v.PAN, v.PINBlock, strings.ToLower(v.PINBlock), "PAN " + v.PAN + " seen"} {
			for _, field := range []string{"masked_pan", "reason", "terminal", "acquirer", "issuer", "teller", "supervisor", "id", "card_token"} {
				ev := sampleEvent(routing.OpReset, routing.OutcomeDeclined)
				switch field {
				case "masked_pan":
					ev.MaskedPAN = secret
				case "reason":
					ev.Reason = secret
				case "terminal":
					ev.Terminal = secret
				case "acquirer":
					ev.Acquirer = secret
				case "issuer":
					ev.Issuer = secret
				case "teller":
					ev.Teller = secret
				case "supervisor":
					ev.Supervisor = secret
				case "id":
					ev.ID = secret
				case "card_token":
					if secret != v.PAN {
						continue // a hex token is legitimate; only a PAN-shaped one is refused
					}
					ev.CardToken = secret
				}
				_, err := e.Encode(ev)
				if !errors.Is(err, ErrUnsafeEvent) {
					t.Errorf("Encode(secret #%s of %q in %s) error = %v, want %v", kind(secret, v), v.Source, field, err, ErrUnsafeEvent)
					continue
				}
				if strings.Contains(err.Error(), v.PAN) || strings.Contains(strings.ToLower(err.Error()), strings.ToLower(v.PINBlock)) {
					t.Errorf("Encode error for %s echoes the secret", field)
				}
			}
		}
	}
}

func kind(secret string, v secretVector) string {
	if strings.Contains(secret, v.PAN) {
		return "pan"
	}
	return "pin block"
}

type traceVector struct {
	Source  string `json:"source"`
	Give    string `json:"give"`
	Valid   bool   `json:"valid"`
	TraceID string `json:"trace_id"`
}

func TestTraceID(t *testing.T) {
	var vectors []traceVector
	loadJSON(t, "traceparent.json", &vectors)
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, tt := range vectors {
		got, ok := TraceID(tt.Give)
		if ok != tt.Valid || got != tt.TraceID {
			t.Errorf("TraceID(%q) = %q, %v; want %q, %v (%s)", tt.Give, got, ok, tt.TraceID, tt.Valid, tt.Source)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := mustEncoder(t).Encode(sampleEvent(routing.OpUnblock, routing.OutcomeApproved))
	if err != nil {
		t.Fatal(err)
	}
	without := func(name string) Message {
		m := Message{Key: good.Key, Value: good.Value}
		for _, h := range good.Headers {
			if h.Key != name {
				m.Headers = append(m.Headers, h)
			}
		}
		return m
	}
	with := func(name, value string) Message {
		m := without(name)
		m.Headers = append(m.Headers, Header{name, []byte(value)})
		return m
	}
	tests := []struct {
		name string
		give Message
	}{
		{"no id", without(HeaderID)},
		{"no type", without(HeaderType)},
		{"no source", without(HeaderSource)},
		{"no time", without(HeaderTime)},
		{"no specversion", without(HeaderSpecVersion)},
		{"specversion 0.3", with(HeaderSpecVersion, "0.3")},
		{"avro", with(HeaderContentType, "application/avro")},
		{"foreign type", with(HeaderType, "com.example.someevent")},
		{"type mismatch", with(HeaderType, "pingate.pin.changed.v1")},
		{"bad time", with(HeaderTime, "yesterday")},
		{"not json", Message{Headers: good.Headers, Value: []byte("4242424242424242")}},
		{"trailing", Message{Headers: good.Headers, Value: append(bytes.Clone(good.Value), []byte(" {}")...)}},
		{"unknown outcome", Message{Headers: good.Headers, Value: bytes.Replace(good.Value, []byte(`"approved"`), []byte(`"great"`), 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.give)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode() error = %v, want %v", err, ErrMalformed)
			}
			if strings.Contains(err.Error(), "4242424242") {
				t.Error("Decode error echoes the record")
			}
		})
	}
	if _, err := Decode(good); err != nil {
		t.Errorf("Decode(good) = %v", err)
	}
	if _, err := Decode(with(HeaderContentType, "application/json; charset=utf-8")); err != nil {
		t.Errorf("Decode(content-type with charset) = %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	e := mustEncoder(f)
	for _, ty := range []struct {
		op routing.Operation
		oc string
	}{{routing.OpChange, routing.OutcomeApproved}, {routing.OpReset, routing.OutcomeLimited}} {
		m, err := e.Encode(sampleEvent(ty.op, ty.oc))
		if err != nil {
			f.Fatal(err)
		}
		j, _ := json.Marshal(m)
		f.Add(j)
	}
	f.Add([]byte(`{"headers":[{"key":"ce_specversion","value":"MS4w"}],"value":"e30="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if json.Unmarshal(data, &m) != nil {
			return
		}
		ev, err := Decode(m)
		if err != nil {
			return
		}
		// A decodable record that also passes Encode's checks must round-trip.
		m2, err := e.Encode(ev)
		if err != nil {
			return
		}
		ev2, err := Decode(m2)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(m))) error = %v", err)
		}
		if ev2.ID != ev.ID || ev2.Type != ev.Type || ev2.Code != ev.Code || !ev2.Completed.Equal(ev.Completed) {
			t.Fatalf("round trip changed the event")
		}
	})
}

// The key and the header values share one buffer: appending to one of them
// must not write into the next.
func TestEncodedValuesAreIndependent(t *testing.T) {
	e := mustEncoder(t)
	ev := sampleEvent(Operations[0], Outcomes[0])
	ev.Reverses = "f3c1a5f0-2d2b-4f53-9d2e-1b7a1d7e9c11"
	m, err := e.Encode(ev)
	if err != nil {
		t.Fatalf("Encode() error = %v", err)
	}
	before := make([]string, len(m.Headers))
	for i, h := range m.Headers {
		before[i] = string(h.Value)
	}
	key := string(m.Key)
	_ = append(m.Key, "XXXXXXXX"...)
	for _, h := range m.Headers {
		_ = append(h.Value, "XXXXXXXX"...)
	}
	if string(m.Key) != key {
		t.Errorf("key changed to %q", m.Key)
	}
	for i, h := range m.Headers {
		if string(h.Value) != before[i] {
			t.Errorf("header %s changed from %q to %q by an append to another value", h.Key, before[i], h.Value)
		}
	}
	if got, _ := m.Header(HeaderReverses); got != ev.Reverses {
		t.Errorf("%s = %q, want %q", HeaderReverses, got, ev.Reverses)
	}
}
