package iso8583

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestWriteFramesCoalesces: frames handed to WriteFrames while a write is
// in progress return at once and go out together in the next Write call,
// after the write in progress; the caller's buffer is copied, so reusing it
// at once changes nothing on the wire.
func TestWriteFramesCoalesces(t *testing.T) {
	local, remote := net.Pipe()
	defer local.Close()
	defer remote.Close()
	received := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(remote); received <- b }()
	g := &gatedConn{Conn: local, entered: make(chan struct{}), release: make(chan struct{})}
	var w Coalescer
	failed := func(err error) { t.Errorf("fail(%v) called on a working connection", err) }
	frame := func(m string) []byte { b, _ := AppendFrame(nil, Binary2, []byte(m)); return b }

	first := make(chan error, 1)
	go func() { first <- w.WriteFrames(g, time.Minute, frame("first"), failed) }()
	<-g.entered
	buf := make([]byte, 0, 16)
	var queued []byte
	for _, m := range []string{"b", "cc", "ddd"} {
		buf = append(buf[:0], frame(m)...)
		queued = append(queued, buf...)
		if err := w.WriteFrames(g, time.Minute, buf, failed); err != nil {
			t.Fatalf("WriteFrames(%q) during a write = %v", m, err)
		}
		clear(buf) // the queued copy must not change
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatalf("WriteFrames(first) = %v", err)
	}
	local.Close()
	got := <-received
	if want := append(frame("first"), queued...); string(got) != string(want) {
		t.Errorf("stream = %q, want %q", got, want)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.writes) != 2 || string(g.writes[1]) != string(queued) {
		t.Errorf("writes = %q, want the first frame, then the three queued ones in one write %q", g.writes, queued)
	}
}

// TestWriteFramesFailure: a write that fails calls fail and returns the
// error; frames queued behind it are dropped.
func TestWriteFramesFailure(t *testing.T) {
	local, remote := net.Pipe()
	remote.Close()
	var failed error
	err := new(Coalescer).WriteFrames(local, time.Minute, []byte{0, 1, 'x'}, func(err error) { failed = err })
	if err == nil || failed == nil {
		t.Fatalf("WriteFrames on a closed pipe = %v, fail called with %v; want both an error", err, failed)
	}
}
