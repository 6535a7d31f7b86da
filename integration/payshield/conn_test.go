package payshield

import (
	"context"
	"errors"
	"fmt"
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
