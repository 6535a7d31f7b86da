package iso8583

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/padding"
	"github.com/moov-io/iso8583/prefix"
	"github.com/moov-io/iso8583/specs"
	"gopkg.in/yaml.v3"
)

// A dialect is a moov-io/iso8583 message spec with a name. Its spec is data:
// a JSON or YAML file in the format of moov-io/iso8583's spec builder
// (specs.ImportJSON, specs.ImportYAML): a name and a map of fields, each
// with a type, length, description, enc and prefix, composites with a tag
// and subfields. The names a file may use are moov's builder tables plus
// pingate's own encodings (specEncodings, specPrefixes, specFieldTypes).
//
// pingate reads the files itself rather than calling moov's importer, for
// four reasons: moov's importer cannot attach a field's Packer/Unpacker,
// which the PIN block type needs; it walks the fields in map order, so the
// error reported for a file with several mistakes changes from run to run;
// it ignores unknown keys and an unknown padding or tag encoding, where a
// typo must be refused; and extending it means writing into moov's package
// globals. The format is moov's, key for key.

// DefaultIssuerDialect is the dialect of an issuer that names none: the
// built-in binary/BCD dialect (dialects/issuer.yaml).
const DefaultIssuerDialect = "issuer"

//go:embed dialects/acquirer.yaml dialects/issuer.yaml
var builtinFiles embed.FS

var (
	// AcquirerDialect is the built-in dialect of our acquirers (ATMs,
	// branch systems), dialects/acquirer.yaml: ISO 8583:1987 in ASCII.
	AcquirerDialect = mustBuiltin("acquirer")
	// IssuerDialect is the built-in dialect of card-issuing hosts,
	// dialects/issuer.yaml: ISO 8583:1987 packed binary/BCD.
	IssuerDialect = mustBuiltin(DefaultIssuerDialect)

	// AcquirerSpec is AcquirerDialect's message spec. Every element is
	// ASCII text; the bitmap is 16 upper-case hex digits per 64 bits
	// (primary, plus secondary when a field above 64 is present); variable
	// fields carry ASCII decimal length prefixes (LL or LLL) counting the
	// characters that follow. Character sets are enforced on pack and
	// unpack: n fields take digits only, an fields letters and digits, ans
	// fields printable ASCII (0x20-0x7E; no control characters). A field
	// that is not listed makes the whole message a format error.
	//
	// Deviation from ISO 8583:1987: DE 52 is b64 (8 bytes) in the standard,
	// which cannot hold the 16-byte ISO 9564-1 format 4 (AES) PIN block.
	// Here DE 52 is LLVAR: two ASCII digits giving the number of hex digits
	// that follow (16 for an 8-byte block of format 0, 1 or 3; 32 for a
	// 16-byte format 4 block), then the block as upper-case hex. DE 125
	// carries the new PIN block the same way behind an LLL prefix (016 or
	// 032). Any other length is a format error.
	AcquirerSpec = AcquirerDialect.Spec()
	// IssuerSpec is IssuerDialect's message spec: the same field numbers and
	// meanings as AcquirerSpec in the packed binary flavour issuing hosts
	// typically use — MTI and n fields BCD, bitmap raw, an/ans ASCII, BCD
	// length prefixes, PIN blocks raw behind a 1-byte binary length.
	// docs/iso8583-issuer.md lists it field by field.
	IssuerSpec = IssuerDialect.Spec()
)

func mustBuiltin(name string) *Dialect {
	b, err := builtinFiles.ReadFile("dialects/" + name + ".yaml")
	if err != nil {
		panic("iso8583: built-in dialect " + name + ": " + err.Error())
	}
	d, err := ParseDialect(name, b, "yaml")
	if err != nil {
		// An invalid static spec is the one reason to panic (STYLE.md §3).
		panic("iso8583: built-in dialect " + name + ": " + err.Error())
	}
	return d
}

// NewAcquirerMessage returns an empty message of the acquirer dialect.
func NewAcquirerMessage() *moov.Message { return moov.NewMessage(AcquirerSpec) }

