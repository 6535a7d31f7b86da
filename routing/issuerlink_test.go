package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pingate/iso8583"
)

// These tests run IssuerLinks against the in-memory issuer hosts of
// fakeissuer_test.go, through LinksConfig.Dial, with the real issuer
// dialect on the wire.

const (
	linkInstitution = "999001" // pingate's DE 32
	linkIssuerInst  = "300001" // the issuer's DE 100
	holdTerminal    = "HOLD0001"
)

// linkIssuer is an issuer config whose timeouts never expire in a test: a
// test that wants a timeout expires the request's context itself.
func linkIssuer(hosts ...string) IssuerConfig {
	return IssuerConfig{ID: "ssbank", Institution: linkIssuerInst, Hosts: hosts, PINFormat: 4, Key: "k",
		Timeout: waitLimit, EchoInterval: time.Hour, Connections: 1, Framing: "binary2"}
}

// holdRequests answers every message 00 except the 0100s from terminal
// holdTerminal, which it never answers.
func holdRequests(f *iso8583.Fields) string {
	if f.MTI == iso8583.MTIAuthRequest && f.TerminalID == holdTerminal {
		return ""
	}
	return iso8583.RCApproved
}

func unblockRequest(terminal string) *IssuerRequest {
	return &IssuerRequest{Operation: OpUnblock, PAN: testPAN, Terminal: terminal, Teller: "T1", IdentityRef: "ID1",
		RRN: "000000000001", Merchant: "TEST MERCHANT  ", eventID: "ev-" + terminal, channel: ChannelBranch}
}

// linkRig is IssuerLinks wired to fake hosts, a watched reversal store, a
// recorded log and a recorder of acknowledged reversals.
type linkRig struct {
	net          *fakeNet
	store        *watchedStore
	log          *logLines
	issuers      []IssuerConfig
	storeTimeout time.Duration
	links        *IssuerLinks

	recorded   events[Reversal]
	mu         sync.Mutex
	recordErrs int // the next recordErrs recordings fail
}

func newLinkRig(t *testing.T, issuers []IssuerConfig, addrs ...string) *linkRig {
	return &linkRig{net: newFakeNet(t, addrs...), store: newWatchedStore(), log: &logLines{}, issuers: issuers}
}

func (r *linkRig) record(_ context.Context, rev Reversal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.recordErrs > 0 {
		r.recordErrs--
		return errors.New("journal refused the record")
	}
	r.recorded.add(rev)
	return nil
}

// start builds and starts the links; they are shut down at cleanup.
func (r *linkRig) start(t *testing.T) *IssuerLinks {
	t.Helper()
	r.links = NewIssuerLinks(LinksConfig{
		Institution: linkInstitution, Issuers: r.issuers, Codec: IssuerDialect{}, Dial: r.net.dial,
		Reversals: r.store, StoreTimeout: r.storeTimeout, Logger: slog.New(r.log),
	})
	r.links.SetRecorder(r.record)
	r.links.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := r.links.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		for _, line := range r.log.all() {
			if strings.Contains(line, testPAN) {
				t.Errorf("a log line carries the full PAN: %s", iso8583.MaskPAN(testPAN))
			}
		}
	})
	return r.links
}

// waitUp waits for the n-th sign-on of the link to addr.
func (r *linkRig) waitUp(t *testing.T, n int, addr string) {
	t.Helper()
	r.log.waitLine(t, n, "issuer link signed on issuer=ssbank host="+addr)
}

// putFor is the reversal the store was given for the request with STAN
// stan on the wire, as first put.
func (r *linkRig) putFor(t *testing.T, stan string) Reversal {
	t.Helper()
	return r.store.ops.wait(t, "reversal stored for STAN "+stan, 1, func(o storeOp) bool {
		return o.op == "put" && o.err == nil && o.rev.STAN == stan
	}).rev
}

type sendResult struct {
	code string
	err  error
}

func sendAsync(ctx context.Context, l *IssuerLinks, req *IssuerRequest) <-chan sendResult {
	ch := make(chan sendResult, 1)
	go func() {
		code, err := sendAsFlow(ctx, l, req)
		ch <- sendResult{code, err}
	}()
	return ch
}

// sendAsFlow is Send followed by what the flow does with a request left
// without a readable answer once its outcome is recorded: Recorded, which
// lets its held reversal go.
func sendAsFlow(ctx context.Context, l *IssuerLinks, req *IssuerRequest) (string, error) {
	code, err := l.Send(ctx, "ssbank", req)
	if errors.Is(err, ErrIssuerTimeout) || errors.Is(err, ErrIssuerMalformed) {
		l.Recorded(ctx, req)
	}
	return code, err
}

func recv(t *testing.T, ch <-chan sendResult) sendResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatal("Send did not return")
		return sendResult{}
	}
}

// checkAdvice checks that adv, a 0420 the issuer got, reverses orig, the
// 0100 it got before.
func checkAdvice(t *testing.T, adv, orig *iso8583.Fields) {
	t.Helper()
	od, err := iso8583.ParseOriginalData(adv.OriginalData)
	if err != nil {
		t.Fatalf("0420 DE 90 does not parse: %v", err)
	}
	if od.MTI != iso8583.MTIAuthRequest || od.STAN != orig.STAN || od.Transmission != orig.TransmissionTime || !od.SameAcquirer(linkInstitution) {
		t.Errorf("0420 DE 90 = %+v, want the 0100 with STAN %s at %s from %s", od, orig.STAN, orig.TransmissionTime, linkInstitution)
	}
	if adv.PAN != orig.PAN || adv.ProcessingCode != orig.ProcessingCode || adv.AcquirerID != linkInstitution || adv.ReceivingInstitution != linkIssuerInst {
		t.Errorf("0420 DE 2/3/32/100 differ from the 0100's (DE 3 %s, DE 32 %s, DE 100 %s)", adv.ProcessingCode, adv.AcquirerID, adv.ReceivingInstitution)
	}
}

