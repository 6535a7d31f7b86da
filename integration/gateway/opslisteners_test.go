package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
)

// TestOpsListenersCloseIdleConnections: a client of the health or the admin
// listener that sends one request and then keeps its connection idle is
// disconnected after the idle timeout; such connections used to be held
// for ever, each with its file descriptor, which the acquirer listener
// needs too.
func TestOpsListenersCloseIdleConnections(t *testing.T) {
	defer gateway.SetOpsIdleTimeout(200 * time.Millisecond)()
	g := gatewaytest.Start(t, nil)
	tests := []struct {
		name, addr, path string
	}{
		{"health", g.HTTPAddr(), "/healthz"},
		{"admin", g.AdminAddr(), "/admin/keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: pingate\r\n\r\n", tt.path); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(nc)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("GET %s: %v", tt.path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", tt.path, resp.StatusCode)
			}
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := br.ReadByte(); err != io.EOF {
				if os.IsTimeout(err) {
					err = fmt.Errorf("still open after 5 s")
				}
				t.Errorf("idle keep-alive connection to the %s listener: read = %v, want it closed (EOF)", tt.name, err)
			}
		})
	}
}