// NewIssuerMessage returns an empty message of the issuer dialect.
func NewIssuerMessage() *moov.Message { return moov.NewMessage(IssuerSpec) }

// Dialect is a named, checked message spec: it carries every element
// pingate sends to an issuer or reads from one, in encodings that hold
// pingate's values (see ParseDialect). It is immutable and safe for
// concurrent use.
type Dialect struct {
	name string
	spec *moov.MessageSpec
	long bool // DE 52 and DE 125 hold 16-byte blocks too
}

// Takes16BytePINBlocks reports whether DE 52 and DE 125 hold 16-byte PIN
// blocks (ISO 9564-1 format 4, SM4) as well as 8-byte ones.
func (d *Dialect) Takes16BytePINBlocks() bool { return d.long }

// Name is the dialect's name in configuration (IssuerConfig.Dialect).
func (d *Dialect) Name() string { return d.name }

// Spec returns the moov message spec. The caller must not modify it.
func (d *Dialect) Spec() *moov.MessageSpec { return d.spec }

// Pack encodes f in the dialect; see the package function Pack.
func (d *Dialect) Pack(f *Fields) ([]byte, error) { return Pack(d.spec, f) }

// Unpack decodes a frame of the dialect; see the package function Unpack.
func (d *Dialect) Unpack(frame []byte) (*Fields, error) { return Unpack(d.spec, frame) }

// Registry maps dialect names to dialects: the built-in "acquirer" and
// "issuer", and those loaded from spec files at start-up. Build it before
// the gateway starts; it is not safe for concurrent modification.
type Registry struct {
	byName map[string]*Dialect
}

// ErrUnknownDialect is wrapped by Registry.Lookup for a name not registered.
var ErrUnknownDialect = errors.New("unknown dialect")

// NewRegistry returns a registry holding the two built-in dialects.
func NewRegistry() *Registry {
	return &Registry{byName: map[string]*Dialect{
		AcquirerDialect.name: AcquirerDialect,
		IssuerDialect.name:   IssuerDialect,
	}}
}

// Add registers d under its name; a name already taken is an error.
func (r *Registry) Add(d *Dialect) error {
	if _, ok := r.byName[d.name]; ok {
		return fmt.Errorf("dialect %q: name already registered", d.name)
	}
	r.byName[d.name] = d
	return nil
}

// Load reads a spec file (LoadDialect) and registers it under name.
func (r *Registry) Load(name, path string) error {
	if _, ok := r.byName[name]; ok {
		return fmt.Errorf("dialect %q: name already registered", name)
	}
	d, err := LoadDialect(name, path)
	if err != nil {
		return err
	}
	return r.Add(d)
}

// Lookup returns the dialect registered under name; the error wraps
// ErrUnknownDialect and lists the names known.
func (r *Registry) Lookup(name string) (*Dialect, error) {
	if d, ok := r.byName[name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownDialect, name, strings.Join(r.Names(), ", "))
}

// Names lists the registered dialects, sorted.
func (r *Registry) Names() []string { return slices.Sorted(maps.Keys(r.byName)) }

// SpecError is a problem in a dialect spec file. Field is the element
// ("52", "48.01", "48.tag"), or "" for the file as a whole.
type SpecError struct {
	Dialect string
	Field   string
	Problem string
}

func (e *SpecError) Error() string {
	if e.Field == "" {
		return "dialect " + e.Dialect + ": " + e.Problem
	}
	return "dialect " + e.Dialect + ": field " + e.Field + ": " + e.Problem
}

