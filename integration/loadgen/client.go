package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// Client speaks the acquirer dialect to a gateway, as an ATM switch or a
// branch front end would: the demo and the load tool use it. Answers are
// matched by STAN and transmission time; many requests may be in flight.
type Client struct {
	conn    *iso8583.Conn
	mu      sync.Mutex
	pending map[matchKey]chan *iso8583.Fields
}

// stans numbers the requests of every Client of this process: a STAN (with
// DE 7, the terminal and the acquirer) identifies a request to the gateway,
// which answers a repeat from its duplicate window without sending it on.
// One counter per connection would give two connections' requests the same
// STAN in the same second, and one terminal drawn by both would make the
// second a "retransmission" of the first. It starts at a random value so
// that two load processes rarely meet either.
var stans atomic.Uint32

func init() { stans.Store(rand.Uint32N(999999)) }

// matchKey is how an answer finds its request: STAN and DE 7.
type matchKey struct{ stan, transmission string }

func Dial(ctx context.Context, addr string) (*Client, error) {
	c := &Client{pending: map[matchKey]chan *iso8583.Fields{}}
	// GatherWrites: the requests of workers woken by one segment of
	// answers go out in one write (the tool runs on one P).
	conn, err := iso8583.Dial(ctx, addr, iso8583.ClientConfig{OnFrame: c.onFrame, GatherWrites: true})
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return c, nil
}

func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) onFrame(frame []byte) {
	f, err := iso8583.Unpack(iso8583.AcquirerSpec, frame)
	if err != nil {
		return
	}
	c.mu.Lock()
	ch, ok := c.pending[matchKey{f.STAN, f.TransmissionTime}]
	c.mu.Unlock()
	if ok {
		ch <- f
	}
}

var ErrNoAnswer = errors.New("no answer from the gateway")

// Do sends f (STAN and times are set here) and waits for its answer.
func (c *Client) Do(ctx context.Context, f *iso8583.Fields) (*iso8583.Fields, error) {
	f.STAN, f.TransmissionTime = nextSTAN(), transmissionTime(time.Now())
	if f.MTI == iso8583.MTIAuthRequest {
		f.LocalTime, f.LocalDate = f.TransmissionTime[4:], f.TransmissionTime[:4]
	}
	frame, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		return nil, err
	}
	return c.roundTrip(ctx, matchKey{f.STAN, f.TransmissionTime}, frame, nil)
}

// nextSTAN is the STAN of this process's next request (stans).
func nextSTAN() string { return zeroPad(uint64(stans.Add(1)%999999+1), 6) }

// errExpired: the answer did not come before roundTrip's expired fired.
var errExpired = fmt.Errorf("%w: timed out", ErrNoAnswer)

// roundTrip sends frame, a packed request with the STAN and DE 7 of key,
// and waits for its answer until ctx ends or expired (nil: never) fires
// (errExpired): the load tool's workers keep one timer each rather than a
// context.WithTimeout per request.
func (c *Client) roundTrip(ctx context.Context, key matchKey, frame []byte, expired <-chan time.Time) (*iso8583.Fields, error) {
	ch := make(chan *iso8583.Fields, 1)
	c.mu.Lock()
	c.pending[key] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, key)
		c.mu.Unlock()
	}()
	if err := c.conn.Send(frame); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-expired:
		return nil, errExpired
	case <-ctx.Done():
		return nil, ErrNoAnswer
	case <-c.conn.Done():
		return nil, ErrNoAnswer
	}
}

// Op describes one PIN operation as a terminal builds it.
type Op struct {
	Acquirer, Terminal string
	Proc               string // processing code: iso8583.ProcPINChange, ProcPINReset, ProcPINUnblock
	PAN                string
	OldPIN, NewPIN     string // clear test PINs, enciphered by Fields
	Format             pinblock.Format
	KeyID              string       // the development key the PINs are enciphered under
	Key                pinblock.Key // when valid, used instead of the development key KeyID (a key changed online)
	Teller, IDRef      string       // branch: the teller and identity check of field 48
}

// Fields enciphers the PINs under the terminal's zone key and builds the 0100.
func (op Op) Fields() (*iso8583.Fields, error) {
	f := &iso8583.Fields{
		MTI: iso8583.MTIAuthRequest, PAN: op.PAN, ProcessingCode: op.Proc, AcquirerID: op.Acquirer,
		TerminalID: op.Terminal, CardAcceptorID: "PINGATE DEMO   ", RRN: "000000000001",
	}
	if op.Teller != "" {
		f.Additional = &iso8583.AdditionalData{TellerID: op.Teller, IdentityRef: op.IDRef}
	}
	if op.OldPIN == "" && op.NewPIN == "" {
		return f, nil
	}
	key := op.Key
	if !key.Valid() {
		var err error
		if key, err = devkeys.Key(op.KeyID); err != nil {
			return nil, err
		}
	}
	var err error
	enc := func(pin string) ([]byte, error) {
		p, err := pinblock.NewSecretPIN(pin)
		if err != nil {
			return nil, err
		}
		defer p.Zeroize()
		return pinblock.Encipher(op.Format, p, op.PAN, key)
	}
	if op.OldPIN != "" {
		if f.PINBlock, err = enc(op.OldPIN); err != nil {
			return nil, err
		}
	}
	if op.NewPIN != "" {
		if f.NewPINBlock, err = enc(op.NewPIN); err != nil {
			return nil, err
		}
	}
	f.SecurityControl = iso8583.SecurityControl{Format: op.Format.Number(), KeyIndex: 1}.String()
	return f, nil
}

// Send builds op's 0100 (Op.Fields), sends it and returns the answer's
// response code; ctx bounds the wait for the answer (ErrNoAnswer when it
// ends first).
func (c *Client) Send(ctx context.Context, op Op) (string, error) {
	f, err := op.Fields()
	if err != nil {
		return "", err
	}
	ans, err := c.Do(ctx, f)
	if err != nil {
		return "", err
	}
	return ans.ResponseCode, nil
}

// zeroPad is n in decimal, left-padded with zeros to width digits (the
// STAN, terminal ids, PINs of the load): fmt.Sprintf("%0*d", width, n)
// without fmt's cost on every request.
func zeroPad(n uint64, width int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 && len(b)-i >= width {
			break
		}
	}
	return string(b[i:])
}
