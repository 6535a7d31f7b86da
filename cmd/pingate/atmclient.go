package main

import (
	"context"

	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
)

// The demo and this package's tests play ATMs and branch front ends with
// integration/loadgen's client; pinOp is loadgen.Op under the short field
// names they were written with.

type atmClient = loadgen.Client

func dialATM(ctx context.Context, addr string) (*atmClient, error) { return loadgen.Dial(ctx, addr) }

var errNoAnswer = loadgen.ErrNoAnswer

// pinOp describes one PIN operation as a terminal builds it (loadgen.Op).
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
	return loadgen.Op{Acquirer: op.acquirer, Terminal: op.terminal, Proc: op.proc, PAN: op.pan, OldPIN: op.oldPIN,
		NewPIN: op.newPIN, Format: op.format, KeyID: op.keyID, Key: op.key, Teller: op.teller, IDRef: op.idRef}.Fields()
}