// The names a spec file may use: moov-io/iso8583's builder tables, copied
// once (moov's maps are never written), plus pingate's own. Ours carry the
// "pingate." prefix so a reader tells them from moov's.
var (
	// specEncodings are the names of "enc".
	specEncodings = withOurs(specs.EncodingsExtToInt, map[string]encoding.Encoder{
		"pingate.ASCII.n":   asciiN,
		"pingate.ASCII.an":  asciiAN,
		"pingate.ASCII.ans": asciiANS,
		"pingate.BCD.n":     bcdN,
	})
	// specPrefixes are the names of "prefix".
	specPrefixes = withOurs(specs.PrefixesExtToInt, map[string]prefix.Prefixer{
		"pingate.ASCII.LL":  asciiLL,
		"pingate.ASCII.LLL": asciiLLL,
		"pingate.BCD.LL":    bcdLL,
		"pingate.BCD.LLL":   bcdLLL,
	})
	// specFieldTypes are the names of "type".
	specFieldTypes = withOurs(specs.FieldConstructor, map[string]specs.FieldConstructorFunc{
		pinBlockType: newPINBlockField,
	})
)

// SpecNames lists, sorted, the names a spec file may give a field's type,
// enc and prefix.
func SpecNames() (types, encodings, prefixes []string) {
	return slices.Sorted(maps.Keys(specFieldTypes)), slices.Sorted(maps.Keys(specEncodings)), slices.Sorted(maps.Keys(specPrefixes))
}

// pinBlockType is a Binary field holding one ISO 9564-1 PIN block of 8 or
// 16 bytes and nothing else (pinBlockCodec). With enc HexToASCII the block
// travels as upper-case hex and the length counts hex digits; with Binary it
// is raw and the length counts bytes.
const pinBlockType = "pingate.PINBlock"

func newPINBlockField(spec *field.Spec) field.Field {
	c := pinBlockCodec{hexASCII: spec.Enc == encoding.BytesToASCIIHex}
	spec.Packer, spec.Unpacker = c, c
	return field.NewBinary(spec)
}

func withOurs[V any](moovs, ours map[string]V) map[string]V {
	m := maps.Clone(moovs)
	for k, v := range ours {
		if _, ok := m[k]; ok {
			panic("iso8583: spec name " + k + " is moov's already")
		}
		m[k] = v
	}
	return m
}

// specFile and fieldFile are the keys of moov's spec builder format
// (specDummy, fieldDummy in moov-io/iso8583 specs/builder.go).
type specFile struct {
	Name   string                `json:"name" yaml:"name"`
	Fields map[string]*fieldFile `json:"fields" yaml:"fields"`
}

type fieldFile struct {
	Type              string                `json:"type" yaml:"type"`
	Length            int                   `json:"length" yaml:"length"`
	Description       string                `json:"description" yaml:"description"`
	Enc               string                `json:"enc" yaml:"enc"`
	Prefix            string                `json:"prefix" yaml:"prefix"`
	Padding           *paddingFile          `json:"padding" yaml:"padding"`
	Tag               *tagFile              `json:"tag" yaml:"tag"`
	Subfields         map[string]*fieldFile `json:"subfields" yaml:"subfields"`
	Bitmap            *fieldFile            `json:"bitmap" yaml:"bitmap"`
	DisableAutoExpand bool                  `json:"disableAutoExpand" yaml:"disableAutoExpand"`
}

type paddingFile struct {
	Type string `json:"type" yaml:"type"`
	Pad  string `json:"pad" yaml:"pad"`
}

type tagFile struct {
	Length              int          `json:"length" yaml:"length"`
	Enc                 string       `json:"enc" yaml:"enc"`
	Padding             *paddingFile `json:"padding" yaml:"padding"`
	Sort                string       `json:"sort" yaml:"sort"`
	SkipUnknownTLVTags  bool         `json:"skipUnknownTLVTags" yaml:"skipUnknownTLVTags"`
	StoreUnknownTLVTags bool         `json:"storeUnknownTLVTags" yaml:"storeUnknownTLVTags"`
	PrefUnknownTLV      string       `json:"prefUnknownTLV" yaml:"prefUnknownTLV"`
}

var dialectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// LoadDialect reads a spec file: JSON if its name ends in .json, YAML if in
// .yaml or .yml. See ParseDialect.
func LoadDialect(name, path string) (*Dialect, error) {
	var format string
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		format = "json"
	case ".yaml", ".yml":
		format = "yaml"
	default:
		return nil, &SpecError{Dialect: name, Problem: "spec file " + path + ": name must end in .json, .yaml or .yml"}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &SpecError{Dialect: name, Problem: "spec file: " + err.Error()}
	}
	return ParseDialect(name, b, format)
}

// ParseDialect builds a dialect from a spec in format "json" or "yaml" and
// checks it for use with issuers. Unknown keys, types, encodings, prefixes,
// paddings and sorts are refused, and so is a length its prefix cannot
// express. The spec must define every element pingate sends to an issuer or
// reads from one (issuerNeeds) with the type pingate fills and a length
// that holds pingate's values; finally a sample of each message pingate
// sends or receives must pack and unpack to itself. The errors are
// *SpecError values naming the field, joined; several can come back.
func ParseDialect(name string, data []byte, format string) (*Dialect, error) {
	if !dialectName.MatchString(name) {
		return nil, &SpecError{Dialect: name, Problem: "name: want 1-32 of a-z, 0-9, '-', '_', starting with a letter or digit"}
	}
	var sf specFile
	switch format {
	case "json":
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sf); err != nil {
			return nil, &SpecError{Dialect: name, Problem: "not a JSON spec: " + err.Error()}
		}
	case "yaml":
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&sf); err != nil {
			return nil, &SpecError{Dialect: name, Problem: "not a YAML spec: " + err.Error()}
		}
	default:
		return nil, &SpecError{Dialect: name, Problem: "format " + strconv.Quote(format) + ": want json or yaml"}
	}
	b := &specBuilder{dialect: name}
	spec := b.build(&sf)
	if len(b.errs) == 0 {
		b.checkNeeds(spec)
	}
	if len(b.errs) == 0 {
		b.checkSamples(spec)
	}
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	long := issuerSamples()[0]
	long.PINBlock, long.NewPINBlock = make([]byte, 16), make([]byte, 16)
	_, err := Pack(spec, &long)
	return &Dialect{name: name, spec: spec, long: err == nil}, nil
}

type specBuilder struct {
	dialect string
	errs    []error
}

func (b *specBuilder) bad(field, format string, args ...any) {
	b.errs = append(b.errs, &SpecError{Dialect: b.dialect, Field: field, Problem: fmt.Sprintf(format, args...)})
}

func known[V any](m map[string]V) string { return strings.Join(slices.Sorted(maps.Keys(m)), ", ") }

func (b *specBuilder) build(sf *specFile) *moov.MessageSpec {
	spec := &moov.MessageSpec{Name: sf.Name, Fields: map[int]field.Field{}}
	if len(sf.Fields) == 0 {
		b.bad("", "no fields")
		return spec
	}
	for _, key := range slices.SortedFunc(maps.Keys(sf.Fields), compareIDs) {
		id, err := strconv.Atoi(key)
		if err != nil || id < 0 || id > 128 || strconv.Itoa(id) != key {
			b.bad(key, "field numbers are 0 (MTI), 1 (bitmap) and 2-128")
			continue
		}
		if f := b.field(key, sf.Fields[key]); f != nil {
			spec.Fields[id] = f
		}
	}
	return spec
}

