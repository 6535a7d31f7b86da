package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"pingate/integration/issuersim"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// The load tool plays an ATM network switch (acquirer 100001: PIN changes in
// format 0 under the development ATM zone key) and a branch front end
// (acquirer 200001: resets and unblocks in format 4 under the development
// branch key), as the embedded default configures them. It knows every card
// and its initial PIN from the issuer simulator's population (seed, BINs,
// cards per BIN) and follows each card's PIN as its own requests change it.
//
// Limits: the gateway's default limits (one terminal 1 request/s, burst 5;
// one acquirer 200 requests/s; one card 10 operations a day) are a person's
// pace, not a load test's. A load run is meant for a gateway configured for
// it (the config scripts/bench.sh writes raises the acquirer and card limits); the tool also
// spreads requests round-robin over --terminals terminal ids so that no
// terminal exceeds 1 request/s up to that many requests/s.

// Params is what one run does; flags fill it.
type Params struct {
	Target      string        // the gateway's acquirer listener (for RunBaseline: the echo server)
	Conns       int           // connections per acquirer
	InFlight    int           // requests in flight per connection
	Rate        float64       // open loop: requests started per second; 0: closed loop
	Duration    time.Duration // how long to measure, after the warm-up
	Warmup      time.Duration // traffic before measuring starts, not counted
	MaxRequests int64         // stop after this many measured requests; 0: no limit
	Timeout     time.Duration // a request not answered within this is an error
	Mix         Mix
	Pop         issuersim.Population // the issuer simulator's cards and their initial PINs
	Offset      int                  // first card of the population used
	Cards       int                  // cards used, from Offset
	Terminals   int                  // distinct terminal ids per acquirer, used round-robin
	Progress    time.Duration        // live progress interval
	Seed        uint64               // seed of the operation and card choice
	// SM4Share is the percentage of PIN changes the SM4 ATM network
	// (SM4Acquirer) sends, as SM4-0 blocks under dev-sm4-atm-zpk, on
	// connections of its own; the rest come from the TDES ATM network.
	SM4Share int
	// CPU are further processes (the gateway, the simulator, Redis…) whose
	// CPU per answered request the report gives beside the tool's own
	// (Report.CPU).
	CPU []WatchedProc
}

// Validate names the first problem with p for Run: the card window against
// the population, the rates and durations. It fills Cards (0: the rest of
// the population from Offset).
func (p *Params) Validate() error {
	if err := p.Pop.Validate(); err != nil {
		return err
	}
	switch {
	case p.Offset < 0 || p.Offset >= p.Pop.Size():
		return fmt.Errorf("card-offset %d outside the population of %d cards", p.Offset, p.Pop.Size())
	case p.Cards < 0:
		return fmt.Errorf("cards %d: must not be negative", p.Cards)
	case p.Cards == 0:
		p.Cards = p.Pop.Size() - p.Offset
	case p.Offset+p.Cards > p.Pop.Size():
		return fmt.Errorf("card-offset %d + cards %d exceed the population of %d cards", p.Offset, p.Cards, p.Pop.Size())
	}
	if p.Cards < p.Conns*p.InFlight*2 {
		return fmt.Errorf("%d cards for %d requests in flight: use at least twice as many cards", p.Cards, p.Conns*p.InFlight)
	}
	if err := p.ValidateTraffic(); err != nil {
		return err
	}
	switch {
	case p.Terminals < 1 || p.Terminals > 999999:
		return fmt.Errorf("terminals %d: want 1–999999", p.Terminals)
	case p.SM4Share < 0 || p.SM4Share > 100:
		return fmt.Errorf("sm4-share %d: want 0 to 100", p.SM4Share)
	}
	return nil
}