// TestLinksSendReturnsTheIssuersCode: the request goes out in the issuer
// dialect with our DE 32 and the issuer's DE 100; Send returns the issuer's
// DE 39 as it is (the flow maps it); an approval leaves its reversal owed
// ahead in the store, a decline deletes it.
func TestLinksSendReturnsTheIssuersCode(t *testing.T) {
	tests := []struct {
		give        string // the issuer's DE 39
		wantPending int
	}{
		{give: iso8583.RCApproved, wantPending: 1},
		{give: iso8583.RCIncorrectPIN},
		{give: iso8583.RCNoSuchCard},
		{give: iso8583.RCFormatError},
		{give: iso8583.RCIssuerUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
			host := rig.net.host("A")
			host.setPolicy(func(f *iso8583.Fields) string {
				if f.MTI == iso8583.MTIAuthRequest {
					return tt.give
				}
				return iso8583.RCApproved
			})
			l := rig.start(t)
			rig.waitUp(t, 1, "A")
			req := unblockRequest("T0000001")
			code, err := l.Send(context.Background(), "ssbank", req)
			if err != nil || code != tt.give {
				t.Fatalf("Send() = %q, %v, want %q, nil", code, err, tt.give)
			}
			got := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
			if got.PAN != testPAN || got.ProcessingCode != iso8583.ProcPINUnblock || got.AcquirerID != linkInstitution ||
				got.ReceivingInstitution != linkIssuerInst || got.TerminalID != "T0000001" || got.Additional == nil || got.Additional.TellerID != "T1" {
				t.Errorf("the issuer got DE 3 %s, DE 32 %s, DE 100 %s, DE 41 %s, DE 48 %+v; want the unblock from %s to %s",
					got.ProcessingCode, got.AcquirerID, got.ReceivingInstitution, got.TerminalID, got.Additional, linkInstitution, linkIssuerInst)
			}
			p := rig.store.pending(t)
			if len(p) != tt.wantPending {
				t.Fatalf("after a %s the store holds %d reversals, want %d", tt.give, len(p), tt.wantPending)
			}
			if len(p) == 1 {
				if r := p[0]; !r.Record || r.STAN != got.STAN || r.Transmit != got.TransmissionTime || r.EventID != "ev-T0000001" || r.Channel != ChannelBranch {
					t.Errorf("reversal owed ahead = STAN %s record %v event %q channel %q, want STAN %s record true event ev-T0000001 channel branch",
						r.STAN, r.Record, r.EventID, r.Channel, got.STAN)
				}
			}
		})
	}
}

// TestLinksSendRefusals: a request that cannot be written is refused with
// the error the flow maps, the issuer never sees it, and no reversal is
// left owed for it.
func TestLinksSendRefusals(t *testing.T) {
	tests := []struct {
		name    string
		issuer  string
		prepare func(rig *linkRig)
		want    error
		// retryDelete: the delete of the advice that may have landed
		// failed, and the worker deletes it later.
		retryDelete bool
		noLink      bool // the host refuses every dial
	}{
		{name: "issuer not configured", issuer: "nobank", want: ErrIssuerUnavailable},
		{name: "no link signed on", issuer: "ssbank", prepare: func(rig *linkRig) { rig.net.host("A").setRefuse(true) }, want: ErrIssuerUnavailable, noLink: true},
		{name: "store refuses the reversal", issuer: "ssbank", prepare: func(rig *linkRig) { rig.store.putErr = errors.New("disk failed") }, want: ErrReversalStore},
		{name: "store refuses the reversal and its delete", issuer: "ssbank", prepare: func(rig *linkRig) {
			rig.store.putErr = errors.New("disk failed")
			rig.store.deleteErrs = 1
		}, want: ErrReversalStore, retryDelete: true},
		{name: "store does not answer", issuer: "ssbank", prepare: func(rig *linkRig) {
			rig.store.putBlocks = true
			rig.storeTimeout = time.Millisecond
		}, want: ErrReversalStore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
			host := rig.net.host("A")
			if tt.prepare != nil {
				tt.prepare(rig)
			}
			l := rig.start(t)
			if tt.noLink {
				host.dials.wait(t, "a dial attempt", 1, func(struct{}) bool { return true })
			} else {
				rig.waitUp(t, 1, "A")
			}
			code, err := l.Send(context.Background(), tt.issuer, unblockRequest("T0000001"))
			if !errors.Is(err, tt.want) || code != "" {
				t.Fatalf("Send() = %q, %v, want %v", code, err, tt.want)
			}
			if n := host.countMsg(iso8583.MTIAuthRequest, ""); n != 0 {
				t.Errorf("the issuer got %d requests, want none", n)
			}
			if tt.retryDelete {
				l.kickWorker()
				rig.store.ops.wait(t, "the delete retried", 1, func(o storeOp) bool { return o.op == "delete" && o.err == nil })
			}
			if p := rig.store.pending(t); len(p) != 0 {
				t.Errorf("the store holds %d reversals for a request never written, want none", len(p))
			}
		})
	}
}

// TestLinksTimeoutOwesAndSendsTheReversal: a request that may have reached
// the issuer and got no answer — its deadline passed, its caller gave up,
// or the link closed under it — fails with ErrIssuerTimeout, and the
// reversal owed ahead is sent (after a reconnect, when the link closed)
// until the issuer acknowledges it, once the flow has recorded the
// timeout (Recorded); so the acknowledged reversal is not recorded again.
func TestLinksTimeoutOwesAndSendsTheReversal(t *testing.T) {
	tests := []struct {
		name string
		cut  func(t *testing.T, deadline *expiring, cancel context.CancelFunc, host *fakeHost)
	}{
		{"deadline passes", func(_ *testing.T, d *expiring, _ context.CancelFunc, _ *fakeHost) { d.expire() }},
		{"caller cancels", func(_ *testing.T, _ *expiring, cancel context.CancelFunc, _ *fakeHost) { cancel() }},
		{"issuer closes the link", func(_ *testing.T, _ *expiring, _ context.CancelFunc, h *fakeHost) { h.closeConns() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
			host := rig.net.host("A")
			host.setPolicy(holdRequests)
			l := rig.start(t)
			rig.waitUp(t, 1, "A")

			deadline := newExpiring()
			ctx, cancel := context.WithCancel(deadline)
			defer cancel()
			res := sendAsync(ctx, l, unblockRequest(holdTerminal))
			orig := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
			tt.cut(t, deadline, cancel, host)
			if r := recv(t, res); !errors.Is(r.err, ErrIssuerTimeout) || r.code != "" {
				t.Fatalf("Send() = %q, %v, want ErrIssuerTimeout", r.code, r.err)
			}
			adv := host.waitMsg(t, 1, iso8583.MTIReversalAdvice, "")
			checkAdvice(t, adv, orig)
			rig.store.waitDeleted(t, rig.putFor(t, orig.STAN).ID)
			if n := len(rig.recorded.all()); n != 0 {
				t.Errorf("%d acknowledged reversals recorded, want none (the flow records a timeout itself)", n)
			}
		})
	}
}

