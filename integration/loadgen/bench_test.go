package loadgen

import (
	"math/rand/v2"
	"testing"

	"pingate/integration/internal/cputime"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// BenchmarkRequest is the load tool's own work per PIN change without the
// TCP write and read: draw the new PIN, encipher both blocks (format 0 under
// the ATM zone key), build and pack the 0100, unpack an answer of the same
// size. The gateway's side is not in it.
func BenchmarkRequest(b *testing.B) {
	key, err := devkeys.Key(devkeys.ATMZPK)
	if err != nil {
		b.Fatal(err)
	}
	r := &loadRun{policy: pinblock.DefaultPINPolicy()}
	rng := rand.New(rand.NewPCG(1, 2))
	const pan = "6228481200000017"
	build := func(cur string) (*iso8583.Fields, []byte) {
		o := Op{Acquirer: ATMAcquirer, Terminal: "LT000001", Proc: iso8583.ProcPINChange, PAN: pan, Format: pinblock.Format0,
			OldPIN: cur, NewPIN: r.newPIN(rng, pan, cur)}
		f, err := loadFields(o, key)
		if err != nil {
			b.Fatal(err)
		}
		f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = "000001", "1203120000", "120000", "1203"
		frame, err := iso8583.Pack(iso8583.AcquirerSpec, f)
		if err != nil {
			b.Fatal(err)
		}
		return f, frame
	}
	f, _ := build("4826")
	f.MTI, f.ResponseCode, f.PINBlock, f.NewPINBlock, f.SecurityControl = iso8583.MTIAuthResponse, iso8583.RCApproved, nil, nil, ""
	answer, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		b.Fatal(err)
	}
	if a, err := iso8583.Unpack(iso8583.AcquirerSpec, answer); err != nil || a.ResponseCode != iso8583.RCApproved {
		b.Fatalf("answer unpacks to %v, %v", a, err)
	}
	b.ReportAllocs()
	defer cputime.Measure(b)()
	for b.Loop() {
		build("4826")
		if _, err := iso8583.Unpack(iso8583.AcquirerSpec, answer); err != nil {
			b.Fatal(err)
		}
	}
}
