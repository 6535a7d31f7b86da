package routing

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pingate/iso8583"
	"pingate/pinblock"
)

// memWindow is an in-memory shared duplicate window with reversal claims,
// shared by the flows of a unit test like redislimit.Limiter is by gateway
// instances (that one is tested on a real Redis in integration/redislimit).
// It allows every request.
type memWindow struct {
	mu        sync.Mutex
	recs      map[WindowID]*WindowRecord
	forbidden map[WindowID]bool // Forbid's marks, not yet claimed
	fail      error
}

var (
	_ SharedWindow    = (*memWindow)(nil)
	_ WindowReversals = (*memWindow)(nil)
)

func newMemWindow() *memWindow { return &memWindow{recs: map[WindowID]*WindowRecord{}} }

func (m *memWindow) Allow(context.Context, *Request) (Decision, error) {
	return Decision{Allowed: true}, nil
}
func (m *memWindow) Record(context.Context, *Request, string) error { return nil }

func (m *memWindow) Claim(_ context.Context, req *Request, _ time.Duration) (Claim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := WindowIDOf(req)
	if m.forbidden[id] {
		delete(m.forbidden, id)
		m.recs[id] = &WindowRecord{Reversed: true}
		return Claim{First: true, Decision: Decision{Refusal: ErrReversedBeforeReceived}}, nil
	}
	if r, ok := m.recs[id]; ok {
		return Claim{Previous: r.Outcome}, nil
	}
	m.recs[id] = &WindowRecord{}
	return Claim{First: true, Decision: Decision{Allowed: true}}, nil
}

func (m *memWindow) Forbid(_ context.Context, id WindowID, _ time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail
	}
	if _, ok := m.recs[id]; ok || m.forbidden[id] {
		return false, nil
	}
	if m.forbidden == nil {
		m.forbidden = map[WindowID]bool{}
	}
	m.forbidden[id] = true
	return true, nil
}

func (m *memWindow) Finish(_ context.Context, req *Request, e WindowEntry, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[WindowIDOf(req)] = &WindowRecord{Done: true, Outcome: e.Outcome, Reversal: e.Reversal}
	return nil
}

func (m *memWindow) Lookup(_ context.Context, id WindowID) (WindowRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return WindowRecord{}, false, m.fail
	}
	if m.forbidden[id] {
		return WindowRecord{Reversed: true}, true, nil
	}
	r, ok := m.recs[id]
	if !ok {
		return WindowRecord{}, false, nil
	}
	return *r, true, nil
}

func (m *memWindow) ClaimReversal(_ context.Context, id WindowID) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail
	}
	r, ok := m.recs[id]
	if !ok || !r.Done || r.Reversed {
		return false, nil
	}
	r.Reversed = true
	return true, nil
}

func (m *memWindow) ReleaseReversal(_ context.Context, id WindowID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.recs[id]; ok {
		r.Reversed = false
	}
	return nil
}

