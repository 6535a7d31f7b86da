package iso8583

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/specs"
)

// TestBuiltinSpecsEqualGoSpecs: the embedded spec files build the very specs
// the Go declarations did (gospec_test.go), field by field, so nothing on the
// wire changed when the specs became data.
func TestBuiltinSpecsEqualGoSpecs(t *testing.T) {
	tests := []struct {
		name string
		give *moov.MessageSpec
		want *moov.MessageSpec
	}{
		{"acquirer", AcquirerSpec, goAcquirerSpec},
		{"issuer", IssuerSpec, goIssuerSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.give.Name != tt.want.Name {
				t.Errorf("Name = %q, want %q", tt.give.Name, tt.want.Name)
			}
			ids := slices.Sorted(maps.Keys(tt.want.Fields))
			if got := slices.Sorted(maps.Keys(tt.give.Fields)); !slices.Equal(got, ids) {
				t.Fatalf("fields = %v, want %v", got, ids)
			}
			for _, id := range ids {
				sameField(t, strconv.Itoa(id), tt.give.Fields[id], tt.want.Fields[id])
			}
		})
	}
}

// sameField compares two fields: their type and every part of their spec,
// encoders, prefixers, packers and sort functions by identity.
func sameField(t errorReporter, path string, give, want field.Field) {
	t.Helper()
	if reflect.TypeOf(give) != reflect.TypeOf(want) {
		t.Errorf("field %s: type %T, want %T", path, give, want)
		return
	}
	g, w := give.Spec(), want.Spec()
	checks := []struct {
		what string
		ok   bool
	}{
		{"Length", g.Length == w.Length},
		{"Description", g.Description == w.Description},
		{"Enc", g.Enc == w.Enc},
		{"Pref", g.Pref == w.Pref},
		{"Pad", g.Pad == w.Pad},
		{"Packer", g.Packer == w.Packer},
		{"Unpacker", g.Unpacker == w.Unpacker},
		{"DisableAutoExpand", g.DisableAutoExpand == w.DisableAutoExpand},
		{"Bitmap", (g.Bitmap == nil) == (w.Bitmap == nil)},
		{"Tag", (g.Tag == nil) == (w.Tag == nil)},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("field %s: %s differs", path, c.what)
		}
	}
	if g.Tag != nil && w.Tag != nil {
		gt, wt := g.Tag, w.Tag
		if gt.Length != wt.Length || gt.Enc != wt.Enc || gt.Pad != wt.Pad ||
			reflect.ValueOf(gt.Sort).Pointer() != reflect.ValueOf(wt.Sort).Pointer() ||
			gt.PrefUnknownTLV != wt.PrefUnknownTLV || gt.SkipUnknownTLVTags != wt.SkipUnknownTLVTags ||
			gt.StoreUnknownTLVTags != wt.StoreUnknownTLVTags {
			t.Errorf("field %s: Tag differs", path)
		}
	}
	subs := slices.Sorted(maps.Keys(w.Subfields))
	if got := slices.Sorted(maps.Keys(g.Subfields)); !slices.Equal(got, subs) {
		t.Errorf("field %s: subfields %v, want %v", path, got, subs)
		return
	}
	for _, k := range subs {
		sameField(t, path+"."+k, g.Subfields[k], w.Subfields[k])
	}
}

// TestSameFieldNotices: the comparison can fail — a changed length, prefix,
// encoder or packer is caught.
func TestSameFieldNotices(t *testing.T) {
	b, err := builtinFiles.ReadFile("dialects/issuer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, from, to, field string }{
		{"length", "length: 19\n", "length: 20\n", "2"},
		{"prefix", "prefix: pingate.BCD.LL\n", "prefix: BCD.LL\n", "2"},
		{"enc", "enc: pingate.ASCII.an\n", "enc: pingate.ASCII.ans\n", "37"},
		{"packer", "enc: Binary\n    prefix: Binary.L\n", "enc: HexToASCII\n    prefix: Binary.L\n", "52"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(string(b), tt.from, tt.to, 1)
			d, err := ParseDialect("changed", []byte(src), "yaml")
			if err != nil {
				t.Skipf("the change makes the spec invalid: %v", err)
			}
			id, _ := strconv.Atoi(tt.field)
			rec := &recorder{}
			sameField(rec, tt.field, d.Spec().Fields[id], goIssuerSpec.Fields[id])
			if !rec.failed {
				t.Errorf("changing %s of field %s went unnoticed", tt.name, tt.field)
			}
		})
	}
}