// field builds one field, or returns nil after recording its problems.
func (b *specBuilder) field(path string, ff *fieldFile) field.Field {
	if ff == nil {
		b.bad(path, "empty")
		return nil
	}
	n := len(b.errs)
	construct, ok := specFieldTypes[ff.Type]
	if !ok {
		b.bad(path, "unknown type %q (known: %s)", ff.Type, known(specFieldTypes))
	}
	spec := &field.Spec{Length: ff.Length, Description: ff.Description, DisableAutoExpand: ff.DisableAutoExpand}
	if ff.Length <= 0 {
		b.bad(path, "length %d: want a positive maximum (or the fixed length)", ff.Length)
	}
	if spec.Pref, ok = specPrefixes[ff.Prefix]; !ok {
		b.bad(path, "unknown prefix %q (known: %s)", ff.Prefix, known(specPrefixes))
	} else if ff.Length > 0 && !isFixed(spec.Pref) {
		if _, err := spec.Pref.EncodeLength(ff.Length, ff.Length); err != nil {
			b.bad(path, "length %d does not fit prefix %s", ff.Length, ff.Prefix)
		}
	}
	if ff.Padding != nil {
		spec.Pad = b.padding(path, ff.Padding)
	}
	if ff.Type == "Composite" {
		if ff.Enc != "" {
			b.bad(path, "a Composite has no enc: its subfields and tag have their own")
		}
		if len(ff.Subfields) == 0 {
			b.bad(path, "a Composite needs subfields")
		}
		spec.Subfields = map[string]field.Field{}
		for _, key := range slices.Sorted(maps.Keys(ff.Subfields)) {
			if f := b.field(path+"."+key, ff.Subfields[key]); f != nil {
				spec.Subfields[key] = f
			}
		}
		if ff.Tag != nil {
			spec.Tag = b.tag(path+".tag", ff.Tag)
		}
		if ff.Bitmap != nil {
			if bm := b.field(path+".bitmap", ff.Bitmap); bm != nil {
				if spec.Bitmap, ok = bm.(*field.Bitmap); !ok {
					b.bad(path+".bitmap", "type must be Bitmap")
				}
			}
		}
	} else {
		if len(ff.Subfields) > 0 || ff.Tag != nil || ff.Bitmap != nil {
			b.bad(path, "subfields, tag and bitmap belong to a Composite, not a %s", ff.Type)
		}
		if spec.Enc, ok = specEncodings[ff.Enc]; !ok {
			b.bad(path, "unknown enc %q (known: %s)", ff.Enc, known(specEncodings))
		}
		if ff.Type == pinBlockType && ok && spec.Enc != encoding.BytesToASCIIHex && spec.Enc != encoding.Binary {
			b.bad(path, "a %s takes enc HexToASCII (hex digits) or Binary (raw bytes)", pinBlockType)
		}
	}
	if len(b.errs) > n {
		return nil
	}
	if ff.Type == "Composite" {
		// NewComposite panics on what Validate refuses.
		if err := spec.Validate(); err != nil {
			b.bad(path, "%v", err)
			return nil
		}
	}
	return construct(spec)
}

func (b *specBuilder) padding(path string, pf *paddingFile) padding.Padder {
	pad, ok := specs.PaddersExtToInt[pf.Type]
	if !ok {
		b.bad(path, "unknown padding type %q (known: %s)", pf.Type, known(specs.PaddersExtToInt))
		return nil
	}
	p := pad(pf.Pad)
	if p == nil {
		b.bad(path, "padding %s: pad must be one character", pf.Type)
	}
	return p
}

func (b *specBuilder) tag(path string, tf *tagFile) *field.TagSpec {
	t := &field.TagSpec{Length: tf.Length, SkipUnknownTLVTags: tf.SkipUnknownTLVTags, StoreUnknownTLVTags: tf.StoreUnknownTLVTags}
	if tf.Enc != "" {
		var ok bool
		if t.Enc, ok = specEncodings[tf.Enc]; !ok {
			b.bad(path, "unknown enc %q (known: %s)", tf.Enc, known(specEncodings))
		}
	}
	if tf.Padding != nil {
		t.Pad = b.padding(path, tf.Padding)
	}
	var ok bool
	if t.Sort, ok = specs.SortExtToInt[tf.Sort]; !ok {
		b.bad(path, "unknown sort %q (known: %s)", tf.Sort, known(specs.SortExtToInt))
	}
	if tf.PrefUnknownTLV != "" {
		if t.PrefUnknownTLV, ok = specPrefixes[tf.PrefUnknownTLV]; !ok {
			b.bad(path, "unknown prefUnknownTLV %q (known: %s)", tf.PrefUnknownTLV, known(specPrefixes))
		}
	}
	return t
}