// testSealer seals with AES-GCM under a data key from a fixed secret.
func testSealer(t *testing.T, secret string) Sealer {
	t.Helper()
	s, err := pinblock.DataSealerFromSecret([]byte(secret), "approvals")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const testSealSecret = "0123456789abcdef0123456789abcdef"

func sharedFlow(t *testing.T, issuer IssuerSender, sink *memSink, w *memWindow, sealer Sealer) *Flow {
	t.Helper()
	return testFlowWith(t, issuer, sink, func(d *Deps) { d.Limiter, d.ApprovalSealer = w, sealer })
}

func adviceFor(req *Request) ReversalAdvice {
	return ReversalAdvice{Acquirer: req.Acquirer, Terminal: req.Terminal, STAN: req.STAN, Transmit: req.Transmit, Reason: "68", PAN: req.PAN}
}

// TestFlowReverseOnAnotherInstance: flow A approves; the acquirer's 0420
// reaches flow B, which shares A's approvals: B owes the issuer the reversal
// of the message A sent and records it, naming A's approved event. The same
// advice to A, or again to B, changes nothing more.
func TestFlowReverseOnAnotherInstance(t *testing.T) {
	shared := newMemWindow()
	issuerA, issuerB := &reversingIssuer{code: iso8583.RCApproved}, &reversingIssuer{code: iso8583.RCApproved}
	sinkA, sinkB := &memSink{}, &memSink{}
	a := sharedFlow(t, issuerA, sinkA, shared, testSealer(t, testSealSecret))
	b := sharedFlow(t, issuerB, sinkB, shared, testSealer(t, testSealSecret))
	req := changeRequest(t, "000501")
	if out := a.Handle(context.Background(), req); out.Code != iso8583.RCApproved {
		t.Fatalf("A.Handle() = %s, want 00", out.Code)
	}
	adv := adviceFor(req)
	for id, r := range shared.recs {
		if strings.Contains(string(r.Reversal), req.PAN) || strings.Contains(string(r.Reversal), req.PAN[6:]) || id.CardToken == "" {
			t.Fatal("the shared window's record holds the PAN in clear, or no card token")
		}
	}

	other := sharedFlow(t, &reversingIssuer{code: iso8583.RCApproved}, &memSink{}, shared, testSealer(t, "another-secret-another-secret-xx"))
	if err := other.Reverse(context.Background(), adv); !errors.Is(err, ErrReversalFailed) {
		t.Fatalf("Reverse() on an instance with another data key = %v, want ErrReversalFailed (answered 96)", err)
	}
	shared.fail = errors.New("redis down")
	if err := b.Reverse(context.Background(), adv); !errors.Is(err, ErrReversalFailed) {
		t.Fatalf("B.Reverse() with the shared approvals down = %v, want ErrReversalFailed (answered 96)", err)
	}
	shared.fail = nil
	if err := b.Reverse(context.Background(), adv); err != nil {
		t.Fatalf("B.Reverse() = %v, want nil", err)
	}
	if err := a.Reverse(context.Background(), adv); err != nil {
		t.Fatalf("A.Reverse() after B's = %v, want nil", err)
	}
	if err := b.Reverse(context.Background(), adv); err != nil {
		t.Fatalf("B.Reverse() again = %v, want nil", err)
	}
	if len(issuerB.reversed) != 1 || issuerB.reversed[0].STAN != "000777" || issuerB.reversed[0].PAN != req.PAN {
		t.Fatalf("B owed the issuer %d reversals, want 1 for the message A sent", len(issuerB.reversed))
	}
	if len(issuerA.reversed) != 0 {
		t.Errorf("A owed the issuer %d reversals, want 0: B took the advice", len(issuerA.reversed))
	}
	if len(sinkA.events) != 1 || len(sinkB.events) != 1 {
		t.Fatalf("events: A %d, B %d; want A's approval and B's reversal", len(sinkA.events), len(sinkB.events))
	}
	approved, rev := sinkA.events[0], sinkB.events[0]
	if rev.Outcome != OutcomeReversed || rev.Reason != ReasonAcquirerReversal || rev.Reverses != approved.ID ||
		rev.CardToken != approved.CardToken || rev.MaskedPAN != approved.MaskedPAN || rev.Issuer != approved.Issuer {
		t.Errorf("B's reversal event = %+v\nfor A's approved event %+v", rev, approved)
	}
}

// TestFlowReverseUnknownEverywhere: a 0420 for a request no instance
// approved is acknowledged and nothing is owed; a declined original is not
// shared at all.
func TestFlowReverseUnknownEverywhere(t *testing.T) {
	shared := newMemWindow()
	issuer := &reversingIssuer{code: iso8583.RCIncorrectPIN}
	sealer := testSealer(t, testSealSecret)
	a, b := sharedFlow(t, issuer, &memSink{}, shared, sealer), sharedFlow(t, issuer, &memSink{}, shared, sealer)
	req := changeRequest(t, "000502")
	if out := a.Handle(context.Background(), req); out.Code != iso8583.RCIncorrectPIN {
		t.Fatalf("A.Handle() = %s, want 55", out.Code)
	}
	for _, r := range shared.recs {
		if r.Reversal != nil {
			t.Error("a declined request's record carries an approval")
		}
	}
	unknown := adviceFor(req)
	unknown.STAN = "999999"
	for _, adv := range []ReversalAdvice{adviceFor(req), unknown} {
		if err := b.Reverse(context.Background(), adv); err != nil {
			t.Errorf("B.Reverse(%s) = %v, want nil", adv.STAN, err)
		}
	}
	if len(issuer.reversed) != 0 {
		t.Errorf("%d reversals owed, want 0", len(issuer.reversed))
	}
}

// TestFlowReverseOfAnOriginalInFlightElsewhere: a 0420 naming a request
// another instance holds in flight is answered 96 (the acquirer sends it
// again), not acknowledged with nothing done.
func TestFlowReverseOfAnOriginalInFlightElsewhere(t *testing.T) {
	shared := newMemWindow()
	b := sharedFlow(t, &reversingIssuer{code: iso8583.RCApproved}, &memSink{}, shared, testSealer(t, testSealSecret))
	req := changeRequest(t, "000503")
	req.CardToken = b.deps.Tokenizer.Token(req.PAN)
	if _, err := shared.Claim(context.Background(), req, time.Minute); err != nil { // in flight on "A"
		t.Fatal(err)
	}
	if err := b.Reverse(context.Background(), adviceFor(req)); !errors.Is(err, ErrOriginalInFlight) || ResponseFor(err).Code != iso8583.RCSystemMalfunction {
		t.Fatalf("Reverse() of an original in flight elsewhere = %v, want ErrOriginalInFlight answered 96", err)
	}
}

// fullApproval is an Approval with every field set, each to a value of its
// own, so that a field the binary form leaves out fails the round trip. A
// field of a kind it does not know fails the test: the form must learn it.
func fullApproval(t *testing.T) *Approval {
	t.Helper()
	a := &Approval{}
	var fill func(v reflect.Value, name string)
	fill = func(v reflect.Value, name string) {
		for i := range v.NumField() {
			f, n := v.Field(i), name+"."+v.Type().Field(i).Name
			switch {
			case f.Type() == reflect.TypeOf(time.Time{}):
				f.Set(reflect.ValueOf(time.Date(2026, 12, 3, 19, 4, 5, 123456789, time.FixedZone("CST", 8*3600))))
			case f.Kind() == reflect.String:
				f.SetString(n + " ü")
			case f.Kind() == reflect.Int:
				f.SetInt(int64(3 + i))
			case f.Kind() == reflect.Bool:
				f.SetBool(true)
			case f.Kind() == reflect.Struct:
				fill(f, n)
			default:
				t.Fatalf("%s: a field of kind %s the approval's binary form does not encode", n, f.Kind())
			}
		}
	}
	fill(reflect.ValueOf(a).Elem(), "Approval")
	return a
}

// sameApproval compares two approvals, their times by instant and offset.
func sameApproval(t *testing.T, got, want *Approval) {
	t.Helper()
	_, gotOff := got.Sent.Created.Zone()
	_, wantOff := want.Sent.Created.Zone()
	if !got.Sent.Created.Equal(want.Sent.Created) || gotOff != wantOff {
		t.Errorf("Created = %v, want %v", got.Sent.Created, want.Sent.Created)
	}
	g, w := *got, *want
	g.Sent.Created, w.Sent.Created = time.Time{}, time.Time{}
	// Field names only: the values include a PAN.
	var diff func(g, w reflect.Value, name string)
	diff = func(g, w reflect.Value, name string) {
		for i := range g.NumField() {
			n := name + "." + g.Type().Field(i).Name
			if g.Field(i).Kind() == reflect.Struct && g.Field(i).Type() != reflect.TypeOf(time.Time{}) {
				diff(g.Field(i), w.Field(i), n)
			} else if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
				t.Errorf("%s differs after the round trip", n)
			}
		}
	}
	diff(reflect.ValueOf(g), reflect.ValueOf(w), "Approval")
}

