package routing

// LooksSecret reports whether s holds a run of 12 or more decimal digits (a
// PAN, or most of one) or of 16 or more hex digits (a PIN block or a key in
// hex). An outcome event refuses any identifier that does (integration/events
// applies this rule to every free-text field of an Event), so the flow
// refuses such identifiers in a request before anything else happens: an
// outcome it could not record would otherwise be lost.
func LooksSecret(s string) bool {
	dec, hex := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			dec++
			hex++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			dec = 0
			hex++
		default:
			dec, hex = 0, 0
		}
		if dec >= 12 || hex >= 16 {
			return true
		}
	}
	return false
}