// TestLinksFailedWriteOwesTheReversal: a write that fails may still have
// put the request on the wire, so it is a timeout and its reversal is sent.
func TestLinksFailedWriteOwesTheReversal(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	host.mu.Lock()
	host.failSends = 1
	host.mu.Unlock()
	if code, err := sendAsFlow(context.Background(), l, unblockRequest("T0000001")); !errors.Is(err, ErrIssuerTimeout) {
		t.Fatalf("Send() with a failed write = %q, %v, want ErrIssuerTimeout", code, err)
	}
	adv := host.waitMsg(t, 1, iso8583.MTIReversalAdvice, "")
	od, err := iso8583.ParseOriginalData(adv.OriginalData)
	if err != nil {
		t.Fatal(err)
	}
	rig.store.waitDeleted(t, rig.putFor(t, od.STAN).ID)
}

// TestLinksRequestWithContextDoneIsNotWritten: a request whose caller has
// already given up is not written to the issuer, so no reversal is owed.
func TestLinksRequestWithContextDoneIsNotWritten(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code, err := l.Send(ctx, "ssbank", unblockRequest("T0000001"))
	if !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("Send(done context) = %q, %v, want ErrIssuerUnavailable (never written)", code, err)
	}
	if n := host.countMsg(iso8583.MTIAuthRequest, ""); n != 0 {
		t.Errorf("the issuer got %d requests from a caller that had given up, want none", n)
	}
	if p := rig.store.pending(t); len(p) != 0 {
		t.Errorf("the store holds %d reversals, want none", len(p))
	}
}

// TestLinksAnswerWithoutACodeIsNotADecline: an answer that matches the
// request but carries no DE 39 (the one malformed code the issuer dialect
// unpacks) may be an approval we cannot read: Send fails with
// ErrIssuerMalformed and the reversal owed ahead is sent, where a decline
// would have discharged it.
func TestLinksAnswerWithoutACodeIsNotADecline(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	host.setPolicy(holdRequests)
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	res := sendAsync(context.Background(), l, unblockRequest(holdTerminal))
	orig := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
	host.conn(t).deliver(t, reply(t, orig, ""))
	if r := recv(t, res); !errors.Is(r.err, ErrIssuerMalformed) {
		t.Fatalf("Send() = %q, %v, want ErrIssuerMalformed", r.code, r.err)
	}
	checkAdvice(t, host.waitMsg(t, 1, iso8583.MTIReversalAdvice, ""), orig)
	rig.store.waitDeleted(t, rig.putFor(t, orig.STAN).ID)
	if n := len(rig.recorded.all()); n != 0 {
		t.Errorf("%d reversals recorded, want none (the flow records the failure)", n)
	}
}

// TestLinksLateAnswerIsNotMatched: an approval that arrives after its
// request timed out matches nothing: the reversal is sent all the same and
// the next request on the link gets its own answer.
func TestLinksLateAnswerIsNotMatched(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	host.setPolicy(func(f *iso8583.Fields) string {
		if f.MTI == iso8583.MTIAuthRequest && f.TerminalID == "T0000002" {
			return iso8583.RCIncorrectPIN
		}
		return holdRequests(f)
	})
	l := rig.start(t)
	rig.waitUp(t, 1, "A")

	deadline := newExpiring()
	res := sendAsync(deadline, l, unblockRequest(holdTerminal))
	orig := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
	deadline.expire()
	if r := recv(t, res); !errors.Is(r.err, ErrIssuerTimeout) {
		t.Fatalf("Send() = %q, %v, want ErrIssuerTimeout", r.code, r.err)
	}
	host.conn(t).deliver(t, reply(t, orig, iso8583.RCApproved))
	rig.log.waitLine(t, 1, "unmatched issuer answer")

	checkAdvice(t, host.waitMsg(t, 1, iso8583.MTIReversalAdvice, ""), orig)
	if code, err := l.Send(context.Background(), "ssbank", unblockRequest("T0000002")); err != nil || code != iso8583.RCIncorrectPIN {
		t.Fatalf("Send() after the late answer = %q, %v, want 55, nil", code, err)
	}
}