func TestApprovalBinaryFormRoundTrips(t *testing.T) {
	s := testSealer(t, testSealSecret)
	id := WindowID{CardToken: "tok", Acquirer: "100001", Terminal: "T1", STAN: "000001", Transmit: "1203190405"}
	for _, a := range []*Approval{fullApproval(t), {}} {
		sealed, err := sealApproval(s, id, a)
		if err != nil {
			t.Fatalf("sealApproval: %v", err)
		}
		got, err := openApproval(s, id, sealed)
		if err != nil {
			t.Fatalf("openApproval: %v", err)
		}
		sameApproval(t, got, a)
	}
}

// Instances before the binary form sealed JSON; their approvals still open.
func TestApprovalJSONFormStillOpens(t *testing.T) {
	s := testSealer(t, testSealSecret)
	id := WindowID{CardToken: "tok", Acquirer: "100001", Terminal: "T1", STAN: "000001", Transmit: "1203190405"}
	a := fullApproval(t)
	plain, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal(plain, approvalAAD(id))
	if err != nil {
		t.Fatal(err)
	}
	got, err := openApproval(s, id, sealed)
	if err != nil {
		t.Fatalf("openApproval(JSON form): %v", err)
	}
	sameApproval(t, got, a)
}

// Every cut of the binary form, and trailing bytes, is refused.
func TestApprovalBinaryFormRefusesCuts(t *testing.T) {
	b := appendApproval(nil, fullApproval(t))
	for n := range len(b) {
		if err := parseApproval(b[:n], &Approval{}); err == nil {
			t.Fatalf("parseApproval(the first %d of %d bytes) = nil, want an error", n, len(b))
		}
	}
	if err := parseApproval(append(b, 0), &Approval{}); err == nil {
		t.Error("parseApproval(form + a trailing byte) = nil, want an error")
	}
}