// ValidateTraffic checks what Run and RunBaseline share: concurrency, rate,
// duration, timeout, warm-up.
func (p *Params) ValidateTraffic() error {
	switch {
	case p.Conns < 1 || p.InFlight < 1:
		return fmt.Errorf("concurrency %dx%d: want positive", p.Conns, p.InFlight)
	case p.Rate < 0:
		return fmt.Errorf("rate %v: must not be negative", p.Rate)
	case p.Duration <= 0 && p.MaxRequests <= 0:
		return errors.New("give a positive duration or a request count")
	case p.Timeout <= 0:
		return fmt.Errorf("timeout %v: must be positive", p.Timeout)
	case p.Warmup < 0:
		return fmt.Errorf("warmup %v: must not be negative", p.Warmup)
	}
	return nil
}

// Operation kinds of the mix.
const (
	opChange = iota
	opReset
	opUnblock
	numOps
)

var opNames = [numOps]string{"change", "reset", "unblock"}

// Mix is the share of each operation, in percent-like weights.
type Mix [numOps]int

// ParseMix reads "change=80,reset=10,unblock=10"; weights are non-negative
// integers with a positive sum. The error names the bad entry.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := [numOps]bool{}
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		i := slices.Index(opNames[:], name)
		if !ok || i < 0 {
			return m, fmt.Errorf("mix entry %q: want change=N, reset=N or unblock=N", part)
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return m, fmt.Errorf("mix entry %q: weight must be a non-negative integer", part)
		}
		if seen[i] {
			return m, fmt.Errorf("mix entry %q: %s given twice", part, name)
		}
		seen[i] = true
		m[i] = n
	}
	if m[0]+m[1]+m[2] == 0 {
		return m, errors.New("mix: weights sum to 0")
	}
	return m, nil
}

func (m Mix) String() string {
	return fmt.Sprintf("change=%d,reset=%d,unblock=%d", m[0], m[1], m[2])
}

// pick maps r in [0, sum) to an operation.
func (m Mix) pick(r int) int {
	for i, w := range m {
		if r < w {
			return i
		}
		r -= w
	}
	return opChange
}

func (m Mix) sum() int { return m[0] + m[1] + m[2] }

// ParseConcurrency reads N (N requests in flight over min(N, 4) connections
// per acquirer, rounded up to fill them evenly) or CxI (C connections per
// acquirer, I requests in flight on each).
func ParseConcurrency(s string) (conns, inFlight int, err error) {
	if c, i, ok := strings.Cut(s, "x"); ok {
		conns, err1 := strconv.Atoi(c)
		inFlight, err2 := strconv.Atoi(i)
		if err1 != nil || err2 != nil || conns < 1 || inFlight < 1 {
			return 0, 0, fmt.Errorf("concurrency %q: want N or CxI with positive integers", s)
		}
		return conns, inFlight, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, 0, fmt.Errorf("concurrency %q: want N or CxI with positive integers", s)
	}
	conns = min(n, 4)
	return conns, (n + conns - 1) / conns, nil
}

// Report is the result of a run; its JSON is the --json output.
type Report struct {
	Target      string           `json:"target"`
	Mode        string           `json:"mode"` // closed or open
	Rate        float64          `json:"rate,omitempty"`
	Connections int              `json:"connections"` // per acquirer
	InFlight    int              `json:"in_flight"`   // per connection
	Mix         string           `json:"mix"`
	Cards       int              `json:"cards"`
	DurationS   float64          `json:"duration_s"`
	Requests    int64            `json:"requests"`
	TPS         float64          `json:"tps"`
	LatencyMS   latencySummary   `json:"latency_ms"`
	Codes       map[string]int64 `json:"codes"`
	Errors      int64            `json:"errors"`
	ErrorKinds  map[string]int64 `json:"error_kinds,omitempty"`
	ByOperation map[string]int64 `json:"by_operation"`
	// SM4Changes is how many of the measured PIN changes the SM4 ATM
	// network sent (--sm4-share).
	SM4Changes int64 `json:"sm4_changes"`
	// CPU is the CPU each process spent over the measured phase, per
	// answered request: this tool first ("load", or "client" for the
	// baseline), then Params.CPU in order.
	CPU []CPUUse `json:"cpu,omitempty"`
}

