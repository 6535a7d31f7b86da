package routing

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"pingate/iso8583"
)

// answerThenCloseConn is an issuer connection that answers every message
// 00 and, after the answer to an 0100, closes: the answer is delivered
// before Done closes, as iso8583.ClientConn delivers every frame it read
// before it ends. It answers from Send itself, so that the answer and the
// close are both there before the sender waits for either.
type answerThenCloseConn struct {
	t       *testing.T
	onFrame func([]byte)
	done    chan struct{}
	once    sync.Once
	advices *atomic.Int32 // 0420s received
}

func (c *answerThenCloseConn) Send(frame []byte) error {
	f, err := iso8583.Unpack(iso8583.IssuerSpec, frame)
	if err != nil {
		c.t.Errorf("pingate sent a message that does not unpack: %v", err)
		return nil
	}
	c.onFrame(reply(c.t, f, iso8583.RCApproved))
	if f.MTI == iso8583.MTIReversalAdvice {
		c.advices.Add(1)
	}
	if f.MTI == iso8583.MTIAuthRequest {
		_ = c.Close()
	}
	return nil
}

func (c *answerThenCloseConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *answerThenCloseConn) Done() <-chan struct{} { return c.done }

// TestLinksAnswerBeforeTheLinkClosesIsTaken: an issuer that answers and
// then closes the link (a host restarting, a balancer recycling the
// connection) has answered: Send returns its 00, and no reversal advice is
// released for an approval the gateway holds. Before the fix the sender
// picked at random between the answer and the closed link, and about every
// second approval came back as "link closed" (91 issuer_timeout and an 0420
// undoing the approved change).
func TestLinksAnswerBeforeTheLinkClosesIsTaken(t *testing.T) {
	store := newWatchedStore()
	var advices atomic.Int32
	dial := func(_ context.Context, _, _ string, onFrame func([]byte)) (FrameConn, error) {
		return &answerThenCloseConn{t: t, onFrame: onFrame, done: make(chan struct{}), advices: &advices}, nil
	}
	log := &logLines{}
	l := NewIssuerLinks(LinksConfig{
		Institution: linkInstitution, Issuers: []IssuerConfig{linkIssuer("A")}, Codec: IssuerDialect{}, Dial: dial,
		Reversals: store, Logger: slog.New(log),
	})
	l.SetRecorder(func(context.Context, Reversal) error { return nil })
	l.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
	})
	// Each answer ends its link: wait for the next sign-on before the next
	// request. 20 approvals all taken: 1 in 2^20 on the old code.
	for i := range 20 {
		log.waitLine(t, i+1, "issuer link signed on issuer=ssbank host=A")
		code, err := l.Send(context.Background(), "ssbank", unblockRequest("T0000001"))
		if err != nil || code != iso8583.RCApproved {
			t.Fatalf("request %d: Send() = %q, %v, want 00, nil (the answer came before the link closed)", i, code, err)
		}
	}
	if n := advices.Load(); n != 0 {
		t.Errorf("the issuer got %d reversal advices for approvals the gateway holds, want 0", n)
	}
}
