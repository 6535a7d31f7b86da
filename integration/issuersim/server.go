package issuersim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// Config is a simulated issuer host.
type Config struct {
	Population Population
	// ZPK is the zone PIN key shared with the gateway: the PIN blocks of
	// requests arrive under it.
	ZPK pinblock.Key
	// KeyIndexZPKs are further zone PIN keys by the DE 53 key index the
	// gateway names them with (an issuer entry's key_index); a request with
	// an index not listed here is under ZPK. A key's algorithm says what the
	// DE 53 format number means: under an SM4 key, 0 is SM4-0 and 4 SM4-4.
	KeyIndexZPKs map[int]pinblock.Key
	// PVK keys the PIN verification data (a keyed hash of PAN and PIN).
	PVK pinblock.Key
	// MaxTries wrong PINs in a row lock a card (default DefaultMaxTries).
	MaxTries int
	// Latency is added before every answer to a PIN operation.
	Latency time.Duration
	// FailRate is the share of PIN operations answered 96 (0–1).
	FailRate float64
	// DropRate is the share of PIN operations and reversal advices never
	// answered (0–1), to provoke timeouts and retried reversals.
	DropRate float64
	// Audit keeps every PIN change and reset the ledger applied and every
	// reversal advice received (Sim.Audit), for tests that match the
	// issuer's ledger against the gateway's records. Memory grows with the
	// operations: for tests only.
	Audit bool
	// Dialect is the ISO 8583 dialect the simulated host speaks; nil is
	// the built-in issuer dialect (iso8583.IssuerDialect).
	Dialect *iso8583.Dialect
	// Server configures the listener (address, framing, limits).
	Server iso8583.Config
	Logger *slog.Logger
}

// Validate names bad settings.
func (c Config) Validate() error {
	var errs []error
	if err := c.Population.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !c.ZPK.Valid() || !c.ZPK.Usage().PINKey() {
		errs = append(errs, errors.New("issuersim: zpk must be a loaded zone PIN key"))
	}
	for idx, k := range c.KeyIndexZPKs {
		if !k.Valid() || !k.Usage().PINKey() || idx < 0 || idx > 99 {
			errs = append(errs, fmt.Errorf("issuersim: key index %d: want 0-99 and a loaded zone PIN key", idx))
		}
	}
	if !c.PVK.Valid() || c.PVK.Usage() != pinblock.UsagePVK {
		errs = append(errs, errors.New("issuersim: pvk must be a loaded PIN verification key"))
	}
	if c.FailRate < 0 || c.FailRate > 1 || c.DropRate < 0 || c.DropRate > 1 {
		errs = append(errs, errors.New("issuersim: fail_rate and drop_rate must be within 0–1"))
	}
	if c.Latency < 0 {
		errs = append(errs, errors.New("issuersim: latency must not be negative"))
	}
	return errors.Join(errs...)
}

// Sim is a running issuer simulator.
type Sim struct {
	cfg     Config
	dialect *iso8583.Dialect
	ledger  *ledger
	srv     *iso8583.Server
	log     *slog.Logger
	// Counters, for tests and the demo.
	Requests, Reversals, Network atomic.Int64

	// ahead holds the references of reversal advices that undid nothing.
	ahead sync.Map

	auditMu  sync.Mutex
	applied  []Applied
	reversed map[string]bool // match references of reversal advices received
}

// Applied is a PIN change or reset the simulated issuer applied (Config.Audit).
type Applied struct {
	// Ref is the request's STAN "|" DE 7, the reference a reversal names in DE 90.
	Ref      string
	Terminal string // DE 41
	// Reversed: a reversal advice naming Ref was received.
	Reversed bool
}

// Audit returns the operations applied so far, in order, each with whether
// a reversal advice for it was received (Config.Audit; nil without it).
func (s *Sim) Audit() []Applied {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	out := make([]Applied, len(s.applied))
	for i, a := range s.applied {
		a.Reversed = s.reversed[a.Ref]
		out[i] = a
	}
	return out
}

// DefaultMaxTries is how many wrong current PINs in a row lock a card when
// Config.MaxTries is zero: that answer and every later PIN change is 75
// until an unblock or a reset.
const DefaultMaxTries = 3

