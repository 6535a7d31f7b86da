package testservers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// KafkaCluster is the three-node KRaft cluster of scripts/kafka-cluster.sh
// (each node a combined broker and controller; default.replication.factor=3,
// min.insync.replicas=2), run in a directory of the caller's. The script
// starts, kills and restarts the nodes; this type only calls it, so a test
// runs the same cluster an operator starts by hand.
type KafkaCluster struct {
	// Brokers is the bootstrap list, one host:port per node.
	Brokers []string
	// Nodes[i] is the address of node i+1.
	Nodes []string

	script, dir string
}

// ErrClusterUnavailable marks a cluster that cannot start on this machine
// because java or the broker jars are missing (not a start-up failure).
var ErrClusterUnavailable = errors.New("kafka cluster unavailable")

// StartKafkaCluster formats and starts the three nodes with state in dir and
// returns once each lists all three brokers. It is meant for a TestMain (one
// cluster for a package's tests, about 10–30 s to start on a loaded 2-core
// machine): it takes no testing.TB, and the caller stops it. Without java or
// the jars ($KAFKA_LIBS or .services/kafka-libs; ./scripts/services.sh start
// fetches them) the error wraps ErrClusterUnavailable: skip with it, or
// fail when CI is "true".
func StartKafkaCluster(dir string) (*KafkaCluster, error) {
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("%w: java not found on PATH", ErrClusterUnavailable)
	}
	if _, err := kafkaLibs(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrClusterUnavailable, err)
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	c := &KafkaCluster{script: filepath.Join(root, "scripts", "kafka-cluster.sh"), dir: dir}
	if err := c.run(3*time.Minute, "start"); err != nil {
		c.Stop()
		return nil, err
	}
	env, err := os.ReadFile(filepath.Join(dir, "cluster.env"))
	if err != nil {
		c.Stop()
		return nil, err
	}
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vals[k] = v
		}
	}
	c.Brokers = strings.Split(vals["KAFKA_CLUSTER_BROKERS"], ",")
	for i := 1; i <= 3; i++ {
		c.Nodes = append(c.Nodes, vals[fmt.Sprintf("KAFKA_NODE%d", i)])
	}
	if len(c.Brokers) != 3 || slices.Contains(c.Nodes, "") {
		c.Stop()
		return nil, fmt.Errorf("kafka cluster: unexpected cluster.env:\n%s", env)
	}
	return c, nil
}

// Kill SIGKILLs node n (1–3), a crash, and returns once it has exited.
func (c *KafkaCluster) Kill(n int) error { return c.run(time.Minute, "kill", fmt.Sprint(n)) }

// StartNode starts node n again on its data and ports and returns once it
// answers metadata requests.
func (c *KafkaCluster) StartNode(n int) error {
	return c.run(3*time.Minute, "start-node", fmt.Sprint(n))
}

// Stop stops every node and waits for them to exit. Safe to call twice.
func (c *KafkaCluster) Stop() { _ = c.run(time.Minute, "stop") }

// Status is the script's status output: one line per node.
func (c *KafkaCluster) Status() string {
	out, _ := c.output(10*time.Second, "status")
	return out
}

// NodeLog is the tail of node n's broker log, for a failure message.
func (c *KafkaCluster) NodeLog(n int) string {
	return logTail(filepath.Join(c.dir, fmt.Sprintf("node%d", n), "kafka.log"))
}

func (c *KafkaCluster) run(d time.Duration, args ...string) error {
	return runScript(c.script, "KAFKA_CLUSTER_DIR="+c.dir, d, args...)
}

func (c *KafkaCluster) output(d time.Duration, args ...string) (string, error) {
	return scriptOutput(c.script, "KAFKA_CLUSTER_DIR="+c.dir, d, args...)
}
