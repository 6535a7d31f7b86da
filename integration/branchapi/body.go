package branchapi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"pingate/routing"
)

// opBody is the JSON body of POST /v1/pin/changes, /resets and /unblocks.
// Pointers tell a missing field from an empty one. Which fields an operation
// takes is in allowedFields; docs/openapi.yaml has the same schemas.
type opBody struct {
	PAN              *string `json:"pan,omitempty"`
	Branch           *string `json:"branch,omitempty"`
	Terminal         *string `json:"terminal,omitempty"`
	Teller           *string `json:"teller,omitempty"`
	IdentityCheckRef *string `json:"identity_check_ref,omitempty"`
	Mode             *string `json:"mode,omitempty"`
	PINFormat        *int    `json:"pin_format,omitempty"`
	KeyIndex         *int    `json:"key_index,omitempty"`
	OldPINBlock      *string `json:"old_pin_block,omitempty"`
	NewPINBlock      *string `json:"new_pin_block,omitempty"`
	PINLength        *int    `json:"pin_length,omitempty"`
}

// Reset modes.
const (
	ModePINPad    = "pin_pad"   // the cardholder keys the new PIN on the branch PIN pad
	ModeGenerated = "generated" // the security module generates the PIN and prints its mailer
)

// allowedFields lists the fields each operation takes (a reset's depend on
// its mode; "" is a reset whose mode is missing or invalid).
func allowedFields(op routing.Operation, mode string) []string {
	base := []string{"pan", "branch", "terminal", "teller"}
	switch op {
	case routing.OpChange:
		return append(base, "pin_format", "key_index", "old_pin_block", "new_pin_block")
	case routing.OpUnblock:
		return append(base, "identity_check_ref")
	}
	base = append(base, "identity_check_ref", "mode")
	switch mode {
	case ModePINPad:
		return append(base, "pin_format", "key_index", "new_pin_block")
	case ModeGenerated:
		return append(base, "pin_length")
	}
	return append(base, "pin_format", "key_index", "new_pin_block", "pin_length")
}

