package payshield

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"pingate/integration/payshield/hsmsim"
)

// TestConnSurvivesAbandonedCommands: a command whose ctx has ended before
// it is written, and one too long for the length prefix, fail alone; the
// connection they were on keeps serving the commands after them.
func TestConnSurvivesAbandonedCommands(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := hsmsim.New(hsmsim.Config{HeaderLen: 4})
	served := make(chan struct{})
	go func() { defer close(served); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close(); <-served })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialConn(ctx, ln.Addr().String(), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	echo := func(ctx context.Context, data string) error {
		var resp [1][]byte
		f := fmt.Appendf(nil, "%04X%s", len(data), data)
		if err := c.roundTrip(ctx, "B2", [][]byte{f}, resp[:]); err != nil {
			return err
		}
		if got := string(resp[0]); got != "B300"+data { // response code B3, error code 00
			t.Errorf("B2 answered %q, want %q", got, "B300"+data)
		}
		return nil
	}
	if err := echo(ctx, "ping"); err != nil {
		t.Fatalf("echo = %v", err)
	}

	ended, stop := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer stop()
	if err := echo(ended, "late"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("echo past its deadline = %v, want context.DeadlineExceeded", err)
	}
	var resp [1][]byte
	if err := c.roundTrip(ctx, "B2", [][]byte{make([]byte, maxFrame)}, resp[:]); !errors.Is(err, ErrProtocol) {
		t.Errorf("a command over the length prefix = %v, want ErrProtocol", err)
	}
	if !c.alive() {
		t.Fatal("the connection closed under the abandoned commands")
	}
	if err := echo(ctx, "again"); err != nil {
		t.Errorf("echo after the abandoned commands = %v", err)
	}
}

// lateHSM answers B2 echoes on a 1-digit header (it wraps every 10
// commands), except the first, whose response it holds back: it sends that
// response, late, right before its answer to the next command under the
// same header, or, when no command reuses the header, after release is
// closed.
func lateHSM(t *testing.T, release <-chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		answer := func(hdr byte, data []byte) []byte {
			body := append([]byte{hdr}, "B300"...)
			body = append(body, data...)
			return append([]byte{byte(len(body) >> 8), byte(len(body))}, body...)
		}
		var held []byte // the first command's response
		var heldHdr byte
		reqs := make(chan []byte)
		go func() {
			defer close(reqs)
			for {
				var p [2]byte
				if _, err := io.ReadFull(nc, p[:]); err != nil {
					return
				}
				msg := make([]byte, int(p[0])<<8|int(p[1]))
				if _, err := io.ReadFull(nc, msg); err != nil {
					return
				}
				reqs <- msg
			}
		}()
		first := true
		for {
			select {
			case msg, ok := <-reqs:
				if !ok {
					return
				}
				hdr, data := msg[0], msg[1+2+4:] // header, "B2", 4 hex digits of length
				if first {
					first, held, heldHdr = false, answer(hdr, []byte("stale")), hdr
					continue
				}
				if held != nil && hdr == heldHdr {
					_, _ = nc.Write(held)
					held = nil
				}
				_, _ = nc.Write(answer(hdr, data))
			case <-release:
				release = nil
				if held != nil {
					_, _ = nc.Write(held)
					held = nil
				}
			}
		}
	}()
	return ln.Addr().String()
}

// TestConnLateResponseIsNotTakenForAnother: a command abandoned (its
// caller's deadline passed) keeps its header out of use until its late
// response arrives, so the response cannot be taken for a later command's
// under the same header once the header sequence wraps: every later echo
// gets its own data, across several wraps, before and after the late
// response comes.
func TestConnLateResponseIsNotTakenForAnother(t *testing.T) {
	release := make(chan struct{})
	addr := lateHSM(t, release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialConn(ctx, addr, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	echo := func(ctx context.Context, data string) error {
		var resp [1][]byte
		if err := c.roundTrip(ctx, "B2", [][]byte{fmt.Appendf(nil, "%04X%s", len(data), data)}, resp[:]); err != nil {
			return err
		}
		if got := string(resp[0]); got != "B300"+data {
			return fmt.Errorf("B2 %q answered %q", data, got)
		}
		return nil
	}
	short, stop := context.WithTimeout(ctx, 100*time.Millisecond)
	defer stop()
	if err := echo(short, "first"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the held-back echo = %v, want context.DeadlineExceeded", err)
	}
	for i := range 25 { // two and a half wraps of the 1-digit header
		if err := echo(ctx, fmt.Sprintf("e%02d", i)); err != nil {
			t.Fatalf("echo %d after the abandoned one: %v", i, err)
		}
	}
	close(release) // the late response arrives; its header is free again
	for i := range 25 {
		if err := echo(ctx, fmt.Sprintf("f%02d", i)); err != nil {
			t.Fatalf("echo %d after the late response: %v", i, err)
		}
	}
	if !c.alive() {
		t.Error("the connection closed")
	}
}

// TestConnClosesWhenTooManyResponsesAreOwed: past maxAbandoned commands
// without a response, the connection is closed for the pool to dial another.
func TestConnClosesWhenTooManyResponsesAreOwed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // reads everything, answers nothing
		nc, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, nc)
			nc.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialConn(ctx, ln.Addr().String(), 1, nil) // at most 5 owed on a 1-digit header
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for i := range c.maxAbandoned() + 1 {
		short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
		var resp [1][]byte
		err := c.roundTrip(short, "B2", [][]byte{[]byte("0001x")}, resp[:])
		stop()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("command %d = %v, want context.DeadlineExceeded", i, err)
		}
	}
	if c.alive() {
		t.Error("the connection lives on with more commands owed than maxAbandoned")
	}
}
