package testservers

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis is a redis-server child process on a loopback port, without
// persistence (--save ” --appendonly no).
type Redis struct {
	// Addr is "127.0.0.1:port"; it stays the same across Stop and Start.
	Addr string

	t    testing.TB
	bin  string
	port int
	dir  string
	mu   sync.Mutex
	p    *proc // nil while stopped
}

// StartRedis starts a redis-server on a free loopback port and returns its
// address and a stop function. stop is idempotent and also runs in t.Cleanup.
// The test is skipped (failed when CI=true) if redis-server is not on PATH.
func StartRedis(t testing.TB) (addr string, stop func()) {
	t.Helper()
	r := StartRedisServer(t)
	return r.Addr, r.Stop
}

// StartRedisServer is StartRedis for tests that stop and restart the server.
func StartRedisServer(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server not found on PATH")
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(r.Stop)
	var lastErr error
	for range 3 { // a port picked free can be taken before redis binds it
		ports, err := freePorts(1)
		if err != nil {
			t.Fatalf("testservers: %v", err)
		}
		r.port, r.Addr = ports[0], loopback(ports[0])
		if lastErr = r.start(); lastErr == nil {
			return r
		}
	}
	t.Fatalf("testservers: %v", lastErr)
	return nil
}

// Stop stops the server (SIGTERM, then SIGKILL after 20 s) and returns once
// it has exited. Connections to Addr fail until Start. Idempotent.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		r.p.stop()
		r.p = nil
	}
}

// Kill kills the server with SIGKILL, as a crash would, and returns once it
// has exited. Connections to Addr fail until Start. Idempotent.
func (r *Redis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		r.p.kill()
		r.p = nil
	}
}

// Start starts a stopped server again on the same port; it returns once the
// server answers PING. The restarted server is empty. A no-op while running.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("testservers: %v", err)
	}
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		return nil
	}
	p, err := spawn("redis-server", filepath.Join(r.dir, "redis.log"), r.bin,
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", r.dir, "--loglevel", "warning")
	if err != nil {
		return err
	}
	if err := p.waitReady(10*time.Second, func() error { return redisPing(r.Addr) }); err != nil {
		p.stop()
		return err
	}
	r.p = p
	return nil
}

// redisPing sends an inline PING and expects +PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