// TestLinksIgnoreUnknownFrames: a frame that does not unpack, or that
// answers nothing in flight, is logged (without the PAN) and dropped; the
// link stays up and the next request gets its own answer.
func TestLinksIgnoreUnknownFrames(t *testing.T) {
	unsolicited := func(t *testing.T, mti, code string) []byte {
		b, err := iso8583.Pack(iso8583.IssuerSpec, &iso8583.Fields{
			MTI: mti, PAN: testPAN, ProcessingCode: iso8583.ProcPINUnblock, TransmissionTime: "1125120000", STAN: "424242",
			AcquirerID: linkInstitution, RRN: "000000000001", ResponseCode: code, TerminalID: "T9999999", CardAcceptorID: "TEST MERCHANT  ",
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name     string
		give     func(t *testing.T) []byte
		wantLine string
	}{
		{"garbage", func(*testing.T) []byte { return []byte{0x01, 0x10, 0xFF} }, "unreadable issuer message"},
		{"empty frame", func(*testing.T) []byte { return nil }, "unreadable issuer message"},
		{"answer to nothing", func(t *testing.T) []byte { return unsolicited(t, iso8583.MTIAuthResponse, "00") }, "unmatched issuer answer"},
		{"reversal answer to nothing", func(t *testing.T) []byte { return unsolicited(t, iso8583.MTIReversalResponse, "00") }, "unmatched issuer answer"},
		{"a request from the issuer", func(t *testing.T) []byte { return unsolicited(t, iso8583.MTIAuthRequest, "") }, "unmatched issuer answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
			host := rig.net.host("A")
			host.setPolicy(func(f *iso8583.Fields) string {
				if f.MTI == iso8583.MTIAuthRequest {
					return iso8583.RCNoSuchCard
				}
				return iso8583.RCApproved
			})
			l := rig.start(t)
			rig.waitUp(t, 1, "A")
			host.conn(t).deliver(t, tt.give(t))
			rig.log.waitLine(t, 1, tt.wantLine)
			if code, err := l.Send(context.Background(), "ssbank", unblockRequest("T0000001")); err != nil || code != iso8583.RCNoSuchCard {
				t.Fatalf("Send() after the frame = %q, %v, want 14, nil", code, err)
			}
			if !l.SignedOn()["ssbank"] {
				t.Error("the link is down after an unknown frame")
			}
		})
	}
}

// TestLinksFailOver: requests go to the first host that is signed on; when
// it goes down they go to the next, and back when it returns.
func TestLinksFailOver(t *testing.T) {
	t.Run("first host unreachable", func(t *testing.T) {
		rig := newLinkRig(t, []IssuerConfig{linkIssuer("A", "B")}, "A", "B")
		a, b := rig.net.host("A"), rig.net.host("B")
		a.setRefuse(true)
		l := rig.start(t)
		rig.waitUp(t, 1, "B")
		if code, err := l.Send(context.Background(), "ssbank", unblockRequest("T0000001")); err != nil || code != iso8583.RCApproved {
			t.Fatalf("Send() = %q, %v, want 00 from the second host", code, err)
		}
		if na, nb := a.countMsg(iso8583.MTIAuthRequest, ""), b.countMsg(iso8583.MTIAuthRequest, ""); na != 0 || nb != 1 {
			t.Errorf("requests at A, B = %d, %d, want 0, 1", na, nb)
		}
	})
	t.Run("first host goes down and returns", func(t *testing.T) {
		rig := newLinkRig(t, []IssuerConfig{linkIssuer("A", "B")}, "A", "B")
		a, b := rig.net.host("A"), rig.net.host("B")
		l := rig.start(t)
		rig.waitUp(t, 1, "A")
		rig.waitUp(t, 1, "B")
		steps := []struct {
			name   string
			change func()
			wantA  int // requests at A after the step's Send
			wantB  int
		}{
			{"both up: the first host", func() {}, 1, 0},
			{"first host down: the second", func() {
				a.setRefuse(true)
				a.closeConns()
				rig.log.waitLine(t, 1, "issuer link down issuer=ssbank host=A")
			}, 1, 1},
			{"first host back: the first again", func() {
				a.setRefuse(false)
				rig.waitUp(t, 2, "A")
			}, 2, 1},
		}
		for i, s := range steps {
			s.change()
			if code, err := l.Send(context.Background(), "ssbank", unblockRequest("T000000"+string(rune('1'+i)))); err != nil || code != iso8583.RCApproved {
				t.Fatalf("%s: Send() = %q, %v, want 00", s.name, code, err)
			}
			if na, nb := a.countMsg(iso8583.MTIAuthRequest, ""), b.countMsg(iso8583.MTIAuthRequest, ""); na != s.wantA || nb != s.wantB {
				t.Errorf("%s: requests at A, B = %d, %d, want %d, %d", s.name, na, nb, s.wantA, s.wantB)
			}
		}
	})
}

// TestLinksReconnectAfterTheIssuerCloses: a link the issuer closes is
// dialled again and signed on again, and carries requests again.
func TestLinksReconnectAfterTheIssuerCloses(t *testing.T) {
	rig, host, l := bouncedLink(t)
	rig.waitUp(t, 2, "A")
	if n := host.countMsg(iso8583.MTINetworkRequest, iso8583.NMISignOn); n != 2 {
		t.Errorf("the issuer got %d sign-ons, want 2", n)
	}
	if code, err := l.Send(context.Background(), "ssbank", unblockRequest("T0000001")); err != nil || code != iso8583.RCApproved {
		t.Fatalf("Send() after the reconnect = %q, %v, want 00", code, err)
	}
}

// TestLinksRequestDuringARedialWaitsForTheLink: a request that finds no
// signed-on link because the issuer just closed its connection (a bounce)
// waits, up to linkWait, for the redial and is carried on the new link,
// not refused 91.
func TestLinksRequestDuringARedialWaitsForTheLink(t *testing.T) {
	_, host, l := bouncedLink(t)
	code, err := l.Send(context.Background(), "ssbank", unblockRequest("T0000001"))
	if err != nil || code != iso8583.RCApproved {
		t.Fatalf("Send() while the link is redialled = %q, %v, want 00 once it is up again", code, err)
	}
	if n := host.countMsg(iso8583.MTINetworkRequest, iso8583.NMISignOn); n != 2 {
		t.Errorf("the issuer got %d sign-ons, want 2: the request went on the redialled link", n)
	}
}

// bouncedLink starts links to host A, waits for the first to sign on, and
// has the host close it: the links are down, about to redial.
func bouncedLink(t *testing.T) (*linkRig, *fakeHost, *IssuerLinks) {
	t.Helper()
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	host.closeConns()
	rig.log.waitLine(t, 1, "issuer link down")
	return rig, host, l
}

// TestLinksSignOnRefused: a host that refuses the sign-on carries no
// request until it accepts one.
func TestLinksSignOnRefused(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	host.setPolicy(func(f *iso8583.Fields) string {
		if f.NetworkCode == iso8583.NMISignOn {
			return iso8583.RCIssuerUnavailable
		}
		return iso8583.RCApproved
	})
	l := rig.start(t)
	rig.log.waitLine(t, 1, "issuer sign-on refused")
	if l.SignedOn()["ssbank"] {
		t.Fatal("SignedOn() = true after the sign-on was refused")
	}
	if _, err := l.Send(context.Background(), "ssbank", unblockRequest("T0000001")); !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("Send() before sign-on = %v, want ErrIssuerUnavailable", err)
	}
	host.setPolicy(nil)
	rig.waitUp(t, 1, "A")
	if got := l.SignedOn(); !got["ssbank"] {
		t.Fatalf("SignedOn() = %v once the issuer accepts, want ssbank true", got)
	}
}

// TestLinksEchoWhenIdle: an idle link sends echo tests; one the issuer
// refuses takes the link down and it reconnects.
func TestLinksEchoWhenIdle(t *testing.T) {
	ic := linkIssuer("A")
	ic.EchoInterval = time.Millisecond
	rig := newLinkRig(t, []IssuerConfig{ic}, "A")
	host := rig.net.host("A")
	rig.start(t)
	rig.waitUp(t, 1, "A")
	echo := host.waitMsg(t, 1, iso8583.MTINetworkRequest, iso8583.NMIEcho)
	if echo.AcquirerID != linkInstitution || echo.ReceivingInstitution != linkIssuerInst || echo.TerminalID != "" {
		t.Errorf("echo DE 32 %q, DE 100 %q, DE 41 %q, want %s, %s and none", echo.AcquirerID, echo.ReceivingInstitution, echo.TerminalID, linkInstitution, linkIssuerInst)
	}
	host.setPolicy(func(f *iso8583.Fields) string {
		if f.NetworkCode == iso8583.NMIEcho {
			return iso8583.RCSystemMalfunction
		}
		return iso8583.RCApproved
	})
	rig.log.waitLine(t, 1, "issuer echo failed")
	rig.waitUp(t, 2, "A")
}

