package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"

	"pingate/routing"
)

// Header names of the binary content mode (CloudEvents Kafka Protocol Binding
// §3.2.3 maps each context attribute to "ce_" + its name; §3.2.2 maps
// datacontenttype to "content-type").
const (
	HeaderID           = "ce_id"
	HeaderType         = "ce_type"
	HeaderSource       = "ce_source"
	HeaderSpecVersion  = "ce_specversion"
	HeaderTime         = "ce_time"
	HeaderSubject      = "ce_subject"
	HeaderPartitionKey = "ce_partitionkey"
	HeaderContentType  = "content-type"
	HeaderTraceParent  = "traceparent"
	// HeaderReverses is the "reverses" extension attribute: on the event of
	// an acquirer's reversal, the id of the approved event it undoes.
	HeaderReverses = "ce_reverses"
)

// SpecVersion is the CloudEvents version of every event; ContentType the
// media type of every record value.
const (
	SpecVersion = "1.0"
	ContentType = "application/json"
)

// TypePrefix starts the ce_type of every pingate outcome event.
const TypePrefix = "pingate.pin."

// Errors that callers branch on. Their messages name the offending field,
// never its value.
var (
	// ErrInvalidEvent: a required field is missing or out of range.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrUnsafeEvent: a field looks like a full PAN or a PIN block, or the
	// masked PAN is not masked. The event is refused rather than published.
	ErrUnsafeEvent = errors.New("event would carry secret data")
	// ErrMalformed: a record is not a pingate CloudEvents record (Decode).
	ErrMalformed = errors.New("malformed event record")
)

// Header is one Kafka record header.
type Header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// Message is one outcome event as a Kafka record: key, headers and value.
// The JSON form of a Message is how the outbox journal stores it, so a
// re-sent record is byte-for-byte the first one (same ce_id).
type Message struct {
	Key     []byte   `json:"key"`
	Headers []Header `json:"headers"`
	Value   []byte   `json:"value"`
}