type latencySummary struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Write prints the report: one JSON object with asJSON, else the readable form.
func (r *Report) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	r.print(w)
	return nil
}

func (r *Report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	mode := "closed loop"
	if r.Mode == "open" {
		mode = fmt.Sprintf("open loop at %.0f/s", r.Rate)
	}
	fmt.Fprintf(tw, "target\t%s\n", r.Target)
	fmt.Fprintf(tw, "load\t%s, %d connection(s) per acquirer × %d in flight, mix %s, %d cards\n", mode, r.Connections, r.InFlight, r.Mix, r.Cards)
	fmt.Fprintf(tw, "measured\t%.1f s, %d requests\n", r.DurationS, r.Requests)
	fmt.Fprintf(tw, "latency ms\tp50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.P999, r.LatencyMS.Max)
	codes := slices.Sorted(mapKeys(r.Codes))
	var cs []string
	for _, c := range codes {
		cs = append(cs, fmt.Sprintf("%s %s: %d", c, iso8583.ResponseText(c), r.Codes[c]))
	}
	fmt.Fprintf(tw, "response codes\t%s\n", strings.Join(cs, "; "))
	var ops []string
	for _, o := range opNames {
		ops = append(ops, fmt.Sprintf("%s %d", o, r.ByOperation[o]))
	}
	fmt.Fprintf(tw, "operations\t%s\n", strings.Join(ops, ", "))
	if r.Errors > 0 {
		var es []string
		for _, k := range slices.Sorted(mapKeys(r.ErrorKinds)) {
			es = append(es, fmt.Sprintf("%s: %d", k, r.ErrorKinds[k]))
		}
		fmt.Fprintf(tw, "errors\t%d (%s)\n", r.Errors, strings.Join(es, "; "))
	}
	if len(r.CPU) > 0 {
		var cs []string
		for _, u := range r.CPU {
			if u.Error != "" {
				cs = append(cs, fmt.Sprintf("%s: unread (%s)", u.Name, u.Error))
				continue
			}
			cs = append(cs, fmt.Sprintf("%s %.0f µs", u.Name, u.MicrosPerOp))
		}
		fmt.Fprintf(tw, "cpu per request\t%s\n", strings.Join(cs, ", "))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "tps %.1f  p99 %.3f ms  errors %d\n", r.TPS, r.LatencyMS.P99, r.Errors)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Error kinds: a request that failed without a response code.
const (
	errKindTimeout  = "timeout"       // no answer within --timeout
	errKindConn     = "connection"    // the connection failed
	errKindOverload = "not sent"      // open loop: every slot busy when the request was due
	errKindBuild    = "build request" // the request could not be built or packed
)

// cardState follows one card's PIN. A card is used by one request at a time
// (busy); its PIN is unknown after an unanswered change or reset, and the
// next operation on it is then a branch reset, which makes it known again.
type cardState struct {
	busy    atomic.Bool
	pan     string // "" before first use
	pin     string // current PIN
	unknown bool
}

// loadRun is the state of one run shared by its workers.
type loadRun struct {
	cfg       Params
	atm, br   []*Client
	sm4       []*Client // the SM4 ATM network's connections; none with sm4Share 0
	atmKey    pinblock.Key
	brKey     pinblock.Key
	sm4Key    pinblock.Key
	policy    pinblock.PINPolicy
	cards     []cardState
	tmpl      [numKinds]*requestTemplate
	terminal  atomic.Uint64
	measuring atomic.Bool
	sm4Sent   atomic.Int64 // measured PIN changes from the SM4 ATM network
	stats     []*workerStats
	total     atomic.Int64 // measured requests finished
	stop      chan struct{}
	stopOnce  sync.Once
}

type workerStats struct {
	mu     sync.Mutex
	hist   latencyHist
	codes  map[string]int64
	errs   map[string]int64
	ops    [numOps]int64
	count  int64
	errCnt int64
}

func (s *workerStats) record(op int, lat time.Duration, code, errKind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	s.ops[op]++
	if errKind != "" {
		s.errCnt++
		s.errs[errKind]++
		return
	}
	s.hist.add(lat)
	s.codes[code]++
}

// Run dials the connections, runs the warm-up and the measured
// phase, and returns the report. progress, if not nil, gets a line per
// interval. Requests in flight when the measured phase ends are waited for
// (up to --timeout) and counted.
func Run(ctx context.Context, cfg Params, progress io.Writer) (*Report, error) {
	r := &loadRun{cfg: cfg, policy: pinblock.DefaultPINPolicy(), cards: make([]cardState, cfg.Cards), stop: make(chan struct{})}
	var err error
	if r.atmKey, err = devkeys.Key(devkeys.ATMZPK); err != nil {
		return nil, err
	}
	defer r.atmKey.Zeroize()
	if r.brKey, err = devkeys.Key(devkeys.BranchZPK); err != nil {
		return nil, err
	}
	defer r.brKey.Zeroize()
	if r.sm4Key, err = devkeys.Key(devkeys.SM4ATMZPK); err != nil {
		return nil, err
	}
	defer r.sm4Key.Zeroize()
	if err := r.templates(); err != nil {
		return nil, fmt.Errorf("load requests: %w", err)
	}
	defer func() {
		for _, c := range slices.Concat(r.atm, r.br, r.sm4) {
			_ = c.Close()
		}
	}()
	lists := []*[]*Client{&r.atm, &r.br}
	if cfg.SM4Share > 0 {
		lists = append(lists, &r.sm4)
	}
	for range cfg.Conns {
		for _, list := range lists {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := Dial(dctx, cfg.Target)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("connect to %s: %w", cfg.Target, err)
			}
			*list = append(*list, c)
		}
	}

	workers := cfg.Conns * cfg.InFlight
	// Without a warm-up every request is measured, the first ones too: a
	// worker may start one before the measured phase below begins, and a
	// caller comparing the report with the events on a topic counts them.
	r.measuring.Store(cfg.Warmup <= 0)
	for range workers {
		r.stats = append(r.stats, &workerStats{codes: map[string]int64{}, errs: map[string]int64{}})
	}
	var slots chan time.Time // open loop: intended start times
	if cfg.Rate > 0 {
		slots = make(chan time.Time, workers)
	}
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, i, slots)
		}()
	}
	var missed atomic.Int64
	var pwg sync.WaitGroup
	if slots != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			defer close(slots)
			r.pace(ctx, slots, &missed)
		}()
	}

	// Warm-up, then the measured phase.
	if cfg.Warmup > 0 {
		select {
		case <-time.After(cfg.Warmup):
		case <-ctx.Done():
		case <-r.stop:
		}
	}
	missed.Store(0)
	r.measuring.Store(true)
	cpu := startCPUWatch("load", cfg.CPU)
	start := time.Now()
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	var tick <-chan time.Time
	if progress != nil {
		t := time.NewTicker(cfg.Progress)
		defer t.Stop()
		tick = t.C
	}
	last, lastT := int64(0), start