// TestLinksNetworkAnswersWithoutInstitution: an issuer that leaves DE 32
// and DE 100 out of its 0810s, as their field use allows, still signs the
// link on and answers its echo tests: network answers are matched on
// DE 11 and DE 7.
func TestLinksNetworkAnswersWithoutInstitution(t *testing.T) {
	ic := linkIssuer("A")
	ic.EchoInterval = time.Millisecond
	rig := newLinkRig(t, []IssuerConfig{ic}, "A")
	host := rig.net.host("A")
	host.mu.Lock()
	host.bareNetwork = true
	host.mu.Unlock()
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	host.waitMsg(t, 3, iso8583.MTINetworkRequest, iso8583.NMIEcho)
	if got := l.SignedOn(); !got["ssbank"] {
		t.Fatalf("SignedOn() = %v after the echo tests, want ssbank true", got)
	}
	if n := host.dials.count(func(struct{}) bool { return true }); n != 1 {
		t.Errorf("%d dials: the link went down on an answer without DE 32", n)
	}
	if code, err := l.Send(context.Background(), "ssbank", unblockRequest("T0000001")); err != nil || code != iso8583.RCApproved {
		t.Fatalf("Send() = %q, %v, want 00", code, err)
	}
}

// TestLinksShutdownSignsOff: Shutdown signs off every signed-on link, waits
// for the links' goroutines, and may be called again.
func TestLinksShutdownSignsOff(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if n := host.countMsg(iso8583.MTINetworkRequest, iso8583.NMISignOff); n != 1 {
		t.Errorf("the issuer got %d sign-offs, want 1", n)
	}
	if got := l.SignedOn(); got["ssbank"] {
		t.Errorf("SignedOn() after Shutdown = %v, want ssbank false", got)
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown() = %v", err)
	}
}

// TestLinksHoldTheReversalOfAnApproval: the reversal owed ahead of an
// approved request is held — the reversal worker passes over it, also
// while it sends another — until Discharge deletes it.
func TestLinksHoldTheReversalOfAnApproval(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	host.setPolicy(holdRequests)
	l := rig.start(t)
	rig.waitUp(t, 1, "A")

	approved := unblockRequest("T0000001")
	if code, err := l.Send(context.Background(), "ssbank", approved); err != nil || code != iso8583.RCApproved {
		t.Fatalf("Send() = %q, %v, want 00", code, err)
	}
	held := rig.putFor(t, host.waitMsg(t, 1, iso8583.MTIAuthRequest, "").STAN)

	// A timed-out request makes the worker send a reversal: the pass that
	// sends it lists the held one first (oldest first) and must skip it.
	deadline := newExpiring()
	res := sendAsync(deadline, l, unblockRequest(holdTerminal))
	timedOut := host.waitMsg(t, 2, iso8583.MTIAuthRequest, "")
	deadline.expire()
	if r := recv(t, res); !errors.Is(r.err, ErrIssuerTimeout) {
		t.Fatalf("Send() = %q, %v, want ErrIssuerTimeout", r.code, r.err)
	}
	rig.store.waitDeleted(t, rig.putFor(t, timedOut.STAN).ID)
	for _, adv := range host.got.all() {
		if adv.MTI == iso8583.MTIReversalAdvice && strings.Contains(adv.OriginalData, held.STAN+held.Transmit) {
			t.Fatal("the worker sent the reversal of an approval still held")
		}
	}
	if p := rig.store.pending(t); len(p) != 1 || p[0].ID != held.ID {
		t.Fatalf("store holds %d reversals, want the held one", len(p))
	}

	l.Discharge(context.Background(), approved)
	if p := rig.store.pending(t); len(p) != 0 {
		t.Fatalf("after Discharge the store holds %d reversals, want none", len(p))
	}
	l.Discharge(context.Background(), &IssuerRequest{}) // never sent: nothing to do
}

// approvedHeld starts links to one issuer host and sends it an unblock it
// approves: the request's reversal, owed ahead, is stored and still held
// (the flow has neither discharged nor released it).
func approvedHeld(t *testing.T) (*linkRig, *fakeHost, *IssuerLinks, *IssuerRequest, Reversal) {
	t.Helper()
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	req := unblockRequest("T0000001")
	if code, err := l.Send(context.Background(), "ssbank", req); err != nil || code != iso8583.RCApproved {
		t.Fatalf("Send() = %q, %v, want 00", code, err)
	}
	rev := rig.putFor(t, host.waitMsg(t, 1, iso8583.MTIAuthRequest, "").STAN)
	return rig, host, l, req, rev
}

// TestLinksDischargeRetriesAFailedDelete: a discharged reversal the store
// could not delete stays held — never sent — and the worker deletes it.
func TestLinksDischargeRetriesAFailedDelete(t *testing.T) {
	rig, host, l, req, rev := approvedHeld(t)
	rig.store.mu.Lock()
	rig.store.deleteErrs = 1
	rig.store.mu.Unlock()
	l.Discharge(context.Background(), req)
	rig.log.waitLine(t, 1, "discharged reversal not deleted")
	l.kickWorker()
	rig.store.waitDeleted(t, rev.ID)
	if n := host.countMsg(iso8583.MTIReversalAdvice, ""); n != 0 {
		t.Errorf("the issuer got %d reversals of a discharged approval, want none", n)
	}
}

// TestLinksShutdownDeletesDischarged: a discharged reversal whose delete
// failed and whose store has healed since is deleted by Shutdown, not left
// for the next start to send (which would reverse an approval answered 00).
func TestLinksShutdownDeletesDischarged(t *testing.T) {
	rig, _, l, req, rev := approvedHeld(t)
	rig.store.mu.Lock()
	rig.store.deleteErrs = 1
	rig.store.mu.Unlock()
	l.Discharge(context.Background(), req)
	rig.log.waitLine(t, 1, "discharged reversal not deleted")

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	p, err := rig.store.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p {
		if r.ID == rev.ID {
			t.Fatalf("after Shutdown the store still owes the discharged reversal %s", rev.ID)
		}
	}
}

// failedDischarge is approvedHeld after the flow's write of the approval
// with the delete of its advice failed (DischargingSink) — a write whose
// fate is unknown, taken here as landed late: the advice is gone from the
// store though the approval is not recorded.
func failedDischarge(t *testing.T) (*linkRig, *fakeHost, *IssuerLinks, *IssuerRequest, Reversal) {
	t.Helper()
	rig, host, l, req, rev := approvedHeld(t)
	req.dischargeTried = true
	if err := rig.store.MemoryReversalStore.Delete(context.Background(), rev.ID); err != nil {
		t.Fatal(err)
	}
	return rig, host, l, req, rev
}

// TestLinksReverseAfterFailedDischargeStoresAdviceAgain: the flow reverses
// an approval whose combined write failed; Reverse stores the advice again
// before it releases it, so the issuer gets the 0420 even though that write
// deleted the advice when it landed.
func TestLinksReverseAfterFailedDischargeStoresAdviceAgain(t *testing.T) {
	rig, host, l, req, rev := failedDischarge(t)
	if err := l.Reverse(context.Background(), req); err != nil {
		t.Fatalf("Reverse() = %v", err)
	}
	rig.store.ops.wait(t, "the advice stored again", 2, func(o storeOp) bool { return o.op == "put" && o.id == rev.ID && o.err == nil })
	l.kickWorker()
	host.waitMsg(t, 1, iso8583.MTIReversalAdvice, "")
}

