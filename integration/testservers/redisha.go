package testservers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// RedisHA is the pair of highly available Redis set-ups of
// scripts/redis-cluster.sh, run in a directory of the caller's: a Redis
// Cluster of three masters with one replica each (nodes c1–c6), and a
// Sentinel set of one master (m), one replica (r) and three sentinels
// (s1–s3) watching group SentinelMaster. The script starts, kills and
// restarts the nodes; this type only calls it, so a test runs the set-up an
// operator starts by hand.
type RedisHA struct {
	// ClusterAddrs are the six cluster nodes (limits.mode cluster's seeds).
	ClusterAddrs []string
	// SentinelAddrs are the three sentinels (limits.mode sentinel's addrs).
	SentinelAddrs []string
	// SentinelMaster is the monitored group (limits.master_name).
	SentinelMaster string
	// Nodes maps every node name to its address.
	Nodes map[string]string

	script, dir string
}

// ErrRedisHAUnavailable marks set-ups that cannot start on this machine
// because redis-server or redis-cli is missing (not a start-up failure).
var ErrRedisHAUnavailable = errors.New("redis cluster and sentinel unavailable")

// StartRedisHA starts both set-ups with state in dir and returns once the
// cluster is ok on every node and the sentinels see each other and the
// replica (a few seconds). It is meant for a TestMain: it takes no
// testing.TB, and the caller stops it. Without redis-server or redis-cli
// the error wraps ErrRedisHAUnavailable: skip with it, or fail when CI is
// "true".
func StartRedisHA(dir string) (*RedisHA, error) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%w: %s not found on PATH (./scripts/services.sh start installs it)", ErrRedisHAUnavailable, bin)
		}
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	h := &RedisHA{script: filepath.Join(root, "scripts", "redis-cluster.sh"), dir: dir, Nodes: map[string]string{}}
	if err := h.run(2*time.Minute, "start"); err != nil {
		h.Stop()
		return nil, err
	}
	env, err := os.ReadFile(filepath.Join(dir, "ha.env"))
	if err != nil {
		h.Stop()
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		switch {
		case !ok:
		case k == "REDIS_CLUSTER_ADDRS":
			h.ClusterAddrs = strings.Split(v, ",")
		case k == "REDIS_SENTINEL_ADDRS":
			h.SentinelAddrs = strings.Split(v, ",")
		case k == "REDIS_SENTINEL_MASTER":
			h.SentinelMaster = v
		case strings.HasPrefix(k, "REDIS_NODE_"):
			h.Nodes[strings.TrimPrefix(k, "REDIS_NODE_")] = v
		}
	}
	if len(h.ClusterAddrs) != 6 || len(h.SentinelAddrs) != 3 || h.SentinelMaster == "" || len(h.Nodes) != 11 {
		h.Stop()
		return nil, fmt.Errorf("redis-cluster.sh: unexpected ha.env:\n%s", env)
	}
	return h, nil
}

// NodeOf is the name of the node at addr ("" if none).
func (h *RedisHA) NodeOf(addr string) string {
	for n, a := range h.Nodes {
		if a == addr {
			return n
		}
	}
	return ""
}

// Kill SIGKILLs node name (c1–c6, m, r, s1–s3), a crash, and returns once it
// has exited.
func (h *RedisHA) Kill(name string) error { return h.run(time.Minute, "kill", name) }

// StartNode starts node name again on its port and configuration (empty:
// the nodes keep no data) and returns once it answers PING.
func (h *RedisHA) StartNode(name string) error { return h.run(time.Minute, "start-node", name) }

// Stop stops every node and waits for them to exit. Safe to call twice.
func (h *RedisHA) Stop() { _ = h.run(time.Minute, "stop") }

// Status is the script's status output: one line per node.
func (h *RedisHA) Status() string {
	out, _ := h.output(10*time.Second, "status")
	return out
}

// NodeLog is the tail of node name's log, for a failure message.
func (h *RedisHA) NodeLog(name string) string {
	return logTail(filepath.Join(h.dir, name, "redis.log"))
}

func (h *RedisHA) run(d time.Duration, args ...string) error {
	return runScript(h.script, "REDIS_HA_DIR="+h.dir, d, args...)
}

func (h *RedisHA) output(d time.Duration, args ...string) (string, error) {
	return scriptOutput(h.script, "REDIS_HA_DIR="+h.dir, d, args...)
}

// runScript runs the cluster script at path with args and env (NAME=value
// naming its state directory), failing with its output.
func runScript(path, env string, d time.Duration, args ...string) error {
	out, err := scriptOutput(path, env, d, args...)
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return nil
}

func scriptOutput(path, env string, d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), env)
	// The nodes outlive this command (they run until stop or kill) with their
	// output in their logs, so no pipe of ours is held open by them.
	out, err := cmd.CombinedOutput()
	return string(out), err
}
