package routing

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"pingate/iso8583"
	"pingate/pinblock"
)

// AcquirerFront turns acquirer-dialect messages (iso8583.AcquirerSpec) into
// flow requests and answers them. It owns no connection: the listener hands
// it one frame at a time with the connection's session, and writes back what
// it returns.
type AcquirerFront struct {
	flow *Flow
	keys KeyImporter
	log  *slog.Logger

	sessions sync.Mutex // serializes the creation of connection sessions
}

// NewAcquirerFront builds the front end of the ISO 8583 channel.
func NewAcquirerFront(flow *Flow, log *slog.Logger) *AcquirerFront {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys := flow.deps.Keys
	if keys == nil {
		keys = flow.deps.HSM
	}
	return &AcquirerFront{flow: flow, keys: keys, log: log}
}

// Session is one acquirer connection's state. The first message that names
// an acquirer in DE 32 binds the connection to it; a later message naming
// another acquirer is refused. A sign-on (0800/001) marks the connection
// signed on, a sign-off (0800/002) signed off again, in the order they were
// read on the connection (AcquirerFront.network).
type Session struct {
	mu       sync.Mutex
	acquirer string
	signedOn bool
	Remote   string
}

func (s *Session) bind(id string) (ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acquirer == "" {
		s.acquirer = id
		return true
	}
	return s.acquirer == id
}

// Bound returns the acquirer the session is bound to, if any.
func (s *Session) Bound() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acquirer
}

func (s *Session) setSignedOn(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signedOn = on
}

// SignedOn reports whether the acquirer signed on and has not signed off.
func (s *Session) SignedOn() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signedOn
}

// HandleFrame answers one frame. It returns the answer frame (nil when there
// is nothing to answer) and whether the connection must close after it: an
// unknown acquirer is answered 58 and disconnected.
func (a *AcquirerFront) HandleFrame(ctx context.Context, s *Session, frame []byte) (resp []byte, closeAfter bool) {
	// The message span (a child of the listener's frame span, when there is
	// one) parents the flow, the limiter, the security module, the issuer,
	// the journal and the Kafka publish. Attributes carry message types and
	// codes, never a PAN or PIN.
	ctx, span := a.flow.tracer.Start(ctx, "pingate.acquirer.message")
	defer span.End()
	f, err := iso8583.Unpack(iso8583.AcquirerSpec, frame)
	if err != nil {
		span.SetAttributes(attribute.String("iso8583.response_code", ResponseFor(ErrFormat).Code))
		span.SetStatus(codes.Error, "malformed message")
		return a.formatError(ctx, frame, err), false
	}
	defer f.Clear()
	span.SetAttributes(
		attribute.String("iso8583.mti", f.MTI),
		attribute.String("iso8583.processing_code", f.ProcessingCode),
		attribute.String("iso8583.network_code", f.NetworkCode),
		attribute.String("pingate.acquirer", f.AcquirerID),
	)

	if err := f.Check(); err != nil {
		return a.refuse(ctx, f, fmt.Errorf("%w: %w", ErrFormat, err)), false
	}
	acq, err := a.acquirerOf(ctx, s, f)
	if err != nil {
		return a.refuse(ctx, f, err), errors.Is(err, ErrUnknownAcquirer)
	}
	switch f.MTI {
	case iso8583.MTINetworkRequest:
		return a.answer(ctx, f, a.network(ctx, s, acq, f)), false
	case iso8583.MTIAuthRequest:
		if acq.RequireSignOn && !signedOn(ctx, s) {
			a.log.WarnContext(ctx, "request before sign-on refused", "acquirer", acq.ID, "remote", s.Remote)
			return a.refuse(ctx, f, ErrNotSignedOn), false
		}
		return a.operation(ctx, f), false
	case iso8583.MTIReversalAdvice:
		// A reversal advice is taken signed on or not: refusing it would
		// leave an approval standing that its acquirer gave up on.
		return a.answer(ctx, f, a.reversal(ctx, f)), false
	}
	return a.refuse(ctx, f, fmt.Errorf("%w: MTI %s not taken", ErrFormat, f.MTI)), false
}

