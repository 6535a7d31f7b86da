package loadgen

import (
	"context"
	"net"
	"time"
)

// The bare relay is the gateway's shape with nothing of the gateway in it:
// a moov-io/iso8583 server that unpacks each 0100 from its client, packs it
// again towards an echo issuer (ServeEcho) over a persistent connection of
// its own, unpacks the 0110 that comes back and packs it towards the client.
// Four codec operations and two TCP hops per round trip, as in the gateway;
// no routing, limits, PIN translation, journal or telemetry. Both hops speak
// the acquirer dialect (the same 0100/0110 as the single-hop baseline), so
// the relay's cost beside the echo's is the second hop alone.

// ServeRelay relays every connection of ln to the echo issuer at upstream
// until ctx ends. Each client connection gets its own upstream connection,
// dialled when the client connects (a client whose upstream cannot be
// reached is closed at once); requests go upstream in the order they arrive
// and answers come back in the order the echo gives them, so nothing needs
// matching. Many requests may be in flight on one connection.
func ServeRelay(ctx context.Context, ln net.Listener, upstream string) error {
	return serveEach(ctx, ln, func(c net.Conn) {
		d := net.Dialer{Timeout: 5 * time.Second}
		up, err := d.DialContext(ctx, "tcp", upstream)
		if err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			reframe(up, c, nil) // answers: issuer → client
			_ = c.Close()
		}()
		reframe(c, up, nil) // requests: client → issuer; ends when ctx closes c
		_ = up.Close()
		<-done
	})
}
