package routing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// issuerFunc is a fake issuer: unit tests only; the end-to-end tests run the
// real issuer simulator over TCP.
type issuerFunc func(ctx context.Context, issuer string, req *IssuerRequest) (string, error)

func (f issuerFunc) Send(ctx context.Context, issuer string, req *IssuerRequest) (string, error) {
	return f(ctx, issuer, req)
}

type memSink struct {
	mu     sync.Mutex
	events []Event
	err    error
	admit  error // what Admit answers
}

func (s *memSink) Admit() error { return s.admit }

func (s *memSink) Publish(_ context.Context, ev Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.events = append(s.events, ev)
	return nil
}

type denyLimiter struct {
	dec Decision
	err error
}

func (d denyLimiter) Allow(context.Context, *Request) (Decision, error) { return d.dec, d.err }
func (denyLimiter) Record(context.Context, *Request, string) error      { return nil }

const testPAN = "6228481200000017"

func testConfig() Config {
	return Config{
		Institution: "999001",
		Acquirers: []AcquirerConfig{
			{ID: "100001", Channel: ChannelATM, Terminals: []string{"ATM00001"}, Keys: map[int]string{1: devkeys.ATMZPK}},
			{ID: "200001", Channel: ChannelBranch, Terminals: []string{"*"}, Keys: map[int]string{1: devkeys.BranchZPK}, Formats: []int{4}},
		},
		Issuers: []IssuerConfig{{ID: "ssbank", Institution: "300001", Hosts: []string{"127.0.0.1:1"}, PINFormat: 4, Key: devkeys.IssuerZPK}},
		Routes:  []Route{{Prefix: "62284812", Issuer: "ssbank"}},
	}
}

func testFlow(t *testing.T, issuer IssuerSender, sink *memSink, lim Limiter) *Flow {
	t.Helper()
	return testFlowWith(t, issuer, sink, func(d *Deps) { d.Limiter = lim })
}