// acquirerOf finds the acquirer a checked message speaks for and binds the
// connection to it. DE 32 names it; network management may leave DE 32 out
// (Check enforces which messages may), and then speaks for the acquirer the
// connection is bound to. An echo test on a connection not yet bound is
// answered without binding it (the zero AcquirerConfig). Errors:
// ErrUnknownAcquirer (the connection is then closed), ErrAcquirerMismatch,
// ErrNotBound.
func (a *AcquirerFront) acquirerOf(ctx context.Context, s *Session, f *iso8583.Fields) (AcquirerConfig, error) {
	id := f.AcquirerID
	if id == "" {
		if id = s.Bound(); id == "" {
			if f.MTI == iso8583.MTINetworkRequest && f.NetworkCode == iso8583.NMIEcho {
				return AcquirerConfig{}, nil
			}
			a.log.WarnContext(ctx, "network management without DE 32 on a connection bound to no acquirer", "remote", s.Remote)
			return AcquirerConfig{}, ErrNotBound
		}
	}
	acq, known := a.flow.Acquirer(id)
	if !known {
		a.log.WarnContext(ctx, "unknown acquirer refused", "acquirer", id, "remote", s.Remote)
		return AcquirerConfig{}, ErrUnknownAcquirer
	}
	if !s.bind(id) {
		a.log.WarnContext(ctx, "acquirer mismatch on connection", "bound", s.Bound(), "acquirer", id, "remote", s.Remote)
		return AcquirerConfig{}, ErrAcquirerMismatch
	}
	return acq, nil
}

// reversal takes an acquirer's reversal advice for a request it gave up on
// (Flow.Reverse): an approval this gateway gave is undone at the issuer and
// recorded. DE 90 must name a request of the same acquirer. The result is
// answered through ResponseFor.
func (a *AcquirerFront) reversal(ctx context.Context, f *iso8583.Fields) error {
	orig, err := iso8583.ParseOriginalData(f.OriginalData)
	if err != nil || orig.MTI != iso8583.MTIAuthRequest || !orig.SameAcquirer(f.AcquirerID) {
		return fmt.Errorf("%w: DE 90 names no request of this acquirer", ErrFormat)
	}
	// Taken to its end once read, whatever becomes of the connection (see
	// operation): a reversal owed at the issuer without its event, or
	// claimed without being owed, would make the record lie. Bounded by the
	// request timeout instead.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.flow.state.Load().cfg.RequestTimeout)
	defer cancel()
	// The 0100 it names may have been read just before it on this
	// connection and not be registered yet: frames are handled concurrently.
	if err := iso8583.WaitEarlierFrames(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrReversalFailed, err)
	}
	err = a.flow.Reverse(ctx, ReversalAdvice{
		Acquirer: f.AcquirerID, Terminal: f.TerminalID, STAN: orig.STAN, Transmit: orig.Transmission, Reason: f.ResponseCode,
		PAN: f.PAN,
	})
	a.log.InfoContext(ctx, "acquirer reversal advice", "acquirer", f.AcquirerID, "terminal", f.TerminalID,
		"original_stan", orig.STAN, "code", ResponseFor(err).Code)
	return err
}

