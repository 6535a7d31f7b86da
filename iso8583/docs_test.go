package iso8583

import (
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	moov "github.com/moov-io/iso8583"
)

// The docs carry generated sections between <!-- BEGIN generated:NAME -->
// and <!-- END generated:NAME --> markers: the field use per message kind,
// the response codes and a packed example of every golden message. The test
// fails when a section differs from what the code produces now;
// go test ./iso8583 -run TestDocs -update rewrites them.

var update = flag.Bool("update", false, "rewrite the generated sections of docs/iso8583-*.md")

var docs = []struct {
	path     string
	spec     *moov.MessageSpec
	acquirer bool
}{
	{"../docs/iso8583-acquirer.md", AcquirerSpec, true},
	{"../docs/iso8583-issuer.md", IssuerSpec, false},
}

func TestDocs(t *testing.T) {
	for _, d := range docs {
		t.Run(d.path, func(t *testing.T) {
			b, err := os.ReadFile(d.path)
			if err != nil {
				t.Fatal(err)
			}
			doc := string(b)
			sections := map[string]string{
				"usage":    renderUsage(),
				"response": renderResponseCodes(),
				"golden":   renderGolden(t, d.spec, d.acquirer),
			}
			out := doc
			for _, name := range slices.Sorted(maps.Keys(sections)) {
				re := regexp.MustCompile(`(?s)(<!-- BEGIN generated:` + name + ` -->\n).*?(<!-- END generated:` + name + ` -->)`)
				if !re.MatchString(out) {
					t.Fatalf("%s has no generated:%s section", d.path, name)
				}
				body := sections[name]
				out = re.ReplaceAllStringFunc(out, func(m string) string {
					sm := re.FindStringSubmatch(m)
					return sm[1] + body + sm[2]
				})
			}
			if out != doc {
				if *update {
					if err := os.WriteFile(d.path, []byte(out), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				t.Errorf("%s: generated sections are stale; run go test ./iso8583 -run TestDocs -update", d.path)
			}
			// Every element of the spec has a row in the field table.
			for id := range d.spec.Fields {
				if !strings.Contains(doc, fmt.Sprintf("\n| %d |", id)) {
					t.Errorf("%s: no field table row for DE %d", d.path, id)
				}
			}
		})
	}
}

// renderUsage prints Usage as a table: one row per element, one column per
// MTI and group of codes with the same use.
func renderUsage() string {
	type column struct {
		head string
		use  map[string]Use
	}
	var cols []column
	for _, u := range usage {
		merged := false
		for i := range cols {
			if strings.HasPrefix(cols[i].head, u.MTI) && maps.Equal(cols[i].use, u.Fields) {
				cols[i].head += ", " + u.Code
				merged = true
				break
			}
		}
		if !merged {
			cols = append(cols, column{u.MTI + " " + u.Code, u.Fields})
		}
	}
	ids := map[string]bool{}
	for _, u := range usage {
		for id := range u.Fields {
			ids[id] = true
		}
	}
	var sb strings.Builder
	sb.WriteString("| DE |")
	for _, c := range cols {
		sb.WriteString(" " + c.head + " |")
	}
	sb.WriteString("\n|---|")
	for range cols {
		sb.WriteString(":-:|")
	}
	sb.WriteString("\n")
	for _, id := range slices.SortedFunc(maps.Keys(ids), compareIDs) {
		sb.WriteString("| " + id + " |")
		for _, c := range cols {
			switch c.use[id] {
			case Mandatory:
				sb.WriteString(" M |")
			case Optional:
				sb.WriteString(" O |")
			default:
				sb.WriteString(" – |")
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func renderResponseCodes() string {
	var sb strings.Builder
	sb.WriteString("| DE 39 | meaning |\n|---|---|\n")
	for _, c := range slices.Sorted(maps.Keys(responseTexts)) {
		sb.WriteString("| " + c + " | " + responseTexts[c] + " |\n")
	}
	return sb.String()
}

// renderGolden packs every golden message and prints it: the acquirer
// dialect as text and hex, the issuer dialect as hex, 32 bytes a line.
func renderGolden(t *testing.T, spec *moov.MessageSpec, acquirer bool) string {
	var sb strings.Builder
	for _, g := range loadGolden(t) {
		f := g.fields(t)
		b, err := Pack(spec, f)
		if err != nil {
			t.Fatalf("Pack(%s): %v", g.Name, err)
		}
		fmt.Fprintf(&sb, "**%s** — %s\n\n```\n", g.Name, f.String())
		if acquirer {
			fmt.Fprintf(&sb, "text: %s\n", b)
		}
		h := strings.ToUpper(hex.EncodeToString(b))
		for i := 0; i < len(h); i += 64 {
			fmt.Fprintf(&sb, "%04x: %s\n", i/2, h[i:min(i+64, len(h))])
		}
		sb.WriteString("```\n\n")
	}
	return sb.String()
}

// TestDocsDialectNeeds keeps the table "What pingate needs" of
// docs/iso8583-issuer.md in step with issuerNeeds, which ParseDialect
// enforces; -update rewrites it.
func TestDocsDialectNeeds(t *testing.T) {
	const path = "../docs/iso8583-issuer.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString("| DE | carries | `type` | length |\n|---|---|---|---|\n")
	for _, n := range issuerNeeds {
		length := "8- and 16-byte blocks, or 8 only (see `pingate.PINBlock`)"
		switch {
		case n.size > 0:
			length = fmt.Sprintf("exactly %d with a `Fixed` prefix, at least %d with a variable one", n.size, n.size)
		case n.max > 0:
			length = fmt.Sprintf("a variable prefix, `length` at least %d", n.max)
		}
		fmt.Fprintf(&sb, "| %s | %s | `%s` | %s |\n", n.id, n.carries, n.typ, length)
	}
	re := regexp.MustCompile(`(?s)(<!-- BEGIN generated:needs -->\n).*?(<!-- END generated:needs -->)`)
	doc := string(b)
	if !re.MatchString(doc) {
		t.Fatalf("%s has no generated:needs section", path)
	}
	out := re.ReplaceAllString(doc, "${1}"+strings.ReplaceAll(sb.String(), "$", "$$")+"${2}")
	if out != doc {
		if *update {
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("%s: the generated:needs table is stale; run go test ./iso8583 -run TestDocs -update", path)
	}
}

// TestDocsSpecNames: every type, enc and prefix a spec file may name is in
// the tables of docs/iso8583-issuer.md, singly (`pingate.BCD.n`) or in a
// range (`ASCII.L` … `ASCII.LLLL`); and every name those tables give exists.
func TestDocsSpecNames(t *testing.T) {
	b, err := os.ReadFile("../docs/iso8583-issuer.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "### Types")
	end := strings.Index(doc, "### What pingate needs")
	if start < 0 || end < start {
		t.Fatal("docs/iso8583-issuer.md has no Types … What pingate needs sections")
	}
	tables := doc[start:end]
	types, encs, prefs := SpecNames()
	all := map[string]bool{}
	for _, n := range slices.Concat(types, encs, prefs) {
		all[n] = true
	}
	ranges := regexp.MustCompile("`([A-Za-z.]+)\\.L` … `([A-Za-z.]+)\\.LLLL`")
	documented := map[string]bool{}
	for _, m := range ranges.FindAllStringSubmatch(tables, -1) {
		for _, l := range []string{"L", "LL", "LLL", "LLLL"} {
			documented[m[1]+"."+l] = true
		}
	}
	for _, line := range strings.Split(tables, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		if h := strings.TrimSpace(first); h == "`type`" || h == "`enc`" || h == "`prefix`" {
			continue // a table's head
		}
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
			if !all[m[1]] && !ranges.MatchString(first) {
				t.Errorf("docs/iso8583-issuer.md names %q, which no spec file may use", m[1])
			}
		}
	}
	for n := range all {
		if !documented[n] {
			t.Errorf("docs/iso8583-issuer.md does not document the spec name %q", n)
		}
	}
}