// TestLinksReverseAfterFailedDischargeHoldsUntilStored: when the store also
// refuses the advice again, Reverse says so and the advice stays held: the
// worker stores it once the store takes writes, and only then sends it.
func TestLinksReverseAfterFailedDischargeHoldsUntilStored(t *testing.T) {
	rig, host, l, req, rev := failedDischarge(t)
	rig.store.mu.Lock()
	rig.store.putErr = errors.New("store disk failed")
	rig.store.mu.Unlock()
	if err := l.Reverse(context.Background(), req); err == nil {
		t.Fatal("Reverse() with the store refusing the advice = nil, want an error")
	}
	l.kickWorker()
	rig.store.ops.wait(t, "the worker's retry of the put", 2, func(o storeOp) bool { return o.op == "put" && o.id == rev.ID && o.err != nil })
	if n := host.countMsg(iso8583.MTIReversalAdvice, ""); n != 0 {
		t.Fatalf("the issuer got %d reversals while the advice was not stored, want none", n)
	}
	rig.store.mu.Lock()
	rig.store.putErr = nil
	rig.store.mu.Unlock()
	l.kickWorker()
	rig.store.ops.wait(t, "the advice stored again", 2, func(o storeOp) bool { return o.op == "put" && o.id == rev.ID && o.err == nil })
	l.kickWorker()
	host.waitMsg(t, 1, iso8583.MTIReversalAdvice, "")
}

// lateDischargeSink is a DischargingSink whose combined write reports a
// failure although it landed: the advice's delete reached the store.
type lateDischargeSink struct {
	memSink
	store *watchedStore
	tried atomic.Int32
}

func (s *lateDischargeSink) PublishDischarging(ctx context.Context, _ Event, adviceID string) error {
	s.tried.Add(1)
	if err := s.store.MemoryReversalStore.Delete(ctx, adviceID); err != nil {
		return err
	}
	return errors.New("journal append: fatal commit error")
}

// TestFlowReversesApprovalWhoseDischargingWriteFailed: through the flow, an
// approved PIN change whose outcome could not be written with its advice's
// delete is answered as not recorded, not 00, and the issuer gets its 0420
// although the failed write deleted the advice: the advice was stored again.
func TestFlowReversesApprovalWhoseDischargingWriteFailed(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	sink := &lateDischargeSink{store: rig.store}
	f := testFlowWith(t, l, nil, func(d *Deps) { d.Sink = sink })
	out := f.Handle(context.Background(), changeRequest(t, "000201"))
	if sink.tried.Load() != 1 {
		t.Fatalf("PublishDischarging calls = %d, want 1 (the approval's event with its advice's delete)", sink.tried.Load())
	}
	if out.Code == iso8583.RCApproved || out.Reason == "" {
		t.Fatalf("Handle() = %s (%s), want a refusal saying the outcome was not recorded", out.Code, out.Reason)
	}
	l.kickWorker()
	host.waitMsg(t, 1, iso8583.MTIReversalAdvice, "")
}

// TestLinksWorkerSkipsAdviceDischargedWhileListed: an approval's reversal
// discharged after the worker listed the store, and before it reached the
// advice, is not sent (it was, under load: the issuer reverted PIN changes
// answered 00).
func TestLinksWorkerSkipsAdviceDischargedWhileListed(t *testing.T) {
	rig, host, l, req, rev := approvedHeld(t)
	ran := make(chan struct{})
	rig.store.mu.Lock()
	rig.store.afterList = func() {
		l.Discharge(context.Background(), req)
		close(ran)
	}
	rig.store.mu.Unlock()
	l.kickWorker()
	<-ran
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil { // waits for the worker's round
		t.Fatalf("Shutdown() = %v", err)
	}
	if n := host.countMsg(iso8583.MTIReversalAdvice, ""); n != 0 {
		t.Errorf("the issuer got %d reversals of approval %s discharged during the worker's walk, want none", n, rev.ID)
	}
}

// TestLinksReverse: Reverse releases a held reversal (recorded once
// acknowledged: the flow could not record the outcome), owes a new one for
// a discharged approval (not recorded: the flow records the acquirer's
// reversal), and refuses a request never written.
func TestLinksReverse(t *testing.T) {
	tests := []struct {
		name       string
		discharge  bool
		wantRecord bool
	}{
		{name: "held approval", wantRecord: true},
		{name: "discharged approval", discharge: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
			host := rig.net.host("A")
			l := rig.start(t)
			rig.waitUp(t, 1, "A")
			req := unblockRequest("T0000001")
			if code, err := l.Send(context.Background(), "ssbank", req); err != nil || code != iso8583.RCApproved {
				t.Fatalf("Send() = %q, %v, want 00", code, err)
			}
			orig := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
			if tt.discharge {
				l.Discharge(context.Background(), req)
			}
			if err := l.Reverse(context.Background(), req); err != nil {
				t.Fatalf("Reverse() = %v", err)
			}
			checkAdvice(t, host.waitMsg(t, 1, iso8583.MTIReversalAdvice, ""), orig)
			sent := rig.store.ops.wait(t, "the advice's put", 1, func(o storeOp) bool {
				return o.op == "put" && o.rev.STAN == orig.STAN && o.rev.Record == tt.wantRecord
			}).rev
			rig.store.waitDeleted(t, sent.ID)
			rec := rig.recorded.all()
			if got := len(rec) == 1; got != tt.wantRecord {
				t.Fatalf("%d acknowledged reversals recorded, want recorded = %v", len(rec), tt.wantRecord)
			}
			if tt.wantRecord && (rec[0].EventID != "ev-T0000001" || rec[0].STAN != orig.STAN) {
				t.Errorf("recorded reversal names event %q STAN %s, want ev-T0000001 STAN %s", rec[0].EventID, rec[0].STAN, orig.STAN)
			}
		})
	}
	t.Run("never written", func(t *testing.T) {
		rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
		l := rig.start(t)
		if err := l.Reverse(context.Background(), unblockRequest("T0000001")); !errors.Is(err, ErrNothingToReverse) {
			t.Fatalf("Reverse(never sent) = %v, want ErrNothingToReverse", err)
		}
	})
	t.Run("store refuses the new advice", func(t *testing.T) {
		rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
		l := rig.start(t)
		rig.waitUp(t, 1, "A")
		req := unblockRequest("T0000001")
		if code, err := l.Send(context.Background(), "ssbank", req); err != nil || code != iso8583.RCApproved {
			t.Fatalf("Send() = %q, %v, want 00", code, err)
		}
		l.Discharge(context.Background(), req)
		rig.store.mu.Lock()
		rig.store.putErr = errors.New("disk failed")
		rig.store.mu.Unlock()
		if err := l.Reverse(context.Background(), req); err == nil || !strings.Contains(err.Error(), "ssbank") {
			t.Fatalf("Reverse() with the store down = %v, want an error naming the issuer", err)
		}
	})
}

