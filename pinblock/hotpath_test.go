package pinblock

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"
)

// TestFillSourceReadsAcrossChunks reads more than several chunks in uneven
// pieces: every read is filled completely, the buffer keeps no byte it has
// handed out, and the output is not a repeating pattern.
func TestFillSourceReadsAcrossChunks(t *testing.T) {
	s := newFillSource()
	var all []byte
	for _, n := range []int{1, 7, 8, 16, fillChunk - 3, fillChunk, 2*fillChunk + 5, 8} {
		p := make([]byte, n)
		got, err := s.Read(p)
		if err != nil || got != n {
			t.Fatalf("Read(%d bytes) = %d, %v; want %d, nil", n, got, err, n)
		}
		if !bytes.Equal(s.buf[:s.off], make([]byte, s.off)) {
			t.Fatalf("after Read(%d bytes) the %d handed-out bytes are still in the buffer", n, s.off)
		}
		all = append(all, p...)
	}
	// Then 64 KB more in the 8-byte words the translation path draws. No
	// 16-byte window may repeat, and no byte value may be missing: each is
	// expected ~264 times, so a missing one (chance about 256·e^-264) means
	// the source is broken, not unlucky. (The 2 KB of the reads above alone
	// would miss some byte value in about one run in 14.)
	for range 64 * 1024 / 8 {
		all = binary.BigEndian.AppendUint64(all, s.word())
	}
	seen := map[string]bool{}
	for i := 0; i+16 <= len(all); i += 16 {
		w := string(all[i : i+16])
		if seen[w] {
			t.Fatalf("16-byte fill window repeats at offset %d", i)
		}
		seen[w] = true
	}
	var count [256]int
	for _, c := range all {
		count[c]++
	}
	for v, c := range count {
		if c == 0 {
			t.Fatalf("byte value %#x never drawn in %d bytes", v, len(all))
		}
	}
}

// TestTranslateAllocations guards the hot path: a translation by key label
// allocates only its result (one slice, shared by both blocks of a pair), and
// one on a prepared route, given a buffer, nothing.
func TestTranslateAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	ring := NewKeyring(time.Hour)
	acqT := testKey(t, "acq-t", UsageZPK, TDES, 1, 16)
	issA := testKey(t, "iss-a", UsageZPK, AES, 1, 16)
	for _, k := range []Key{acqT, issA} {
		if err := ring.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	m := NewSoftwareModule(ring, DefaultPINPolicy(), nil)
	pan := "4111111111111111"
	oldB, err := Encipher(Format0, mustPIN(t, "8142"), pan, acqT)
	if err != nil {
		t.Fatal(err)
	}
	newB, err := Encipher(Format0, mustPIN(t, "5830"), pan, acqT)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tr := TranslateRequest{PAN: pan, Block: oldB, From: KeyRef{ID: "acq-t"}, FromFormat: Format0, To: KeyRef{ID: "iss-a"}, ToFormat: Format4}
	pr := PairRequest{PAN: pan, Old: oldB, New: newB, From: KeyRef{ID: "acq-t"}, FromFormat: Format0, To: KeyRef{ID: "iss-a"}, ToFormat: Format4, CheckNewPIN: true}
	prep, err := m.Prepare(ctx, Route{From: tr.From, FromFormat: tr.FromFormat, To: tr.To, ToFormat: tr.ToFormat})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, BufferSize)
	blocks := PairBlocks{PAN: pan, Old: oldB, New: newB, CheckNewPIN: true}
	tests := []struct {
		name string
		give func() error
		want float64
	}{
		{"Translate F0-F4", func() error { _, err := m.Translate(ctx, tr); return err }, 1},
		{"TranslatePair F0-F4", func() error { _, _, err := m.TranslatePair(ctx, pr); return err }, 1},
		{"prepared Translate F0-F4", func() error { _, err := prep.Translate(ctx, buf, pan, oldB); return err }, 0},
		{"prepared TranslatePair F0-F4", func() error { _, _, err := prep.TranslatePair(ctx, buf, blocks); return err }, 0},
	}
	for _, tt := range tests {
		if err := tt.give(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := testing.AllocsPerRun(200, func() { _ = tt.give() }); got > tt.want {
			t.Errorf("%s allocates %.1f times per call, want %.0f", tt.name, got, tt.want)
		}
	}
}
