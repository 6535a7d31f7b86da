package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestArchitectureNamesEveryPackage holds docs/architecture.md to the tree
// both ways: every Go package of the module is named on the page (in its
// picture or its tables), and every package path the page names in
// backticks exists, so the page a new engineer reads first cannot fall
// behind a package added, moved or removed.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	page, err := os.ReadFile(filepath.Join(opsRepo, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(page)

	cmd := exec.Command("go", "list", "./...")
	cmd.Dir = opsRepo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	packages := map[string]bool{}
	for _, line := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(strings.TrimPrefix(line, "pingate"), "/")
		if rel == "" || strings.HasPrefix(rel, "scripts/") {
			continue // the module root holds no package; scripts/ are tools of the scripts
		}
		packages[rel] = true
	}
	for p := range packages {
		if !namesPackage(doc, p) {
			t.Errorf("docs/architecture.md does not name package %s", p)
		}
	}

	// Every `top/...` path in backticks that starts with a package root must
	// be a package or a file or directory of the tree.
	named := regexp.MustCompile("`((?:cmd|integration|routing|iso8583|pinblock)(?:/[A-Za-z0-9_.<>*-]+)+)`")
	for _, m := range named.FindAllStringSubmatch(doc, -1) {
		p := m[1]
		if strings.ContainsAny(p, "<>*") {
			continue // a placeholder: integration/<vendor>
		}
		if packages[p] {
			continue
		}
		if _, err := os.Stat(filepath.Join(opsRepo, p)); err != nil {
			t.Errorf("docs/architecture.md names %s, which is neither a package nor a file of the tree", p)
		}
	}
}

// namesPackage reports whether doc names package p by its full path.
func namesPackage(doc, p string) bool {
	return regexp.MustCompile(`(^|[^A-Za-z0-9_/])` + regexp.QuoteMeta(p) + `($|[^A-Za-z0-9_/])`).MatchString(doc)
}
