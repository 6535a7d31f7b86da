package routing

import (
	"fmt"

	"pingate/iso8583"
)

// IssuerDialect packs and reads the issuer dialect (iso8583.IssuerSpec).
type IssuerDialect struct{}

var _ IssuerCodec = IssuerDialect{}

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
	f.LocalTime = h.LocalTime.Format("150405")
	f.LocalDate = h.LocalTime.Format("0102")
	f.AcquirerID = h.Institution
	f.ReceivingInstitution = h.Receiver
	f.TerminalID = h.Terminal
}

// PackRequest builds the 0100 of a PIN operation.
func (IssuerDialect) PackRequest(h MessageHeader, req *IssuerRequest) ([]byte, error) {
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
	return iso8583.Pack(iso8583.IssuerSpec, &f)
}

// PackNetwork builds an 0800 network management request.
func (IssuerDialect) PackNetwork(h MessageHeader, nmi string) ([]byte, error) {
	f := iso8583.Fields{MTI: iso8583.MTINetworkRequest, NetworkCode: nmi}
	header(&f, h)
	f.TerminalID = ""
	f.LocalTime, f.LocalDate = "", ""
	return iso8583.Pack(iso8583.IssuerSpec, &f)
}

// PackReversal builds the 0420 reversal advice of a timed-out request.
func (IssuerDialect) PackReversal(h MessageHeader, r *Reversal) ([]byte, error) {
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
	return iso8583.Pack(iso8583.IssuerSpec, &f)
}

// Unpack reads an issuer answer.
func (IssuerDialect) Unpack(frame []byte) (string, MessageHeader, string, error) {
	f, err := iso8583.Unpack(iso8583.IssuerSpec, frame)
	if err != nil {
		return "", MessageHeader{}, "", fmt.Errorf("%w: %v", ErrIssuerMalformed, err)
	}
	defer f.Clear()
	h := MessageHeader{
		STAN: f.STAN, Transmit: f.TransmissionTime, Institution: f.AcquirerID,
		Receiver: f.ReceivingInstitution, Terminal: f.TerminalID,
	}
	return f.MTI, h, f.ResponseCode, nil
}
