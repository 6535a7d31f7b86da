package main

import (
	"crypto/des"
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// docs/iso8583-acquirer.md has a section printed from the embedded default
// (its acquirers and keys, the simulated issuer's card ranges and first cards
// with their initial PINs, the weak-PIN rules): TestAcquirerDocDevelopmentSetup
// fails when it differs from what the code has; -update-acqdoc rewrites it.
var updateAcqDoc = flag.Bool("update-acqdoc", false, "rewrite the generated:devsetup section of docs/iso8583-acquirer.md")

const acqDocPath = "../../docs/iso8583-acquirer.md"

func TestAcquirerDocDevelopmentSetup(t *testing.T) {
	raw, err := os.ReadFile(acqDocPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	re := regexp.MustCompile(`(?s)(<!-- BEGIN generated:devsetup -->\n).*?(<!-- END generated:devsetup -->)`)
	if !re.MatchString(doc) {
		t.Fatal("docs/iso8583-acquirer.md has no generated:devsetup section")
	}
	body := renderDevSetup(t)
	out := re.ReplaceAllStringFunc(doc, func(m string) string {
		sm := re.FindStringSubmatch(m)
		return sm[1] + body + sm[2]
	})
	if out == doc {
		return
	}
	if *updateAcqDoc {
		if err := os.WriteFile(acqDocPath, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Error("docs/iso8583-acquirer.md: the generated:devsetup section is stale; run go test ./cmd/pingate -run TestAcquirerDocDevelopmentSetup -update-acqdoc")
}

// devKeyValues are the published clear values of docs/dev-keys.md.
var devKeyValues = map[string]string{
	devkeys.ATMZPK:    "0123456789ABCDEFFEDCBA9876543210",
	devkeys.BranchZPK: "000102030405060708090A0B0C0D0E0F",
	devkeys.ATMZMK:    "89E88CF7931444F334BD7547FC3F380C",
	devkeys.SM4ATMZPK: "0123456789ABCDEFFEDCBA9876543210",
	devkeys.SM4ATMZMK: "1234567890ABCDEFABCDEF0987654321",
}

func renderDevSetup(t *testing.T) string {
	t.Helper()
	cfg := gateway.EmbeddedConfig().WithDefaults()
	rc := cfg.Routing.WithDefaults()
	var b strings.Builder
	key := func(label string) string {
		k, err := devkeys.Key(label)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := devKeyValues[label]
		if !ok {
			t.Fatalf("no published value for %s", label)
		}
		return fmt.Sprintf("`%s` (%s, `%s`, KCV `%s`)", label, k.Algorithm(), v, k.KCV())
	}
	b.WriteString("| DE 32 | channel | operations | terminals (DE 41) | PIN block formats (DE 53) | key index → zone PIN key | ZMK (key changes) | require_sign_on | key_change_legacy_ecb |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, a := range rc.Acquirers {
		var ops, fmts, keys []string
		for _, o := range a.Operations {
			ops = append(ops, string(o))
		}
		for _, f := range a.Formats {
			fmts = append(fmts, fmt.Sprintf("%02d", f))
		}
		for _, i := range slices.Sorted(maps.Keys(a.Keys)) {
			keys = append(keys, fmt.Sprintf("%02d → %s", i, key(a.Keys[i])))
		}
		zmk := "none: key changes are answered 30"
		if a.ZMK != "" {
			zmk = key(a.ZMK)
		}
		terms := "`" + strings.Join(a.Terminals, "`, `") + "`"
		if slices.Equal(a.Terminals, []string{"*"}) {
			terms = "any"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %v | %v |\n", a.ID, a.Channel, strings.Join(ops, ", "),
			terms, strings.Join(fmts, ", "), strings.Join(keys, "; "), zmk, a.RequireSignOn, a.LegacyKeyChange)
	}
	sim := cfg.IssuerSim
	pop := issuersim.Population{Seed: sim.Seed, BINs: sim.BINs, PerBIN: sim.PerBIN}
	var bins []string
	for _, r := range rc.Routes {
		bins = append(bins, "`"+r.Prefix+"`")
	}
	fmt.Fprintf(&b, "\nBIN ranges routed to the simulated issuer: %s. Any other PAN is answered 14.\n\n", strings.Join(bins, ", "))
	fmt.Fprintf(&b, "The simulated issuer holds %d cards per range (seed %d), 16-digit PANs: the range, then the card's index\n", sim.PerBIN, sim.Seed)
	b.WriteString("within it zero-padded to fill the first 15 digits (9 index digits after a 6-digit range, 7 after an 8-digit one),\n")
	b.WriteString("then the Luhn check digit. The initial PIN of a PAN is the first\n")
	b.WriteString("4-digit value `v mod 10000` (zero-padded), for v the big-endian 32-bit integers of HMAC-SHA-256(key = the seed as\n")
	b.WriteString("8 bytes big-endian, message = the PAN in ASCII) taken at byte offsets 0, 2, 4, …, 28, that is neither one digit\n")
	b.WriteString("repeated nor a step-by-one sequence (wrapping 9↔0); `5821` if none is. Cards whose index within their range\n")
	b.WriteString("ends in 998 are answered 96, those ending in 999 are answered 57. The first cards of each range:\n\n")
	b.WriteString("| PAN | initial PIN |\n|---|---|\n")
	for i := 0; i < 2*len(pop.BINs); i++ {
		c := pop.Card(i)
		fmt.Fprintf(&b, "| %s | %s |\n", c.PAN, c.PIN)
	}
	fmt.Fprintf(&b, "\nThe simulator counts a card's wrong current PINs in a row: at %d it answers 75 and locks the card\n", issuersim.DefaultMaxTries)
	b.WriteString("(every PIN change on it is then answered 75) until an unblock (720000) or a reset (710000); a right PIN\n")
	b.WriteString("clears the count. A 0420 reversing an approved change or reset gives the card back the PIN it had before.\n")
	l := cfg.Limits.Config.WithDefaults()
	fmt.Fprintf(&b, "\nLimits of the embedded default (`limits.backend: %s`, [rate-limits.md](rate-limits.md)), checked before the\n", cfg.Limits.Backend)
	fmt.Fprintf(&b, "issuer is called: a terminal (acquirer and DE 41) %g request/s with bursts of %d, an acquirer %g/s with bursts of\n",
		l.TerminalRPS, l.TerminalBurst, l.AcquirerRPS)
	fmt.Fprintf(&b, "%d (beyond them `61`); a card %d operations a %s day over all channels (then `65`); a card with %d answers `55`\n",
		l.AcquirerBurst, l.CardOpsPerDay, l.DayZone, l.CardWrongPINPerHour)
	b.WriteString("in the last hour gets `75` to its PIN changes.\n")
	p := pinblock.DefaultPINPolicy()
	if cfg.Security.WeakPINs != nil && !*cfg.Security.WeakPINs {
		t.Fatal("the embedded default turns the weak-PIN rules off: say so in the document")
	}
	b.WriteString("\nWeak-PIN rules of the embedded default (a new PIN they refuse is answered P6; the answer never says which rule):\n\n")
	if p.RejectRepeated {
		b.WriteString("- one digit repeated (`0000`, `1111`, …);\n")
	}
	if p.RejectSequences {
		b.WriteString("- digits each one up or each one down, wrapping between 9 and 0 (`1234`, `7890`, `3210`, `9876`, …);\n")
	}
	if p.RejectPANDigits {
		b.WriteString("- any run of consecutive digits of the card's PAN as long as the PIN;\n")
	}
	if p.RejectUnchanged {
		b.WriteString("- in a PIN change, the new PIN equal to the current one;\n")
	}
	fmt.Fprintf(&b, "- these PINs: %s.\n", "`"+strings.Join(p.Excluded, "`, `")+"`")
	return b.String()
}

// keyChangeExample is the worked example of the DE 123 section.
type keyChangeExample struct {
	newKey, kcv, zmk, zmkKCV, tr31, legacy string
}

func docKeyChangeExample(t *testing.T) keyChangeExample {
	t.Helper()
	raw, err := os.ReadFile(acqDocPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	get := func(pattern string, n int) []string {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(doc)
		if len(m) != n+1 {
			t.Fatalf("docs/iso8583-acquirer.md: no line matching %s", pattern)
		}
		return m[1:]
	}
	k := get("(?m)^- new zone PIN key: `([0-9A-F]+)`, KCV `([0-9A-F]+)`", 2)
	z := get("(?m)^- ZMK: `dev-atm-zmk`, `([0-9A-F]+)`, KCV `([0-9A-F]+)`", 2)
	kb := get("(?m)^- TR-31 form: `([ -~]+?)`$", 1)
	lg := get("(?m)^- legacy form: `([0-9A-F/]+)`$", 1)
	return keyChangeExample{newKey: k[0], kcv: k[1], zmk: z[0], zmkKCV: z[1], tr31: kb[0], legacy: lg[0]}
}

// TestAcquirerDocKeyChangeExample checks the DE 123 worked example with
// crypto/des rather than pingate where it can: the legacy form deciphers
// under the ZMK to the key, the KCVs are E(K, 0) cut to 3 bytes, the TR-31
// form unwraps under the ZMK to the same key, and both are the DE 123 of the
// document's golden key changes.
func TestAcquirerDocKeyChangeExample(t *testing.T) {
	ex := docKeyChangeExample(t)
	zmk, _ := hex.DecodeString(ex.zmk)
	newKey, _ := hex.DecodeString(ex.newKey)
	tdesKCV := func(k []byte) string {
		b, err := des.NewTripleDESCipher(append(append([]byte(nil), k...), k[:8]...))
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 8)
		b.Encrypt(out, out)
		return strings.ToUpper(hex.EncodeToString(out[:3]))
	}
	if got := tdesKCV(newKey); got != ex.kcv {
		t.Errorf("KCV of the example key = %s, the document says %s", got, ex.kcv)
	}
	if got := tdesKCV(zmk); got != ex.zmkKCV {
		t.Errorf("KCV of dev-atm-zmk = %s, the document says %s", got, ex.zmkKCV)
	}
	enc, kcv, _ := strings.Cut(ex.legacy, "/")
	if got := underTDES(t, zmk, newKey); !strings.EqualFold(hex.EncodeToString(got), enc) || kcv != ex.kcv {
		t.Errorf("legacy form: %X/%s under dev-atm-zmk, the document says %s", got, ex.kcv, ex.legacy)
	}
	zk, err := pinblock.NewKey("dev-atm-zmk", pinblock.UsageZMK, pinblock.TDES, 1, zmk)
	if err != nil {
		t.Fatal(err)
	}
	k, h, err := pinblock.UnwrapKeyBlock(zk, ex.tr31, pinblock.UnwrapOptions{ID: "example", Version: 1, Usage: pinblock.UsageZPK})
	if err != nil {
		t.Fatalf("TR-31 form does not unwrap under dev-atm-zmk: %v", err)
	}
	if k.KCV() != ex.kcv || h.KeyUsage != "P0" {
		t.Errorf("TR-31 form carries a key with KCV %s usage %s, want %s P0", k.KCV(), h.KeyUsage, ex.kcv)
	}
	golden := docGolden(t)
	for name, want := range map[string]string{"0800-key-change": ex.tr31, "0800-key-change-legacy": ex.legacy} {
		f, err := iso8583.Unpack(iso8583.AcquirerSpec, goldenNamed(t, golden, name))
		if err != nil {
			t.Fatal(err)
		}
		if f.KeyExchange != want {
			t.Errorf("golden %s: DE 123 is not the worked example's", name)
		}
	}
}

// TestAcquirerDocRefusals: every row of the document's refusal table gives
// the code ResponseFor gives for the error behind it.
func TestAcquirerDocRefusals(t *testing.T) {
	raw, err := os.ReadFile(acqDocPath)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([0-9A-Z]{2}) \\|").FindAllStringSubmatch(string(raw), -1) {
		rows[m[1]] = m[2]
	}
	errs := map[string]error{
		"unknown_acquirer": routing.ErrUnknownAcquirer, "acquirer_mismatch": routing.ErrAcquirerMismatch,
		"not_bound": routing.ErrNotBound, "not_signed_on": routing.ErrNotSignedOn,
		"terminal_not_permitted": routing.ErrTerminalRefused, "operation_not_permitted": routing.ErrOperationRefused,
		"pin_block_format_not_permitted": routing.ErrFormatRefused, "unknown_key_index": routing.ErrUnknownKeyIndex,
		"key_block_required": routing.ErrKeyBlockRequired, "no_route": routing.ErrNoRoute,
		"new_pin_rejected": pinblock.ErrNewPINRejected, "invalid_pin_block": pinblock.ErrInvalidPINBlock,
		"format_error": routing.ErrFormat,
	}
	for reason, e := range errs {
		rsp := routing.ResponseFor(e)
		code, r := rsp.Code, rsp.Reason
		if r != reason {
			t.Errorf("ResponseFor(%v) reason = %s, want %s", e, r, reason)
		}
		if got, ok := rows[reason]; !ok {
			t.Errorf("docs/iso8583-acquirer.md: no refusal row for %s", reason)
		} else if got != code {
			t.Errorf("docs/iso8583-acquirer.md: %s answered %s, the code answers %s", reason, got, code)
		}
	}
}