// TestLinksReversalWorkerSendsUntilAcknowledged: a reversal the issuer did
// not acknowledge, that the journal did not record, or that the store did
// not delete is sent again, until it is acknowledged, recorded and deleted.
func TestLinksReversalWorkerSendsUntilAcknowledged(t *testing.T) {
	tests := []struct {
		name string
		// fail arranges the first attempt's failure, before the advice is
		// released; afterFirst runs once the issuer got the first advice.
		fail       func(rig *linkRig)
		afterFirst func(t *testing.T, rig *linkRig)
		// wantRecorded is how many times the advice is recorded.
		wantRecorded int
	}{
		{
			name: "no answer: the link closes under it",
			fail: func(rig *linkRig) {
				rig.net.host("A").setPolicy(func(f *iso8583.Fields) string {
					if f.MTI == iso8583.MTIReversalAdvice {
						return ""
					}
					return iso8583.RCApproved
				})
			},
			afterFirst: func(t *testing.T, rig *linkRig) {
				host := rig.net.host("A")
				host.setPolicy(nil)
				host.closeConns()
				rig.store.ops.wait(t, "the advice stored again with an attempt counted", 1, func(o storeOp) bool {
					return o.op == "put" && o.rev.Attempts == 1
				})
			},
			wantRecorded: 1,
		},
		{
			name: "the journal refuses the record",
			fail: func(rig *linkRig) {
				rig.mu.Lock()
				rig.recordErrs = 1
				rig.mu.Unlock()
			},
			afterFirst: func(t *testing.T, rig *linkRig) {
				rig.log.waitLine(t, 1, "acknowledged reversal not recorded")
				rig.links.kickWorker()
			},
			wantRecorded: 1,
		},
		{
			name: "the store does not delete it",
			fail: func(rig *linkRig) {
				// The next Delete is the worker's, after the
				// acknowledgement: Reverse of a held advice deletes nothing.
				rig.store.mu.Lock()
				rig.store.deleteErrs = 1
				rig.store.mu.Unlock()
			},
			afterFirst: func(t *testing.T, rig *linkRig) {
				rig.log.waitLine(t, 1, "acknowledged reversal not deleted")
				rig.links.kickWorker()
			},
			// Recorded at each acknowledgement; the event id is the same
			// both times, so consumers take it once.
			wantRecorded: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
			host := rig.net.host("A")
			l := rig.start(t)
			rig.waitUp(t, 1, "A")
			req := unblockRequest("T0000001")
			if code, err := l.Send(context.Background(), "ssbank", req); err != nil || code != iso8583.RCApproved {
				t.Fatalf("Send() = %q, %v, want 00", code, err)
			}
			orig := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
			rev := rig.putFor(t, orig.STAN)
			tt.fail(rig)
			if err := l.Reverse(context.Background(), req); err != nil {
				t.Fatalf("Reverse() = %v", err)
			}
			host.waitMsg(t, 1, iso8583.MTIReversalAdvice, "")
			tt.afterFirst(t, rig)
			checkAdvice(t, host.waitMsg(t, 2, iso8583.MTIReversalAdvice, ""), orig)
			rig.store.waitDeleted(t, rev.ID)
			if n := len(rig.recorded.all()); n != tt.wantRecorded {
				t.Errorf("recorded %d times, want %d", n, tt.wantRecorded)
			}
		})
	}
}

