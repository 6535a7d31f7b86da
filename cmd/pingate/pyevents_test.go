package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"pingate/integration/gateway"
	"pingate/integration/loadgen"
	"pingate/integration/testservers"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// backOffice is the part of scripts/backoffice_consumer.py's summary the
// test compares with what it drove.
type backOffice struct {
	Events      int            `json:"events"`
	WithoutCard int            `json:"without_card"`
	ByType      map[string]int `json:"by_type"`
	ByOutcome   map[string]int `json:"by_outcome"`
	ByChannel   map[string]int `json:"by_channel"`
	ByCode      map[string]int `json:"by_response_code"`
	Reversals   map[string]int `json:"reversals"`
	Violations  []string       `json:"violations"`
}

// TestPyBackOfficeConsumer runs scripts/backoffice_consumer.py, a social
// security back office's consumer of the outcome events written from
// docs/events.md and docs/events.schema.json alone (confluent-kafka, the
// CloudEvents SDK's Kafka binding, jsonschema), on the topic a gateway fills
// on a real Kafka broker. The test drives the gateway's TCP acquirer
// listener: an approved change, a wrong-PIN decline and a 0420 for it, a
// branch unblock and reset, an approved change its ATM reverses (twice), an
// issuer's 57 and 96, a branch terminal past its burst (61), a card range
// with no route, PANs too short to show (one at an operation the
// ATM may not ask for) and a frame that does not unpack (no event). The
// consumer must find every record as the docs say and count what was
// driven. Then it reads a copy of the topic with records tampered in ways
// the docs rule out (a header renamed, a PAN in the body, a wrong ce_type,
// ce_reverses on an event that undoes nothing, a local-time ce_time, a
// re-send that differs) and must refuse each, naming it and printing no PAN,
// while it takes a reversal recorded again by another instance.
// scripts/test-deps.sh installs the libraries; without them the test skips,
// and fails under CI=true.
func TestPyBackOfficeConsumer(t *testing.T) {
	py := needPython(t, "import confluent_kafka, cloudevents.core.bindings.kafka, jsonschema, rfc3339_validator",
		"confluent-kafka, cloudevents, jsonschema and rfc3339-validator")
	k := testservers.StartKafka(t)
	const topic, partitions, instance = "pingate.backoffice.v1", 3, "pyevents-test"
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	g := opsGateway(t, func(c *gateway.Config) {
		c.Instance = instance
		c.Events.KafkaBrokers, c.Events.KafkaTopic = []string{k.Brokers}, topic
	})
	pop := opsPopulation(g.Config().IssuerSim)
	ctx, atm := atmSession(t, g)
	_, branch := atmSession(t, g) // a connection serves one acquirer

	want := backOffice{ByType: map[string]int{}, ByOutcome: map[string]int{}, ByChannel: map[string]int{},
		ByCode: map[string]int{}, Reversals: map[string]int{}}
	event := func(typ, outcome, channel, code string) {
		want.Events++
		want.ByType[typ]++
		want.ByOutcome[outcome]++
		want.ByChannel[channel]++
		want.ByCode[code]++
	}
	var secrets bytes.Buffer // the consumer's --secrets file: every PAN and PIN block sent
	exchange := func(c *loadgen.Client, op loadgen.Op) (*iso8583.Fields, string) {
		t.Helper()
		f, err := op.Fields()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&secrets, "pan %s\n", op.PAN)
		for _, b := range [][]byte{f.PINBlock, f.NewPINBlock} {
			if len(b) > 0 {
				fmt.Fprintf(&secrets, "pin-block %s\n", hex.EncodeToString(b))
			}
		}
		ans, err := c.Do(ctx, f)
		if err != nil {
			t.Fatalf("%s at %s: %v", op.Proc, op.Terminal, err)
		}
		return f, ans.ResponseCode
	}
	send := func(c *loadgen.Client, op loadgen.Op, wantCode string) *iso8583.Fields {
		t.Helper()
		f, code := exchange(c, op)
		if code != wantCode {
			t.Fatalf("%s at %s answered %s, want %s", op.Proc, op.Terminal, code, wantCode)
		}
		return f
	}
	reverse := func(f *iso8583.Fields) {
		t.Helper()
		ans, err := atm.Do(ctx, reversalAdvice(t, f))
		if err != nil || ans.MTI != iso8583.MTIReversalResponse || ans.ResponseCode != iso8583.RCApproved {
			t.Fatalf("0420 at %s = %v, %v; want 0430 00", f.TerminalID, ans, err)
		}
	}
	branchOp := func(proc string, i int, newPIN string) loadgen.Op {
		return loadgen.Op{Acquirer: gateway.DevBranchAcquirer, Terminal: "BR0117T1", Proc: proc, PAN: pop.Card(i).PAN, NewPIN: newPIN,
			Format: pinblock.Format4, KeyID: devkeys.BranchZPK, Teller: "TELLER-0117-07", IDRef: "IDCHK-2026-000123"}
	}

	send(atm, opsChange(pop, 7600, "4826"), iso8583.RCApproved)
	event("pingate.pin.changed.v1", "approved", "atm", "00")

	wrong := opsChange(pop, 7601, "5931")
	wrong.OldPIN = "0007"
	declined := send(atm, wrong, iso8583.RCIncorrectPIN)
	event("pingate.pin.change.declined.v1", "declined", "atm", "55")
	reverse(declined) // acknowledged, recorded in no event: nothing was approved

	send(branch, branchOp(iso8583.ProcPINUnblock, 7602, ""), iso8583.RCApproved)
	event("pingate.pin.unblocked.v1", "approved", "branch", "00")
	send(branch, branchOp(iso8583.ProcPINReset, 7603, "3917"), iso8583.RCApproved)
	event("pingate.pin.reset.v1", "approved", "branch", "00")

	approved := send(atm, opsChange(pop, 7604, "7204"), iso8583.RCApproved)
	event("pingate.pin.changed.v1", "approved", "atm", "00")
	reverse(approved)
	event("pingate.pin.change.reversed.v1", "reversed", "atm", "68") // the 0420's DE 39
	want.Reversals["acquirer_reversal"]++
	reverse(approved) // a repeated 0420 records nothing more

	// Cards the simulated issuer answers specially (issuersim.Population).
	restricted, faulty := 999*len(pop.BINs), 998*len(pop.BINs)
	send(atm, opsChange(pop, restricted, "5931"), iso8583.RCNotPermittedCard)
	event("pingate.pin.change.declined.v1", "declined", "atm", "57")
	send(atm, opsChange(pop, faulty, "5931"), iso8583.RCSystemMalfunction)
	event("pingate.pin.change.failed.v1", "failed", "atm", "96")
	// One branch terminal past its burst: unblocks until one is limited.
	for i := 0; ; i++ {
		op := branchOp(iso8583.ProcPINUnblock, 7610, "")
		op.Terminal = "BR0117T2"
		if _, code := exchange(branch, op); code == iso8583.RCExceedsLimit {
			event("pingate.pin.unblock.limited.v1", "limited", "branch", "61")
			break
		} else if code != iso8583.RCApproved || i == 20 {
			t.Fatalf("unblock %d at one terminal answered %s, want 00 until 61", i+1, code)
		}
		event("pingate.pin.unblocked.v1", "approved", "branch", "00")
	}

	noRoute := opsChange(pop, 7605, "5931")
	noRoute.PAN = "5555555555554444"
	send(atm, noRoute, iso8583.RCNoSuchCard)
	event("pingate.pin.change.rejected.v1", "rejected", "atm", "14")

	// A PAN of 12 digits no event can show: refused (30) for it, its event
	// has no card; refused (58) for something checked before it, too.
	shortPAN := func(op loadgen.Op, wantCode string) {
		t.Helper()
		f, err := op.Fields()
		if err != nil {
			t.Fatal(err)
		}
		f.PAN = f.PAN[:12]
		fmt.Fprintf(&secrets, "pan %s\n", f.PAN)
		if ans, err := atm.Do(ctx, f); err != nil || ans.ResponseCode != wantCode {
			t.Fatalf("%s with a 12-digit PAN = %v, %v; want %s", op.Proc, ans, err, wantCode)
		}
		want.WithoutCard++
	}
	shortPAN(opsChange(pop, 7606, "5931"), iso8583.RCFormatError)
	event("pingate.pin.change.rejected.v1", "rejected", "atm", "30")
	atmReset := branchOp(iso8583.ProcPINReset, 7607, "5930") // ATM networks may only change PINs
	atmReset.Acquirer, atmReset.Terminal, atmReset.Format, atmReset.KeyID = gateway.DevATMAcquirer, "OPS07607", pinblock.Format0, devkeys.ATMZPK
	shortPAN(atmReset, iso8583.RCNotPermittedTerm)
	event("pingate.pin.reset.rejected.v1", "rejected", "atm", "58")
	// A frame that does not unpack is answered and recorded in no event.
	if code, err := rawExchange(ctx, g.AcquirerAddr(), []byte("0100GARBAGE")); err != nil || code != iso8583.RCFormatError {
		t.Fatalf("a frame that does not unpack = %q, %v; want 30", code, err)
	}

	dir := t.TempDir()
	secretsFile := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secretsFile, secrets.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("../../scripts/backoffice_consumer.py")
	consume := func(topic string, count int) (backOffice, string, error) {
		stdout, stderr, err := pyScript(t, py, script, "--bootstrap", k.Brokers, "--topic", topic,
			"--count", fmt.Sprint(count), "--timeout", "60", "--instance", instance, "--secrets", secretsFile)
		var got backOffice
		if jerr := json.Unmarshal(stdout, &got); jerr != nil {
			t.Fatalf("back office on %s: %v, summary not JSON (%v):\n%s%s", topic, err, jerr, stdout, stderr)
		}
		return got, string(stdout) + string(stderr), err
	}

	start := time.Now()
	got, out, err := consume(topic, want.Events)
	t.Logf("back office on %s (%v):\n%s", topic, time.Since(start).Round(time.Millisecond), out)
	if err != nil || len(got.Violations) > 0 {
		t.Fatalf("back office refused the gateway's events: %v, %d violations", err, len(got.Violations))
	}
	if got.Events != want.Events || got.WithoutCard != want.WithoutCard || !maps.Equal(got.ByType, want.ByType) ||
		!maps.Equal(got.ByOutcome, want.ByOutcome) || !maps.Equal(got.ByChannel, want.ByChannel) ||
		!maps.Equal(got.ByCode, want.ByCode) || !maps.Equal(got.Reversals, want.Reversals) {
		t.Errorf("back office counted %+v, want %+v", got, want)
	}

	// The same records, some tampered, on a second topic: each tampering
	// must be named.
	const tampered = "pingate.backoffice.tampered"
	testservers.CreateTopic(t, k.Brokers, tampered, partitions)
	recs := readTopic(t, k.Brokers, topic, partitions, want.Events, 30*time.Second)
	wantViolations := tamper(t, recs, k.Brokers, tampered, pop.Card(7601).PAN)
	got, out, err = consume(tampered, want.Events+2)
	if err == nil {
		t.Fatalf("back office took a tampered topic:\n%s", out)
	}
	for _, v := range wantViolations {
		if !strings.Contains(out, v) {
			t.Errorf("back office on the tampered topic does not report %q", v)
		}
	}
	if len(got.Violations) != len(wantViolations) {
		t.Errorf("back office on the tampered topic reports %d violations, want %d", len(got.Violations), len(wantViolations))
	}
	for _, line := range strings.Split(secrets.String(), "\n") {
		if pan, ok := strings.CutPrefix(line, "pan "); ok && strings.Contains(out, pan) {
			t.Error("back office printed a PAN")
		}
	}
	t.Logf("back office on %s: %d violations:\n%s", tampered, len(got.Violations), strings.Join(got.Violations, "\n"))
}