func (a *AcquirerFront) operation(ctx context.Context, f *iso8583.Fields) []byte {
	op, _ := OperationOf(f.ProcessingCode) // Check has verified the processing code
	req := &Request{
		Operation: op,
		Acquirer:  f.AcquirerID,
		Terminal:  f.TerminalID,
		Merchant:  f.CardAcceptorID,
		STAN:      f.STAN,
		Transmit:  f.TransmissionTime,
		RRN:       f.RRN,
		PAN:       f.PAN,
		OldBlock:  f.PINBlock,
		NewBlock:  f.NewPINBlock,
		Received:  time.Now(),
	}
	if f.Additional != nil {
		req.Teller, req.IdentityRef, req.Supervisor = f.Additional.TellerID, f.Additional.IdentityRef, f.Additional.SupervisorID
	}
	if f.SecurityControl != "" {
		sc, err := iso8583.ParseSecurityControl(f.SecurityControl)
		if err != nil {
			return a.answer(ctx, f, fmt.Errorf("%w: DE 53: %w", ErrFormat, err))
		}
		req.Format, req.KeyIndex = sc.Format, sc.KeyIndex
	}
	// The operation runs detached from the connection, as the branch API's
	// does: an acquirer that drops or resets it while the request is at the
	// issuer must still find the outcome recorded, and the issuer's change
	// must not be undone by an unrecorded reversal because the connection's
	// context ended. Handle bounds it by the request timeout.
	out := a.flow.Handle(context.WithoutCancel(ctx), req)
	return a.reply(ctx, f, out.Code)
}

// network answers sign-on, sign-off, echo and key change for acq: nil
// when the message is taken, else the error ResponseFor answers.
func (a *AcquirerFront) network(ctx context.Context, s *Session, acq AcquirerConfig, f *iso8583.Fields) error {
	switch f.NetworkCode {
	case iso8583.NMISignOn, iso8583.NMISignOff:
		// Taken in the order read, after the frames before it (handled
		// concurrently) have passed: a sign-off does not refuse the
		// requests sent ahead of it, and a sign-on and a sign-off leave the
		// connection as the later one says. The wait ends early only with
		// the connection, whose state then no longer matters.
		_ = iso8583.WaitEarlierFrames(ctx)
		s.setSignedOn(f.NetworkCode == iso8583.NMISignOn)
		return nil
	case iso8583.NMIEcho:
		return nil
	case iso8583.NMIKeyChange:
		if acq.RequireSignOn && !signedOn(ctx, s) {
			return ErrNotSignedOn
		}
		return a.keyChange(ctx, acq, f)
	}
	return fmt.Errorf("%w: network management code %s not taken", ErrFormat, f.NetworkCode)
}

// signedOn reports whether s is signed on for the frame of ctx. A session
// signed on answers at once; one that is not may have a sign-on read before
// this frame and not yet handled (frames are handled concurrently), so it is
// asked again once the frames before this one have passed. Only a refusal
// waits. A sign-off read before the frame and not yet handled does not
// refuse it: that would take a wait on every request.
func signedOn(ctx context.Context, s *Session) bool {
	if s.SignedOn() {
		return true
	}
	if iso8583.WaitEarlierFrames(ctx) != nil {
		return false
	}
	return s.SignedOn()
}

