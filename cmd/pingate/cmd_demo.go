package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"text/tabwriter"
	"time"

	"pingate/cmd/internal/cli"
	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/integration/logredact"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// demoStep is one scripted request and what the script expects of it.
type demoStep struct {
	what    string
	channel string
	op      loadgen.Op
	raw     []byte // a malformed frame instead of op
	want    string
	// repeat sends op up to this many times and reports the first answer
	// equal to want (or the last one); spread gives each try its own
	// terminal.
	repeat int
	spread bool
	// reverse has the terminal reverse op with a 0420 once it is answered,
	// as an ATM does when the answer came too late; the step reports the
	// 0430's code.
	reverse bool
	// network is an 0800 (sign-on, key change) sent instead of op, on the
	// connection of op.Acquirer; the step reports the 0810's code.
	network []*iso8583.Fields
	// sm4 marks the steps of the SM4 ATM network and the SM4 issuer, left
	// out in HSM mode: the payShield module refuses SM4.
	sm4 bool
}

type demoResult struct {
	Step         string  `json:"step"`
	Operation    string  `json:"operation"`
	Channel      string  `json:"channel"`
	ResponseCode string  `json:"response_code"`
	Expected     string  `json:"expected"`
	Meaning      string  `json:"meaning"`
	EventID      string  `json:"event_id,omitempty"`
	LatencyMS    float64 `json:"latency_ms"`
}