// tamper writes recs to topic (keys hashed as the gateway's relay does),
// one record of each of several types changed in a way docs/events.md rules
// out, one re-sent with another ce_time, and the acquirer's reversal
// recorded again as the docs allow; it returns what the consumer must say
// about them. pan is a PAN put where no PAN may be.
func tamper(t *testing.T, recs map[string]kafka.Message, brokers, topic, pan string) []string {
	t.Helper()
	var msgs []kafka.Message
	var want []string
	done := map[string]bool{}
	header := func(m *kafka.Message, name string) (int, string) {
		for i, h := range m.Headers {
			if h.Key == name {
				return i, string(h.Value)
			}
		}
		return -1, ""
	}
	for _, m := range recs {
		m := kafka.Message{Key: m.Key, Value: m.Value, Headers: append([]kafka.Header(nil), m.Headers...), Time: m.Time}
		_, typ := header(&m, "ce_type")
		if done[typ] {
			msgs = append(msgs, m)
			continue
		}
		done[typ] = true
		switch typ {
		case "pingate.pin.changed.v1":
			i, _ := header(&m, "ce_subject")
			m.Headers[i].Key = "ce_subjet"
			want = append(want, "ce_subject is not the card token")
		case "pingate.pin.change.declined.v1":
			var body map[string]any
			if err := json.Unmarshal(m.Value, &body); err != nil {
				t.Fatal(err)
			}
			body["terminal"] = pan
			m.Value, _ = json.Marshal(body)
			want = append(want, "value holds a PAN passed with --pan", "terminal holds a run of 12+ decimal")
		case "pingate.pin.unblocked.v1":
			i, _ := header(&m, "ce_type")
			m.Headers[i].Value = []byte("pingate.pin.unblock.declined.v1")
			want = append(want, "ce_type pingate.pin.unblock.declined.v1 for operation unblock, outcome approved")
		case "pingate.pin.reset.rejected.v1":
			m.Headers = append(m.Headers, kafka.Header{Key: "ce_reverses", Value: []byte(uuid.NewString())})
			want = append(want, "ce_reverses on a rejected event")
		case "pingate.pin.change.reversed.v1":
			// Recorded again, by another instance a second later: allowed.
			msgs = append(msgs, m)
			again := kafka.Message{Key: m.Key, Headers: append([]kafka.Header(nil), m.Headers...), Time: m.Time.Add(time.Second)}
			var body map[string]any
			if err := json.Unmarshal(m.Value, &body); err != nil {
				t.Fatal(err)
			}
			completed, err := time.Parse(time.RFC3339Nano, body["completed"].(string))
			if err != nil {
				t.Fatal(err)
			}
			at := completed.Add(time.Second).Format(time.RFC3339Nano)
			body["received"], body["completed"] = at, at
			again.Value, _ = json.Marshal(body)
			i, _ := header(&again, "ce_time")
			again.Headers[i].Value = []byte(at)
			i, _ = header(&again, "ce_source")
			again.Headers[i].Value = []byte("/pingate/another-instance")
			m = again
		case "pingate.pin.reset.v1":
			i, v := header(&m, "ce_time")
			m.Headers[i].Value = []byte(strings.TrimSuffix(v, "Z") + "+00:00")
			want = append(want, "ce_time is not an RFC 3339 UTC time")
		case "pingate.pin.change.rejected.v1":
			msgs = append(msgs, m) // then a re-send of it at another instant
			again := kafka.Message{Key: m.Key, Value: m.Value, Headers: append([]kafka.Header(nil), m.Headers...), Time: m.Time}
			i, v := header(&again, "ce_time")
			b := []byte(v)
			b[len(b)-2] = '0' + (b[len(b)-2]-'0'+1)%10 // the last digit before "Z"
			again.Headers[i].Value = b
			m = again
			want = append(want, "re-sent ce_id differs from its first record")
		}
		msgs = append(msgs, m)
	}
	writeEvents(t, brokers, topic, msgs)
	return want
}
