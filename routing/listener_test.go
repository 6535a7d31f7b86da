package routing

import (
	"context"
	"net"
	"testing"
	"time"

	"pingate/iso8583"
)

// startAcquirerListener serves front on a loopback port with the iso8583
// server, as the gateway does, and stops it at cleanup.
func startAcquirerListener(t *testing.T, front *AcquirerFront) string {
	t.Helper()
	srv, err := iso8583.NewServer(iso8583.Config{}, front)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// acquirerClient is one acquirer connection: frames out, answers in order.
type acquirerClient struct {
	conn    *iso8583.Conn
	answers chan []byte
}

func dialAcquirer(t *testing.T, addr string) *acquirerClient {
	t.Helper()
	c := &acquirerClient{answers: make(chan []byte, 16)}
	conn, err := iso8583.Dial(context.Background(), addr, iso8583.ClientConfig{OnFrame: func(f []byte) { c.answers <- f }})
	if err != nil {
		t.Fatal(err)
	}
	c.conn = conn
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

// ask sends frame and returns the answer's DE 39.
func (c *acquirerClient) ask(t *testing.T, frame []byte) string {
	t.Helper()
	if err := c.conn.Send(frame); err != nil {
		t.Fatalf("send: %v", err)
	}
	select {
	case b := <-c.answers:
		f, err := iso8583.Unpack(iso8583.AcquirerSpec, b)
		if err != nil {
			t.Fatalf("the answer does not unpack: %v", err)
		}
		return f.ResponseCode
	case <-time.After(waitLimit):
		t.Fatal("no answer")
		return ""
	}
}

// TestServeFrameKeepsASessionPerConnection: over TCP, the sign-on of one
// connection lets its later PIN operations through while another
// connection of the same acquirer, not signed on, is refused; an unknown
// acquirer is answered 58 and disconnected, and the other connections
// carry on.
func TestServeFrameKeepsASessionPerConnection(t *testing.T) {
	addr := startAcquirerListener(t, networkFront(t, approveAll(), &memSink{}, &fakeImporter{}))
	signedOn, other, stranger := dialAcquirer(t, addr), dialAcquirer(t, addr), dialAcquirer(t, addr)

	steps := []struct {
		name string
		conn *acquirerClient
		give []byte
		want string
	}{
		{"sign-on", signedOn, netFrame(t, "100002", iso8583.NMISignOn, nil, 0), "00"},
		{"change on the signed-on connection", signedOn, changeFrameFrom(t, "100002", "001001"), "00"},
		{"change on another connection", other, changeFrameFrom(t, "100002", "001002"), "91"},
		{"unknown acquirer", stranger, netFrame(t, "555555", iso8583.NMISignOn, nil, 0), "58"},
		{"change on the signed-on connection again", signedOn, changeFrameFrom(t, "100002", "001003"), "00"},
	}
	for _, s := range steps {
		if got := s.conn.ask(t, s.give); got != s.want {
			t.Errorf("%s: answered %s, want %s", s.name, got, s.want)
		}
	}
	select {
	case <-stranger.conn.Done():
	case <-time.After(waitLimit):
		t.Error("the unknown acquirer's connection stayed open")
	}
}