func demoScript(pop issuersim.Population) []demoStep {
	card := func(i int) issuersim.Card { return pop.Card(i) }
	a, b, c, d, e, f, g := card(0), card(1), card(2), card(3), card(4), card(5), card(6)
	// Cards the simulated issuer answers specially (issuersim.Population).
	restricted, faulty := pop.Card(999*len(pop.BINs)), pop.Card(998*len(pop.BINs))
	// Each step is another cardholder at another ATM: an ATM's own
	// throughput limit is a person's pace (1 request/s, burst 5).
	n := 0
	atm := func(pan, oldPIN, newPIN string) loadgen.Op {
		n++
		return loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: fmt.Sprintf("ATM%05d", 40+n), Proc: iso8583.ProcPINChange, PAN: pan,
			OldPIN: oldPIN, NewPIN: newPIN, Format: pinblock.Format0, KeyID: devkeys.ATMZPK}
	}
	branch := func(proc, pan, newPIN string) loadgen.Op {
		op := loadgen.Op{Acquirer: gateway.DevBranchAcquirer, Terminal: "BR0117T1", Proc: proc, PAN: pan, NewPIN: newPIN,
			Format: pinblock.Format4, KeyID: devkeys.BranchZPK, Teller: "TELLER-0117-07", IDRef: "IDCHK-2026-000123"}
		return op
	}
	// The SM4 ATM network's PIN pads encipher SM4-0 blocks under the working
	// key its 0800/161 delivered (sm4KeyChange).
	sm4ATM := func(pan, oldPIN, newPIN string) loadgen.Op {
		o := atm(pan, oldPIN, newPIN)
		o.Acquirer, o.Format, o.KeyID, o.Key = gateway.DevSM4Acquirer, pinblock.Format0SM4, devkeys.SM4ATMZPK, demoSM4WorkingKey
		return o
	}
	// Cards 3×5000+2 and 3×5001+2 are in gateway.DevSM4Prefix (the SM4 issuer),
	// card 9 is not.
	h, sm4Card, sm4Card2 := card(9), card(3*5000+2), card(3*5001+2)
	unknown := pop.BINs[0] + "99999990" // in the issuer's range, not one of its cards
	unknown = unknown[:15]
	unknown += fmt.Sprint(issuersim.LuhnDigit(unknown))
	return []demoStep{
		{what: "ATM: change PIN", channel: "atm", op: atm(a.PAN, a.PIN, "4826"), want: "00"},
		{what: "ATM: change PIN with a wrong current PIN", channel: "atm", op: atm(b.PAN, "0007", "5931"), want: "55"},
		{what: "ATM: wrong current PIN (1st)", channel: "atm", op: atm(c.PAN, "1007", "6042"), want: "55"},
		{what: "ATM: wrong current PIN (2nd)", channel: "atm", op: atm(c.PAN, "1008", "6042"), want: "55"},
		{what: "ATM: wrong current PIN (3rd) locks the card", channel: "atm", op: atm(c.PAN, "1009", "6042"), want: "75"},
		{what: "ATM: locked card, even with the right PIN", channel: "atm", op: atm(c.PAN, c.PIN, "6042"), want: "75"},
		{what: "branch: unblock after an identity check", channel: "branch", op: branch(iso8583.ProcPINUnblock, c.PAN, ""), want: "00"},
		{what: "ATM: change PIN after the unblock", channel: "atm", op: atm(c.PAN, c.PIN, "6042"), want: "00"},
		{what: "branch: reset a forgotten PIN", channel: "branch", op: branch(iso8583.ProcPINReset, d.PAN, "3917"), want: "00"},
		{what: "ATM: change the reset PIN", channel: "atm", op: atm(d.PAN, "3917", "8150"), want: "00"},
		{what: "ATM: weak new PIN refused", channel: "atm", op: atm(e.PAN, e.PIN, "1234"), want: iso8583.RCNewPINRejected},
		{what: "ATM: change PIN, then the ATM reverses it (0420)", channel: "atm", op: atm(g.PAN, g.PIN, "7204"), reverse: true, want: "00"},
		{what: "ATM: the reversed change left the old PIN", channel: "atm", op: atm(g.PAN, g.PIN, "7205"), want: "00"},
		{what: "ATM: card unknown to the issuer", channel: "atm", op: atm(unknown, "4826", "5931"), want: "14"},
		{what: "ATM: card range with no route", channel: "atm", op: atm("5555555555554444", "4826", "5931"), want: "14"},
		{what: "ATM: unknown acquirer refused", channel: "atm", op: func() loadgen.Op { o := atm(a.PAN, "4826", "5930"); o.Acquirer = "777777"; return o }(), want: "58"},
		{what: "ATM: reset not permitted at an ATM", channel: "atm", op: func() loadgen.Op {
			o := branch(iso8583.ProcPINReset, a.PAN, "5930")
			o.Acquirer, o.Format, o.KeyID = gateway.DevATMAcquirer, pinblock.Format0, devkeys.ATMZPK
			return o
		}(), want: "58"},
		{what: "ATM: account restricted by the issuer", channel: "atm", op: atm(restricted.PAN, restricted.PIN, "5931"), want: "57"},
		{what: "ATM: issuer malfunction", channel: "atm", op: atm(faulty.PAN, faulty.PIN, "5931"), want: "96"},
		{what: "ATM: issuer host down", channel: "atm", op: atm(demoDownPAN, "4826", "5931"), want: "91"},
		{what: "branch: 6th request in a second from one terminal", channel: "branch", op: branch(iso8583.ProcPINUnblock, f.PAN, ""), repeat: 6, want: "61"},
		{what: "branch: 11th operation on one card today", channel: "branch", op: branch(iso8583.ProcPINUnblock, f.PAN, ""), repeat: 11, spread: true, want: "65"},
		{what: "SM4 ATM: sign on, then an SM4 working key arrives online (0800/161)", channel: "atm",
			op: loadgen.Op{Acquirer: gateway.DevSM4Acquirer}, network: sm4KeyChange(), want: "00", sm4: true},
		{what: "SM4 ATM: change PIN, SM4-0 to the SM4 issuer (SM4-4)", channel: "atm", op: sm4ATM(sm4Card.PAN, sm4Card.PIN, "3860"), want: "00", sm4: true},
		{what: "SM4 ATM: change PIN, SM4-0 to the AES issuer (ISO-4)", channel: "atm", op: sm4ATM(h.PAN, h.PIN, "2975"), want: "00", sm4: true},
		{what: "ATM: change PIN, TDES ISO-0 to the SM4 issuer (SM4-4)", channel: "atm", op: atm(sm4Card2.PAN, sm4Card2.PIN, "6419"), want: "00", sm4: true},
		{what: "ATM: malformed message", channel: "atm", raw: []byte("0100GARBAGE"), want: "30"},
	}
}

// The SM4 key change of the demo is the published sign-on example
// csdn-104625499 (pinblock/testdata/sm4-vectors.json): the working key
// SM4-ECB under the bank test master key dev-sm4-atm-zmk, and its check
// value.
const (
	demoSM4KeyUnderZMK = "3D66234C49E4296FF9C78D8BACBD6A76"
	demoSM4KCV         = "861E83E31FAEBF10"
)

