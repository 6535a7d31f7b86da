package iso8583

import (
	"maps"
	"slices"
	"strconv"
)

// Use says how a kind of message uses a data element.
type Use byte

// Uses.
const (
	Mandatory Use = 'M' // must be present
	Optional  Use = 'O' // may be present
)

// MessageUse is the field use of one kind of message: an MTI together with
// its processing code (DE 3, for 0100, 0110, 0420 and 0430) or its network
// management code (DE 70, for 0800 and 0810). A data element it does not
// list is not allowed. Keys are element numbers, "48.01" for subfields.
type MessageUse struct {
	MTI    string
	Code   string
	Name   string
	Fields map[string]Use
}

func with(base map[string]Use, extra map[string]Use) map[string]Use {
	m := maps.Clone(base)
	maps.Copy(m, extra)
	return m
}

var (
	requestBase = map[string]Use{
		"2": Mandatory, "3": Mandatory, "7": Mandatory, "11": Mandatory, "12": Mandatory, "13": Mandatory,
		"32": Mandatory, "37": Mandatory, "41": Mandatory, "42": Mandatory, "100": Optional,
	}
	branchData = map[string]Use{
		"48": Mandatory, "48.01": Mandatory, "48.02": Mandatory, "48.03": Optional, "48.04": Optional,
	}
	responseBase = map[string]Use{
		"2": Mandatory, "3": Mandatory, "7": Mandatory, "11": Mandatory, "12": Optional, "13": Optional,
		"32": Mandatory, "37": Mandatory, "39": Mandatory, "41": Mandatory, "42": Mandatory, "100": Optional,
	}
	reversalBase = map[string]Use{
		"2": Mandatory, "3": Mandatory, "7": Mandatory, "11": Mandatory, "12": Optional, "13": Optional,
		"32": Mandatory, "37": Mandatory, "39": Optional, "41": Mandatory, "42": Mandatory, "90": Mandatory,
		"100": Optional,
	}
	reversalResponseBase = map[string]Use{
		"2": Optional, "3": Mandatory, "7": Mandatory, "11": Mandatory, "32": Mandatory, "37": Mandatory,
		"39": Mandatory, "41": Mandatory, "42": Mandatory, "90": Optional, "100": Optional,
	}
	networkBase = map[string]Use{
		"7": Mandatory, "11": Mandatory, "32": Optional, "70": Mandatory, "100": Optional,
	}
	networkResponseBase = map[string]Use{
		"7": Mandatory, "11": Mandatory, "32": Optional, "39": Mandatory, "70": Mandatory, "100": Optional,
	}
)

// usage is the field use of every message pingate sends or accepts, in both
// dialects. docs/iso8583-*.md print it (kept in step by a test).
var usage = []MessageUse{
	{MTIAuthRequest, ProcPINChange, "PIN change request", with(requestBase, map[string]Use{
		"48": Optional, "48.01": Optional, "48.02": Optional, "48.03": Optional, "48.04": Optional,
		"52": Mandatory, "53": Mandatory, "125": Mandatory})},
	{MTIAuthRequest, ProcPINReset, "PIN reset request", with(with(requestBase, branchData), map[string]Use{
		"53": Mandatory, "125": Mandatory})},
	{MTIAuthRequest, ProcPINUnblock, "PIN unblock request", with(requestBase, branchData)},
	{MTIAuthResponse, ProcPINChange, "PIN change response", responseBase},
	{MTIAuthResponse, ProcPINReset, "PIN reset response", responseBase},
	{MTIAuthResponse, ProcPINUnblock, "PIN unblock response", responseBase},
	{MTIReversalAdvice, ProcPINChange, "PIN change reversal advice", reversalBase},
	{MTIReversalAdvice, ProcPINReset, "PIN reset reversal advice", reversalBase},
	{MTIReversalAdvice, ProcPINUnblock, "PIN unblock reversal advice", reversalBase},
	{MTIReversalResponse, ProcPINChange, "PIN change reversal response", reversalResponseBase},
	{MTIReversalResponse, ProcPINReset, "PIN reset reversal response", reversalResponseBase},
	{MTIReversalResponse, ProcPINUnblock, "PIN unblock reversal response", reversalResponseBase},
	{MTINetworkRequest, NMISignOn, "sign-on", with(networkBase, map[string]Use{"32": Mandatory})},
	{MTINetworkRequest, NMISignOff, "sign-off", with(networkBase, map[string]Use{"32": Mandatory})},
	{MTINetworkRequest, NMIEcho, "echo test", networkBase},
	{MTINetworkRequest, NMIKeyChange, "key change", with(networkBase, map[string]Use{"53": Optional, "123": Mandatory})},
	{MTINetworkResponse, NMISignOn, "sign-on response", networkResponseBase},
	{MTINetworkResponse, NMISignOff, "sign-off response", networkResponseBase},
	{MTINetworkResponse, NMIEcho, "echo test response", networkResponseBase},
	{MTINetworkResponse, NMIKeyChange, "key change response", with(networkResponseBase, map[string]Use{"53": Optional})},
}

// Usage returns the field use of every message kind, in a fixed order. The
// result is a copy.
func Usage() []MessageUse {
	out := make([]MessageUse, len(usage))
	for i, u := range usage {
		u.Fields = maps.Clone(u.Fields)
		out[i] = u
	}
	return out
}

// usageMandatory[i] lists the mandatory elements of usage[i] in element
// order (compareIDs), so that Check reports the first missing one without
// sorting on every message.
var usageMandatory = func() [][]string {
	out := make([][]string, len(usage))
	for i, u := range usage {
		for _, id := range slices.SortedFunc(maps.Keys(u.Fields), compareIDs) {
			if u.Fields[id] == Mandatory {
				out[i] = append(out[i], id)
			}
		}
	}
	return out
}()

