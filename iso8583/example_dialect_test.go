package iso8583

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The example third dialect of docs/dialects: a bank host's variant,
// loaded from its spec file as the gateway loads it.
const exampleBankSpec = "../docs/dialects/example-bank.yaml"

// TestExampleBankGolden packs the golden 0100/0110 pair of
// docs/dialects/example-bank.golden.json (bytes derived by golden_gen.py
// from the documented layout) with the loaded spec file, and unpacks them.
func TestExampleBankGolden(t *testing.T) {
	d, err := LoadDialect("example-bank", exampleBankSpec)
	if err != nil {
		t.Fatalf("LoadDialect(%s): %v", exampleBankSpec, err)
	}
	b, err := os.ReadFile("../docs/dialects/example-bank.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Messages []struct {
			Name   string            `json:"name"`
			Fields map[string]string `json:"fields"`
			Wire   map[string]string `json:"wire"`
			Packed string            `json:"packed"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Messages) != 2 {
		t.Fatalf("%d golden messages, want the 0100/0110 pair", len(doc.Messages))
	}
	readme, err := os.ReadFile("../docs/dialects/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range doc.Messages {
		t.Run(m.Name, func(t *testing.T) {
			g := goldenMessage{Name: m.Name, Fields: m.Fields, Issuer: m.Wire}
			want, ids, starts := g.wire(t, false)
			if packed, err := hex.DecodeString(m.Packed); err != nil || !bytes.Equal(packed, want) {
				t.Fatalf("%s: packed is not the concatenation of wire", m.Name)
			}
			// The README prints the packed message, 32 bytes a line.
			for i := 0; i < len(m.Packed); i += 64 {
				line := fmt.Sprintf("%04x: %s", i/2, m.Packed[i:min(i+64, len(m.Packed))])
				if !strings.Contains(string(readme), line) {
					t.Errorf("docs/dialects/README.md lacks line %04x of %s", i/2, m.Name)
				}
			}
			f := g.fields(t)
			got, err := d.Pack(f)
			if err != nil {
				t.Fatalf("Pack(%s) error: %v", m.Name, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Pack(%s) differs from golden at %s", m.Name, firstDiff(got, want, ids, starts))
			}
			back, err := d.Unpack(want)
			if err != nil {
				t.Fatalf("Unpack(%s) error: %v", m.Name, err)
			}
			if !reflect.DeepEqual(back, f) {
				t.Errorf("Unpack(%s) = %v, want %v", m.Name, back, f)
			}
			if err := back.Check(); err != nil {
				t.Errorf("Unpack(%s).Check() = %v, want nil", m.Name, err)
			}
			// The same message in the built-in issuer dialect is different
			// bytes: the example really is another dialect.
			if other, err := IssuerDialect.Pack(f); err == nil && bytes.Equal(other, got) {
				t.Errorf("Pack(%s) is the same in the issuer dialect", m.Name)
			}
		})
	}
	// The host takes 8-byte blocks only: a 16-byte (format 4) block is a
	// format error in DE 52.
	f := &Fields{MTI: MTIAuthRequest, PINBlock: make([]byte, 16)}
	if _, err := d.Pack(f); err == nil {
		t.Error("Pack with a 16-byte PIN block: no error")
	}
	// DE 123 is not in the dialect: packing it says so, naming the field.
	_, err = d.Pack(&Fields{MTI: MTINetworkRequest, KeyExchange: "00/00"})
	if fe := (*FieldError)(nil); !errors.As(err, &fe) || fe.Field != "123" || fe.Problem != "not in this dialect" {
		t.Errorf("Pack(DE 123) error = %v, want field 123 not in this dialect", err)
	}
	if d.Takes16BytePINBlocks() || !IssuerDialect.Takes16BytePINBlocks() || !AcquirerDialect.Takes16BytePINBlocks() {
		t.Errorf("Takes16BytePINBlocks: example-bank %v, issuer %v, acquirer %v; want false, true, true",
			d.Takes16BytePINBlocks(), IssuerDialect.Takes16BytePINBlocks(), AcquirerDialect.Takes16BytePINBlocks())
	}
}

// TestExampleBankJSON: the same spec written as JSON builds the same
// dialect, field by field.
func TestExampleBankJSON(t *testing.T) {
	y, err := os.ReadFile(exampleBankSpec)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(y, &doc); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(jsonable(doc))
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := ParseDialect("example-bank", y, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := ParseDialect("example-bank", j, "json")
	if err != nil {
		t.Fatalf("ParseDialect(JSON of %s): %v", exampleBankSpec, err)
	}
	want := fromYAML.Spec().Fields
	for _, id := range slices.Sorted(maps.Keys(want)) {
		sameField(t, strconv.Itoa(id), fromJSON.Spec().Fields[id], want[id])
	}
}

// jsonable turns yaml.v3's map[string]any (with int keys for field numbers)
// into something encoding/json takes.
func jsonable(v any) any {
	switch m := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range m {
			out[k] = jsonable(x)
		}
		return out
	case map[any]any:
		out := map[string]any{}
		for k, x := range m {
			out[toString(k)] = jsonable(x)
		}
		return out
	}
	return v
}

func toString(k any) string {
	if i, ok := k.(int); ok {
		return strconv.Itoa(i)
	}
	return k.(string)
}

// A gateway's dialects: the built-in ones and a bank's, loaded from its
// spec file; each issuer then packs with the dialect it names.
func ExampleRegistry() {
	r := NewRegistry()
	if err := r.Load("example-bank", "../docs/dialects/example-bank.yaml"); err != nil {
		fmt.Println(err)
		return
	}
	d, err := r.Lookup("example-bank")
	fmt.Println(r.Names(), d.Name(), d.Takes16BytePINBlocks(), err)
	_, err = r.Lookup("other-bank")
	fmt.Println(err)
	// Output:
	// [acquirer example-bank issuer] example-bank false <nil>
	// unknown dialect "other-bank" (known: acquirer, example-bank, issuer)
}

// A spec file's problems come back naming the dialect and the field.
func ExampleParseDialect() {
	_, err := ParseDialect("tiny", []byte(`{"name": "tiny", "fields": {
		"0": {"type": "String", "length": 4, "enc": "pingate.ASCII.n", "prefix": "ASCII.Fixed"},
		"2": {"type": "String", "length": 0, "enc": "pingate.ASCII.n", "prefix": "pingate.ASCII.LL"}}}`), "json")
	fmt.Println(err)
	// Output:
	// dialect tiny: field 2: length 0: want a positive maximum (or the fixed length)
}