var (
	panPattern      = regexp.MustCompile(`^[0-9]{13,19}$`)
	terminalPattern = regexp.MustCompile(`^[A-Za-z0-9]{8}$`)
	refPattern      = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,32}$`)
	// idNumberLike refuses an identity-check reference that looks like an
	// identity document number (a bare run of 9 or more digits, perhaps
	// ending in X, like a national ID or passport number): the reference
	// points to the branch's own record of the check, never the ID itself.
	idNumberLike   = regexp.MustCompile(`^[0-9]{8,}[0-9Xx]$`)
	hexPattern     = regexp.MustCompile(`^[0-9A-Fa-f]*$`)
	fieldNameShape = regexp.MustCompile(`^[a-z_]{1,32}$`)
)

// parsedOp is a valid operation request.
type parsedOp struct {
	body   opBody
	mode   string
	old    []byte
	new    []byte
	format int
	keyIdx int
}

// parseOp decodes and validates the body of op. A nil *Problem means valid.
// No problem repeats a value from the body.
func parseOp(op routing.Operation, raw []byte) (*parsedOp, *Problem) {
	fields, p := objectFields(raw)
	if p != nil {
		return nil, p
	}
	mode := ""
	if op == routing.OpReset {
		var m string
		if json.Unmarshal(fields["mode"], &m) == nil && (m == ModePINPad || m == ModeGenerated) {
			mode = m
		}
	}
	allowed := allowedFields(op, mode)
	var unknown []string
	for k := range fields {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		p := probUnknownField.problem("The body has a field this operation does not take.")
		// A field name is echoed only if it cannot carry a PAN or PIN block.
		if fieldNameShape.MatchString(unknown[0]) {
			p.Detail = fmt.Sprintf("The body has the field %q, which this operation does not take.", unknown[0])
			p.Errors = []FieldProblem{{Pointer: "/" + unknown[0], Detail: "not a field of this operation"}}
		}
		return nil, p
	}
	var po parsedOp
	if errs := po.body.decode(fields); len(errs) > 0 {
		p := probInvalidRequest.problem("A field has the wrong JSON type.")
		p.Errors = errs
		return nil, p
	}
	b := &po.body
	var errs []FieldProblem
	bad := func(field, detail string) { errs = append(errs, FieldProblem{Pointer: "/" + field, Detail: detail}) }
	need := func(field string, v *string, re *regexp.Regexp, want string) {
		switch {
		case v == nil:
			bad(field, "required")
		case !re.MatchString(*v):
			bad(field, "must be "+want)
		}
	}
	need("pan", b.PAN, panPattern, "13 to 19 digits")
	need("branch", b.Branch, idPattern, "1 to 16 letters, digits, '.', '_' or '-'")
	need("terminal", b.Terminal, terminalPattern, "8 letters or digits")
	const tellerShape = "1 to 16 letters, digits, '.', '_' or '-', without a run of 12 or more digits or 16 or more hex digits"
	switch {
	case b.Teller == nil && op != routing.OpChange:
		bad("teller", "required")
	case b.Teller != nil && !validIdentityID(*b.Teller):
		bad("teller", "must be "+tellerShape)
	}
	if op != routing.OpChange {
		need("identity_check_ref", b.IdentityCheckRef, refPattern, "1 to 32 letters, digits or . _ : / -")
		if b.IdentityCheckRef != nil && idNumberLike.MatchString(*b.IdentityCheckRef) {
			bad("identity_check_ref", "must be a reference to the identity check, not an identity document number")
		}
	}
	if op == routing.OpReset {
		if b.Mode == nil {
			bad("mode", "required")
		} else if mode == "" {
			bad("mode", "must be pin_pad or generated")
		}
		po.mode = mode
	}
	if b.PINLength != nil && (*b.PINLength < 4 || *b.PINLength > 12) {
		bad("pin_length", "must be 4 to 12")
	}
	blocks := op == routing.OpChange || mode == ModePINPad
	if blocks {
		switch {
		case b.PINFormat == nil:
			bad("pin_format", "required")
		case *b.PINFormat != 0 && *b.PINFormat != 1 && *b.PINFormat != 3 && *b.PINFormat != 4:
			bad("pin_format", "must be 0, 1, 3 or 4 (ISO 9564-1 interchange formats)")
		}
		switch {
		case b.KeyIndex == nil:
			bad("key_index", "required")
		case *b.KeyIndex < 0 || *b.KeyIndex > 99:
			bad("key_index", "must be 0 to 99")
		}
		if b.NewPINBlock == nil {
			bad("new_pin_block", "required")
		}
		if op == routing.OpChange && b.OldPINBlock == nil {
			bad("old_pin_block", "required")
		}
	}
	if len(errs) > 0 {
		p := probInvalidRequest.problem("The request has missing or invalid fields.")
		p.Errors = errs
		return nil, p
	}
	if blocks {
		po.format, po.keyIdx = *b.PINFormat, *b.KeyIndex
		want := 16
		if po.format == 4 {
			want = 32
		}
		var perrs []FieldProblem
		dec := func(field string, v *string) []byte {
			if v == nil {
				return nil
			}
			if !hexPattern.MatchString(*v) {
				perrs = append(perrs, FieldProblem{Pointer: "/" + field, Detail: "must be hexadecimal"})
				return nil
			}
			if len(*v) != want {
				perrs = append(perrs, FieldProblem{Pointer: "/" + field,
					Detail: fmt.Sprintf("an ISO 9564-1 format %d block is %d hex digits", po.format, want)})
				return nil
			}
			out, _ := hex.DecodeString(*v) // checked above
			return out
		}
		po.old = dec("old_pin_block", b.OldPINBlock)
		po.new = dec("new_pin_block", b.NewPINBlock)
		if len(perrs) > 0 {
			clear(po.old)
			clear(po.new)
			p := probInvalidPINBlock.problem("A PIN block does not fit its ISO 9564-1 format.")
			p.Errors = perrs
			return nil, p
		}
	}
	return &po, nil
}

// objectFields decodes raw as one JSON object whose member names are all
// different (RFC 8259 leaves duplicates to the parser: last-one-wins would
// let two "pan" members act on the second card). A nil *Problem means raw
// is such an object.
func objectFields(raw []byte) (map[string]json.RawMessage, *Problem) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, probMalformedJSON.problem("The body must be one JSON object.")
	}
	if name, dup := duplicateMember(raw); dup {
		p := probMalformedJSON.problem("The body has a member name twice.")
		// A name is echoed only if it cannot carry a PAN or PIN block.
		if fieldNameShape.MatchString(name) {
			p.Detail = fmt.Sprintf("The body has the member %q twice.", name)
			p.Errors = []FieldProblem{{Pointer: "/" + name, Detail: "given twice"}}
		}
		return nil, p
	}
	return fields, nil
}

// duplicateMember reports the first member name that appears twice in one
// object, at any depth, of the valid JSON text raw.
func duplicateMember(raw []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var walk func() (string, bool)
	walk = func() (string, bool) {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return "", false
				}
				name, _ := k.(string)
				if seen[name] {
					return name, true
				}
				seen[name] = true
				if n, dup := walk(); dup {
					return n, true
				}
			}
			_, _ = dec.Token() // '}'
		case json.Delim('['):
			for dec.More() {
				if n, dup := walk(); dup {
					return n, true
				}
			}
			_, _ = dec.Token() // ']'
		}
		return "", false
	}
	return walk()
}

// decode sets b from the members of a body (already checked to be fields
// of the operation). Strings must be JSON strings and integers JSON numbers
// with an integral value (1 and 1.0 alike, as in JSON Schema); null is no
// field's value. It returns one problem per member of the wrong type.
func (b *opBody) decode(fields map[string]json.RawMessage) []FieldProblem {
	strs := map[string]**string{
		"pan": &b.PAN, "branch": &b.Branch, "terminal": &b.Terminal, "teller": &b.Teller,
		"identity_check_ref": &b.IdentityCheckRef, "mode": &b.Mode, "old_pin_block": &b.OldPINBlock, "new_pin_block": &b.NewPINBlock,
	}
	ints := map[string]**int{"pin_format": &b.PINFormat, "key_index": &b.KeyIndex, "pin_length": &b.PINLength}
	var errs []FieldProblem
	for name, v := range fields {
		if dst, ok := strs[name]; ok {
			var s string
			if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
				errs = append(errs, FieldProblem{Pointer: "/" + name, Detail: "wrong JSON type: want string"})
				continue
			}
			*dst = &s
		} else if dst, ok := ints[name]; ok {
			n, ok := integral(v)
			if !ok {
				errs = append(errs, FieldProblem{Pointer: "/" + name, Detail: "wrong JSON type: want integer"})
				continue
			}
			*dst = &n
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Pointer < errs[j].Pointer })
	return errs
}

// integral returns the value of a JSON number with no fractional part. A
// value beyond ±1e6 comes back as -1: out of every integer field's range.
func integral(v json.RawMessage) (int, bool) {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	if math.IsInf(f, 0) || math.Abs(f) > 1e6 {
		return -1, true
	}
	if f != math.Trunc(f) {
		return 0, false
	}
	return int(f), true
}

// canonical is the body re-encoded from its parsed form: two bodies that
// differ only in spacing or field order give the same bytes (the
// idempotency fingerprint).
func (po *parsedOp) canonical() []byte {
	b, _ := json.Marshal(&po.body) // cannot fail for this type
	return b
}

// merchantID is DE 42 for a branch: the branch id, space-padded to 15.
func merchantID(branch string) string {
	if len(branch) > 15 {
		branch = branch[:15]
	}
	return branch + strings.Repeat(" ", 15-len(branch))
}

// rrn is DE 37 for an operation: 12 upper-case hex digits of its id.
func rrn(opID string) string {
	s := strings.ToUpper(strings.ReplaceAll(opID, "-", ""))
	if len(s) < 12 {
		return s + strings.Repeat("0", 12-len(s))
	}
	return s[:12]
}
