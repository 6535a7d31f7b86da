package redisfailover

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"pingate/integration/testservers"
)

var (
	ha    *testservers.RedisHA
	haErr error
)

// quietLogger drops go-redis's pool messages ("failed to dial"), which a
// killed master provokes on purpose.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	flag.Parse()
	redis.SetLogger(quietLogger{})
	dir, err := os.MkdirTemp("", "pingate-redis-ha-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if testing.Short() {
		haErr = errors.New("-short: no Redis Cluster or Sentinel")
	} else {
		t0 := time.Now()
		ha, haErr = testservers.StartRedisHA(dir)
		if haErr == nil {
			fmt.Printf("redis cluster and sentinel set serving in %.1fs\n", time.Since(t0).Seconds())
		}
	}
	code := m.Run()
	if ha != nil {
		ha.Stop()
	}
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/internal/invariants.init.0.func1"),
			goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needHA returns the set-ups, or skips the test with the reason they did not
// start (redis-server or redis-cli missing) — a failure when CI is "true",
// and a failure whenever they were there to start but did not.
func needHA(t *testing.T) *testservers.RedisHA {
	t.Helper()
	switch {
	case ha != nil:
		return ha
	case testing.Short():
		t.Skip("kills Redis masters under load")
	case errors.Is(haErr, testservers.ErrRedisHAUnavailable) && os.Getenv("CI") != "true":
		t.Skipf("%v", haErr)
	}
	t.Fatalf("redis cluster and sentinel: %v", haErr)
	return nil
}
