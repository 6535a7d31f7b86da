package loadgen

import (
	"math/rand/v2"
	"testing"

	"pingate/integration/internal/cputime"
	"pingate/integration/issuersim"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// BenchmarkRequest is the load tool's own work per PIN change without the
// TCP write and read: draw the new PIN, encipher both blocks (format 0 under
// the ATM zone key), build the 0100 from its template, unpack an answer of
// the same size. The gateway's side is not in it.
func BenchmarkRequest(b *testing.B) {
	key, err := devkeys.Key(devkeys.ATMZPK)
	if err != nil {
		b.Fatal(err)
	}
	r := &loadRun{policy: pinblock.DefaultPINPolicy(), atmKey: key,
		cfg: Params{Pop: issuersim.Population{Seed: 1, BINs: DevBINs, PerBIN: 1000}}}
	if r.brKey, err = devkeys.Key(devkeys.BranchZPK); err != nil {
		b.Fatal(err)
	}
	if r.sm4Key, err = devkeys.Key(devkeys.SM4ATMZPK); err != nil {
		b.Fatal(err)
	}
	if err := r.templates(); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	w := &workerState{}
	const pan = "6228481200000017"
	build := func(cur string) {
		o := Op{Acquirer: ATMAcquirer, Terminal: "LT000001", Proc: iso8583.ProcPINChange, PAN: pan, Format: pinblock.Format0,
			OldPIN: cur, NewPIN: r.newPIN(rng, pan, cur)}
		if _, err := r.request(w, o, kindChange, key); err != nil {
			b.Fatal(err)
		}
	}
	build("4826")
	f, err := iso8583.Unpack(iso8583.AcquirerSpec, w.frame)
	if err != nil {
		b.Fatal(err)
	}
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
