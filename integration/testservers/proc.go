package testservers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// stopGrace is how long a stopped server may take to exit after SIGTERM before
// it is killed.
const stopGrace = 20 * time.Second

// proc is one running server process. The goroutine that waits for it is
// owned by the proc: stop (or the process exiting) ends it.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid after done
}

// spawn starts bin with args, stdout and stderr appended to logPath.
func spawn(name, logPath, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits for the exit (SIGKILL after stopGrace) and
// returns once the process is gone. Safe to call more than once.
func (p *proc) stop() {
	p.cancel()
	<-p.done
}

// kill sends SIGKILL (a crash: no shutdown of the server's own) and returns
// once the process is gone. Safe to call more than once.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cancel()
}

// waitReady polls ready every 50 ms until it returns nil. It fails when the
// process exits first or when timeout passes, with the tail of the log.
func (p *proc) waitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited during start-up (%v)%s", p.name, p.err, logTail(p.logPath))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v%s", p.name, timeout, err, logTail(p.logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail returns the last lines of a server log, prefixed for an error
// message. Server logs hold no secrets of ours: tests send them none.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "\n--- " + filepath.Base(path) + " ---\n" + string(bytes.Join(lines, []byte("\n")))
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// Another process may take one before the server binds it; callers retry.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// missing skips the test with the reason, or fails it when CI is "true".
func missing(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testservers: %s (CI=true, so this is a failure, not a skip)", reason)
		return
	}
	t.Skipf("testservers: %s: run ./scripts/services.sh start first", reason)
}

// repoRoot is the nearest directory at or above the working directory that
// holds go.mod ("go test" runs in the package directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