// testFlowWith is testFlow with the deps changed by more.
func testFlowWith(t *testing.T, issuer IssuerSender, sink *memSink, more func(*Deps)) *Flow {
	t.Helper()
	ring := pinblock.NewKeyring(0)
	if err := devkeys.Load(ring); err != nil {
		t.Fatal(err)
	}
	deps := Deps{
		HSM: pinblock.NewSoftwareModule(ring, pinblock.DefaultPINPolicy(), nil), Sink: sink, Issuers: issuer,
		Tokenizer: NewTokenizer([]byte("0123456789abcdef0123456789abcdef")),
	}
	more(&deps)
	f, err := NewFlow(testConfig(), deps)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func encipher(t *testing.T, f pinblock.Format, keyID, pin, pan string) []byte {
	t.Helper()
	k, err := devkeys.Key(keyID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pinblock.NewSecretPIN(pin)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pinblock.Encipher(f, p, pan, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decipher(t *testing.T, f pinblock.Format, keyID string, block []byte, pan string) string {
	t.Helper()
	k, err := devkeys.Key(keyID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pinblock.Decipher(f, block, pan, k)
	if err != nil {
		t.Fatalf("decipher at issuer: %v", err)
	}
	return p.Reveal()
}

func changeRequest(t *testing.T, stan string) *Request {
	return &Request{
		Operation: OpChange, Acquirer: "100001", Terminal: "ATM00001", STAN: stan, Transmit: "1125120000",
		PAN: testPAN, Format: 0, KeyIndex: 1,
		OldBlock: encipher(t, pinblock.Format0, devkeys.ATMZPK, "4826", testPAN),
		NewBlock: encipher(t, pinblock.Format0, devkeys.ATMZPK, "7391", testPAN),
	}
}

func TestFlowChangeTranslatesToIssuerKey(t *testing.T) {
	var gotOld, gotNew string
	issuer := issuerFunc(func(_ context.Context, id string, req *IssuerRequest) (string, error) {
		if id != "ssbank" || req.Format != 4 {
			t.Errorf("Send(%s, format %d), want ssbank format 4", id, req.Format)
		}
		gotOld = decipher(t, pinblock.Format4, devkeys.IssuerZPK, req.OldBlock, req.PAN)
		gotNew = decipher(t, pinblock.Format4, devkeys.IssuerZPK, req.NewBlock, req.PAN)
		return iso8583.RCApproved, nil
	})
	sink := &memSink{}
	f := testFlow(t, issuer, sink, nil)
	out := f.Handle(context.Background(), changeRequest(t, "000001"))
	if out.Code != "00" || out.Outcome != OutcomeApproved || out.Issuer != "ssbank" {
		t.Fatalf("Handle() = %+v, want 00 approved by ssbank", out)
	}
	if gotOld != "4826" || gotNew != "7391" {
		t.Fatal("the issuer did not receive the cardholder's PINs under its own key")
	}
	if len(sink.events) != 1 {
		t.Fatalf("%d events, want 1", len(sink.events))
	}
	ev := sink.events[0]
	if ev.Type != "pingate.pin.changed.v1" || ev.ID != out.EventID || ev.MaskedPAN != "622848******0017" || ev.CardToken == "" {
		t.Errorf("event = %+v", ev)
	}
}

func TestFlowDuplicateAnsweredOnce(t *testing.T) {
	var calls atomic.Int32
	issuer := issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) {
		calls.Add(1)
		return iso8583.RCApproved, nil
	})
	sink := &memSink{}
	f := testFlow(t, issuer, sink, nil)
	first := f.Handle(context.Background(), changeRequest(t, "000002"))
	second := f.Handle(context.Background(), changeRequest(t, "000002"))
	if calls.Load() != 1 {
		t.Fatalf("issuer called %d times for a duplicate, want 1", calls.Load())
	}
	if second != first {
		t.Fatalf("duplicate answered %+v, want the first outcome %+v", second, first)
	}
}

func TestFlowOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		issuer   func() (string, error)
		mutate   func(*Request)
		limiter  Limiter
		sinkErr  error
		admitErr error
		wantCode string
		wantWhy  string
		wantOut  string
		sent     bool
	}{
		{name: "incorrect PIN", issuer: func() (string, error) { return "55", nil }, wantCode: "55", wantOut: OutcomeDeclined, sent: true},
		{name: "tries exceeded", issuer: func() (string, error) { return "75", nil }, wantCode: "75", wantOut: OutcomeDeclined, sent: true},
		{name: "issuer complains of format", issuer: func() (string, error) { return "30", nil }, wantCode: "96", wantOut: OutcomeFailed, sent: true},
		{name: "issuer timeout", issuer: func() (string, error) { return "", ErrIssuerTimeout }, wantCode: "91", wantOut: OutcomeReversed, sent: true},
		{name: "issuer down", issuer: func() (string, error) { return "", ErrIssuerUnavailable }, wantCode: "91", wantOut: OutcomeFailed, sent: true},
		{name: "unknown acquirer", mutate: func(r *Request) { r.Acquirer = "555555" }, wantCode: "58", wantOut: OutcomeRejected},
		{name: "terminal not listed", mutate: func(r *Request) { r.Terminal = "ATM99999" }, wantCode: "58", wantOut: OutcomeRejected},
		{name: "reset refused at an ATM", mutate: func(r *Request) { r.Operation = OpReset; r.OldBlock = nil; r.Teller, r.IdentityRef = "T1", "ID1" }, wantCode: "58", wantOut: OutcomeRejected},
		{name: "no route", mutate: func(r *Request) { r.PAN = "5555555555554444" }, wantCode: "14", wantOut: OutcomeRejected},
		{name: "short PAN", mutate: func(r *Request) { r.PAN = "12345" }, wantCode: "30", wantOut: OutcomeRejected},
		{name: "12-digit PAN", mutate: func(r *Request) { r.PAN = "622848120017" }, wantCode: "30", wantOut: OutcomeRejected},
		{name: "12-digit PAN at a terminal not listed", mutate: func(r *Request) { r.PAN, r.Terminal = "622848120017", "ATM99999" }, wantCode: "58", wantOut: OutcomeRejected},
		{name: "format not permitted", mutate: func(r *Request) { r.Format = 1 }, wantCode: "30", wantOut: OutcomeRejected},
		{name: "unknown key index", mutate: func(r *Request) { r.KeyIndex = 7 }, wantCode: "30", wantOut: OutcomeRejected},
		{name: "teller id like a PAN", mutate: func(r *Request) { r.Teller = "123456789012" }, wantCode: "30", wantOut: OutcomeRejected},
		{name: "supervisor id like a PIN block", mutate: func(r *Request) { r.Supervisor = "DEADBEEF01234567" }, wantCode: "30", wantOut: OutcomeRejected},
		{name: "garbled PIN block", mutate: func(r *Request) { r.NewBlock = make([]byte, 8) }, wantCode: "30", wantOut: OutcomeRejected},
		{name: "weak new PIN", mutate: func(r *Request) { r.NewBlock = encipher(t, pinblock.Format0, devkeys.ATMZPK, "1234", testPAN) }, wantCode: "P6", wantOut: OutcomeDeclined},
		{name: "card limit", limiter: denyLimiter{dec: Decision{Refusal: ErrCardDailyLimit, Limit: "card_daily"}}, wantCode: "65", wantOut: OutcomeLimited, wantWhy: "card_daily_limit"},
		{name: "wrong PINs", limiter: denyLimiter{dec: Decision{Refusal: fmt.Errorf("3 marks: %w", ErrCardWrongPINLimit), Limit: "card_wrong_pin"}}, wantCode: "75", wantOut: OutcomeLimited, wantWhy: "card_wrong_pin_limit"},
		{name: "terminal throughput", limiter: denyLimiter{dec: Decision{Refusal: ErrTerminalLimit, Limit: "terminal"}}, wantCode: "61", wantOut: OutcomeLimited, wantWhy: "terminal_rate_limit"},
		{name: "limiter down", limiter: denyLimiter{err: errors.New("redis: connection refused")}, wantCode: "91", wantOut: OutcomeLimited, wantWhy: "limiter_unavailable"},
		{name: "limiter down, a refusal with it", limiter: denyLimiter{dec: Decision{Refusal: ErrLimiterUnavailable, Limit: "card"}, err: context.DeadlineExceeded}, wantCode: "91", wantOut: OutcomeLimited, wantWhy: "limiter_unavailable"},
		{name: "refusal naming no limit", limiter: denyLimiter{}, wantCode: "91", wantOut: OutcomeLimited, wantWhy: "limiter_unavailable"},
		{name: "journal unavailable", sinkErr: errors.New("disk full"), issuer: func() (string, error) { return "00", nil }, wantCode: "91", wantOut: OutcomeFailed, wantWhy: "journal_unavailable", sent: true},
		{name: "journal unavailable after a decline", sinkErr: context.DeadlineExceeded, issuer: func() (string, error) { return "55", nil }, wantCode: "91", wantOut: OutcomeFailed, wantWhy: "journal_unavailable", sent: true},
		{name: "journal full before the issuer", admitErr: fmt.Errorf("%w: free space below the reserve", ErrSinkFull), wantCode: "91", wantOut: OutcomeFailed, wantWhy: "journal_full"},
		{name: "journal stalled before the issuer", admitErr: fmt.Errorf("%w: write stalled", ErrSinkUnavailable), wantCode: "91", wantOut: OutcomeFailed, wantWhy: "journal_unavailable"},
		{name: "admission refused for another reason", admitErr: errors.New("depth"), wantCode: "91", wantOut: OutcomeFailed, wantWhy: "journal_full"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := false
			issuer := issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) {
				sent = true
				if tt.issuer == nil {
					return "00", nil
				}
				return tt.issuer()
			})
			sink := &memSink{err: tt.sinkErr, admit: tt.admitErr}
			f := testFlow(t, issuer, sink, tt.limiter)
			req := changeRequest(t, "1000"+string(rune('0'+i/10))+string(rune('0'+i%10)))
			if tt.mutate != nil {
				tt.mutate(req)
			}
			out := f.Handle(context.Background(), req)
			if out.Code != tt.wantCode || out.Outcome != tt.wantOut || (tt.wantWhy != "" && out.Reason != tt.wantWhy) {
				t.Fatalf("Handle() = %s %s (%s), want %s %s (%s)", out.Code, out.Outcome, out.Reason, tt.wantCode, tt.wantOut, tt.wantWhy)
			}
			if sent != tt.sent {
				t.Fatalf("sent to issuer = %v, want %v", sent, tt.sent)
			}
			if tt.sinkErr == nil && len(sink.events) != 1 {
				t.Fatalf("%d events, want exactly 1", len(sink.events))
			}
			for _, ev := range sink.events {
				// What integration/events would refuse to publish.
				if LooksSecret(ev.Teller) || LooksSecret(ev.Supervisor) || LooksSecret(ev.Terminal) {
					t.Errorf("event carries an identifier that looks like a PAN or PIN block")
				}
				if ev.MaskedPAN != "" && (len(ev.MaskedPAN) < 13 || strings.Count(ev.MaskedPAN[:6], "*") != 0) {
					t.Errorf("event masked PAN of %d characters does not show the first 6 digits", len(ev.MaskedPAN))
				}
				// docs/events.md: a request refused before its PAN could be
				// read has an event without a card, keyed by its event id.
				if (ev.MaskedPAN == "") != (ev.CardToken == "") {
					t.Errorf("event with masked PAN %t and card token %t, want both or neither", ev.MaskedPAN != "", ev.CardToken != "")
				}
			}
		})
	}
}

