package iso8583

import (
	"slices"
	"strconv"
	"strings"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
)

// MaskPAN shows a PAN the way PCI DSS allows it to be displayed: the first 6
// and last 4 digits, every other character replaced by '*'. PANs shorter than
// 13 characters show only their last 4 (6 + 4 would leave too little hidden),
// and values of 4 characters or fewer are masked whole. The result has the
// input's length; any byte that is not printable ASCII is shown as '?', so the
// result is safe in a log line.
func MaskPAN(pan string) string {
	n := len(pan)
	head, tail := 6, 4
	switch {
	case n <= 4:
		head, tail = 0, 0
	case n < 13:
		head = 0
	}
	b := make([]byte, n)
	for i := 0; i < n; i++ {
		c := pan[i]
		switch {
		case i >= head && i < n-tail:
			b[i] = '*'
		case c < 0x20 || c > 0x7e:
			b[i] = '?'
		default:
			b[i] = c
		}
	}
	return string(b)
}

// redacted lists the data elements a dump never shows, not even in part:
// the PIN blocks, the key exchange data and (for messages of other specs)
// track data. Unlike moov's PINFilter, which keeps two characters at each
// end, these are replaced whole.
var redacted = map[string]bool{"35": true, "36": true, "45": true, "52": true, "123": true, "125": true}

const redactedText = "[redacted]"

// item is one element of a dump.
type item struct{ id, value string }

// line renders a dump: the MTI, then id=value for every element, values that
// are not plain tokens quoted with Go escapes.
func line(mti string, items []item) string {
	var sb strings.Builder
	if mti == "" {
		mti = "????"
	}
	sb.WriteString(quoteIfNeeded(mti))
	for _, it := range items {
		sb.WriteByte(' ')
		sb.WriteString(it.id)
		sb.WriteByte('=')
		switch {
		case redacted[it.id]:
			sb.WriteString(redactedText)
		case it.id == "2":
			sb.WriteString(quoteIfNeeded(MaskPAN(it.value)))
		default:
			sb.WriteString(quoteIfNeeded(it.value))
		}
	}
	return sb.String()
}

func quoteIfNeeded(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '*' && c != '/' && c != '-' && c != '.' && c != '_' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// Redact returns a one-line dump of msg for logs and operator tools: the MTI,
// then number=value for every element present in number order (DE 48
// subfields as 48.01=...), DE 2 masked by MaskPAN and DE 52, DE 123 and
// DE 125 (and track data, should another spec carry it) replaced whole by
// "[redacted]". It works on messages of any spec.
func Redact(msg *moov.Message) string {
	if msg == nil {
		return "<nil>"
	}
	fields := msg.GetFields()
	mti := ""
	if f, ok := fields[0]; ok {
		mti, _ = f.String()
	}
	var items []item
	for _, id := range slices.Sorted(mapsKeys(fields)) {
		if id < 2 {
			continue
		}
		key := strconv.Itoa(id)
		if c, ok := fields[id].(*field.Composite); ok && !redacted[key] {
			subs := c.GetSubfields()
			for _, tag := range slices.Sorted(mapsKeys(subs)) {
				v, _ := subs[tag].String()
				items = append(items, item{key + "." + tag, v})
			}
			continue
		}
		v := ""
		if !redacted[key] {
			v, _ = fields[id].String()
		}
		items = append(items, item{key, v})
	}
	return line(mti, items)
}

// responseTexts describes the response codes of codes.go.
var responseTexts = map[string]string{
	RCApproved:          "approved",
	RCNoSuchCard:        "no such card",
	RCFormatError:       "format error",
	RCIncorrectPIN:      "incorrect PIN",
	RCNotPermittedCard:  "transaction not permitted to cardholder",
	RCNotPermittedTerm:  "transaction not permitted to terminal",
	RCExceedsLimit:      "exceeds limit",
	RCExceedsFrequency:  "exceeds frequency limit",
	RCPINTriesExceeded:  "allowable PIN tries exceeded",
	RCIssuerUnavailable: "issuer or switch inoperative",
	RCDuplicate:         "duplicate transmission",
	RCSystemMalfunction: "system malfunction",
	RCNewPINRejected:    "new PIN rejected (weak PIN)",
}

// ResponseText describes a DE 39 response code in a few words, or returns
// "unknown response code" for a code pingate does not use.
func ResponseText(code string) string {
	if t, ok := responseTexts[code]; ok {
		return t
	}
	return "unknown response code"
}