// need is an element pingate sends to issuers or reads from them: its type
// in a spec file, and either the fixed size of pingate's values (size) or
// the longest one (max, for values of varying length, which need a variable
// prefix). Sizes count the field's units: digits or characters; PIN blocks
// are checked by checkSamples.
type need struct {
	id      string
	typ     string
	size    int
	max     int
	carries string
}

// issuerNeeds lists every element of the messages pingate exchanges with
// issuers (Usage: 0100/0110, 0420/0430, 0800/0810), plus DE 48 with the
// subfields branch operations carry.
var issuerNeeds = []need{
	{"0", "String", 4, 0, "the MTI (n4)"},
	{"1", "Bitmap", 8, 0, "the bitmap (8 bytes per 64 bits)"},
	{"2", "String", 0, 19, "the PAN (n..19)"},
	{"3", "String", 6, 0, "the processing code (n6)"},
	{"7", "String", 10, 0, "the transmission date and time (n10)"},
	{"11", "String", 6, 0, "the STAN (n6)"},
	{"12", "String", 6, 0, "the local time (n6)"},
	{"13", "String", 4, 0, "the local date (n4)"},
	{"32", "String", 0, 11, "the acquiring institution id (n..11)"},
	{"37", "String", 12, 0, "the retrieval reference number (an12)"},
	{"39", "String", 2, 0, "the response code (an2)"},
	{"41", "String", 8, 0, "the terminal id (ans8)"},
	{"42", "String", 15, 0, "the card acceptor id (ans15)"},
	{"48", "Composite", 0, (2 + 2 + 16) + (2 + 2 + 32) + (2 + 2 + 16), "the branch data (three tagged subfields)"},
	{"48.01", "String", 0, 16, "the teller id (ans..16)"},
	{"48.02", "String", 0, 32, "the identity-check reference (ans..32)"},
	{"48.03", "String", 0, 16, "the supervisor id (ans..16)"},
	{"52", pinBlockType, 0, 0, "the PIN block"},
	{"53", "String", 16, 0, "the security control information (n16)"},
	{"70", "String", 3, 0, "the network management code (n3)"},
	{"90", "String", 42, 0, "the original data elements (n42)"},
	{"100", "String", 0, 11, "the receiving institution id (n..11)"},
	{"125", pinBlockType, 0, 0, "the new PIN block"},
}

// fieldAt finds an element by key ("52", "48.01").
func fieldAt(spec *moov.MessageSpec, key string) field.Field {
	main, sub, isSub := strings.Cut(key, ".")
	id, _ := strconv.Atoi(main)
	f := spec.Fields[id]
	if !isSub || f == nil {
		return f
	}
	return f.Spec().Subfields[sub]
}

func typeName(f field.Field) string {
	switch f.(type) {
	case *field.String:
		return "String"
	case *field.Bitmap:
		return "Bitmap"
	case *field.Composite:
		return "Composite"
	case *field.Binary:
		if _, ok := f.Spec().Packer.(pinBlockCodec); ok {
			return pinBlockType
		}
		return "Binary"
	}
	return fmt.Sprintf("%T", f)
}

func isFixed(p prefix.Prefixer) bool { return strings.HasSuffix(p.Inspect(), "Fixed") }

func (b *specBuilder) checkNeeds(spec *moov.MessageSpec) {
	for _, n := range issuerNeeds {
		f := fieldAt(spec, n.id)
		if f == nil {
			b.bad(n.id, "missing: pingate sends or reads %s in this field", n.carries)
			continue
		}
		if t := typeName(f); t != n.typ {
			b.bad(n.id, "type %s: pingate puts %s here, which needs type %s", t, n.carries, n.typ)
			continue
		}
		s := f.Spec()
		switch {
		case n.size > 0 && isFixed(s.Pref) && s.Length != n.size:
			b.bad(n.id, "length %d: %s is exactly %d long", s.Length, n.carries, n.size)
		case n.size > 0 && s.Length < n.size:
			b.bad(n.id, "length %d: %s is %d long", s.Length, n.carries, n.size)
		case n.max > 0 && isFixed(s.Pref):
			b.bad(n.id, "prefix %s: %s varies in length; use a variable prefix (LL, LLL)", s.Pref.Inspect(), n.carries)
		case n.max > 0 && s.Length < n.max:
			b.bad(n.id, "length %d: %s can be %d long", s.Length, n.carries, n.max)
		}
	}
}