// New builds a simulator; Serve or ListenAndServe runs it.
func New(cfg Config) (*Sim, error) {
	if cfg.MaxTries == 0 {
		cfg.MaxTries = DefaultMaxTries
	}
	if cfg.Dialect == nil {
		cfg.Dialect = iso8583.IssuerDialect
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{cfg: cfg, dialect: cfg.Dialect, log: cfg.Logger, reversed: map[string]bool{}}
	s.ledger = newLedger(cfg.Population, func(pan, pin string) [32]byte {
		p, err := pinblock.NewSecretPIN(pin)
		if err != nil {
			return [32]byte{} // matches no stored value: a malformed PIN never verifies
		}
		defer p.Zeroize()
		v, _ := pinblock.PINVerificationData(cfg.PVK, pan, p) // PVK validated in Validate
		return v
	}, cfg.MaxTries)
	srv, err := iso8583.NewServer(cfg.Server, iso8583.HandlerFunc(s.serveFrame))
	if err != nil {
		return nil, err
	}
	s.srv = srv
	return s, nil
}

// Server is the simulator's listener.
func (s *Sim) Server() *iso8583.Server { return s.srv }

// serveFrame answers one frame, on the server's handler goroutine of the
// connection (reused from frame to frame, so its stack grows once), then
// waits out Config.Latency and writes.
func (s *Sim) serveFrame(ctx context.Context, c *iso8583.ServerConn, frame []byte) {
	answer, delay := s.respond(frame)
	if answer == nil {
		return
	}
	if delay && s.cfg.Latency > 0 {
		t := time.NewTimer(s.cfg.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
	_ = c.WriteFrame(answer)
}

// respond is the answer to frame, or nil when there is none to send (a
// malformed message, a dropped one); delay: it answers a PIN operation.
func (s *Sim) respond(frame []byte) (answer []byte, delay bool) {
	f, err := s.dialect.Unpack(frame)
	if err != nil {
		s.log.Warn("issuer-sim: malformed message", "err", err)
		return nil, false
	}
	defer f.Clear()
	var code string
	switch f.MTI {
	case iso8583.MTINetworkRequest:
		s.Network.Add(1)
		code = iso8583.RCApproved
	case iso8583.MTIAuthRequest:
		s.Requests.Add(1)
		r := rand.Float64()
		switch {
		case r < s.cfg.DropRate:
			return nil, false
		case r < s.cfg.DropRate+s.cfg.FailRate:
			code = iso8583.RCSystemMalfunction
		default:
			code = s.operation(f)
		}
		delay = true
	case iso8583.MTIReversalAdvice:
		if rand.Float64() < s.cfg.DropRate {
			return nil, false
		}
		s.Reversals.Add(1)
		if orig, err := iso8583.ParseOriginalData(f.OriginalData); err == nil {
			ref := orig.STAN + "|" + orig.Transmission
			if !s.ledger.reverse(f.PAN, ref) {
				// The advice may have overtaken its original (sent by a
				// gateway that died, still in a socket buffer): as issuers
				// do, the original is refused if it arrives later.
				s.ahead.Store(ref, struct{}{})
			}
			if s.cfg.Audit {
				s.auditMu.Lock()
				s.reversed[ref] = true
				s.auditMu.Unlock()
			}
		}
		code = iso8583.RCApproved
	default:
		code = iso8583.RCFormatError
	}
	resp := iso8583.Fields{
		MTI: iso8583.ResponseMTI(f.MTI), PAN: f.PAN, ProcessingCode: f.ProcessingCode, TransmissionTime: f.TransmissionTime,
		STAN: f.STAN, LocalTime: f.LocalTime, LocalDate: f.LocalDate, AcquirerID: f.AcquirerID, RRN: f.RRN,
		ResponseCode: code, TerminalID: f.TerminalID, CardAcceptorID: f.CardAcceptorID, NetworkCode: f.NetworkCode,
		OriginalData: f.OriginalData, ReceivingInstitution: f.ReceivingInstitution,
	}
	b, err := s.dialect.Pack(&resp)
	if err != nil {
		s.log.Warn("issuer-sim: answer does not pack", "err", err)
		return nil, false
	}
	return b, delay
}

// operation runs a PIN operation on the ledger. The PIN is deciphered here,
// as an issuer's own HSM would, and lives only in this call.
func (s *Sim) operation(f *iso8583.Fields) string {
	if err := f.Check(); err != nil {
		return iso8583.RCFormatError
	}
	if code := s.cfg.Population.special(f.PAN); code != "" {
		return code
	}
	ref := f.STAN + "|" + f.TransmissionTime
	if _, reversed := s.ahead.Load(ref); reversed && f.ProcessingCode != iso8583.ProcPINUnblock {
		return iso8583.RCSystemMalfunction
	}
	format, zpk := pinblock.Format0, s.cfg.ZPK
	if f.SecurityControl != "" {
		sc, err := iso8583.ParseSecurityControl(f.SecurityControl)
		if err != nil {
			return iso8583.RCFormatError
		}
		if k, ok := s.cfg.KeyIndexZPKs[sc.KeyIndex]; ok {
			zpk = k
		}
		format = pinblock.Format(sc.Format)
		if zpk.Algorithm() == pinblock.SM4 {
			if format, err = pinblock.FormatFor(sc.Format, pinblock.SM4); err != nil {
				return iso8583.RCFormatError
			}
		}
	}
	pin := func(block []byte) (string, bool) {
		p, err := pinblock.Decipher(format, block, f.PAN, zpk)
		if err != nil {
			return "", false
		}
		defer p.Zeroize()
		return p.Reveal(), true
	}
	switch f.ProcessingCode {
	case iso8583.ProcPINChange:
		oldPIN, ok1 := pin(f.PINBlock)
		newPIN, ok2 := pin(f.NewPINBlock)
		if !ok1 || !ok2 {
			return iso8583.RCFormatError
		}
		return s.audit(s.ledger.change(f.PAN, oldPIN, newPIN, ref), ref, f.TerminalID)
	case iso8583.ProcPINReset:
		newPIN, ok := pin(f.NewPINBlock)
		if !ok {
			return iso8583.RCFormatError
		}
		return s.audit(s.ledger.reset(f.PAN, newPIN, ref), ref, f.TerminalID)
	case iso8583.ProcPINUnblock:
		return s.ledger.unblock(f.PAN)
	}
	return iso8583.RCFormatError
}

// audit keeps an applied operation (Config.Audit) and returns its code.
func (s *Sim) audit(code, ref, terminal string) string {
	if code == iso8583.RCApproved && s.cfg.Audit {
		s.auditMu.Lock()
		s.applied = append(s.applied, Applied{Ref: ref, Terminal: terminal})
		s.auditMu.Unlock()
	}
	return code
}

// DevelopmentKeys returns the simulated issuer's keys from the published
// development key set (devkeys.All()): its zone PIN key and its
// PIN verification key.
func DevelopmentKeys() (zpk, pvk pinblock.Key, err error) {
	if zpk, err = devkeys.Key(devkeys.IssuerZPK); err != nil {
		return zpk, pvk, err
	}
	pvk, err = devkeys.Key(devkeys.IssuerPVK)
	return zpk, pvk, err
}

// DevSM4KeyIndex is the DE 53 key index under which the development
// simulator takes SM4 blocks (the embedded default's SM4 issuer).
const DevSM4KeyIndex = 2

// DevTDESKeyIndex is the DE 53 key index under which the development
// simulator takes blocks under the TDES zone key dev-atm-zpk: the issuer of
// a gateway on security.module payshield, whose variant-LMK HSM holds no
// AES key (scripts/bench.sh runs one).
const DevTDESKeyIndex = 3

// DevelopmentKeyIndexZPKs returns the simulator's further development zone
// PIN keys by key index (Config.KeyIndexZPKs): the SM4 issuer key
// dev-sm4-issuer-zpk at DevSM4KeyIndex and the TDES key dev-atm-zpk at
// DevTDESKeyIndex.
func DevelopmentKeyIndexZPKs() (map[int]pinblock.Key, error) {
	k, err := devkeys.Key(devkeys.SM4IssuerZPK)
	if err != nil {
		return nil, err
	}
	t, err := devkeys.Key(devkeys.ATMZPK)
	if err != nil {
		return nil, err
	}
	return map[int]pinblock.Key{DevSM4KeyIndex: k, DevTDESKeyIndex: t}, nil
}