// errorReporter is the part of *testing.T sameField uses.
type errorReporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// recorder lets TestSameFieldNotices run sameField without failing.
type recorder struct{ failed bool }

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }

// TestMoovExportReadsBack: the spec-file format is moov-io's: a spec
// exported by moov's own builder (specs.ExportJSON) builds into the same
// spec. moov's ISO 8583:1987 ASCII spec serves; it is not a dialect pingate
// could use with issuers (no pingate.PINBlock), so only the build step runs.
func TestMoovExportReadsBack(t *testing.T) {
	raw, err := specs.ExportJSON(specs.Spec87ASCII)
	if err != nil {
		t.Fatal(err)
	}
	var sf specFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		t.Fatalf("moov's export does not decode as a spec file: %v", err)
	}
	b := &specBuilder{dialect: "moov87"}
	spec := b.build(&sf)
	if len(b.errs) > 0 {
		t.Fatalf("build(moov's Spec87ASCII export): %v", errors.Join(b.errs...))
	}
	for id, want := range specs.Spec87ASCII.Fields {
		got := spec.Fields[id]
		if reflect.TypeOf(got) != reflect.TypeOf(want) || got.Spec().Length != want.Spec().Length ||
			got.Spec().Pref != want.Spec().Pref || got.Spec().Enc != want.Spec().Enc {
			t.Errorf("field %d differs from moov's", id)
		}
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	if got, want := r.Names(), []string{"acquirer", "issuer"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	d, err := r.Lookup(DefaultIssuerDialect)
	if err != nil || d != IssuerDialect {
		t.Errorf("Lookup(%q) = %v, %v, want IssuerDialect", DefaultIssuerDialect, d, err)
	}
	if _, err := r.Lookup("nope"); !errors.Is(err, ErrUnknownDialect) {
		t.Errorf("Lookup(nope) error = %v, want ErrUnknownDialect", err)
	}
	if err := r.Add(IssuerDialect); err == nil {
		t.Error("Add(issuer) twice: no error")
	}
	b, err := builtinFiles.ReadFile("dialects/issuer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "copy.yml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Load("copy", path); err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if d, err := r.Lookup("copy"); err != nil || d.Name() != "copy" {
		t.Errorf("Lookup(copy) = %v, %v", d, err)
	}
	if err := r.Load("copy", path); err == nil {
		t.Error("Load(copy) twice: no error")
	}
}

// The spec file of a broken dialect: the issuer spec with one change each.
func TestParseDialectErrors(t *testing.T) {
	b, err := builtinFiles.ReadFile("dialects/issuer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	issuer := string(b)
	tests := []struct {
		name      string
		give      string
		format    string
		wantField string
		wantIn    string
	}{
		{"unknown enc", strings.Replace(issuer, "enc: pingate.ASCII.an\n", "enc: ASCII.an\n", 1), "yaml", "37", `unknown enc "ASCII.an"`},
		{"unknown prefix", strings.Replace(issuer, "prefix: pingate.BCD.LL\n", "prefix: BCD.L2\n", 1), "yaml", "2", `unknown prefix "BCD.L2"`},
		{"unknown type", strings.Replace(issuer, "type: pingate.PINBlock", "type: PINBlock", 1), "yaml", "52", `unknown type "PINBlock"`},
		{"unknown sort", strings.Replace(issuer, "sort: StringsByInt", "sort: ByInt", 1), "yaml", "48.tag", `unknown sort "ByInt"`},
		{"length beyond prefix", strings.Replace(issuer, "length: 19\n", "length: 190\n", 1), "yaml", "2", "length 190 does not fit prefix pingate.BCD.LL"},
		{"fixed length wrong", strings.Replace(issuer, "length: 6\n    description: Processing Code", "length: 5\n    description: Processing Code", 1), "yaml", "3", "length 5: the processing code (n6) is exactly 6 long"},
		{"variable too short", strings.Replace(issuer, "length: 19\n", "length: 16\n", 1), "yaml", "2", "length 16: the PAN (n..19) can be 19 long"},
		{"zero length", strings.Replace(issuer, "length: 19\n", "length: 0\n", 1), "yaml", "2", "length 0"},
		{"missing DE 39", cutField(issuer, "39"), "yaml", "39", "missing"},
		{"missing DE 52", cutField(issuer, "52"), "yaml", "52", "missing"},
		{"missing DE 11", cutField(issuer, "11"), "yaml", "11", "missing"},
		{"wrong type for PIN block", strings.Replace(issuer, "type: pingate.PINBlock", "type: Binary", 1), "yaml", "52", "needs type pingate.PINBlock"},
		{"BCD for letters", strings.Replace(issuer, "enc: pingate.ASCII.ans\n    prefix: ASCII.Fixed", "enc: pingate.BCD.n\n    prefix: ASCII.Fixed", 1), "yaml", "41", "cannot carry pingate's value"},
		{"PIN block in ASCII", strings.Replace(issuer, "enc: Binary\n    prefix: Binary.L", "enc: ASCII\n    prefix: Binary.L", 1), "yaml", "52", "takes enc HexToASCII"},
		{"bad field number", strings.Replace(issuer, "\n  7:\n", "\n  seven:\n", 1), "yaml", "seven", "field numbers"},
		{"unknown key", strings.Replace(issuer, "    enc: pingate.BCD.n\n", "    encoding: pingate.BCD.n\n", 1), "yaml", "", "encoding"},
		{"not json", "{", "json", "", "not a JSON spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.give == issuer {
				t.Fatal("the test's change did not apply")
			}
			_, err := ParseDialect("broken", []byte(tt.give), tt.format)
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("ParseDialect() error = %v, want a *SpecError", err)
			}
			if se.Field != tt.wantField || !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("ParseDialect() error = %v (field %q), want field %q and %q", err, se.Field, tt.wantField, tt.wantIn)
			}
		})
	}
}