// demoSM4WorkingKey is that working key in clear, as the SM4 ATM's PIN pad
// holds it after deciphering it under its master key. Its check value must be
// the one the key change carries (checked in sm4KeyChange).
var demoSM4WorkingKey = func() pinblock.Key {
	k, err := pinblock.ParseHexKey(devkeys.SM4ATMZPK, pinblock.UsageZPK, pinblock.SM4, 2, "F351D490994603795C6EBEE8FAEBB481")
	if err != nil {
		panic(err) // a constant
	}
	return k
}()

// sm4KeyChange is the SM4 ATM network's sign-on and key change: the new
// zone PIN key for key index 1, SM4-ECB under the SM4 ZMK, with its KCV.
func sm4KeyChange() []*iso8583.Fields {
	if demoSM4WorkingKey.CheckKCV(demoSM4KCV) != nil {
		panic("demo SM4 working key does not match its published check value")
	}
	de123, err := iso8583.KeyExchange{KeyUnderZMK: demoSM4KeyUnderZMK, KCV: demoSM4KCV}.Encode()
	if err != nil {
		panic(err) // constants
	}
	return []*iso8583.Fields{
		{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMISignOn, AcquirerID: gateway.DevSM4Acquirer},
		{MTI: iso8583.MTINetworkRequest, NetworkCode: iso8583.NMIKeyChange, AcquirerID: gateway.DevSM4Acquirer,
			SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(), KeyExchange: de123},
	}
}

// reverseDemoStep sends the 0420 a terminal sends for f, a request it gave up
// on, and returns the 0430's code. With the in-process issuer simulator it
// waits until the issuer has the reversal advice, so the next step sees its
// effect.
func reverseDemoStep(ctx context.Context, g *gateway.Gateway, client *loadgen.Client, f *iso8583.Fields) (string, error) {
	de90, err := iso8583.OriginalData{MTI: f.MTI, STAN: f.STAN, Transmission: f.TransmissionTime, Acquirer: f.AcquirerID}.Encode()
	if err != nil {
		return "", err
	}
	var before int64
	if g.Sim() != nil {
		before = g.Sim().Reversals.Load()
	}
	ans, err := client.Do(ctx, &iso8583.Fields{MTI: iso8583.MTIReversalAdvice, PAN: f.PAN, ProcessingCode: f.ProcessingCode,
		AcquirerID: f.AcquirerID, TerminalID: f.TerminalID, CardAcceptorID: f.CardAcceptorID, RRN: f.RRN,
		ResponseCode: "68", OriginalData: de90})
	if err != nil {
		return "", err
	}
	for g.Sim() != nil && ans.ResponseCode == iso8583.RCApproved && g.Sim().Reversals.Load() == before {
		select {
		case <-ctx.Done():
			return "", errors.New("the issuer simulator got no reversal advice")
		case <-time.After(5 * time.Millisecond):
		}
	}
	return ans.ResponseCode, nil
}

// The demo adds an issuer whose host is down, owning one card range.
const (
	demoDownIssuer = "downbank"
	demoDownPrefix = "62170099"
	demoDownPAN    = "6217009900000016"
)

// demoCmd runs the gateway and an issuer simulator in-process and plays a
// scripted day of PIN operations.
type demoCmd struct {
	JSON    bool `name:"json" help:"print one JSON object instead of a table"`
	Verbose bool `name:"verbose" short:"v" help:"show the gateway's log"`
	HSM     bool `name:"hsm" help:"translate in a payShield (security.module payshield) against an in-process payShield simulator: the ATM steps only"`
	// KeyBlock runs that simulator on the test key-block LMK.
	KeyBlock bool `name:"key-block" help:"with --hsm: the simulator runs the test key-block LMK (keys as Thales key blocks)"`
}

func (*demoCmd) Help() string { return cli.Example("pingate demo", "pingate demo --hsm --json") }

func (c *demoCmd) Run(env *cli.Env) error {
	if c.KeyBlock && !c.HSM {
		return fmt.Errorf("%w: --key-block goes with --hsm", errUsage)
	}
	return runDemo(env.Ctx, c.JSON, c.Verbose, c.HSM, c.KeyBlock, env.Stdout, env.Stderr)
}