func FuzzParseApproval(f *testing.F) {
	f.Add(appendApproval(nil, &Approval{}))
	f.Add(appendApproval(nil, &Approval{Sent: Reversal{PAN: "6228480000000000001", Attempts: 2, Record: true}, Issuer: "ssbank"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Approval
		if parseApproval(b, &a) != nil {
			return
		}
		var again Approval
		if err := parseApproval(appendApproval(nil, &a), &again); err != nil {
			t.Fatalf("a parsed approval's form does not parse again: %v", err)
		}
		sameApproval(t, &again, &a)
	})
}

// TestReversalBinaryForm: a reversal's binary form keeps every field (the
// full approval's Sent sets each), and an approval's form with its own
// fields set is not a reversal's.
func TestReversalBinaryForm(t *testing.T) {
	a := fullApproval(t)
	b, err := a.Sent.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var got Reversal
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary(AppendBinary(r)) = %v", err)
	}
	sameApproval(t, &Approval{Sent: got}, &Approval{Sent: a.Sent})
	if err := got.UnmarshalBinary(appendApproval(nil, a)); err == nil {
		t.Error("UnmarshalBinary(an approval's form) = nil, want an error")
	}
	if err := got.UnmarshalBinary(b[:len(b)-1]); err == nil {
		t.Error("UnmarshalBinary(a truncated form) = nil, want an error")
	}
}

// TestFlowReversedBeforeItCameToAnotherInstance: the acquirer's 0420 reaches
// flow B before its 0100 reaches flow A (another connection, another
// instance). B marks it reversed in the shared window; A refuses the
// request 94 reversed_before_received, records that, and never sends it.
// A repeated advice to either changes nothing.
func TestFlowReversedBeforeItCameToAnotherInstance(t *testing.T) {
	shared := newMemWindow()
	sealer := testSealer(t, testSealSecret)
	var sent atomic.Int64
	issuerA := issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) {
		sent.Add(1)
		return iso8583.RCApproved, nil
	})
	sinkA, sinkB := &memSink{}, &memSink{}
	a := testFlowWith(t, issuerA, sinkA, func(d *Deps) { d.Limiter, d.ApprovalSealer = shared, sealer })
	b := sharedFlow(t, &reversingIssuer{code: iso8583.RCApproved}, sinkB, shared, sealer)
	req := changeRequest(t, "000503")
	if err := b.Reverse(context.Background(), adviceFor(req)); err != nil {
		t.Fatalf("B.Reverse() of a request not yet received = %v, want nil", err)
	}
	out := a.Handle(context.Background(), req)
	if out.Code != iso8583.RCDuplicate || out.Reason != "reversed_before_received" || out.Outcome != OutcomeRejected {
		t.Fatalf("A.Handle() of the request B took the reversal of = %+v, want 94 rejected reversed_before_received", out)
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("A sent the issuer %d requests, want 0", n)
	}
	if len(sinkA.events) != 1 || sinkA.events[0].Reason != "reversed_before_received" || len(sinkB.events) != 0 {
		t.Errorf("events: A %+v, B %d; want A's refusal only", sinkA.events, len(sinkB.events))
	}
	for _, f := range []*Flow{a, b} {
		if err := f.Reverse(context.Background(), adviceFor(req)); err != nil {
			t.Errorf("repeated Reverse() = %v, want nil", err)
		}
	}
	if len(sinkA.events)+len(sinkB.events) != 1 {
		t.Errorf("%d events after the repeated advices, want 1", len(sinkA.events)+len(sinkB.events))
	}
}
