package payshield_test

import (
	"context"
	"testing"

	"pingate/integration/payshield"
	"pingate/integration/payshield/hsmsim"
	"pingate/pinblock"
)

// BenchmarkPair is a PIN change's two translations on a prepared route
// (ISO 0 → ISO 3), callers in parallel: the payShield module against the
// in-process simulator over loopback TCP (Pair/payshield-sim), beside the
// software module doing the same work in process (Pair/software, the
// baseline). The simulator does the same cryptography as the software
// module, so the ratio is what the protocol, the pipelining and the pool
// cost.
func BenchmarkPair(b *testing.B) {
	ring := pinblock.NewKeyring(0)
	for _, id := range []string{"acq", "iss"} {
		k, err := pinblock.ParseHexKey(id, pinblock.UsageZPK, pinblock.TDES, 1, zpkHex)
		if err != nil {
			b.Fatal(err)
		}
		if err := ring.Add(k); err != nil {
			b.Fatal(err)
		}
	}
	soft := pinblock.NewSoftwareModule(ring, pinblock.DefaultPINPolicy(), nil)
	route := pinblock.Route{From: pinblock.KeyRef{ID: "acq"}, FromFormat: pinblock.Format0, To: pinblock.KeyRef{ID: "iss"}, ToFormat: pinblock.Format3}

	srv, addr := benchSim(b)
	c, err := payshield.New(payshield.Config{Hosts: []string{addr}, Connections: 4, HealthInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	hsm := payshield.NewModule(c, payshield.NewKeys(0))
	raw := mustHexB(zpkHex)
	for _, id := range []string{"acq", "iss"} {
		tok, err := srv.EncipherUnderLMK("001", raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := hsm.Keys().Add(payshield.Key{ID: id, Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Token: tok}, false); err != nil {
			b.Fatal(err)
		}
	}
	key, _ := pinblock.ParseHexKey("acq", pinblock.UsageZPK, pinblock.TDES, 1, zpkHex)
	oldP, _ := pinblock.NewSecretPIN("1234")
	newP, _ := pinblock.NewSecretPIN("739105")
	oldB, _ := pinblock.Encipher(pinblock.Format0, oldP, pan, key)
	newB, _ := pinblock.Encipher(pinblock.Format0, newP, pan, key)

	for _, mod := range []struct {
		name string
		m    pinblock.SecurityModule
	}{{"software", soft}, {"payshield-sim", hsm}} {
		tr, err := mod.m.Prepare(context.Background(), route)
		if err != nil {
			b.Fatal(err)
		}
		// Correct once before timing.
		_, n, err := tr.TranslatePair(context.Background(), nil, pinblock.PairBlocks{PAN: pan, Old: oldB, New: newB})
		if err != nil {
			b.Fatal(err)
		}
		if p, err := pinblock.Decipher(pinblock.Format3, n, pan, key); err != nil || p.Reveal() != "739105" {
			b.Fatalf("%s: the translated new block is wrong", mod.name)
		}
		b.Run(mod.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, pinblock.BufferSize)
				for pb.Next() {
					if _, _, err := tr.TranslatePair(context.Background(), buf, pinblock.PairBlocks{PAN: pan, Old: oldB, New: newB}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func benchSim(b *testing.B) (*hsmsim.Server, string) {
	b.Helper()
	ln, err := netListen()
	if err != nil {
		b.Fatal(err)
	}
	s := hsmsim.New(hsmsim.Config{HeaderLen: 4})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	b.Cleanup(func() { s.Close(); <-done })
	return s, ln.Addr().String()
}
