package iso8583

import (
	"testing"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/specs"
)

// Benchmarks of our PIN change message beside a baseline: moov's own
// specs.Spec87ASCII packing and unpacking a plain message of about the same
// size through the untyped API, as moov's benchmarks_test.go measures it.
// Read the results as ratios to the baseline.

// baselineMessage is a 0100 of Spec87ASCII with the elements of our change
// request that Spec87ASCII defines; its DE 52 takes the block as 16 hex
// characters.
func baselineMessage(b *testing.B) *moov.Message {
	m := moov.NewMessage(specs.Spec87ASCII)
	m.MTI("0100")
	for id, v := range map[int]string{
		2: "4012345678909", 3: "700000", 7: "0612143015", 11: "000001", 12: "163015", 13: "0612",
		32: "100001", 37: "416314000001", 41: "ATM00042", 42: "BANK BRANCH 017", 53: "0001000000000000",
		52: "1B9C1845EB993A7A",
	} {
		if err := m.Field(id, v); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

func BenchmarkPack(b *testing.B) {
	b.Run("baseline-moov-spec87ascii", func(b *testing.B) {
		m := baselineMessage(b)
		packed, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(packed)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Pack(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, d := range dialects() {
		b.Run(d.name+"-change", func(b *testing.B) {
			_, f := goldenByName(b, "0100-change-format0")
			packed, err := Pack(d.spec, f)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(packed)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Pack(d.spec, f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUnpack(b *testing.B) {
	b.Run("baseline-moov-spec87ascii", func(b *testing.B) {
		packed, err := baselineMessage(b).Pack()
		if err != nil {
			b.Fatal(err)
		}
		if err := moov.NewMessage(specs.Spec87ASCII).Unpack(packed); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(packed)))
		b.ReportAllocs()
		for b.Loop() {
			m := moov.NewMessage(specs.Spec87ASCII)
			if err := m.Unpack(packed); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, d := range dialects() {
		g, _ := goldenByName(b, "0100-change-format0")
		frame, _, _ := g.wire(b, d.acquirer)
		b.Run(d.name+"-change-message", func(b *testing.B) {
			if _, err := UnpackMessage(d.spec, frame); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := UnpackMessage(d.spec, frame); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(d.name+"-change-fields", func(b *testing.B) {
			if _, err := Unpack(d.spec, frame); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Unpack(d.spec, frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
