package testservers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// Kafka is a single-node Apache Kafka broker (KRaft, combined broker and
// controller) running as a child process of the test binary.
type Kafka struct {
	// Brokers is the bootstrap address "127.0.0.1:port"; it stays the same
	// across Stop and Start.
	Brokers string

	t    testing.TB
	java string
	libs string
	dir  string // server.properties, log4j.properties, data/, kafka.log
	port int
	mu   sync.Mutex
	p    *proc // nil while stopped
}

// StartKafka formats a new single-node KRaft cluster in a temporary directory,
// starts its broker on free loopback ports and returns once the broker answers
// a metadata request listing itself. The broker is stopped in t.Cleanup.
//
// It needs java on PATH and the broker jars in $KAFKA_LIBS or
// <repo>/.services/kafka-libs; without them the test is skipped (failed when
// CI=true). The broker has auto.create.topics.enable=false: create topics with
// CreateTopic first. Heap is capped at 512 MiB, and the JVM runs with the
// serial collector and the C1 compiler only, which halves start-up time on a
// 2-core machine at the cost of peak throughput: do not read a Kafka
// benchmark against this broker as production figures.
func StartKafka(t testing.TB) *Kafka {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		missing(t, "java not found on PATH")
	}
	libs, err := kafkaLibs()
	if err != nil {
		missing(t, err.Error())
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testservers: %v", err)
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "scripts", "kafka", "server.properties.tmpl"))
	if err != nil {
		t.Fatalf("testservers: broker config template: %v", err)
	}
	log4j, err := os.ReadFile(filepath.Join(root, "scripts", "kafka", "log4j.properties"))
	if err != nil {
		t.Fatalf("testservers: broker log config: %v", err)
	}
	k := &Kafka{t: t, java: java, libs: libs}
	t.Cleanup(k.Stop)
	var lastErr error
	for range 3 { // a port picked free can be taken before the broker binds it
		k.dir = t.TempDir()
		if lastErr = k.format(tmpl, log4j); lastErr != nil {
			break
		}
		if lastErr = k.start(); lastErr == nil {
			return k
		}
	}
	t.Fatalf("testservers: %v", lastErr)
	return nil
}

// Stop stops the broker (SIGTERM, so it shuts down cleanly; SIGKILL after 20 s)
// and returns once the process has exited. Topics and messages stay on disk
// for Start. Idempotent.
func (k *Kafka) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.p != nil {
		k.p.stop()
		k.p = nil
	}
}

// Kill kills the broker with SIGKILL, as a crash would, and returns once the
// process has exited; Start recovers it on the same data. Idempotent.
func (k *Kafka) Kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.p != nil {
		k.p.kill()
		k.p = nil
	}
}

// Start restarts a stopped broker with the same data directory and port and
// returns once it answers metadata requests again. A no-op while running.
func (k *Kafka) Start() {
	k.t.Helper()
	if err := k.start(); err != nil {
		k.t.Fatalf("testservers: %v", err)
	}
}

// kafkaLibs finds the broker jars: $KAFKA_LIBS, else .services/kafka-libs
// under the repository root.
func kafkaLibs() (string, error) {
	dir := os.Getenv("KAFKA_LIBS")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".services", "kafka-libs")
	}
	jars, _ := filepath.Glob(filepath.Join(dir, "kafka_2.13-*.jar"))
	if len(jars) == 0 {
		return "", fmt.Errorf("kafka broker jars not found in %s", dir)
	}
	return dir, nil
}

// format writes the broker's config on fresh ports and formats its storage.
func (k *Kafka) format(tmpl, log4j []byte) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	k.port, k.Brokers = ports[0], loopback(ports[0])
	props := strings.NewReplacer(
		"@PORT@", strconv.Itoa(ports[0]),
		"@CPORT@", strconv.Itoa(ports[1]),
		"@LOGDIR@", filepath.Join(k.dir, "data"),
	).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(k.dir, "server.properties"), []byte(props), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(k.dir, "log4j.properties"), log4j, 0o600); err != nil {
		return err
	}
	id, err := clusterID()
	if err != nil {
		return err
	}
	// StorageTool is a short-lived JVM: a fast-starting configuration.
	cmd := exec.Command(k.java, "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-Xmx256m",
		"-Dlog4j.configuration=file:"+filepath.Join(k.dir, "log4j.properties"),
		"-cp", filepath.Join(k.libs, "*"),
		"kafka.tools.StorageTool", "format", "-t", id, "-c", filepath.Join(k.dir, "server.properties"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kafka storage format: %v\n%s", err, out)
	}
	return nil
}

// clusterID returns a random Kafka cluster id in the form StorageTool
// random-uuid prints (org.apache.kafka.common.Uuid: 16 random bytes, URL-safe
// base64 without padding, never starting with '-'), without a JVM start.
func clusterID() (string, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		s := base64.RawURLEncoding.EncodeToString(b[:])
		if s[0] != '-' {
			return s, nil
		}
	}
}

func (k *Kafka) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.p != nil {
		return nil
	}
	p, err := spawn("kafka", filepath.Join(k.dir, "kafka.log"), k.java,
		"-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
		"-Dlog4j.configuration=file:"+filepath.Join(k.dir, "log4j.properties"),
		"-cp", filepath.Join(k.libs, "*"),
		"kafka.Kafka", filepath.Join(k.dir, "server.properties"))
	if err != nil {
		return err
	}
	if err := p.waitReady(90*time.Second, func() error { return kafkaReady(k.Brokers) }); err != nil {
		p.stop()
		return err
	}
	k.p = p
	return nil
}

// kafkaReady succeeds when the broker answers a metadata request that lists
// at least one broker (it has registered with its controller and accepts
// produce requests), and every partition of every existing topic has a leader
// that answers a ListOffsets request — after a restart the partitions come
// back a moment after the broker does.
func kafkaReady(addr string) error {
	c, err := dial(addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	brokers, err := c.Brokers()
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		return errors.New("metadata lists no broker yet")
	}
	parts, err := c.ReadPartitions()
	if err != nil {
		return err
	}
	for _, p := range parts {
		if p.Leader.Host == "" || p.Leader.ID < 0 {
			return fmt.Errorf("partition %s/%d has no leader", p.Topic, p.ID)
		}
		if err := partitionServes(addr, p.Topic, p.ID); err != nil {
			return fmt.Errorf("partition %s/%d: %w", p.Topic, p.ID, err)
		}
	}
	return nil
}

// partitionServes asks the partition's leader for its offsets.
func partitionServes(addr, topic string, partition int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := kafka.DialLeader(ctx, "tcp", addr, topic, partition)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _, err = c.ReadOffsets()
	return err
}
