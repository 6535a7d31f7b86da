package routing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// TestFlowReversesWhatItCannotRecord: when the journal does not take the
// outcome of an approval, the acquirer is answered 91 and the issuer is
// owed the reversal of the message it approved; a decline owes nothing.
func TestFlowReversesWhatItCannotRecord(t *testing.T) {
	tests := []struct {
		name         string
		issuerCode   string
		reverseErr   error
		wantReversed int
	}{
		{"approval reversed", iso8583.RCApproved, nil, 1},
		{"reversal cannot be owed", iso8583.RCApproved, errors.New("store down"), 0},
		{"decline: nothing to reverse", iso8583.RCIncorrectPIN, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issuer := &reversingIssuer{code: tt.issuerCode, fail: tt.reverseErr}
			f := testFlow(t, issuer, &memSink{err: errors.New("journal disk full")}, nil)
			out := f.Handle(context.Background(), changeRequest(t, "000501"))
			if out.Code != iso8583.RCIssuerUnavailable || out.Outcome != OutcomeFailed || out.Reason != ReasonJournalUnavailable {
				t.Errorf("Handle() = %s %s (%s), want 91 failed (%s)", out.Code, out.Outcome, out.Reason, ReasonJournalUnavailable)
			}
			if len(issuer.reversed) != tt.wantReversed {
				t.Fatalf("issuer owed %d reversals, want %d", len(issuer.reversed), tt.wantReversed)
			}
			if tt.wantReversed == 1 && issuer.reversed[0].STAN != "000777" {
				t.Errorf("reversal names STAN %s, want the approved message's 000777", issuer.reversed[0].STAN)
			}
		})
	}
}

// TestFlowRecordReversal: an acknowledged reversal owed ahead is recorded
// as a reversed outcome (91, outcome_not_recorded) naming the operation's
// event, with the card masked and tokenized; recording it again gives the
// same event id.
func TestFlowRecordReversal(t *testing.T) {
	sink := &memSink{}
	f := testFlow(t, approveAll(), sink, nil)
	rev := Reversal{ID: "r1", Issuer: "ssbank", Operation: OpReset, PAN: testPAN, STAN: "000001", Transmit: "1125120000",
		Terminal: "BR000001", Record: true, EventID: "ev-1", Channel: ChannelBranch, Acquirer: "200001", Teller: "T1"}
	for i := 0; i < 2; i++ {
		if err := f.RecordReversal(context.Background(), rev); err != nil {
			t.Fatalf("RecordReversal() = %v", err)
		}
	}
	orphan := rev
	orphan.ID, orphan.EventID = "r2", ""
	if err := f.RecordReversal(context.Background(), orphan); err != nil {
		t.Fatalf("RecordReversal(no event id) = %v", err)
	}
	if len(sink.events) != 3 {
		t.Fatalf("%d events, want 3", len(sink.events))
	}
	ev := sink.events[0]
	if ev.Outcome != OutcomeReversed || ev.Code != iso8583.RCIssuerUnavailable || ev.Reason != ReasonOutcomeNotRecorded ||
		ev.Reverses != "ev-1" || ev.Type != "pingate.pin.reset.reversed.v1" || ev.MaskedPAN != iso8583.MaskPAN(testPAN) ||
		ev.CardToken != f.deps.Tokenizer.Token(testPAN) || ev.Channel != ChannelBranch || ev.Acquirer != "200001" || ev.Teller != "T1" {
		t.Errorf("recorded reversal = %+v", ev)
	}
	if sink.events[1].ID != ev.ID {
		t.Errorf("second recording has event id %s, want the first's %s", sink.events[1].ID, ev.ID)
	}
	if o := sink.events[2]; o.ID == ev.ID || o.ID == "" {
		t.Errorf("reversal without an operation event has id %q, want its own", o.ID)
	}
	sink.err = errors.New("journal down")
	if err := f.RecordReversal(context.Background(), rev); err == nil {
		t.Error("RecordReversal() with the journal down = nil, want its error (the advice stays owed)")
	}
}

func branchRequest(t *testing.T, op Operation) *Request {
	r := &Request{
		Operation: op, Acquirer: "200001", Terminal: "BR000001", STAN: "", PAN: testPAN, Format: 4, KeyIndex: 1,
		Teller: "T1", IdentityRef: "ID1",
	}
	if op == OpReset {
		r.NewBlock = encipher(t, pinblock.Format4, devkeys.BranchZPK, "7391", testPAN)
	}
	return r
}

