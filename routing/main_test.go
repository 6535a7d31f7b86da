package routing

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// issuer links start goroutines per link and a reversal worker, and
// Shutdown must stop and wait for every one.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
