package gateway

import "time"

// SetOpsIdleTimeout sets the idle timeout of the health and admin listeners
// of the gateways built until restore is called.
func SetOpsIdleTimeout(d time.Duration) (restore func()) {
	old := opsIdleTimeout
	opsIdleTimeout = d
	return func() { opsIdleTimeout = old }
}