// TestFlowRefusesMalformedRequests: a request whose parts do not fit its
// operation is refused 30 before the issuer is involved.
func TestFlowRefusesMalformedRequests(t *testing.T) {
	block := func() []byte { return encipher(t, pinblock.Format4, devkeys.BranchZPK, "7391", testPAN) }
	tests := []struct {
		name   string
		op     Operation
		mutate func(r *Request)
	}{
		{"no terminal", OpReset, func(r *Request) { r.Terminal = "" }},
		{"terminal like a PAN", OpReset, func(r *Request) { r.Terminal = "622848120000" }},
		{"change without the current PIN", OpChange, func(r *Request) { r.NewBlock = block() }},
		{"change with a generated PIN", OpChange, func(r *Request) {
			r.OldBlock, r.NewBlock, r.Generate = block(), block(), &GenerateSpec{}
		}},
		{"reset without the new PIN", OpReset, func(r *Request) { r.NewBlock = nil }},
		{"reset with the current PIN", OpReset, func(r *Request) { r.OldBlock = block() }},
		{"generated reset with a PIN block", OpReset, func(r *Request) { r.Generate = &GenerateSpec{} }},
		{"reset without a teller", OpReset, func(r *Request) { r.Teller = "" }},
		{"reset without the identity check", OpReset, func(r *Request) { r.IdentityRef = "" }},
		{"unblock with a PIN block", OpUnblock, func(r *Request) { r.NewBlock = block() }},
		{"unblock without the identity check", OpUnblock, func(r *Request) { r.IdentityRef = "" }},
		{"PIN block of the wrong size", OpReset, func(r *Request) { r.NewBlock = r.NewBlock[:8] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := false
			issuer := issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) {
				sent = true
				return iso8583.RCApproved, nil
			})
			f := testFlow(t, issuer, &memSink{}, nil)
			req := branchRequest(t, tt.op)
			tt.mutate(req)
			out := f.Handle(context.Background(), req)
			if out.Code != iso8583.RCFormatError || out.Outcome != OutcomeRejected || sent {
				t.Errorf("Handle() = %s %s, sent to the issuer %v; want 30 rejected, not sent", out.Code, out.Outcome, sent)
			}
		})
	}
	t.Run("well formed", func(t *testing.T) {
		f := testFlow(t, approveAll(), &memSink{}, nil)
		for _, op := range []Operation{OpReset, OpUnblock} {
			if out := f.Handle(context.Background(), branchRequest(t, op)); out.Code != iso8583.RCApproved {
				t.Errorf("Handle(%s) = %s (%s), want 00", op, out.Code, out.Reason)
			}
		}
	})
}

// fakePrinter records the mailers it prints and compares each PIN with
// the one the issuer received, without keeping it.
type fakePrinter struct {
	mu      sync.Mutex
	printed []pinblock.MailerContent
	pinLen  []int
	match   []bool
	want    *string // the PIN the issuer received, set by the test's issuer
	err     error
}

func (p *fakePrinter) PrintMailer(_ context.Context, m pinblock.MailerContent, pin *pinblock.SecretPIN) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.printed = append(p.printed, m)
	p.pinLen = append(p.pinLen, pin.Len())
	p.match = append(p.match, p.want != nil && pin.Reveal() == *p.want)
	return nil
}

// TestFlowGeneratedPIN: a reset with a generated PIN sends the issuer the
// generated PIN under its key, and prints the mailer of that same PIN only
// once the issuer has approved it.
func TestFlowGeneratedPIN(t *testing.T) {
	tests := []struct {
		name        string
		issuerCode  string
		printerErr  error
		wantCode    string
		wantReason  string
		wantPrinted int
	}{
		{"approved and printed", iso8583.RCApproved, nil, "00", "approved", 1},
		{"declined: no mailer", iso8583.RCNoSuchCard, nil, "14", "no_such_card", 0},
		{"printer fails", iso8583.RCApproved, errors.New("paper jam"), "96", "pin_mailer_failed", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			printer := &fakePrinter{err: tt.printerErr}
			var atIssuer string
			printer.want = &atIssuer
			issuer := issuerFunc(func(_ context.Context, _ string, req *IssuerRequest) (string, error) {
				if req.OldBlock != nil {
					t.Error("a generated reset carries a current PIN block")
				}
				atIssuer = decipher(t, pinblock.Format4, devkeys.IssuerZPK, req.NewBlock, req.PAN)
				return tt.issuerCode, nil
			})
			f := testFlow(t, issuer, &memSink{}, nil)
			sm, ok := f.deps.HSM.(*pinblock.SoftwareModule)
			if !ok {
				t.Fatal("the test flow's security module is not the software module")
			}
			sm.SetMailerPrinter(printer)
			req := branchRequest(t, OpReset)
			req.NewBlock = nil
			req.Generate = &GenerateSpec{Length: 6, MailerAddress: []string{"Branch 12", "Main Street"}}
			out := f.Handle(context.Background(), req)
			if out.Code != tt.wantCode || out.Reason != tt.wantReason {
				t.Fatalf("Handle() = %s (%s), want %s (%s)", out.Code, out.Reason, tt.wantCode, tt.wantReason)
			}
			if len(atIssuer) != 6 {
				t.Errorf("the issuer got a PIN of %d digits, want 6", len(atIssuer))
			}
			if len(printer.printed) != tt.wantPrinted {
				t.Fatalf("%d mailers printed, want %d", len(printer.printed), tt.wantPrinted)
			}
			if tt.wantPrinted == 1 {
				m := printer.printed[0]
				if !printer.match[0] || m.Reference != req.ID || m.MaskedPAN != iso8583.MaskPAN(testPAN) || len(m.AddressLines) != 2 {
					t.Errorf("mailer: same PIN as the issuer's %v, reference %q, PAN %s, %d address lines; want the issuer's PIN, %q, %s, 2 lines",
						printer.match[0], m.Reference, m.MaskedPAN, len(m.AddressLines), req.ID, iso8583.MaskPAN(testPAN))
				}
			}
		})
	}
}

