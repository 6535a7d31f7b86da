package gateway

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: every
// goroutine a gateway starts must end in Shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pebble starts one at init when built with invariants, and glog
		// (pulled in by a dependency) its flush daemon; neither is ours.
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/internal/invariants.init.0.func1"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}
