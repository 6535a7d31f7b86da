package iso8583

// Message type indicators used by both dialects (ISO 8583:1987).
const (
	MTIAuthRequest      = "0100" // PIN operation request
	MTIAuthResponse     = "0110"
	MTIReversalAdvice   = "0420" // reversal advice after a timed-out request
	MTIReversalResponse = "0430"
	MTINetworkRequest   = "0800" // sign-on, sign-off, echo, key change
	MTINetworkResponse  = "0810"
)

// Processing codes (DE 3, first two digits = transaction type; the remaining
// four are account types, 0000 here).
const (
	ProcPINChange  = "700000" // change: current PIN block in DE 52, new in DE 125
	ProcPINReset   = "710000" // branch reset of a forgotten PIN: new PIN block in DE 125 only; DE 48 carries teller and identity-check reference
	ProcPINUnblock = "720000" // unblock: no PIN block; DE 48 carries teller and identity-check reference
)

// Network management information codes (DE 70).
const (
	NMISignOn    = "001"
	NMISignOff   = "002"
	NMIKeyChange = "161"
	NMIEcho      = "301"
)

// Response codes (DE 39). The ISO 8583:1987 meanings, plus P6 for a new PIN
// refused by the weak-PIN rules (the code Visa uses for "unsafe PIN").
const (
	RCApproved          = "00"
	RCNoSuchCard        = "14" // no route for the card, or the issuer does not know it
	RCFormatError       = "30"
	RCIncorrectPIN      = "55"
	RCNotPermittedCard  = "57" // transaction not permitted to cardholder
	RCNotPermittedTerm  = "58" // transaction not permitted to terminal / acquirer
	RCExceedsLimit      = "61" // terminal or acquirer throughput limit
	RCExceedsFrequency  = "65" // card operation-frequency limit
	RCPINTriesExceeded  = "75"
	RCIssuerUnavailable = "91"
	RCDuplicate         = "94" // duplicate transmission that could not be matched to a first outcome
	RCSystemMalfunction = "96"
	RCNewPINRejected    = "P6" // new PIN on the weak-PIN exclusion list
)

// ResponseMTI is the MTI of the answer to a request or advice: 0100 → 0110,
// 0420 → 0430, 0800 → 0810. Any other value is returned as it is.
func ResponseMTI(mti string) string {
	if len(mti) != 4 || (mti[2] != '0' && mti[2] != '2') {
		return mti
	}
	b := []byte(mti)
	b[2]++
	return string(b)
}