func runDemo(ctx context.Context, jsonOut, verboseLog, hsm, keyBlock bool, stdout, stderr io.Writer) error {
	asJSON, verbose, withHSM := &jsonOut, &verboseLog, &hsm
	dir, err := os.MkdirTemp("", "pingate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := gateway.EmbeddedConfig()
	cfg.Instance = "demo"
	cfg.Acquirer.Addr, cfg.HTTP.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Events.JournalDir, cfg.Reversals.Dir = dir+"/journal", dir+"/reversals"
	cfg.Routing.Issuers = append(cfg.Routing.Issuers, routing.IssuerConfig{ID: demoDownIssuer, Institution: "300002",
		Hosts: []string{"127.0.0.1:1"}, PINFormat: 4, Key: devkeys.IssuerZPK})
	cfg.Routing.Routes = append(cfg.Routing.Routes, routing.Route{Prefix: demoDownPrefix, Issuer: demoDownIssuer})
	if *withHSM {
		addr, stop, err := startDemoHSM(keyBlock)
		if err != nil {
			return err
		}
		defer stop()
		cfg.UsePayShieldSim(addr)
		cfg.Security.PayShield.KeyBlockLMK = keyBlock
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = logredact.New(logredact.Config{Format: "text"}, stderr)
	}
	cfg.Admin.Disabled = true
	g, err := gateway.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(sctx)
		<-ran
	}()
	if err := waitReady(ctx, g); err != nil {
		return err
	}
	sc := cfg.WithDefaults().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}

	// One connection per acquirer, as each institution has its own link.
	clients := map[string]*loadgen.Client{}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	var results []demoResult
	skipped := map[string]bool{} // cards whose branch step did not run
	for _, st := range demoScript(pop) {
		if *withHSM && (st.sm4 || st.channel == "branch" || st.want == iso8583.RCNewPINRejected || skipped[st.op.PAN]) {
			// No branch front end in HSM mode (its key is AES), nor the
			// ATM steps that follow a branch step on the same card; the
			// weak-PIN list is the issuer's there (docs/hsm.md).
			// Nor the SM4 steps: the payShield module refuses SM4.
			if st.channel == "branch" {
				skipped[st.op.PAN] = true
			}
			continue
		}
		client := clients[st.op.Acquirer]
		if client == nil && st.raw == nil {
			if client, err = loadgen.Dial(ctx, g.AcquirerAddr()); err != nil {
				return err
			}
			clients[st.op.Acquirer] = client
		}
		r, err := playStep(ctx, g, client, st)
		if err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
		results = append(results, r)
	}
	if !*withHSM {
		branch, err := branchDemoSteps(ctx, g)
		if err != nil {
			return fmt.Errorf("branch steps: %w", err)
		}
		results = append(results, branch...)
	}
	evs, err := journalEvents(g)
	if err != nil {
		return err
	}
	byOp := map[string]string{}
	for _, e := range evs {
		byOp[e.ID] = e.Type
	}
	for i := range results {
		if _, ok := byOp[results[i].EventID]; !ok {
			results[i].EventID = ""
		}
	}
	mismatch := 0
	for _, r := range results {
		if r.ResponseCode != r.Expected {
			mismatch++
		}
	}
	if *asJSON {
		lat := make([]float64, len(results))
		for i, r := range results {
			lat[i] = r.LatencyMS
		}
		out := map[string]any{"results": results, "events": len(evs), "latency_ms": percentiles(lat)}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printDemoTable(stdout, results, evs)
	}
	if mismatch > 0 {
		return fmt.Errorf("%d step(s) answered other than expected", mismatch)
	}
	return nil
}

// simHosted reports whether the issuer id is served by the gateway's
// in-process simulator.
func simHosted(g *gateway.Gateway, id string) bool {
	if g.Sim() == nil {
		return false
	}
	for _, is := range g.Config().Routing.Issuers {
		if is.ID == id && slices.Contains(is.Hosts, g.SimAddr()) {
			return true
		}
	}
	return false
}

// waitReady waits until the issuer links of the embedded default have signed on.
func waitReady(ctx context.Context, g *gateway.Gateway) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		on := g.SignedOn()
		if on[gateway.DevIssuer] && (!simHosted(g, gateway.DevSM4Issuer) || on[gateway.DevSM4Issuer]) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("the issuer link did not sign on within 10s")
}