// TestFlowConfig: NewFlow needs its collaborators and a valid config;
// Reload swaps in only a valid config.
func TestFlowConfig(t *testing.T) {
	if _, err := NewFlow(testConfig(), Deps{}); err == nil {
		t.Error("NewFlow(no collaborators) = nil error, want one")
	}
	f := testFlow(t, approveAll(), &memSink{}, nil)
	bad := testConfig()
	bad.Routes = append(bad.Routes, Route{Prefix: "4", Issuer: "nobank"})
	if err := f.Reload(bad); err == nil || !strings.Contains(err.Error(), "nobank") {
		t.Errorf("Reload(route to an unknown issuer) = %v, want an error naming it", err)
	}
	if got := f.Config(); len(got.Routes) != 1 {
		t.Errorf("after a refused Reload the flow has %d routes, want the 1 it had", len(got.Routes))
	}
	if _, ok := f.Acquirer("100001"); !ok {
		t.Error("Acquirer(100001) not found")
	}
	if _, ok := f.Acquirer("555555"); ok {
		t.Error("Acquirer(555555) found, want not configured")
	}
	good := testConfig()
	good.Routes = append(good.Routes, Route{Prefix: "4", Issuer: "ssbank"})
	if err := f.Reload(good); err != nil {
		t.Fatalf("Reload(valid) = %v", err)
	}
	if got := f.Config(); !slices.Equal(got.Routes, []Route{{Prefix: "4", Issuer: "ssbank"}, {Prefix: "62284812", Issuer: "ssbank"}}) ||
		got.DuplicateWindow != DefaultDuplicateWindow {
		t.Errorf("after Reload: routes %v, duplicate window %v; want 4 and 62284812 to ssbank, and the default", got.Routes, got.DuplicateWindow)
	}
}

// recordingLimiter allows or refuses every request and records the codes
// the flow reports.
type recordingLimiter struct {
	mu      sync.Mutex
	refuse  error
	allowed []string
}

func (l *recordingLimiter) Allow(context.Context, *Request) (Decision, error) {
	if l.refuse != nil {
		return Decision{Refusal: l.refuse, Limit: "card_daily"}, nil
	}
	return Decision{Allowed: true}, nil
}

func (l *recordingLimiter) Record(_ context.Context, _ *Request, code string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.allowed = append(l.allowed, code)
	return nil
}

// TestFlowTellsTheLimiterEveryFinalCode: the limiter learns the final code
// of every request it let through (a wrong PIN counts against the card),
// and nothing of one it refused.
func TestFlowTellsTheLimiterEveryFinalCode(t *testing.T) {
	tests := []struct {
		name       string
		issuerCode string
		refuse     error
		wantCode   string
		wantSeen   []string
	}{
		{"approved", iso8583.RCApproved, nil, "00", []string{"00"}},
		{"wrong PIN", iso8583.RCIncorrectPIN, nil, "55", []string{"55"}},
		{"refused by the limit", iso8583.RCApproved, ErrCardDailyLimit, "65", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := &recordingLimiter{refuse: tt.refuse}
			issuer := issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) { return tt.issuerCode, nil })
			f := testFlow(t, issuer, &memSink{}, lim)
			if out := f.Handle(context.Background(), changeRequest(t, "000551")); out.Code != tt.wantCode {
				t.Fatalf("Handle() = %s, want %s", out.Code, tt.wantCode)
			}
			if fmt.Sprint(lim.allowed) != fmt.Sprint(tt.wantSeen) {
				t.Errorf("limiter recorded %v, want %v", lim.allowed, tt.wantSeen)
			}
		})
	}
}
