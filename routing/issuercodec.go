package routing

import (
	"fmt"

	"pingate/iso8583"
)

// IssuerDialect packs and reads the messages of an issuer in its dialect.
// The zero value speaks the built-in issuer dialect (iso8583.IssuerDialect).
type IssuerDialect struct {
	// Dialect is the issuer's dialect; nil is iso8583.IssuerDialect.
	Dialect *iso8583.Dialect
}

var _ IssuerCodec = IssuerDialect{}

func (d IssuerDialect) dialect() *iso8583.Dialect {
	if d.Dialect == nil {
		return iso8583.IssuerDialect
	}
	return d.Dialect
}

// NewIssuerCodecs builds the codec of every issuer from the dialect it
// names (IssuerConfig.Dialect; empty is iso8583.DefaultIssuerDialect), for
// LinksConfig.Codecs. An unknown name is an error naming the issuer.
func NewIssuerCodecs(issuers []IssuerConfig, dialects *iso8583.Registry) (map[string]IssuerCodec, error) {
	out := make(map[string]IssuerCodec, len(issuers))
	for _, is := range issuers {
		name := is.Dialect
		if name == "" {
			name = iso8583.DefaultIssuerDialect
		}
		d, err := dialects.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: dialect: %w", is.ID, err)
		}
		out[is.ID] = IssuerDialect{Dialect: d}
	}
	return out, nil
}

// ProcessingCode is the DE 3 of an operation.
func ProcessingCode(op Operation) string {
	switch op {
	case OpChange:
		return iso8583.ProcPINChange
	case OpReset:
		return iso8583.ProcPINReset
	case OpUnblock:
		return iso8583.ProcPINUnblock
	}
	return ""
}

// OperationOf is the operation of a DE 3 processing code.
func OperationOf(proc string) (Operation, bool) {
	switch proc {
	case iso8583.ProcPINChange:
		return OpChange, true
	case iso8583.ProcPINReset:
		return OpReset, true
	case iso8583.ProcPINUnblock:
		return OpUnblock, true
	}
	return "", false
}

func header(f *iso8583.Fields, h MessageHeader) {
	f.STAN = h.STAN
	f.TransmissionTime = h.Transmit
	dt := h.LocalTime.Format("0102150405") // DE 13 and DE 12 from one string
	f.LocalDate, f.LocalTime = dt[:4], dt[4:]
	f.AcquirerID = h.Institution
	f.ReceivingInstitution = h.Receiver
	f.TerminalID = h.Terminal
}

// PackRequest builds the 0100 of a PIN operation.
func (d IssuerDialect) PackRequest(h MessageHeader, req *IssuerRequest) ([]byte, error) {
	f := iso8583.Fields{
		MTI:            iso8583.MTIAuthRequest,
		PAN:            req.PAN,
		ProcessingCode: ProcessingCode(req.Operation),
		RRN:            req.RRN,
		CardAcceptorID: req.Merchant,
		PINBlock:       req.OldBlock,
		NewPINBlock:    req.NewBlock,
	}
	header(&f, h)
	if req.OldBlock != nil || req.NewBlock != nil {
		f.SecurityControl = iso8583.SecurityControl{Format: req.Format, KeyIndex: req.KeyIndex}.String()
	}
	if req.Teller != "" || req.IdentityRef != "" || req.Supervisor != "" {
		f.Additional = &iso8583.AdditionalData{TellerID: req.Teller, IdentityRef: req.IdentityRef, SupervisorID: req.Supervisor}
	}
	return d.dialect().Pack(&f)
}

// PackNetwork builds an 0800 network management request.
func (d IssuerDialect) PackNetwork(h MessageHeader, nmi string) ([]byte, error) {
	f := iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: nmi}
	header(&f, h)
	f.TerminalID = ""
	f.LocalTime, f.LocalDate = "", ""
	return d.dialect().Pack(&f)
}

// PackReversal builds the 0420 reversal advice of a timed-out request.
func (d IssuerDialect) PackReversal(h MessageHeader, r *Reversal) ([]byte, error) {
	orig, err := iso8583.OriginalData{
		MTI: iso8583.MTIAuthRequest, STAN: r.STAN, Transmission: r.Transmit, Acquirer: h.Institution,
	}.Encode()
	if err != nil {
		return nil, fmt.Errorf("reversal %s: %w", r.ID, err)
	}
	f := iso8583.Fields{
		MTI:            iso8583.MTIReversalAdvice,
		PAN:            r.PAN,
		ProcessingCode: ProcessingCode(r.Operation),
		RRN:            r.RRN,
		CardAcceptorID: r.Merchant,
		OriginalData:   orig,
	}
	header(&f, h)
	return d.dialect().Pack(&f)
}

// answerElements are the elements of an issuer's answer the links read:
// the MTI, the header that matches it to its request, and the response code.
var answerElements = iso8583.Elements(0, 7, 11, 32, 39, 41, 100)

// Unpack reads an issuer answer. Every element of the frame is checked as
// iso8583.Unpack checks it (a malformed element anywhere, or bytes after the
// last one, is ErrIssuerMalformed), but only answerElements are copied out:
// the PAN and the rest are not.
func (d IssuerDialect) Unpack(frame []byte) (string, MessageHeader, string, error) {
	var f iso8583.Fields
	if err := iso8583.UnpackSelected(d.dialect().Spec(), frame, answerElements, &f); err != nil {
		return "", MessageHeader{}, "", fmt.Errorf("%w: %v", ErrIssuerMalformed, err)
	}
	h := MessageHeader{
		STAN: f.STAN, Transmit: f.TransmissionTime, Institution: f.AcquirerID,
		Receiver: f.ReceivingInstitution, Terminal: f.TerminalID,
	}
	return f.MTI, h, f.ResponseCode, nil
}
