package iso8583

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"

	moov "github.com/moov-io/iso8583"
)

// goldenMessage is one entry of testdata/golden.json.
type goldenMessage struct {
	Name     string            `json:"name"`
	Source   string            `json:"source"`
	Fields   map[string]string `json:"fields"`
	Acquirer map[string]string `json:"acquirer_wire"` // ASCII text per field
	Issuer   map[string]string `json:"issuer_wire"`   // hex per field
}

// loadGolden reads testdata/golden.json, the one loader of golden messages.
func loadGolden(t testing.TB) []goldenMessage {
	t.Helper()
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Messages []goldenMessage `json:"messages"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Messages) == 0 {
		t.Fatal("no golden messages")
	}
	return doc.Messages
}

// wireOrder lists the keys of a wire map in field order.
func wireOrder(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareIDs)
	return keys
}

// wire concatenates the golden segments; it also returns where each field
// starts, to name the field of a mismatch without printing bytes.
func (g goldenMessage) wire(t testing.TB, acquirer bool) ([]byte, []string, []int) {
	t.Helper()
	m := g.Issuer
	if acquirer {
		m = g.Acquirer
	}
	var out []byte
	var ids []string
	var starts []int
	for _, id := range wireOrder(m) {
		ids = append(ids, id)
		starts = append(starts, len(out))
		if acquirer {
			out = append(out, m[id]...)
			continue
		}
		b, err := hex.DecodeString(m[id])
		if err != nil {
			t.Fatalf("%s: issuer_wire field %s is not hex", g.Name, id)
		}
		out = append(out, b...)
	}
	return out, ids, starts
}

// fields builds the Fields a golden message describes.
func (g goldenMessage) fields(t testing.TB) *Fields {
	t.Helper()
	f := &Fields{}
	var add AdditionalData
	for id, v := range g.Fields {
		switch id {
		case "0":
			f.MTI = v
		case "2":
			f.PAN = v
		case "3":
			f.ProcessingCode = v
		case "7":
			f.TransmissionTime = v
		case "11":
			f.STAN = v
		case "12":
			f.LocalTime = v
		case "13":
			f.LocalDate = v
		case "32":
			f.AcquirerID = v
		case "37":
			f.RRN = v
		case "39":
			f.ResponseCode = v
		case "41":
			f.TerminalID = v
		case "42":
			f.CardAcceptorID = v
		case "48.01":
			add.TellerID = v
		case "48.02":
			add.IdentityRef = v
		case "48.03":
			add.SupervisorID = v
		case "48.04":
			add.BranchID = v
		case "52", "125":
			b, err := hex.DecodeString(v)
			if err != nil {
				t.Fatalf("%s: field %s is not hex", g.Name, id)
			}
			if id == "52" {
				f.PINBlock = b
			} else {
				f.NewPINBlock = b
			}
		case "53":
			f.SecurityControl = v
		case "70":
			f.NetworkCode = v
		case "90":
			f.OriginalData = v
		case "100":
			f.ReceivingInstitution = v
		case "123":
			f.KeyExchange = v
		default:
			t.Fatalf("%s: unknown field %s in golden.json", g.Name, id)
		}
	}
	if add != (AdditionalData{}) {
		f.Additional = &add
	}
	return f
}

// firstDiff names the field where got first differs from want, without
// printing either (they hold PANs and PIN blocks).
func firstDiff(got, want []byte, ids []string, starts []int) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	field := "?"
	for k, s := range starts {
		if s <= i {
			field = ids[k]
		}
	}
	return "byte " + strconv.Itoa(i) + " (in field " + field + "), lengths " + strconv.Itoa(len(got)) + " and " + strconv.Itoa(len(want))
}

func dialects() []struct {
	name     string
	spec     *moov.MessageSpec
	acquirer bool
} {
	return []struct {
		name     string
		spec     *moov.MessageSpec
		acquirer bool
	}{{"acquirer", AcquirerSpec, true}, {"issuer", IssuerSpec, false}}
}

func TestGoldenPack(t *testing.T) {
	for _, g := range loadGolden(t) {
		for _, d := range dialects() {
			t.Run(d.name+"/"+g.Name, func(t *testing.T) {
				want, ids, starts := g.wire(t, d.acquirer)
				got, err := Pack(d.spec, g.fields(t))
				if err != nil {
					t.Fatalf("Pack(%s) error: %v", g.Name, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("Pack(%s) differs from golden at %s", g.Name, firstDiff(got, want, ids, starts))
				}
			})
		}
	}
}

func TestGoldenUnpack(t *testing.T) {
	for _, g := range loadGolden(t) {
		for _, d := range dialects() {
			t.Run(d.name+"/"+g.Name, func(t *testing.T) {
				frame, _, _ := g.wire(t, d.acquirer)
				got, err := Unpack(d.spec, frame)
				if err != nil {
					t.Fatalf("Unpack(%s) error: %v", g.Name, err)
				}
				want := g.fields(t)
				if !reflect.DeepEqual(got, want) {
					// String masks the PAN and redacts the PIN blocks.
					t.Errorf("Unpack(%s) = %v, want %v", g.Name, got, want)
				}
				if err := got.Check(); err != nil {
					t.Errorf("Unpack(%s).Check() = %v, want nil", g.Name, err)
				}
			})
		}
	}
}

// TestGoldenCoverage: every message kind of Usage has a golden message, so
// the docs show one of each.
func TestGoldenCoverage(t *testing.T) {
	have := map[string]bool{}
	for _, g := range loadGolden(t) {
		f := g.fields(t)
		code := f.ProcessingCode
		if codeField(f.MTI) == "70" {
			code = f.NetworkCode
		}
		have[f.MTI+"/"+code] = true
	}
	need := []string{
		"0100/700000", "0100/710000", "0100/720000", "0110/700000", "0110/710000", "0110/720000",
		"0420/700000", "0430/700000",
		"0800/001", "0810/001", "0800/002", "0810/002", "0800/301", "0810/301", "0800/161", "0810/161",
	}
	for _, k := range need {
		if !have[k] {
			t.Errorf("no golden message for %s", k)
		}
	}
}
