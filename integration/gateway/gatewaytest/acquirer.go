package gatewaytest

import (
	"context"
	"sync"
	"testing"
	"time"

	"pingate/iso8583"
)

// AcquirerLink is an acquirer's raw ISO 8583 connection to one gateway: it
// sends the fields it is given as they are (STAN and DE 7 included), so a
// test can retransmit a request to another instance, as an ATM switch does
// after reconnecting. Answers are matched by STAN and DE 7.
type AcquirerLink struct {
	conn *iso8583.Conn
	mu   sync.Mutex
	got  map[string]chan *iso8583.Fields // STAN|DE7 → answer
}

// DialAcquirer connects to a gateway's acquirer listener at addr until the
// test ends.
func DialAcquirer(t testing.TB, addr string) *AcquirerLink {
	t.Helper()
	l := &AcquirerLink{got: map[string]chan *iso8583.Fields{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := iso8583.Dial(ctx, addr, iso8583.ClientConfig{OnFrame: func(frame []byte) {
		f, err := iso8583.Unpack(iso8583.AcquirerSpec, frame)
		if err != nil {
			return
		}
		l.mu.Lock()
		ch := l.got[f.STAN+"|"+f.TransmissionTime]
		delete(l.got, f.STAN+"|"+f.TransmissionTime)
		l.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	l.conn = conn
	t.Cleanup(func() { conn.Close() })
	return l
}

// Send sends f as it is and returns a channel that gets its answer.
func (l *AcquirerLink) Send(t testing.TB, f *iso8583.Fields) <-chan *iso8583.Fields {
	t.Helper()
	frame, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *iso8583.Fields, 1)
	l.mu.Lock()
	l.got[f.STAN+"|"+f.TransmissionTime] = ch
	l.mu.Unlock()
	if err := l.conn.Send(frame); err != nil {
		t.Fatal(err)
	}
	return ch
}

// Answer waits up to 15 s for an answer from Send, failing the test without
// one.
func Answer(t testing.TB, ch <-chan *iso8583.Fields) *iso8583.Fields {
	t.Helper()
	select {
	case f := <-ch:
		return f
	case <-time.After(15 * time.Second):
		t.Fatal("no answer from the gateway")
		return nil
	}
}

// WaitSignedOn waits up to 30 s for every issuer link of g to sign on.
func WaitSignedOn(t testing.TB, g interface{ SignedOn() map[string]bool }) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		on := g.SignedOn()
		all := len(on) > 0
		for _, ok := range on {
			all = all && ok
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("issuer links not signed on: %v", on)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
