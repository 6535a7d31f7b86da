package routing

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBINTableLookup(t *testing.T) {
	table, err := NewBINTable([]Route{
		{Prefix: "4", Issuer: "visa-default"},
		{Prefix: "622848", Issuer: "abc"},
		{Prefix: "62284812", Issuer: "abc-social"},
		{Prefix: "0", Issuer: "zero"},
		{Prefix: "00", Issuer: "double-zero"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give string
		want string
	}{
		{give: "6228481200000001", want: "abc-social"},
		{give: "6228489900000001", want: "abc"},
		{give: "4111111111111111", want: "visa-default"},
		{give: "0012345678901", want: "double-zero"},
		{give: "0912345678901", want: "zero"},
	}
	for _, tt := range tests {
		got, err := table.Lookup(tt.give)
		if err != nil || got != tt.want {
			t.Errorf("Lookup(%s) = %q, %v, want %q", tt.give[:6], got, err, tt.want)
		}
	}
	for _, give := range []string{"5555555555554444", "62284", "", "62a8481200000001"} {
		if _, err := table.Lookup(give); !errors.Is(err, ErrNoRoute) {
			t.Errorf("Lookup(len %d) error = %v, want ErrNoRoute", len(give), err)
		}
	}
}

func TestNewBINTableErrors(t *testing.T) {
	tests := []struct {
		name string
		give []Route
	}{
		{"empty prefix", []Route{{Prefix: "", Issuer: "a"}}},
		{"letters", []Route{{Prefix: "62x", Issuer: "a"}}},
		{"too long", []Route{{Prefix: "12345678901234567890", Issuer: "a"}}},
		{"no issuer", []Route{{Prefix: "622848"}}},
		{"duplicate", []Route{{Prefix: "622848", Issuer: "a"}, {Prefix: "622848", Issuer: "b"}}},
	}
	for _, tt := range tests {
		if _, err := NewBINTable(tt.give); err == nil {
			t.Errorf("%s: NewBINTable() = nil error, want one", tt.name)
		}
	}
}

func TestBINTableLoads100kRanges(t *testing.T) {
	routes := make([]Route, 100_000)
	for i := range routes {
		routes[i] = Route{Prefix: fmt.Sprintf("6%07d", i*7), Issuer: fmt.Sprintf("iss%d", i%50)}
	}
	start := time.Now()
	table, err := NewBINTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("100k ranges loaded in %v", time.Since(start)) // measured, not asserted; see BENCHMARKS.md
	if table.Len() != len(routes) {
		t.Fatalf("Len() = %d, want %d", table.Len(), len(routes))
	}
	got, err := table.Lookup("6" + fmt.Sprintf("%07d", 700) + "12345678")
	if err != nil || got != "iss0" { // i=100 → 700, issuer 100%50 = 0
		t.Fatalf("Lookup = %q, %v, want iss0", got, err)
	}
}

func BenchmarkBINLookup(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		routes := make([]Route, n)
		for i := range routes {
			routes[i] = Route{Prefix: fmt.Sprintf("4%09d", i*3), Issuer: fmt.Sprintf("iss%d", i%100)}
		}
		table, err := NewBINTable(routes)
		if err != nil {
			b.Fatal(err)
		}
		pan := fmt.Sprintf("4%09d", (n/2)*3) + "123456"
		if _, err := table.Lookup(pan); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("ranges=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = table.Lookup(pan)
			}
		})
	}
}

func TestParseRoutes(t *testing.T) {
	tests := []struct {
		give string
		want []Route
	}{
		{"", nil},
		{"# comment only\n\n", nil},
		{"622848 abc\n  62284812\tabc-social  \n# x\n4 visa", []Route{{"622848", "abc"}, {"62284812", "abc-social"}, {"4", "visa"}}},
	}
	for _, tt := range tests {
		got, err := ParseRoutes(tt.give)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseRoutes(%q) = %v, %v, want %v", tt.give, got, err, tt.want)
		}
	}
	for _, give := range []string{"622848", "622848 abc extra", "ok abc\n622848"} {
		if _, err := ParseRoutes(give); err == nil {
			t.Errorf("ParseRoutes(%q) = nil error, want one naming the line", give)
		}
	}
}

func TestBINTableIssuersAndLen(t *testing.T) {
	table, err := NewBINTable([]Route{{"622848", "abc"}, {"62284812", "abc"}, {"4", "visa"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := table.Issuers(); fmt.Sprint(got) != "[abc visa]" || table.Len() != 3 {
		t.Errorf("Issuers() = %v, Len() = %d, want [abc visa] and 3", got, table.Len())
	}
	table.Issuers()[0] = "changed"
	if got, _ := table.Lookup("6228480000000001"); got != "abc" {
		t.Errorf("Lookup after changing Issuers()'s result = %q, want abc (a copy)", got)
	}
	var none *BINTable
	if _, err := none.Lookup("6228480000000001"); !errors.Is(err, ErrNoRoute) {
		t.Errorf("nil table Lookup() = %v, want ErrNoRoute", err)
	}
}

// TestBINTableRoutes: the routes read back from a table are the ones it was
// built from, in prefix order, leading zeros kept ("0123" is not "123").
func TestBINTableRoutes(t *testing.T) {
	in := []Route{{"62284812", "a"}, {"0123", "b"}, {"123", "a"}, {"4", "c"}, {"6228481200000000005", "b"}}
	tbl, err := NewBINTable(in)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(in)
	slices.SortFunc(want, func(a, b Route) int { return strings.Compare(a.Prefix, b.Prefix) })
	if got := tbl.Routes(); !slices.Equal(got, want) {
		t.Errorf("Routes() = %v, want %v", got, want)
	}
}
