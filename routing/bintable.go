package routing

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Route maps a card range to an issuer. Prefix is a run of leading PAN digits
// (a BIN of 6 or 8 digits, or a longer account range); the longest prefix that
// matches a PAN wins.
type Route struct {
	Prefix string `yaml:"prefix" json:"prefix"`
	Issuer string `yaml:"issuer" json:"issuer"`
}

// ErrNoRoute: no card range matches the PAN.
var ErrNoRoute = errors.New("no route for card")

// maxPrefix is the longest prefix a route may have: a PAN has at most 19 digits.
const maxPrefix = 19

// BINTable is an immutable longest-prefix table over card ranges. Build a new
// one to change routes; Router swaps tables atomically.
//
// Each prefix length has its own hash map keyed by the prefix read as an
// integer, so a lookup costs one map probe per distinct prefix length present
// (typically 2–4), whatever the number of ranges, and allocates nothing.
type BINTable struct {
	byLen   [maxPrefix + 1]map[uint64]int32 // prefix length → prefix value → index into issuers
	lengths []int                           // prefix lengths present, longest first
	issuers []string                        // interned issuer ids
	size    int
}

// NewBINTable builds a table. Prefixes must be 1–19 digits, issuers non-empty,
// and a prefix may appear only once.
func NewBINTable(routes []Route) (*BINTable, error) {
	t := &BINTable{}
	idx := map[string]int32{}
	for i, r := range routes {
		if r.Issuer == "" {
			return nil, fmt.Errorf("route %d (prefix %q): empty issuer", i, r.Prefix)
		}
		v, ok := digitsValue(r.Prefix)
		if !ok || len(r.Prefix) == 0 || len(r.Prefix) > maxPrefix {
			return nil, fmt.Errorf("route %d: prefix %q must be 1–%d digits", i, r.Prefix, maxPrefix)
		}
		n := len(r.Prefix)
		if t.byLen[n] == nil {
			t.byLen[n] = map[uint64]int32{}
			t.lengths = append(t.lengths, n)
		}
		if _, dup := t.byLen[n][v]; dup {
			return nil, fmt.Errorf("route %d: prefix %s listed twice", i, r.Prefix)
		}
		id, ok := idx[r.Issuer]
		if !ok {
			id = int32(len(t.issuers))
			t.issuers = append(t.issuers, r.Issuer)
			idx[r.Issuer] = id
		}
		t.byLen[n][v] = id
		t.size++
	}
	sort.Sort(sort.Reverse(sort.IntSlice(t.lengths)))
	return t, nil
}

// Lookup returns the issuer of the longest prefix matching pan.
func (t *BINTable) Lookup(pan string) (string, error) {
	if t == nil {
		return "", ErrNoRoute
	}
	for _, n := range t.lengths {
		if n > len(pan) {
			continue
		}
		v, ok := digitsValue(pan[:n])
		if !ok {
			return "", ErrNoRoute
		}
		if id, hit := t.byLen[n][v]; hit {
			return t.issuers[id], nil
		}
	}
	return "", ErrNoRoute
}

// Len is the number of routes.
func (t *BINTable) Len() int { return t.size }

// Routes lists the table's routes in prefix order (none for a nil table).
func (t *BINTable) Routes() []Route {
	if t == nil {
		return nil
	}
	out := make([]Route, 0, t.size)
	for _, n := range t.lengths {
		for v, id := range t.byLen[n] {
			out = append(out, Route{Prefix: fmt.Sprintf("%0*d", n, v), Issuer: t.issuers[id]})
		}
	}
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Prefix, b.Prefix) })
	return out
}

// Issuers lists the distinct issuers the table routes to.
func (t *BINTable) Issuers() []string { return append([]string(nil), t.issuers...) }

// digitsValue reads s as a decimal number; ok is false for a non-digit. The
// value alone is ambiguous across lengths ("01" and "1"), which is why each
// length has its own map.
func digitsValue(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// ParseRoutes reads routes from lines of "prefix issuer" (blank lines and
// lines starting with # are skipped): the bulk format for large tables.
func ParseRoutes(text string) ([]Route, error) {
	var out []Route
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("routes line %d: want \"prefix issuer\"", n+1)
		}
		out = append(out, Route{Prefix: f[0], Issuer: f[1]})
	}
	return out, nil
}