// keyChange imports the acquirer's new zone PIN key, delivered under the ZMK
// shared with it, as the next version of the key at DE 53's key index
// (ImportRequest.Rotate): blocks under the previous version still translate
// for the key ring's grace window, while the acquirer's terminals switch.
//
// DE 123 carries a TR-31 key block (ImportRequest.KeyBlock), or, only for an
// acquirer with LegacyKeyChange, the key enciphered under the ZMK and its KCV
// (keyUnderZMK). An SM4 acquirer (PINAlgorithm sm4) sends its SM4 zone key
// in that second form, SM4-ECB under its SM4 ZMK with the 8-byte check
// value. Refusals of the message are ErrKeyBlockRequired, ErrUnknownKeyIndex
// and ErrFormat; the security module's are a *KeyChangeError; both are
// answered through ResponseFor. pingate deciphers the acquirer's PIN blocks
// under this key, so a block whose mode of use does not permit decrypting
// (P0 E) is refused from its clear header before the module is asked: a
// *KeyChangeError wrapping pinblock.ErrModeOfUse, answered 30.
func (a *AcquirerFront) keyChange(ctx context.Context, acq AcquirerConfig, f *iso8583.Fields) error {
	req, err := a.keyChangeRequest(acq, f)
	if err != nil {
		a.log.WarnContext(ctx, "acquirer key change refused", "acquirer", acq.ID, "err", err)
		return err
	}
	defer clear(req.Enciphered)
	if req.KeyBlock != "" {
		// pingate deciphers the acquirer's PIN blocks under this key: a
		// block that may only encipher (P0 E) is refused before anything
		// is unwrapped.
		if err := pinblock.BlockPermits(req.KeyBlock, pinblock.OpDecrypt); err != nil {
			err = &KeyChangeError{Err: fmt.Errorf("key %s: %w", req.ID, err)}
			a.log.WarnContext(ctx, "acquirer key change refused", "acquirer", acq.ID, "key", req.ID, "form", keyForm(req), "err", err)
			return err
		}
	}
	info, err := a.keys.Import(ctx, req)
	if err == nil {
		a.log.InfoContext(ctx, "acquirer zone PIN key changed", "acquirer", acq.ID, "key", req.ID,
			"version", info.Version, "kcv", info.KCV, "form", keyForm(req))
		return nil
	}
	err = &KeyChangeError{Err: err}
	if r := ResponseFor(err); r.Outcome == OutcomeRejected {
		a.log.WarnContext(ctx, "acquirer key change refused", "acquirer", acq.ID, "key", req.ID, "form", keyForm(req), "err", err)
	} else {
		a.log.ErrorContext(ctx, "acquirer key change failed", "acquirer", acq.ID, "key", req.ID, "err", err)
	}
	return err
}

// keyChangeRequest builds the import of a key change from DE 53 and DE 123.
func (a *AcquirerFront) keyChangeRequest(acq AcquirerConfig, f *iso8583.Fields) (pinblock.ImportRequest, error) {
	kx, err := iso8583.ParseKeyExchange(f.KeyExchange)
	if err != nil || acq.ZMK == "" {
		return pinblock.ImportRequest{}, ErrFormat
	}
	idx := 0
	if f.SecurityControl != "" {
		sc, err := iso8583.ParseSecurityControl(f.SecurityControl)
		if err != nil {
			return pinblock.ImportRequest{}, ErrFormat
		}
		idx = sc.KeyIndex
	}
	label, ok := acq.Keys[idx]
	if !ok {
		return pinblock.ImportRequest{}, ErrUnknownKeyIndex
	}
	req := pinblock.ImportRequest{
		ID: label, Usage: pinblock.UsageZPK, ZMK: pinblock.KeyRef{ID: acq.ZMK},
		Who: "acquirer " + acq.ID, Why: "key change (0800/161)", Rotate: true,
	}
	if kx.KeyBlock != "" {
		req.KeyBlock = kx.KeyBlock
		return req, nil
	}
	if acq.PINAlgorithm == pinblock.SM4 {
		// An SM4 zone key has no key block form (ANSI X9.143 defines none):
		// it comes SM4-ECB under the SM4 ZMK with its check value, as
		// Chinese bank sign-on messages deliver it.
		enc, err := hex.DecodeString(kx.KeyUnderZMK)
		if err != nil {
			return pinblock.ImportRequest{}, ErrFormat
		}
		req.Enciphered, req.KCV, req.Algorithm = enc, kx.KCV, pinblock.SM4
		return req, nil
	}
	if !acq.LegacyKeyChange {
		return pinblock.ImportRequest{}, ErrKeyBlockRequired
	}
	return keyUnderZMK(req, kx)
}

// keyUnderZMK completes req with the legacy form of DE 123: the key
// enciphered under the ZMK and its KCV; a 10-digit KCV names an AES key.
func keyUnderZMK(req pinblock.ImportRequest, kx iso8583.KeyExchange) (pinblock.ImportRequest, error) {
	enc, err := hex.DecodeString(kx.KeyUnderZMK)
	if err != nil {
		return pinblock.ImportRequest{}, ErrFormat
	}
	req.Enciphered, req.KCV, req.Algorithm = enc, kx.KCV, pinblock.TDES
	if len(kx.KCV) == 10 {
		req.Algorithm = pinblock.AES
	}
	return req, nil
}