// Header returns the value of the first header named key.
func (m Message) Header(key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// body is the record value. Field names are the wire contract described by
// events.schema.json; change them only with a new versioned event type.
type body struct {
	Operation    string    `json:"operation"`
	Outcome      string    `json:"outcome"`
	ResponseCode string    `json:"response_code"`
	Reason       string    `json:"reason,omitempty"`
	Channel      string    `json:"channel"`
	Acquirer     string    `json:"acquirer"`
	Terminal     string    `json:"terminal"`
	Issuer       string    `json:"issuer,omitempty"`
	MaskedPAN    string    `json:"masked_pan"`
	CardToken    string    `json:"card_token"`
	Teller       string    `json:"teller,omitempty"`
	Supervisor   string    `json:"supervisor,omitempty"`
	Received     time.Time `json:"received"`
	Completed    time.Time `json:"completed"`
	TraceID      string    `json:"trace_id,omitempty"`
}

// Operations and Outcomes list every value an event may carry, in the order
// docs/events.md presents them.
var (
	Operations = []routing.Operation{routing.OpChange, routing.OpReset, routing.OpUnblock}
	Outcomes   = []string{
		routing.OutcomeApproved, routing.OutcomeDeclined, routing.OutcomeReversed,
		routing.OutcomeLimited, routing.OutcomeRejected, routing.OutcomeFailed,
	}
	Channels = []routing.Channel{routing.ChannelATM, routing.ChannelBranch, routing.ChannelKiosk}
)

// Types returns every event type (routing.EventType of each operation ×
// outcome), operation-major.
func Types() []string {
	var ts []string
	for _, op := range Operations {
		for _, oc := range Outcomes {
			ts = append(ts, routing.EventType(op, oc))
		}
	}
	return ts
}

// Source returns the ce_source of a gateway instance: "/pingate/<instance>".
func Source(instance string) string { return "/pingate/" + instance }

// Encoder maps events to records for one gateway instance. It is safe for
// concurrent use.
type Encoder struct {
	source string
}

// NewEncoder returns an Encoder whose events carry source as ce_source (use
// Source(instance)). source must be a non-empty URI reference without spaces.
func NewEncoder(source string) (*Encoder, error) {
	if source == "" || strings.ContainsAny(source, " \t\r\n") || len(source) > 256 {
		return nil, fmt.Errorf("%w: source must be a non-empty URI reference", ErrInvalidEvent)
	}
	return &Encoder{source: source}, nil
}

// Encode maps ev to a record. It checks the event first: required fields
// (ErrInvalidEvent), and that nothing in it looks like a full PAN or PIN block
// (ErrUnsafeEvent). A masked PAN written with another mask character is
// rewritten with '*'. An unparsable ev.TraceParent is dropped rather than
// failing the event. The key is the card token, or the event id for an event
// without a card (a request refused before its PAN could be read).
func (e *Encoder) Encode(ev routing.Event) (Message, error) {
	if err := check(&ev); err != nil {
		return Message{}, err
	}
	b := body{
		Operation: string(ev.Operation), Outcome: ev.Outcome, ResponseCode: ev.Code,
		Reason: ev.Reason, Channel: string(ev.Channel), Acquirer: ev.Acquirer,
		Terminal: ev.Terminal, Issuer: ev.Issuer, MaskedPAN: ev.MaskedPAN,
		CardToken: ev.CardToken, Teller: ev.Teller, Supervisor: ev.Supervisor,
		Received: ev.Received.UTC(), Completed: ev.Completed.UTC(), TraceID: ev.TraceID,
	}
	value, err := json.Marshal(b)
	if err != nil {
		return Message{}, fmt.Errorf("%w: marshal body", ErrInvalidEvent)
	}
	key := ev.CardToken
	if key == "" {
		key = ev.ID
	}
	t := ev.Time
	if t.IsZero() {
		t = ev.Completed
	}
	// The key and every header value are cut from one buffer, each with
	// its capacity capped, so a record costs two allocations beside its
	// body rather than one per field.
	buf := make([]byte, 0, len(key)+len(SpecVersion)+len(ev.ID)+len(ev.Type)+len(e.source)+
		len(time.RFC3339Nano)+len(ContentType)+2*len(ev.CardToken)+len(ev.TraceParent)+len(ev.Reverses))
	cut := func(b []byte) []byte {
		v := b[len(buf):len(b):len(b)]
		buf = b
		return v
	}
	m := Message{Key: cut(append(buf, key...)), Value: value, Headers: make([]Header, 0, 10)}
	add := func(k string, v []byte) { m.Headers = append(m.Headers, Header{k, v}) }
	add(HeaderSpecVersion, cut(append(buf, SpecVersion...)))
	add(HeaderID, cut(append(buf, ev.ID...)))
	add(HeaderType, cut(append(buf, ev.Type...)))
	add(HeaderSource, cut(append(buf, e.source...)))
	add(HeaderTime, cut(t.UTC().AppendFormat(buf, time.RFC3339Nano)))
	add(HeaderContentType, cut(append(buf, ContentType...)))
	if ev.CardToken != "" {
		add(HeaderSubject, cut(append(buf, ev.CardToken...)))
		add(HeaderPartitionKey, cut(append(buf, ev.CardToken...)))
	}
	if ev.TraceParent != "" {
		add(HeaderTraceParent, cut(append(buf, ev.TraceParent...)))
	}
	if ev.Reverses != "" {
		add(HeaderReverses, cut(append(buf, ev.Reverses...)))
	}
	return m, nil
}

// Decode maps a record back to an event: the consumer side, used by
// "pingate events tail" and tests. It requires the CloudEvents headers of
// Encode, a pingate ce_type that matches the body's operation and outcome,
// and a JSON body; unknown body fields are ignored (consumers must tolerate
// additions within a version). Errors wrap ErrMalformed and never echo the
// record's content.
func Decode(m Message) (routing.Event, error) {
	get := func(k string) (string, error) {
		v, ok := m.Header(k)
		if !ok || v == "" {
			return "", fmt.Errorf("%w: missing header %s", ErrMalformed, k)
		}
		return v, nil
	}
	var ev routing.Event
	sv, err := get(HeaderSpecVersion)
	if err != nil {
		return ev, err
	}
	if sv != SpecVersion {
		return ev, fmt.Errorf("%w: unsupported ce_specversion", ErrMalformed)
	}
	ct, err := get(HeaderContentType)
	if err != nil {
		return ev, err
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ContentType {
		return ev, fmt.Errorf("%w: content-type is not %s", ErrMalformed, ContentType)
	}
	if ev.ID, err = get(HeaderID); err != nil {
		return ev, err
	}
	if ev.Type, err = get(HeaderType); err != nil {
		return ev, err
	}
	if !strings.HasPrefix(ev.Type, TypePrefix) {
		return ev, fmt.Errorf("%w: ce_type is not a pingate event type", ErrMalformed)
	}
	if _, err := get(HeaderSource); err != nil {
		return ev, err
	}
	ts, err := get(HeaderTime)
	if err != nil {
		return ev, err
	}
	if ev.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return ev, fmt.Errorf("%w: ce_time is not an RFC 3339 time", ErrMalformed)
	}
	if r, ok := m.Header(HeaderReverses); ok {
		ev.Reverses = r
	}
	if tp, ok := m.Header(HeaderTraceParent); ok {
		ev.TraceParent = tp
	}
	var b body
	dec := json.NewDecoder(bytes.NewReader(m.Value))
	if err := dec.Decode(&b); err != nil {
		return ev, fmt.Errorf("%w: body is not the event JSON object", ErrMalformed)
	}
	if dec.More() {
		return ev, fmt.Errorf("%w: trailing data after body", ErrMalformed)
	}
	ev.Operation = routing.Operation(b.Operation)
	ev.Outcome = b.Outcome
	ev.Code = b.ResponseCode
	ev.Reason = b.Reason
	ev.Channel = routing.Channel(b.Channel)
	ev.Acquirer = b.Acquirer
	ev.Terminal = b.Terminal
	ev.Issuer = b.Issuer
	ev.MaskedPAN = b.MaskedPAN
	ev.CardToken = b.CardToken
	ev.Teller = b.Teller
	ev.Supervisor = b.Supervisor
	ev.Received = b.Received
	ev.Completed = b.Completed
	ev.TraceID = b.TraceID
	if !validOperation(ev.Operation) || !validOutcome(ev.Outcome) {
		return ev, fmt.Errorf("%w: unknown operation or outcome", ErrMalformed)
	}
	if ev.Type != routing.EventType(ev.Operation, ev.Outcome) {
		return ev, fmt.Errorf("%w: ce_type does not match operation and outcome", ErrMalformed)
	}
	return ev, nil
}

// TraceID returns the trace-id of a W3C traceparent header
// ("version-traceid-parentid-flags", lowercase hex), and false if the header
// is not one: wrong lengths, upper case, an all-zero id, or version ff.
func TraceID(traceparent string) (string, bool) {
	p := strings.Split(traceparent, "-")
	if len(p) < 4 || len(p[0]) != 2 || len(p[1]) != 32 || len(p[2]) != 16 || len(p[3]) != 2 {
		return "", false
	}
	if p[0] == "00" && len(p) != 4 {
		return "", false
	}
	for _, s := range p[:4] {
		if !lowerHex(s) {
			return "", false
		}
	}
	if p[0] == "ff" || strings.Trim(p[1], "0") == "" || strings.Trim(p[2], "0") == "" {
		return "", false
	}
	return p[1], true
}

// Check reports whether Encode would accept ev: its required fields
// (ErrInvalidEvent) and nothing in it that looks like a full PAN or PIN block
// (ErrUnsafeEvent). A consumer takes for an event only what the encoder could
// have written; a record from another producer may carry anything. ev is not
// changed. Errors name the field, never its value.
func Check(ev routing.Event) error { return check(&ev) }

// check validates ev in place: it normalises the masked PAN's mask character
// and drops an invalid traceparent.
func check(ev *routing.Event) error {
	invalid := func(field string) error { return fmt.Errorf("%w: %s", ErrInvalidEvent, field) }
	unsafe := func(field string) error { return fmt.Errorf("%w: %s", ErrUnsafeEvent, field) }
	switch {
	case ev.ID == "" || len(ev.ID) > 128:
		return invalid("id")
	case !validOperation(ev.Operation):
		return invalid("operation")
	case !validOutcome(ev.Outcome):
		return invalid("outcome")
	case ev.Type != routing.EventType(ev.Operation, ev.Outcome):
		return invalid("type")
	case !validCode(ev.Code):
		return invalid("response_code")
	case (ev.Outcome == routing.OutcomeApproved) != (ev.Code == "00"):
		return invalid("response_code")
	case !validChannel(ev.Channel):
		return invalid("channel")
	case ev.Acquirer == "":
		return invalid("acquirer")
	case ev.Received.IsZero():
		return invalid("received")
	case ev.Completed.IsZero():
		return invalid("completed")
	}
	if !isUUID(ev.ID) && looksSecret(ev.ID) {
		return unsafe("id")
	}
	for _, f := range []struct{ name, v string }{
		{"reason", ev.Reason}, {"acquirer", ev.Acquirer}, {"terminal", ev.Terminal},
		{"issuer", ev.Issuer}, {"teller", ev.Teller}, {"supervisor", ev.Supervisor},
	} {
		if len(f.v) > 128 {
			return invalid(f.name)
		}
		if looksSecret(f.v) {
			return unsafe(f.name)
		}
	}
	if ev.MaskedPAN != "" {
		m, ok := normaliseMask(ev.MaskedPAN)
		if !ok {
			return unsafe("masked_pan")
		}
		ev.MaskedPAN = m
	}
	if len(ev.CardToken) > 128 || strings.ContainsAny(ev.CardToken, " \t\r\n") {
		return invalid("card_token")
	}
	if len(ev.CardToken) >= 12 && len(ev.CardToken) <= 19 && allDigits(ev.CardToken) {
		return unsafe("card_token")
	}
	if ev.TraceParent != "" {
		id, ok := TraceID(ev.TraceParent)
		if !ok {
			ev.TraceParent = ""
		} else if ev.TraceID == "" {
			ev.TraceID = id
		}
	}
	if ev.TraceID != "" && (len(ev.TraceID) != 32 || !lowerHex(ev.TraceID)) {
		return invalid("trace_id")
	}
	return nil
}

// normaliseMask accepts "6 digits, 1–9 mask characters, 4 digits" with any
// non-digit mask character and returns it written with '*'.
func normaliseMask(s string) (string, bool) {
	r := []rune(s)
	if len(r) < 11 || len(r) > 19 {
		return "", false
	}
	head, mid, tail := string(r[:6]), r[6:len(r)-4], string(r[len(r)-4:])
	if !allDigits(head) || !allDigits(tail) {
		return "", false
	}
	for _, c := range mid {
		if c >= '0' && c <= '9' {
			return "", false
		}
	}
	return head + strings.Repeat("*", len(mid)) + tail, true
}

// looksSecret reports a run of 12 or more decimal digits (a PAN, or most of
// one) or of 16 or more hex digits (a PIN block or key in hex): the rule the
// flow also applies to a request's identifiers, so that it refuses up front
// what an event would refuse.
func looksSecret(s string) bool { return routing.LooksSecret(s) }

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func validCode(s string) bool {
	if len(s) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func validOperation(op routing.Operation) bool {
	for _, o := range Operations {
		if o == op {
			return true
		}
	}
	return false
}

func validOutcome(s string) bool {
	for _, o := range Outcomes {
		if o == s {
			return true
		}
	}
	return false
}

func validChannel(c routing.Channel) bool {
	for _, o := range Channels {
		if o == c {
			return true
		}
	}
	return false
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
