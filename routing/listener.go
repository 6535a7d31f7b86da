package routing

import (
	"context"

	"pingate/iso8583"
)

var _ iso8583.Handler = (*AcquirerFront)(nil)

// ServeFrame makes AcquirerFront the handler of the acquirer listener: each
// connection gets a Session, each frame an answer on the same connection.
// A PIN operation or a reversal advice it has read is carried to its end
// when the connection is torn down (its ctx canceled), within the flow's
// request timeout: its outcome is recorded though its answer cannot be
// written.
func (a *AcquirerFront) ServeFrame(ctx context.Context, c *iso8583.ServerConn, frame []byte) {
	s, _ := c.Value().(*Session)
	if s == nil {
		// Frames of one connection run concurrently: create the session once.
		a.sessions.Lock()
		if s, _ = c.Value().(*Session); s == nil {
			s = &Session{Remote: c.RemoteAddr().String()}
			c.SetValue(s)
		}
		a.sessions.Unlock()
	}
	resp, closeAfter := a.HandleFrame(ctx, s, frame)
	if resp != nil {
		_ = c.WriteFrame(resp) // a failed write closes the connection itself
	}
	if closeAfter {
		_ = c.Close()
	}
}