// TestLinksReversalWorkerLeavesWhatItCannotSend: advices left by an
// earlier run are sent at start and recorded; one for an issuer no longer
// configured, or one the dialect cannot pack, stays stored; a store that
// cannot be read is logged and read again later.
func TestLinksReversalWorkerLeavesWhatItCannotSend(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	left := []Reversal{
		{ID: "gone", Issuer: "oldbank", Operation: OpChange, PAN: testPAN, STAN: "000001", Transmit: "1125120000", Terminal: "T0000001", RRN: "000000000001", Merchant: "TEST MERCHANT  ", Created: t0},
		{ID: "unpackable", Issuer: "ssbank", Operation: OpChange, PAN: testPAN, STAN: "x", Transmit: "1125120000", Terminal: "T0000001", RRN: "000000000001", Merchant: "TEST MERCHANT  ", Created: t0.Add(time.Second)},
		{ID: "owed", Issuer: "ssbank", Operation: OpChange, PAN: testPAN, STAN: "000003", Transmit: "1125120000", Terminal: "T0000001", RRN: "000000000001", Merchant: "TEST MERCHANT  ", Created: t0.Add(2 * time.Second), Record: true, EventID: "ev-earlier"},
	}
	for _, r := range left {
		if err := rig.store.MemoryReversalStore.Put(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	l := rig.start(t)
	rig.store.waitDeleted(t, "owed")
	adv := host.waitMsg(t, 1, iso8583.MTIReversalAdvice, "")
	if od, err := iso8583.ParseOriginalData(adv.OriginalData); err != nil || od.STAN != "000003" {
		t.Errorf("the issuer got a 0420 for STAN %s (%v), want 000003", od.STAN, err)
	}
	if rec := rig.recorded.all(); len(rec) != 1 || rec[0].ID != "owed" || rec[0].EventID != "ev-earlier" {
		t.Errorf("recorded %+v, want the advice owed by the earlier run", rec)
	}
	rig.log.waitLine(t, 1, "reversal unpackable")
	var ids []string
	for _, r := range rig.store.pending(t) {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "gone,unpackable" {
		t.Errorf("store holds %v, want [gone unpackable]", ids)
	}
	if n := host.countMsg(iso8583.MTIReversalAdvice, ""); n != 1 {
		t.Errorf("the issuer got %d reversals, want 1", n)
	}

	rig.store.mu.Lock()
	rig.store.pendingErr = errors.New("store unreadable")
	rig.store.mu.Unlock()
	l.kickWorker()
	rig.log.waitLine(t, 1, "reversal store unreadable")
}

// TestLinksMatchConcurrentRequests: requests in flight together on one
// link each get their own answer, whatever order the issuer answers in.
func TestLinksMatchConcurrentRequests(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	// Odd terminals are declined 14, even ones approved.
	host.setPolicy(func(f *iso8583.Fields) string {
		if f.MTI == iso8583.MTIAuthRequest && (f.TerminalID[len(f.TerminalID)-1]-'0')%2 == 1 {
			return iso8583.RCNoSuchCard
		}
		return iso8583.RCApproved
	})
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			want := iso8583.RCApproved
			if i%2 == 1 {
				want = iso8583.RCNoSuchCard
			}
			req := unblockRequest(fmt.Sprintf("T%07d", i))
			code, err := l.Send(context.Background(), "ssbank", req)
			if err != nil || code != want {
				errs <- fmt.Sprintf("request %d: Send() = %q, %v, want %s", i, code, err, want)
			}
			l.Discharge(context.Background(), req)
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if p := rig.store.pending(t); len(p) != 0 {
		t.Errorf("%d reversals left after every request was answered and discharged, want none", len(p))
	}
}

// TestLinksSpreadOverConnections: with several connections to a host,
// requests go round the connections.
func TestLinksSpreadOverConnections(t *testing.T) {
	ic := linkIssuer("A")
	ic.Connections = 2
	rig := newLinkRig(t, []IssuerConfig{ic}, "A")
	host := rig.net.host("A")
	l := rig.start(t)
	rig.waitUp(t, 2, "A")
	for i := 0; i < 4; i++ {
		if code, err := l.Send(context.Background(), "ssbank", unblockRequest(fmt.Sprintf("T%07d", i))); err != nil || code != iso8583.RCApproved {
			t.Fatalf("Send() = %q, %v, want 00", code, err)
		}
	}
	conns := host.connections()
	if len(conns) != 2 || conns[0].got.Load() != 2 || conns[1].got.Load() != 2 {
		var got []int32
		for _, c := range conns {
			got = append(got, c.got.Load())
		}
		t.Errorf("requests per connection = %v, want [2 2]", got)
	}
}

// TestLinksShutdownLeavesTheReversalOwed: a request in flight when the
// links shut down fails as a timeout, its advice stays in the store, and
// the next start sends it.
func TestLinksShutdownLeavesTheReversalOwed(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	host.setPolicy(holdRequests)
	l := rig.start(t)
	rig.waitUp(t, 1, "A")
	res := sendAsync(context.Background(), l, unblockRequest(holdTerminal))
	orig := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if r := recv(t, res); !errors.Is(r.err, ErrIssuerTimeout) {
		t.Fatalf("Send() in flight at Shutdown = %q, %v, want ErrIssuerTimeout", r.code, r.err)
	}
	rev := rig.putFor(t, orig.STAN)
	if p := rig.store.pending(t); len(p) != 1 || p[0].ID != rev.ID {
		t.Fatalf("after Shutdown the store holds %d reversals, want the one owed", len(p))
	}

	next := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	next.store = rig.store
	next.start(t)
	checkAdvice(t, next.net.host("A").waitMsg(t, 1, iso8583.MTIReversalAdvice, ""), orig)
	rig.store.waitDeleted(t, rev.ID)
}

// TestLinksRequestEchoedBackIsNotAnAnswer: a frame with the request's own
// MTI (0100, an issuer or a loop that reflects the request, DE 39 set or
// not) shares the answer's match key but answers nothing: it is dropped,
// the request times out and is reversed, never taken for an approval.
func TestLinksRequestEchoedBackIsNotAnAnswer(t *testing.T) {
	rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
	host := rig.net.host("A")
	host.setPolicy(holdRequests)
	l := rig.start(t)
	rig.waitUp(t, 1, "A")

	deadline := newExpiring()
	res := sendAsync(deadline, l, unblockRequest(holdTerminal))
	orig := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
	echo := replyFields(orig, iso8583.RCApproved)
	echo.MTI = orig.MTI
	b, err := iso8583.Pack(iso8583.IssuerSpec, echo)
	if err != nil {
		t.Fatal(err)
	}
	host.conn(t).deliver(t, b)
	rig.log.waitLine(t, 1, "unmatched issuer answer")
	deadline.expire()
	if r := recv(t, res); !errors.Is(r.err, ErrIssuerTimeout) {
		t.Fatalf("Send() after its request echoed back = %q, %v, want ErrIssuerTimeout", r.code, r.err)
	}
	checkAdvice(t, host.waitMsg(t, 1, iso8583.MTIReversalAdvice, ""), orig)
}

// TestLinksTimeoutHoldsTheReversalUntilRecorded: the reversal owed ahead of
// a timed-out request is not sent before the flow says the outcome is
// recorded: a process that died in between would leave a reversal at the
// issuer with no record. Recorded sends it unrecorded (the flow recorded
// the timeout); Reverse, when the record failed, sends it and records the
// acknowledgement.
func TestLinksTimeoutHoldsTheReversalUntilRecorded(t *testing.T) {
	tests := []struct {
		name       string
		release    func(l *IssuerLinks, req *IssuerRequest)
		wantRecord int
	}{
		{"recorded", func(l *IssuerLinks, req *IssuerRequest) { l.Recorded(context.Background(), req) }, 0},
		{"record failed", func(l *IssuerLinks, req *IssuerRequest) { _ = l.Reverse(context.Background(), req) }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newLinkRig(t, []IssuerConfig{linkIssuer("A")}, "A")
			host := rig.net.host("A")
			host.setPolicy(holdRequests)
			l := rig.start(t)
			rig.waitUp(t, 1, "A")
			deadline := newExpiring()
			req := unblockRequest(holdTerminal)
			ch := make(chan sendResult, 1)
			go func() {
				code, err := l.Send(deadline, "ssbank", req)
				ch <- sendResult{code, err}
			}()
			orig := host.waitMsg(t, 1, iso8583.MTIAuthRequest, "")
			deadline.expire()
			if r := recv(t, ch); !errors.Is(r.err, ErrIssuerTimeout) {
				t.Fatalf("Send() = %q, %v, want ErrIssuerTimeout", r.code, r.err)
			}
			l.kickWorker()
			time.Sleep(200 * time.Millisecond)
			if n := host.countMsg(iso8583.MTIReversalAdvice, ""); n != 0 {
				t.Fatalf("the issuer got %d reversal advices before the outcome was recorded, want none", n)
			}
			tt.release(l, req)
			checkAdvice(t, host.waitMsg(t, 1, iso8583.MTIReversalAdvice, ""), orig)
			rig.store.waitDeleted(t, rig.putFor(t, orig.STAN).ID)
			if n := len(rig.recorded.all()); n != tt.wantRecord {
				t.Errorf("%d acknowledged reversals recorded, want %d", n, tt.wantRecord)
			}
		})
	}
}