loop:
	for {
		select {
		case <-deadline:
			break loop
		case <-ctx.Done():
			break loop
		case <-r.stop:
			break loop
		case now := <-tick:
			n := r.total.Load()
			s := r.merge()
			fmt.Fprintf(progress, "load: %5.1fs  %8d requests  %8.1f/s (last %.0f/s)  p99 %.2f ms  errors %d\n",
				now.Sub(start).Seconds(), n, float64(n)/now.Sub(start).Seconds(),
				float64(n-last)/now.Sub(lastT).Seconds(), s.hist.quantile(0.99).Seconds()*1000, s.errCnt+missed.Load())
			last, lastT = n, now
		}
	}
	elapsed := time.Since(start)
	r.halt()
	pwg.Wait()
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	s := r.merge()
	rep := &Report{Mix: cfg.Mix.String(), Cards: cfg.Cards, ByOperation: map[string]int64{}}
	answered := s.count - s.errCnt // before finish counts the missed slots as errors
	rep.finish(cfg, s, missed.Load(), elapsed)
	for i, o := range opNames {
		rep.ByOperation[o] = s.ops[i]
	}
	rep.SM4Changes = r.sm4Sent.Load()
	rep.CPU = cpu.finish(answered)
	return rep, nil
}

// finish fills what every run reports from its merged statistics: requests
// that missed their open-loop slot count as overload errors.
func (rep *Report) finish(cfg Params, s *workerStats, missed int64, elapsed time.Duration) {
	if missed > 0 {
		s.errCnt += missed
		s.errs[errKindOverload] += missed
	}
	rep.Target, rep.Mode, rep.Connections, rep.InFlight = cfg.Target, "closed", cfg.Conns, cfg.InFlight
	if cfg.Rate > 0 {
		rep.Mode, rep.Rate = "open", cfg.Rate
	}
	rep.DurationS, rep.Requests, rep.Codes, rep.Errors = elapsed.Seconds(), s.count, s.codes, s.errCnt
	if len(s.errs) > 0 {
		rep.ErrorKinds = s.errs
	}
	rep.TPS = float64(s.count-s.errCnt) / elapsed.Seconds()
	ms := func(d time.Duration) float64 { return math.Round(d.Seconds()*1e6) / 1000 }
	rep.LatencyMS = latencySummary{
		P50: ms(s.hist.quantile(0.5)), P90: ms(s.hist.quantile(0.9)), P99: ms(s.hist.quantile(0.99)),
		P999: ms(s.hist.quantile(0.999)), Max: ms(s.hist.max),
	}
}

