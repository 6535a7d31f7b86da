package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"pingate/iso8583"
	"pingate/pinblock"
)

// atmClient speaks the acquirer dialect to a gateway, as an ATM switch or a
// branch front end would: the demo and the load tool use it. Answers are
// matched by STAN and transmission time; many requests may be in flight.
type atmClient struct {
	conn    *iso8583.Conn
	pending sync.Map // STAN|DE7 → chan *iso8583.Fields
	stan    atomic.Uint32
}

func dialATM(ctx context.Context, addr string) (*atmClient, error) {
	c := &atmClient{}
	conn, err := iso8583.Dial(ctx, addr, iso8583.ClientConfig{OnFrame: c.onFrame})
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return c, nil
}

func (c *atmClient) Close() error { return c.conn.Close() }

func (c *atmClient) onFrame(frame []byte) {
	f, err := iso8583.Unpack(iso8583.AcquirerSpec, frame)
	if err != nil {
		return
	}
	if ch, ok := c.pending.Load(f.STAN + "|" + f.TransmissionTime); ok {
		ch.(chan *iso8583.Fields) <- f
	}
}

var errNoAnswer = errors.New("no answer from the gateway")

// Do sends f (STAN and times are set here) and waits for its answer.
func (c *atmClient) Do(ctx context.Context, f *iso8583.Fields) (*iso8583.Fields, error) {
	now := time.Now().UTC()
	f.STAN = fmt.Sprintf("%06d", c.stan.Add(1)%999999+1)
	f.TransmissionTime = now.Format("0102150405")
	if f.MTI == iso8583.MTIAuthRequest {
		f.LocalTime, f.LocalDate = now.Format("150405"), now.Format("0102")
	}
	frame, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		return nil, err
	}
	key := f.STAN + "|" + f.TransmissionTime
	ch := make(chan *iso8583.Fields, 1)
	c.pending.Store(key, ch)
	defer c.pending.Delete(key)
	if err := c.conn.Send(frame); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, errNoAnswer
	case <-c.conn.Done():
		return nil, errNoAnswer
	}
}

// pinOp describes one PIN operation as a terminal builds it.
type pinOp struct {
	acquirer, terminal string
	proc               string
	pan                string
	oldPIN, newPIN     string
	format             pinblock.Format
	keyID              string
	key                pinblock.Key // when valid, used instead of the development key keyID (a key changed online)
	teller, idRef      string
}

// fields enciphers the PINs under the terminal's zone key and builds the 0100.
func (op pinOp) fields() (*iso8583.Fields, error) {
	f := &iso8583.Fields{
		MTI: iso8583.MTIAuthRequest, PAN: op.pan, ProcessingCode: op.proc, AcquirerID: op.acquirer,
		TerminalID: op.terminal, CardAcceptorID: "PINGATE DEMO   ", RRN: "000000000001",
	}
	if op.teller != "" {
		f.Additional = &iso8583.AdditionalData{TellerID: op.teller, IdentityRef: op.idRef}
	}
	if op.oldPIN == "" && op.newPIN == "" {
		return f, nil
	}
	key := op.key
	if !key.Valid() {
		var err error
		if key, err = pinblock.DevelopmentKey(op.keyID); err != nil {
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
		return pinblock.Encipher(op.format, p, op.pan, key)
	}
	if op.oldPIN != "" {
		if f.PINBlock, err = enc(op.oldPIN); err != nil {
			return nil, err
		}
	}
	if op.newPIN != "" {
		if f.NewPINBlock, err = enc(op.newPIN); err != nil {
			return nil, err
		}
	}
	f.SecurityControl = iso8583.SecurityControl{Format: op.format.Number(), KeyIndex: 1}.String()
	return f, nil
}