// LookupUse finds the field use of a message kind.
func LookupUse(mti, code string) (MessageUse, bool) {
	for _, u := range usage {
		if u.MTI == mti && u.Code == code {
			u.Fields = maps.Clone(u.Fields)
			return u, true
		}
	}
	return MessageUse{}, false
}

// codeField is the element that selects the kind of message for an MTI:
// DE 70 for network management, DE 3 otherwise.
func codeField(mti string) string {
	if mti == MTINetworkRequest || mti == MTINetworkResponse {
		return "70"
	}
	return "3"
}

// present lists the elements f carries, by key.
func (f Fields) present() []string {
	var ids []string
	for _, it := range f.items() {
		if len(it.id) > 3 && it.id[:3] == "48." && !slices.Contains(ids, "48") {
			ids = append(ids, "48")
		}
		ids = append(ids, it.id)
	}
	return ids
}

// Check verifies f against the field use of its message kind (Usage): every
// mandatory element present, no element the kind does not list, and the
// structured elements well formed: DE 7, 12 and 13 valid dates and times,
// DE 53, 90 and 123 in their layouts (SecurityControl, OriginalData,
// KeyExchange), PIN blocks of 8 bytes for formats 0, 1 and 3 and of 16 bytes
// for format 4. The first problem found is returned as a *FieldError.
func (f Fields) Check() error {
	known := false
	for _, u := range usage {
		known = known || u.MTI == f.MTI
	}
	if !known {
		return &FieldError{Field: "0", Problem: "unsupported message type"}
	}
	cf := codeField(f.MTI)
	code := f.ProcessingCode
	if cf == "70" {
		code = f.NetworkCode
	}
	if code == "" {
		return &FieldError{Field: cf, Problem: "missing"}
	}
	// Not LookupUse: it copies the field map for its caller, and Check runs
	// on every message in both directions.
	i := slices.IndexFunc(usage, func(u MessageUse) bool { return u.MTI == f.MTI && u.Code == code })
	if i < 0 {
		return &FieldError{Field: cf, Problem: "unsupported code"}
	}
	u := &usage[i]
	have := f.present()
	for _, id := range have {
		if _, ok := u.Fields[id]; !ok {
			return &FieldError{Field: id, Problem: "not allowed in this message"}
		}
	}
	for _, id := range usageMandatory[i] {
		if !slices.Contains(have, id) {
			return &FieldError{Field: id, Problem: "missing"}
		}
	}
	return f.checkValues()
}

func (f Fields) checkValues() error {
	if f.TransmissionTime != "" && !validMMDDhhmmss(f.TransmissionTime) {
		return &FieldError{Field: "7", Problem: "not a valid MMDDhhmmss"}
	}
	if f.LocalTime != "" && !validHHMMSS(f.LocalTime) {
		return &FieldError{Field: "12", Problem: "not a valid hhmmss"}
	}
	if f.LocalDate != "" && !validMMDD(f.LocalDate) {
		return &FieldError{Field: "13", Problem: "not a valid MMDD"}
	}
	if f.OriginalData != "" {
		if _, err := ParseOriginalData(f.OriginalData); err != nil {
			return err
		}
	}
	if f.KeyExchange != "" {
		if _, err := ParseKeyExchange(f.KeyExchange); err != nil {
			return err
		}
	}
	if f.SecurityControl != "" {
		sc, err := ParseSecurityControl(f.SecurityControl)
		if err != nil {
			return err
		}
		// Format 4 blocks are 16 bytes, formats 1 and 3 8 bytes. Format 0 is
		// 8 bytes under TDES and 16 under SM4 (the 128-bit SM4-0 block):
		// which cipher an acquirer uses is configuration, so both lengths
		// pass here and routing checks the length against it.
		fits := func(b []byte) bool {
			switch sc.Format {
			case 4:
				return len(b) == 16
			case 0:
				return len(b) == 8 || len(b) == 16
			}
			return len(b) == 8
		}
		if f.PINBlock != nil && !fits(f.PINBlock) {
			return &FieldError{Field: "52", Problem: "PIN block length does not match the format in DE 53"}
		}
		if f.NewPINBlock != nil && !fits(f.NewPINBlock) {
			return &FieldError{Field: "125", Problem: "PIN block length does not match the format in DE 53"}
		}
	}
	return nil
}

// compareIDs orders element keys numerically ("2" < "48" < "48.01" < "100").
func compareIDs(a, b string) int {
	pa, sa := splitID(a)
	pb, sb := splitID(b)
	if pa != pb {
		return pa - pb
	}
	return sa - sb
}

func splitID(id string) (int, int) {
	main, sub := id, "-1"
	for i := 0; i < len(id); i++ {
		if id[i] == '.' {
			main, sub = id[:i], id[i+1:]
			break
		}
	}
	m, _ := strconv.Atoi(main)
	s, _ := strconv.Atoi(sub)
	return m, s
}

func twoDigits(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

func validMMDD(s string) bool {
	if len(s) != 4 || !allDigits(s) {
		return false
	}
	m, d := twoDigits(s), twoDigits(s[2:])
	days := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	return m >= 1 && m <= 12 && d >= 1 && d <= days[m]
}

func validHHMMSS(s string) bool {
	return len(s) == 6 && allDigits(s) && twoDigits(s) < 24 && twoDigits(s[2:]) < 60 && twoDigits(s[4:]) < 60
}

func validMMDDhhmmss(s string) bool {
	return len(s) == 10 && validMMDD(s[:4]) && validHHMMSS(s[4:])
}