// TestFlowTranslatorFollowsKeyRotation: the flow keeps a prepared translator
// per route; after the acquirer's zone PIN key is rotated, a block under the
// new version still reaches the issuer with the cardholder's PIN, and one
// under the old version is refused once no grace window covers it.
func TestFlowTranslatorFollowsKeyRotation(t *testing.T) {
	var got string
	issuer := issuerFunc(func(_ context.Context, _ string, req *IssuerRequest) (string, error) {
		got = decipher(t, pinblock.Format4, devkeys.IssuerZPK, req.NewBlock, req.PAN)
		return iso8583.RCApproved, nil
	})
	ring := pinblock.NewKeyring(0)
	if err := devkeys.Load(ring); err != nil {
		t.Fatal(err)
	}
	f, err := NewFlow(testConfig(), Deps{
		HSM: pinblock.NewSoftwareModule(ring, pinblock.DefaultPINPolicy(), nil), Sink: &memSink{}, Issuers: issuer,
		Tokenizer: NewTokenizer([]byte("0123456789abcdef0123456789abcdef")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := f.Handle(context.Background(), changeRequest(t, "000101")); out.Code != iso8583.RCApproved || got != "7391" {
		t.Fatalf("before rotation: Handle() = %s, issuer got the right PIN: %v", out.Code, got == "7391")
	}

	v2, err := pinblock.NewKey(devkeys.ATMZPK, pinblock.UsageZPK, pinblock.TDES, 2,
		[]byte{0x89, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10})
	if err != nil {
		t.Fatal(err)
	}
	old := changeRequest(t, "000102") // enciphered under version 1
	if err := ring.Rotate(v2, time.Now()); err != nil {
		t.Fatal(err)
	}
	pan := testPAN
	req := changeRequest(t, "000103")
	for i, pin := range []string{"4826", "5830"} {
		p, err := pinblock.NewSecretPIN(pin)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pinblock.Encipher(pinblock.Format0, p, pan, v2)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			req.OldBlock = b
		} else {
			req.NewBlock = b
		}
	}
	got = ""
	if out := f.Handle(context.Background(), req); out.Code != iso8583.RCApproved || got != "5830" {
		t.Fatalf("after rotation, block under v2: Handle() = %s, issuer got the right PIN: %v", out.Code, got == "5830")
	}
	if out := f.Handle(context.Background(), old); out.Code == iso8583.RCApproved {
		t.Fatalf("after rotation with no grace, block under v1: Handle() = %s, want a refusal", out.Code)
	}
}

// TestRequestAttrCache: the attribute set of pingate.requests carries the
// four labels of the request it is built for, the same labels give the kept
// set, and past the cap new combinations are still labelled right.
func TestRequestAttrCache(t *testing.T) {
	attrsOf := func(o *requestOpts) attribute.Set {
		add, rec := metric.NewAddConfig(o.add).Attributes(), metric.NewRecordConfig(o.record).Attributes()
		if !add.Equals(&rec) {
			t.Fatalf("the counter's labels %v differ from the histogram's %v", add.Encoded(attribute.DefaultEncoder()), rec.Encoded(attribute.DefaultEncoder()))
		}
		return add
	}
	c := new(requestAttrCache)
	l := requestLabels{OpChange, ChannelATM, OutcomeDeclined, "55"}
	want := attribute.NewSet(attribute.String("operation", string(OpChange)), attribute.String("channel", string(ChannelATM)),
		attribute.String("outcome", OutcomeDeclined), attribute.String("code", "55"))
	if got := attrsOf(c.of(l)); !got.Equals(&want) {
		t.Errorf("of(%v) = %v, want %v", l, got.Encoded(attribute.DefaultEncoder()), want.Encoded(attribute.DefaultEncoder()))
	}
	if got := attrsOf(c.of(l)); !got.Equals(&want) || c.n.Load() != 1 {
		t.Errorf("of(%v) again = %v with %d sets kept, want the same set, 1 kept", l, got.Encoded(attribute.DefaultEncoder()), c.n.Load())
	}
	for i := range maxRequestAttrSets + 10 {
		l := requestLabels{OpReset, ChannelBranch, OutcomeDeclined, fmt.Sprintf("%04d", i)}
		set := attrsOf(c.of(l))
		if v, _ := set.Value("code"); v.AsString() != l.code {
			t.Fatalf("of(%v) has code %q", l, v.AsString())
		}
	}
	if n := c.n.Load(); n != maxRequestAttrSets {
		t.Errorf("%d sets kept, want the cap %d", n, maxRequestAttrSets)
	}
}