func (r *loadRun) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

// merge sums the workers' statistics.
func (r *loadRun) merge() *workerStats {
	out := &workerStats{codes: map[string]int64{}, errs: map[string]int64{}}
	for _, s := range r.stats {
		s.mu.Lock()
		out.hist.merge(&s.hist)
		for k, v := range s.codes {
			out.codes[k] += v
		}
		for k, v := range s.errs {
			out.errs[k] += v
		}
		for i := range out.ops {
			out.ops[i] += s.ops[i]
		}
		out.count += s.count
		out.errCnt += s.errCnt
		s.mu.Unlock()
	}
	return out
}

// startsBy is how many requests of an open loop at rate per second are due
// after elapsed: those whose intended start, k / rate for k = 0, 1, …, is
// not later than elapsed. The first is due at once. (Counting only whole
// intervals elapsed sent each request one interval after its intended start,
// and its latency, measured from that start, carried the interval.)
func startsBy(elapsed time.Duration, rate float64) int64 {
	if elapsed < 0 {
		return 0
	}
	return int64(elapsed.Seconds()*rate) + 1
}

// pace sends intended start times at cfg.Rate per second until stop; a
// start that finds every slot busy is counted in missed instead of waiting,
// so a slow gateway cannot slow the offered load (no coordinated omission:
// latency runs from the intended start).
func (r *loadRun) pace(ctx context.Context, slots chan<- time.Time, missed *atomic.Int64) {
	start := time.Now()
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	var sent int64
	for {
		now := time.Now()
		due := startsBy(now.Sub(start), r.cfg.Rate)
		for ; sent < due; sent++ {
			t := start.Add(time.Duration(sent) * interval)
			select {
			case slots <- t:
			default:
				if r.measuring.Load() {
					missed.Add(1)
				}
			}
		}
		next := start.Add(time.Duration(sent) * interval) // the next start not yet sent
		select {
		case <-time.After(max(time.Until(next), 200*time.Microsecond)):
		case <-r.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// worker sends requests on connection slot i%conns: in the closed loop one
// after another, in the open loop one per start time received.
func (r *loadRun) worker(ctx context.Context, i int, slots <-chan time.Time) {
	w := &workerState{rng: rand.New(rand.NewPCG(r.cfg.Seed, uint64(i))), timer: time.NewTimer(time.Hour)}
	w.timer.Stop()
	st := r.stats[i]
	atm, br := r.atm[i%r.cfg.Conns], r.br[i%r.cfg.Conns]
	var sm4 *Client
	if len(r.sm4) > 0 {
		sm4 = r.sm4[i%r.cfg.Conns]
	}
	for {
		var begin time.Time
		if slots != nil {
			t, ok := <-slots
			if !ok {
				return
			}
			begin = t
		} else {
			select {
			case <-r.stop:
				return
			default:
			}
			begin = time.Now()
		}
		measured := r.measuring.Load()
		op, code, errKind := r.one(ctx, w, atm, br, sm4)
		if measured {
			st.record(op, time.Since(begin), code, errKind)
			if n := r.total.Add(1); r.cfg.MaxRequests > 0 && n >= r.cfg.MaxRequests {
				r.halt()
			}
		}
		if errKind == errKindConn {
			select { // the connection is gone: do not spin on it
			case <-r.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// one makes one request on a card no other worker is using.
func (r *loadRun) one(ctx context.Context, w *workerState, atm, br, sm4 *Client) (op int, code, errKind string) {
	rng := w.rng
	op = r.cfg.Mix.pick(rng.IntN(r.cfg.Mix.sum()))
	var idx int
	for {
		idx = rng.IntN(len(r.cards))
		// The simulator answers 2 cards in 1000 with a fixed 96 or 57 (for
		// demos and tests of those codes); a load run leaves them out.
		if r.cfg.Pop.Usable(r.cfg.Offset+idx) && r.cards[idx].busy.CompareAndSwap(false, true) {
			break
		}
	}
	cs := &r.cards[idx]
	defer cs.busy.Store(false)
	if cs.pan == "" {
		card := r.cfg.Pop.Card(r.cfg.Offset + idx)
		cs.pan, cs.pin = card.PAN, card.PIN
	}
	card := issuersim.Card{PAN: cs.pan, PIN: cs.pin}
	if cs.unknown && op != opReset {
		op = opReset // re-establish a known PIN first
	}
	term := r.terminal.Add(1) % uint64(r.cfg.Terminals)
	o := Op{PAN: card.PAN, Teller: loadTeller, IDRef: loadIDRef}
	var key pinblock.Key
	client := br
	var kind int
	switch op {
	case opChange:
		o.Acquirer, o.Terminal, o.Proc, o.Format = ATMAcquirer, "LT"+zeroPad(term, 6), iso8583.ProcPINChange, pinblock.Format0
		o.Teller, o.IDRef = "", ""
		o.OldPIN, o.NewPIN = cs.pin, r.newPIN(rng, card.PAN, cs.pin)
		key, client, kind = r.atmKey, atm, kindChange
		if sm4 != nil && rng.IntN(100) < r.cfg.SM4Share {
			o.Acquirer, o.Terminal, o.Format = SM4Acquirer, "LS"+zeroPad(term, 6), pinblock.Format0SM4
			key, client, kind = r.sm4Key, sm4, kindChangeSM4
			if r.measuring.Load() {
				r.sm4Sent.Add(1)
			}
		}
	case opReset:
		o.Acquirer, o.Terminal, o.Proc, o.Format = BranchAcquirer, "LB"+zeroPad(term, 6), iso8583.ProcPINReset, pinblock.Format4
		o.NewPIN = r.newPIN(rng, card.PAN, cs.pin)
		key, kind = r.brKey, kindReset
	default:
		o.Acquirer, o.Terminal, o.Proc, o.Format = BranchAcquirer, "LB"+zeroPad(term, 6), iso8583.ProcPINUnblock, pinblock.Format4
		kind = kindUnblock
	}
	mk, err := r.request(w, o, kind, key)
	if err != nil {
		return op, "", errKindBuild
	}
	w.timer.Reset(r.cfg.Timeout)
	ans, err := client.roundTrip(ctx, mk, w.frame, w.timer.C)
	w.timer.Stop()
	switch {
	case err == nil:
	case errors.Is(err, errExpired):
		if op != opUnblock {
			cs.unknown = true // the issuer may or may not have applied it
		}
		return op, "", errKindTimeout
	case errors.Is(err, ErrNoAnswer):
		if op != opUnblock {
			cs.unknown = true
		}
		return op, "", errKindConn
	default:
		var fe *iso8583.FieldError
		if errors.As(err, &fe) {
			return op, "", errKindBuild
		}
		return op, "", errKindConn
	}
	if op != opUnblock {
		switch ans.ResponseCode {
		case iso8583.RCApproved:
			cs.pin, cs.unknown = o.NewPIN, false
		case iso8583.RCIssuerUnavailable, iso8583.RCSystemMalfunction:
			// The issuer may have applied it; a reversal undoes it later.
			cs.unknown = true
		}
	}
	return op, ans.ResponseCode, ""
}

// Kinds of request, each built from its template (requestTemplate).
const (
	kindChange    = iota // ATM network, format 0 under the ATM zone key
	kindChangeSM4        // SM4 ATM network, SM4-0
	kindReset            // branch, format 4
	kindUnblock          // branch, no PIN block
	numKinds
)

// workerState is what a worker reuses from one request to the next.
type workerState struct {
	rng   *rand.Rand
	timer *time.Timer // the answer's deadline
	frame []byte      // the request being sent
}

// templates builds the request template of each kind from a sample request
// of the run's first card.
func (r *loadRun) templates() error {
	pan := r.cfg.Pop.Card(r.cfg.Offset).PAN
	samples := [numKinds]Op{
		kindChange:    {Acquirer: ATMAcquirer, Terminal: "LT000000", Proc: iso8583.ProcPINChange, Format: pinblock.Format0, OldPIN: "1357", NewPIN: "2468"},
		kindChangeSM4: {Acquirer: SM4Acquirer, Terminal: "LS000000", Proc: iso8583.ProcPINChange, Format: pinblock.Format0SM4, OldPIN: "1357", NewPIN: "2468"},
		kindReset:     {Acquirer: BranchAcquirer, Terminal: "LB000000", Proc: iso8583.ProcPINReset, Format: pinblock.Format4, NewPIN: "2468"},
		kindUnblock:   {Acquirer: BranchAcquirer, Terminal: "LB000000", Proc: iso8583.ProcPINUnblock, Format: pinblock.Format4},
	}
	keys := [numKinds]pinblock.Key{r.atmKey, r.sm4Key, r.brKey, r.brKey}
	for k, o := range samples {
		o.PAN = pan
		if o.Acquirer == BranchAcquirer {
			o.Teller, o.IDRef = loadTeller, loadIDRef
		}
		f, err := loadFields(o, keys[k])
		if err != nil {
			return err
		}
		if r.tmpl[k], err = newRequestTemplate(f); err != nil {
			return err
		}
	}
	return nil
}

// request enciphers o's PINs under key and builds its 0100 from the
// template of kind into w.frame, with a new STAN and DE 7; it returns the
// answer's match key.
func (r *loadRun) request(w *workerState, o Op, kind int, key pinblock.Key) (matchKey, error) {
	enc := func(pin string) ([]byte, error) {
		if pin == "" {
			return nil, nil
		}
		p, err := pinblock.NewSecretPIN(pin)
		if err != nil {
			return nil, err
		}
		return pinblock.Encipher(o.Format, p, o.PAN, key) // Encipher zeroizes p
	}
	oldBlock, err := enc(o.OldPIN)
	if err != nil {
		return matchKey{}, err
	}
	newBlock, err := enc(o.NewPIN)
	if err != nil {
		return matchKey{}, err
	}
	mk := matchKey{nextSTAN(), transmissionTime(time.Now())}
	w.frame, err = r.tmpl[kind].build(w.frame[:0], o.PAN, mk.stan, mk.transmission, o.Terminal, oldBlock, newBlock)
	clear(oldBlock)
	clear(newBlock)
	return mk, err
}

// newPIN draws a 4-digit PIN the default PIN policy accepts for pan, other
// than cur.
func (r *loadRun) newPIN(rng *rand.Rand, pan, cur string) string {
	for {
		s := zeroPad(uint64(rng.IntN(10000)), 4)
		if s == cur {
			continue
		}
		p, err := pinblock.NewSecretPIN(s)
		if err != nil {
			continue
		}
		if r.policy.Check(p, pan) == nil { // Check zeroizes p
			return s
		}
	}
}

// The teller and identity check reference of the load's branch requests.
const (
	loadTeller = "LOADTEST-TELLER"
	loadIDRef  = "LOADTEST-IDCHECK"
)

// loadFields builds the 0100 of o like Op.fields, enciphering under key
// (loaded once per run: Op.fields expands the development key on every
// call, which would make the load tool measure itself).
func loadFields(o Op, key pinblock.Key) (*iso8583.Fields, error) {
	oldPIN, newPIN := o.OldPIN, o.NewPIN
	o.OldPIN, o.NewPIN = "", ""
	f, err := o.Fields()
	if err != nil {
		return nil, err
	}
	f.CardAcceptorID = "PINGATE LOAD   "
	enc := func(pin string) ([]byte, error) {
		p, err := pinblock.NewSecretPIN(pin)
		if err != nil {
			return nil, err
		}
		return pinblock.Encipher(o.Format, p, o.PAN, key) // Encipher zeroizes p
	}
	if oldPIN != "" {
		if f.PINBlock, err = enc(oldPIN); err != nil {
			return nil, err
		}
	}
	if newPIN != "" {
		if f.NewPINBlock, err = enc(newPIN); err != nil {
			return nil, err
		}
	}
	if oldPIN != "" || newPIN != "" {
		f.SecurityControl = iso8583.SecurityControl{Format: o.Format.Number(), KeyIndex: 1}.String()
	}
	return f, nil
}

// latencyHist counts durations in log-linear buckets of microseconds: exact
// below 1024 µs, then 64 buckets per power of two (relative error under
// 1.6 %). The zero value is empty and ready.
type latencyHist struct {
	counts []int64
	n      int64
	max    time.Duration
}

const histLinear = 1024

func histBucket(us int64) int {
	if us < histLinear {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - 1 // ≥ 10
	sub := (us >> (e - 6)) & 63
	return histLinear + (e-10)*64 + int(sub)
}

// histLow is the smallest value (µs) of bucket i; histLow(i+1) is the next.
func histLow(i int) int64 {
	if i < histLinear {
		return int64(i)
	}
	e := (i-histLinear)/64 + 10
	sub := int64((i - histLinear) % 64)
	return (64 + sub) << (e - 6)
}

func (h *latencyHist) add(d time.Duration) {
	b := histBucket(d.Microseconds())
	if b >= len(h.counts) {
		h.counts = slices.Grow(h.counts, b+1-len(h.counts))[:b+1]
	}
	h.counts[b]++
	h.n++
	h.max = max(h.max, d)
}

func (h *latencyHist) merge(o *latencyHist) {
	if len(o.counts) > len(h.counts) {
		h.counts = slices.Grow(h.counts, len(o.counts)-len(h.counts))[:len(o.counts)]
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the q-quantile (0 < q ≤ 1): the middle of the bucket holding
// the ceil(q·n)-th smallest value, capped at the maximum; 0 when empty.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			mid := time.Duration(lo+hi) * time.Microsecond / 2
			if i < histLinear {
				mid = time.Duration(lo) * time.Microsecond
			}
			return min(mid, h.max)
		}
	}
	return h.max
}