func playStep(ctx context.Context, g *gateway.Gateway, client *loadgen.Client, st demoStep) (demoResult, error) {
	r := demoResult{Step: st.what, Channel: st.channel, Expected: st.want}
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if st.raw != nil {
		r.Operation = "change"
		code, err := rawExchange(rctx, g.AcquirerAddr(), st.raw)
		if err != nil {
			return r, err
		}
		r.ResponseCode = code
	} else if st.network != nil {
		r.Operation = "key change"
		for _, f := range st.network {
			ans, err := client.Do(rctx, f)
			if err != nil {
				return r, err
			}
			if r.ResponseCode = ans.ResponseCode; r.ResponseCode != iso8583.RCApproved {
				break
			}
		}
	} else {
		for i := 0; i < max(st.repeat, 1); i++ {
			op := st.op
			if st.spread {
				op.Terminal = fmt.Sprintf("%s%02d", op.Terminal[:6], i)
			}
			f, err := op.Fields()
			if err != nil {
				return r, err
			}
			ans, err := client.Do(rctx, f)
			if err != nil {
				return r, err
			}
			r.ResponseCode = ans.ResponseCode
			if st.reverse && ans.ResponseCode == iso8583.RCApproved {
				if r.ResponseCode, err = reverseDemoStep(rctx, g, client, f); err != nil {
					return r, err
				}
			}
			if r.ResponseCode == st.want {
				break
			}
		}
		switch st.op.Proc {
		case iso8583.ProcPINChange:
			r.Operation = "change"
		case iso8583.ProcPINReset:
			r.Operation = "reset"
		default:
			r.Operation = "unblock"
		}
	}
	r.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	r.Meaning = iso8583.ResponseText(r.ResponseCode)
	// The event of the step is the journal's newest entry, if the request
	// reached routing (a key change has none).
	if st.network != nil {
		return r, nil
	}
	if evs, err := journalEvents(g); err == nil && len(evs) > 0 {
		last := evs[len(evs)-1]
		// A reversed step's newest event is the reversal's, which carries
		// the acquirer's reason code rather than the 0430's.
		if (last.Code == r.ResponseCode || st.reverse) && time.Since(last.Completed) < 15*time.Second {
			r.EventID = last.ID
		}
	}
	return r, nil
}

// rawExchange sends one raw message on its own connection and reads the answer code.
func rawExchange(ctx context.Context, addr string, msg []byte) (string, error) {
	got := make(chan string, 1)
	conn, err := iso8583.Dial(ctx, addr, iso8583.ClientConfig{OnFrame: func(frame []byte) {
		f, err := iso8583.Unpack(iso8583.AcquirerSpec, frame)
		if err == nil {
			got <- f.ResponseCode
		}
	}})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.Send(msg); err != nil {
		return "", err
	}
	select {
	case c := <-got:
		return c, nil
	case <-ctx.Done():
		return "", loadgen.ErrNoAnswer
	}
}

// seenEvents remembers events across calls: the journal is read from the start each time.
func journalEvents(g *gateway.Gateway) ([]eventView, error) {
	entries, err := g.Journal().Entries(1, 10000)
	if err != nil {
		return nil, err
	}
	evs, err := gateway.DecodeEntries(entries)
	if err != nil {
		return nil, err
	}
	out := make([]eventView, 0, len(evs))
	for _, ev := range evs {
		out = append(out, eventView{ID: ev.ID, Type: ev.Type, Code: ev.Code, MaskedPAN: ev.MaskedPAN, Issuer: ev.Issuer, Completed: ev.Completed})
	}
	return out, nil
}

type eventView struct {
	ID, Type, Code, MaskedPAN string
	Issuer                    string
	Completed                 time.Time
}

func percentiles(v []float64) map[string]float64 {
	if len(v) == 0 {
		return map[string]float64{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	at := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return map[string]float64{"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": s[len(s)-1]}
}

func printDemoTable(w io.Writer, results []demoResult, evs []eventView) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tCHANNEL\tOPERATION\tCODE\tMEANING\tEVENT\tMS")
	for _, r := range results {
		mark := ""
		if r.ResponseCode != r.Expected {
			mark = " (expected " + r.Expected + ")"
		}
		ev := r.EventID
		if ev == "" {
			ev = "-"
		} else {
			ev = ev[:8]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t%s\t%s\t%.1f\n", r.Step, r.Channel, r.Operation, r.ResponseCode, mark, r.Meaning, ev, r.LatencyMS)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d outcome events in the journal (no PIN, no PIN block, masked PAN only):\n", len(evs))
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT\tTYPE\tCODE\tCARD")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.ID[:8], e.Type, e.Code, e.MaskedPAN)
	}
	_ = tw.Flush()
}
