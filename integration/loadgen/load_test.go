package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		give string
		want Mix
	}{
		{"change=80,reset=10,unblock=10", Mix{80, 10, 10}},
		{"change=1", Mix{1, 0, 0}},
		{" unblock=3 , change=0", Mix{0, 0, 3}},
	}
	for _, tt := range tests {
		got, err := ParseMix(tt.give)
		if err != nil || got != tt.want {
			t.Errorf("ParseMix(%q) = %v, %v; want %v", tt.give, got, err, tt.want)
		}
	}
	for _, give := range []string{"", "change", "change=-1", "change=x", "swap=1", "change=0", "change=1,change=2"} {
		if _, err := ParseMix(give); err == nil {
			t.Errorf("ParseMix(%q) = nil error, want an error", give)
		}
	}
}

func TestOpMixPick(t *testing.T) {
	m := Mix{2, 0, 1}
	var got []int
	for r := range m.sum() {
		got = append(got, m.pick(r))
	}
	if want := []int{opChange, opChange, opUnblock}; !slices.Equal(got, want) {
		t.Errorf("pick over 0..%d = %v, want %v", m.sum()-1, got, want)
	}
}

func TestParseConcurrency(t *testing.T) {
	tests := []struct {
		give            string
		conns, inFlight int
	}{
		{"1", 1, 1},
		{"3", 3, 1},
		{"32", 4, 8},
		{"10", 4, 3},
		{"2x16", 2, 16},
	}
	for _, tt := range tests {
		c, i, err := ParseConcurrency(tt.give)
		if err != nil || c != tt.conns || i != tt.inFlight {
			t.Errorf("ParseConcurrency(%q) = %d, %d, %v; want %d, %d", tt.give, c, i, err, tt.conns, tt.inFlight)
		}
	}
	for _, give := range []string{"", "0", "-1", "x", "2x", "0x4", "ax2"} {
		if _, _, err := ParseConcurrency(give); err == nil {
			t.Errorf("ParseConcurrency(%q) = nil error, want an error", give)
		}
	}
}

// TestLatencyHistQuantiles compares the histogram with exact quantiles of
// the same samples: within the bucket resolution (1 µs, then 1/64 of a
// power of two).
func TestLatencyHistQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	var h, a, b latencyHist
	var all []time.Duration
	for i := range 20000 {
		// log-uniform from 5 µs to 5 s
		d := time.Duration(math.Exp(math.Log(5e3)+rng.Float64()*(math.Log(5e9)-math.Log(5e3)))) / time.Microsecond * time.Microsecond
		all = append(all, d)
		h.add(d)
		if i%2 == 0 {
			a.add(d)
		} else {
			b.add(d)
		}
	}
	a.merge(&b)
	slices.Sort(all)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		want := all[int(math.Ceil(q*float64(len(all))))-1]
		for name, hist := range map[string]*latencyHist{"single": &h, "merged": &a} {
			got := hist.quantile(q)
			tol := max(time.Duration(float64(want)/64)+time.Microsecond, time.Microsecond)
			if diff := got - want; diff > tol || diff < -tol {
				t.Errorf("%s quantile(%v) = %v, want %v ± %v", name, q, got, want, tol)
			}
		}
	}
	if h.max != all[len(all)-1] || h.n != int64(len(all)) {
		t.Errorf("max, n = %v, %d; want %v, %d", h.max, h.n, all[len(all)-1], len(all))
	}
	var empty latencyHist
	if got := empty.quantile(0.99); got != 0 {
		t.Errorf("empty quantile = %v, want 0", got)
	}
}

// TestStartsBy: an open loop at 200/s has its first request due at once,
// the second at 5 ms, and 200 due within the first second (the last at
// 995 ms). Counting whole intervals only sent each request one interval
// after its intended start, adding 1/rate to every latency measured.
func TestStartsBy(t *testing.T) {
	for _, c := range []struct {
		elapsed time.Duration
		want    int64
	}{
		{-time.Millisecond, 0},
		{0, 1},
		{4900 * time.Microsecond, 1},
		{5100 * time.Microsecond, 2},
		{995100 * time.Microsecond, 200},
		{1000100 * time.Microsecond, 201},
	} {
		if got := startsBy(c.elapsed, 200); got != c.want {
			t.Errorf("startsBy(%v, 200/s) = %d, want %d", c.elapsed, got, c.want)
		}
	}
}