// cutField removes field id (its comment lines stay) from a spec file in
// the layout of dialects/*.yaml.
func cutField(src, id string) string {
	lines := strings.Split(src, "\n")
	var out []string
	skip := false
	for _, l := range lines {
		if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "   ") {
			skip = l == "  "+id+":"
		}
		if !skip {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestLoadDialectFileNames(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "spec.txt")
	if err := os.WriteFile(txt, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDialect("x", txt); err == nil || !strings.Contains(err.Error(), ".json, .yaml or .yml") {
		t.Errorf("LoadDialect(.txt) error = %v, want the extensions named", err)
	}
	if _, err := LoadDialect("x", filepath.Join(dir, "absent.json")); err == nil {
		t.Error("LoadDialect(absent) = nil error")
	}
	if _, err := ParseDialect("Bad Name", nil, "json"); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("ParseDialect(bad name) error = %v", err)
	}
}

// FuzzParseDialect: no spec file, however broken, panics the loader; what
// it accepts is a dialect whose samples round-trip, and what it refuses
// comes back as *SpecError values.
func FuzzParseDialect(f *testing.F) {
	for _, name := range []string{"dialects/issuer.yaml", "dialects/acquirer.yaml"} {
		b, err := builtinFiles.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	if b, err := os.ReadFile(exampleBankSpec); err == nil {
		f.Add(b, false)
	}
	if raw, err := specs.ExportJSON(specs.Spec87ASCII); err == nil {
		f.Add(raw, true)
	}
	f.Add([]byte(`{"fields":{"48":{"type":"Composite","length":9,"prefix":"ASCII.LL","bitmap":{"type":"Bitmap","length":1,"enc":"Binary","prefix":"Binary.Fixed"},"subfields":{"x":{"type":"String","length":1,"enc":"ASCII","prefix":"ASCII.Fixed"}}}}}`), true)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		format := "yaml"
		if isJSON {
			format = "json"
		}
		parseAnything(t, data, format)
	})
}

// parseAnything: ParseDialect on any input returns *SpecError values or a
// dialect whose samples pack and unpack.
func parseAnything(t *testing.T, data []byte, format string) {
	d, err := ParseDialect("fuzz", data, format)
	if err != nil {
		var se *SpecError
		if !errors.As(err, &se) {
			t.Fatalf("ParseDialect error %T is not a *SpecError", err)
		}
		return
	}
	for _, want := range issuerSamples() {
		b, err := d.Pack(&want)
		if err != nil {
			t.Fatalf("an accepted dialect does not pack its %s sample: %v", want.MTI, err)
		}
		if _, err := d.Unpack(b); err != nil {
			t.Fatalf("an accepted dialect does not unpack its %s sample: %v", want.MTI, err)
		}
	}
}

// TestParseDialectMutations runs parseAnything on 3000 spec files, each the
// issuer spec with up to four random bytes changed (a fixed seed, so a
// failure repeats). It complements FuzzParseDialect in the ordinary test run.
func TestParseDialectMutations(t *testing.T) {
	b, err := builtinFiles.ReadFile("dialects/issuer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		m := append([]byte(nil), b...)
		for range 1 + r.IntN(4) {
			m[r.IntN(len(m))] = byte(r.IntN(256))
		}
		parseAnything(t, m, "yaml")
	}
}