// issuerSamples are one message of each kind pingate exchanges with an
// issuer, with the longest values it sends and letters where an and ans
// elements allow them. They are never printed.
func issuerSamples() []Fields {
	hdr := Fields{
		PAN: "4000001234567890123", TransmissionTime: "1231235959", STAN: "999999", LocalTime: "235959",
		LocalDate: "1231", AcquirerID: "12345678901", RRN: "A1B2C3D4E5F6", TerminalID: "ATM 0042",
		CardAcceptorID: "BANK BRANCH 017", ReceivingInstitution: "98765432109",
	}
	req := hdr
	req.MTI, req.ProcessingCode, req.SecurityControl = MTIAuthRequest, ProcPINChange, "0099000000000000"
	req.PINBlock, req.NewPINBlock = bytes.Repeat([]byte{0xA5}, 8), bytes.Repeat([]byte{0x5A}, 8)
	req.Additional = &AdditionalData{
		TellerID: strings.Repeat("T", 16), IdentityRef: strings.Repeat("R", 32), SupervisorID: strings.Repeat("S", 16),
	}
	resp := hdr
	resp.MTI, resp.ProcessingCode, resp.ResponseCode = MTIAuthResponse, ProcPINChange, RCApproved
	rev := hdr
	rev.MTI, rev.ProcessingCode = MTIReversalAdvice, ProcPINChange
	rev.OriginalData = "0100" + "999999" + "1231235959" + "12345678901" + "00000000000"
	revResp := rev
	revResp.MTI, revResp.ResponseCode = MTIReversalResponse, RCApproved
	net := Fields{MTI: MTINetworkRequest, NetworkCode: NMIEcho, TransmissionTime: "1231235959", STAN: "999999",
		AcquirerID: "12345678901", ReceivingInstitution: "98765432109"}
	netResp := net
	netResp.MTI, netResp.ResponseCode = MTINetworkResponse, RCApproved
	return []Fields{req, resp, rev, revResp, net, netResp}
}

func (b *specBuilder) checkSamples(spec *moov.MessageSpec) {
	for _, want := range issuerSamples() {
		frame, err := Pack(spec, &want)
		var fe *FieldError
		if err != nil {
			if errors.As(err, &fe) && fe.Field != "" {
				b.bad(fe.Field, "cannot carry pingate's value in an %s: %s", want.MTI, fe.Problem)
			} else {
				b.bad("", "cannot pack an %s: %v", want.MTI, err)
			}
			return
		}
		got, err := Unpack(spec, frame)
		if err != nil {
			if errors.As(err, &fe) && fe.Field != "" {
				b.bad(fe.Field, "does not read back what it writes in an %s: %s", want.MTI, fe.Problem)
			} else {
				b.bad("", "does not read back the %s it writes: %v", want.MTI, err)
			}
			return
		}
		if id := firstDifferent(got, &want); id != "" {
			b.bad(id, "reads back a different value than it writes in an %s", want.MTI)
			return
		}
	}
}

// firstDifferent names the first element whose value differs in a and b,
// or returns "".
func firstDifferent(a, b *Fields) string {
	for _, e := range stringElems {
		if *e.ptr(a) != *e.ptr(b) {
			return strconv.Itoa(e.id)
		}
	}
	for _, e := range binaryElems {
		if !bytes.Equal(*e.ptr(a), *e.ptr(b)) {
			return strconv.Itoa(e.id)
		}
	}
	var x, y AdditionalData
	if a.Additional != nil {
		x = *a.Additional
	}
	if b.Additional != nil {
		y = *b.Additional
	}
	if x != y {
		return "48"
	}
	return ""
}