func keyForm(req pinblock.ImportRequest) string {
	if req.KeyBlock != "" {
		return "tr31"
	}
	return "legacy"
}

// answer builds the answer to f with the response code ResponseFor gives
// for err (nil: approved, or taken).
func (a *AcquirerFront) answer(ctx context.Context, f *iso8583.Fields, err error) []byte {
	return a.reply(ctx, f, ResponseFor(err).Code)
}

// reply builds the answer to f: the response MTI, the matching fields echoed,
// DE 39 set, and no PIN block or key material.
func (a *AcquirerFront) reply(ctx context.Context, f *iso8583.Fields, code string) []byte {
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("iso8583.response_code", code))
	r := iso8583.Fields{
		MTI:                  answerMTI(f.MTI),
		PAN:                  f.PAN,
		ProcessingCode:       f.ProcessingCode,
		TransmissionTime:     f.TransmissionTime,
		STAN:                 f.STAN,
		LocalTime:            f.LocalTime,
		LocalDate:            f.LocalDate,
		AcquirerID:           f.AcquirerID,
		RRN:                  f.RRN,
		ResponseCode:         code,
		TerminalID:           f.TerminalID,
		CardAcceptorID:       f.CardAcceptorID,
		NetworkCode:          f.NetworkCode,
		OriginalData:         f.OriginalData,
		ReceivingInstitution: f.ReceivingInstitution,
	}
	if r.MTI == iso8583.MTIReversalResponse {
		// The 0430 carries no local date and time (the field use, docs/
		// iso8583-acquirer.md), though the 0420 may.
		r.LocalTime, r.LocalDate = "", ""
	}
	b, err := iso8583.Pack(iso8583.AcquirerSpec, &r)
	if err != nil {
		// An echoed field did not pack (its request was malformed in a way
		// unpack tolerated): answer with the bare minimum.
		b, _ = iso8583.Pack(iso8583.AcquirerSpec, &iso8583.Fields{MTI: r.MTI, STAN: validOr(f.STAN, 6), ResponseCode: code})
	}
	return b
}

// formatError answers a frame that does not unpack: 30, echoing every
// element that could be read (iso8583.UnpackReadable) so that the acquirer
// can match the answer, under answerMTI's MTI.
func (a *AcquirerFront) formatError(ctx context.Context, frame []byte, err error) []byte {
	f := iso8583.UnpackReadable(iso8583.AcquirerSpec, frame)
	a.log.InfoContext(ctx, "malformed acquirer message", "err", err)
	return a.refuse(ctx, f, fmt.Errorf("%w: %w", ErrFormat, err))
}

// refuse answers f with err's code before the flow, where no event records
// it, and counts it in pingate.acquirer.refusals by code and reason so that
// the refusals show on /metrics beside the flow's pingate.requests.
func (a *AcquirerFront) refuse(ctx context.Context, f *iso8583.Fields, err error) []byte {
	rsp := ResponseFor(err)
	a.flow.m.refusals.Add(ctx, 1, metric.WithAttributes(attribute.String("code", rsp.Code), attribute.String("reason", rsp.Reason)))
	return a.reply(ctx, f, rsp.Code)
}

// answerMTI is the MTI of the answer to a message of mti: the response MTI
// of a request or advice (third digit 0 or 2: 0100 → 0110, 0420 → 0430,
// 0800 → 0810), and 0110 for anything else — an MTI that does not read, or a
// response sent to the gateway, which is never answered with a response of
// its own kind.
func answerMTI(mti string) string {
	if len(mti) == 4 && isDigits(mti) && (mti[2] == '0' || mti[2] == '2') {
		return iso8583.ResponseMTI(mti)
	}
	return iso8583.MTIAuthResponse
}

func validOr(s string, n int) string {
	if len(s) == n && isDigits(s) {
		return s
	}
	return ""
}
