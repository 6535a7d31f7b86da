package loadgen

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"pingate/integration/issuersim"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// TestRequestTemplateMatchesPack: every kind of load request built from its
// template is, byte for byte, the frame iso8583.Pack makes of the same
// request (loadFields with the same STAN, times and PIN blocks), for random
// cards, terminals, PINs and times.
func TestRequestTemplateMatchesPack(t *testing.T) {
	r := &loadRun{cfg: Params{Pop: issuersim.Population{Seed: 1, BINs: DevBINs, PerBIN: 100000}, Offset: 17}}
	for _, k := range []struct {
		id  string
		key *pinblock.Key
	}{{devkeys.ATMZPK, &r.atmKey}, {devkeys.BranchZPK, &r.brKey}, {devkeys.SM4ATMZPK, &r.sm4Key}} {
		var err error
		if *k.key, err = devkeys.Key(k.id); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.templates(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	w := &workerState{}
	pin := func() string { return zeroPad(uint64(rng.IntN(10000)), 4) }
	for i := range 200 {
		kind := i % numKinds
		o := Op{PAN: r.cfg.Pop.Card(rng.IntN(r.cfg.Pop.Size())).PAN, Terminal: "LT" + zeroPad(uint64(rng.IntN(1000000)), 6)}
		key := r.brKey
		switch kind {
		case kindChange:
			o.Acquirer, o.Proc, o.Format, o.OldPIN, o.NewPIN, key = ATMAcquirer, iso8583.ProcPINChange, pinblock.Format0, pin(), pin(), r.atmKey
		case kindChangeSM4:
			o.Acquirer, o.Proc, o.Format, o.OldPIN, o.NewPIN, key = SM4Acquirer, iso8583.ProcPINChange, pinblock.Format0SM4, pin(), pin(), r.sm4Key
		case kindReset:
			o.Acquirer, o.Proc, o.Format, o.NewPIN, o.Teller, o.IDRef = BranchAcquirer, iso8583.ProcPINReset, pinblock.Format4, pin(), loadTeller, loadIDRef
		case kindUnblock:
			o.Acquirer, o.Proc, o.Format, o.Teller, o.IDRef = BranchAcquirer, iso8583.ProcPINUnblock, pinblock.Format4, loadTeller, loadIDRef
		}
		mk, err := r.request(w, o, kind, key)
		if err != nil {
			t.Fatalf("request %d (kind %d): %v", i, kind, err)
		}
		// The PIN blocks of format 0 are deterministic; format 4's carry
		// random fill, so the reference takes the template's own blocks
		// from what it built (checked to decipher to the PINs).
		got, err := iso8583.Unpack(iso8583.AcquirerSpec, w.frame)
		if err != nil {
			t.Fatalf("request %d (kind %d) does not unpack: %v", i, kind, err)
		}
		for _, b := range []struct {
			block []byte
			pin   string
		}{{got.PINBlock, o.OldPIN}, {got.NewPINBlock, o.NewPIN}} {
			if b.pin == "" {
				continue
			}
			p, err := pinblock.Decipher(o.Format, b.block, o.PAN, key)
			if err != nil || p.Reveal() != b.pin {
				t.Fatalf("request %d (kind %d): a PIN block does not decipher to its PIN", i, kind)
			}
			p.Zeroize()
		}
		ref := o
		ref.OldPIN, ref.NewPIN = "", ""
		f, err := loadFields(ref, key)
		if err != nil {
			t.Fatal(err)
		}
		f.PINBlock, f.NewPINBlock, f.SecurityControl = got.PINBlock, got.NewPINBlock, got.SecurityControl
		f.STAN, f.TransmissionTime, f.LocalTime, f.LocalDate = mk.stan, mk.transmission, mk.transmission[4:], mk.transmission[:4]
		want, err := iso8583.Pack(iso8583.AcquirerSpec, f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.frame, want) {
			t.Fatalf("request %d (kind %d) built from its template differs from Pack's frame", i, kind)
		}
		if got.SecurityControl == "" && (o.OldPIN != "" || o.NewPIN != "") {
			t.Fatalf("request %d (kind %d) has PIN blocks but no DE 53", i, kind)
		}
	}
	if _, err := r.tmpl[kindChange].build(nil, "62284812000000171", "000001", "0101000000", "LT000001", make([]byte, 8), make([]byte, 8)); !errors.Is(err, errTemplate) {
		t.Errorf("build with a 17-digit PAN in a 16-digit template = %v, want errTemplate", err)
	}
	if _, err := r.tmpl[kindUnblock].build(nil, r.cfg.Pop.Card(0).PAN, "000001", "0101000000", "LB000001", make([]byte, 8), nil); !errors.Is(err, errTemplate) {
		t.Errorf("build of an unblock with a PIN block = %v, want errTemplate", err)
	}
}

func TestTransmissionTime(t *testing.T) {
	for _, give := range []time.Time{
		time.Date(2026, 12, 3, 9, 5, 7, 0, time.UTC),
		time.Date(2027, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)),
		time.Date(2026, 10, 31, 23, 59, 59, 999999999, time.UTC),
	} {
		if got, want := transmissionTime(give), give.UTC().Format("0102150405"); got != want {
			t.Errorf("transmissionTime(%v) = %s, want %s", give, got, want)
		}
	}
}
