package routing

import (
	"context"
	"errors"
	"sync"
	"testing"

	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// fakeImporter stands for the security module in key changes: it records
// each import and answers err.
type fakeImporter struct {
	mu  sync.Mutex
	got []pinblock.ImportRequest
	err error
}

func (k *fakeImporter) Import(_ context.Context, req pinblock.ImportRequest) (pinblock.KeyInfo, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	req.Enciphered = append([]byte(nil), req.Enciphered...) // the front clears its copy
	k.got = append(k.got, req)
	return pinblock.KeyInfo{ID: req.ID, Version: 2, KCV: "08D7B4"}, k.err
}

func (k *fakeImporter) last(t *testing.T) pinblock.ImportRequest {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.got) == 0 {
		t.Fatal("no key was imported")
	}
	return k.got[len(k.got)-1]
}

// networkConfig adds to testConfig the acquirers whose key changes and
// sign-on rules the front end tests: 100001 gets a ZMK (TR-31 only),
// 100002 requires sign-on and takes the legacy form, 100003 is SM4.
func networkConfig() Config {
	cfg := testConfig()
	cfg.Acquirers[0].ZMK = devkeys.ATMZMK
	cfg.Acquirers = append(cfg.Acquirers,
		AcquirerConfig{ID: "100002", Terminals: []string{"*"}, Keys: map[int]string{1: devkeys.ATMZPK}, ZMK: "acq2-zmk",
			RequireSignOn: true, LegacyKeyChange: true},
		AcquirerConfig{ID: "100003", Terminals: []string{"*"}, Keys: map[int]string{1: "acq3-zpk"}, ZMK: "acq3-zmk",
			PINAlgorithm: pinblock.SM4},
	)
	return cfg
}

func networkFront(t *testing.T, issuer IssuerSender, sink *memSink, keys *fakeImporter) *AcquirerFront {
	t.Helper()
	f := testFlow(t, issuer, sink, nil)
	if err := f.Reload(networkConfig()); err != nil {
		t.Fatal(err)
	}
	f.deps.Keys = keys
	return NewAcquirerFront(f, nil)
}

const (
	tr31Shaped = "D0032P0TB00N00000123456789ABCDEF" // the shape of a TR-31 block (P0, mode of use B); the fake module takes it
	// tr31EncryptOnly is that shape with mode of use E: pingate deciphers
	// under an acquirer's zone PIN key, so a key change to it is refused.
	tr31EncryptOnly = "D0032P0TE00N00000123456789ABCDEF"
	keyHex          = "0123456789ABCDEF0123456789ABCDEF"
)

// netFrame is an 0800 from acq (none when acq is empty) with network code
// nmi; kx, if set, is DE 123 and keyIndex DE 53's key index.
func netFrame(t *testing.T, acq, nmi string, kx *iso8583.KeyExchange, keyIndex int) []byte {
	t.Helper()
	f := &iso8583.Fields{MTI: iso8583.MTINetworkRequest, TransmissionTime: "1125120000", STAN: "000100", AcquirerID: acq, NetworkCode: nmi}
	if kx != nil {
		v, err := kx.Encode()
		if err != nil {
			t.Fatal(err)
		}
		f.KeyExchange = v
		f.SecurityControl = iso8583.SecurityControl{Format: 0, KeyIndex: keyIndex}.String()
	}
	b, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// changeFrameFrom is changeFrame sent by acquirer acq.
func changeFrameFrom(t *testing.T, acq, stan string) []byte {
	t.Helper()
	return repack(t, changeFrame(t, stan), func(f *iso8583.Fields) { f.AcquirerID = acq })
}

func repack(t *testing.T, frame []byte, change func(f *iso8583.Fields)) []byte {
	t.Helper()
	f, err := iso8583.Unpack(iso8583.AcquirerSpec, frame)
	if err != nil {
		t.Fatal(err)
	}
	change(f)
	b, err := iso8583.Pack(iso8583.AcquirerSpec, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reversalFrame is the acquirer's 0420 for the change request with STAN
// stan (changeFrame), with DE 90 naming original (MTI, acquirer) and DE 39
// reason.
func reversalFrame(t *testing.T, stan, origMTI, origAcq, reason string) []byte {
	t.Helper()
	od, err := iso8583.OriginalData{MTI: origMTI, STAN: stan, Transmission: "1125120000", Acquirer: origAcq}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return repack(t, changeFrame(t, stan), func(f *iso8583.Fields) {
		f.MTI, f.STAN, f.OriginalData, f.ResponseCode = iso8583.MTIReversalAdvice, "900"+stan[3:], od, reason
		f.PINBlock, f.NewPINBlock, f.SecurityControl = nil, nil, ""
	})
}

type frameStep struct {
	name      string
	give      []byte
	wantMTI   string
	wantCode  string
	wantClose bool
}

// runSteps sends each step's frame on one session and checks the answer.
func runSteps(t *testing.T, front *AcquirerFront, steps []frameStep) {
	t.Helper()
	s := &Session{Remote: "127.0.0.1:40000"}
	for _, st := range steps {
		resp, closeAfter := front.HandleFrame(context.Background(), s, st.give)
		got, err := iso8583.Unpack(iso8583.AcquirerSpec, resp)
		if err != nil {
			t.Fatalf("%s: the answer does not unpack: %v", st.name, err)
		}
		// An answer keeps its kind's field use (a format error's echoes
		// whatever of the request could be read, documented so).
		if st.wantCode != iso8583.RCFormatError {
			if err := got.Check(); err != nil {
				t.Errorf("%s: the %s answer breaks its field use: %v", st.name, got.MTI, err)
			}
		}
		if got.MTI != st.wantMTI || got.ResponseCode != st.wantCode || closeAfter != st.wantClose {
			t.Errorf("%s: HandleFrame() = %s/%s close=%v, want %s/%s close=%v", st.name, got.MTI, got.ResponseCode, closeAfter, st.wantMTI, st.wantCode, st.wantClose)
		}
		if got.KeyExchange != "" || got.PINBlock != nil || got.NewPINBlock != nil {
			t.Errorf("%s: the answer carries key or PIN material", st.name)
		}
	}
}

// TestHandleFrameNetworkManagement: sign-on, sign-off, echo and key change
// answered 0810 with the code of each outcome; an unknown acquirer is
// refused and disconnected.
func TestHandleFrameNetworkManagement(t *testing.T) {
	legacy := &iso8583.KeyExchange{KeyUnderZMK: keyHex, KCV: "08D7B4"}
	tests := []struct {
		name      string
		give      []byte
		importErr error
		wantCode  string
		wantClose bool
	}{
		{"sign-on", netFrame(t, "100001", iso8583.NMISignOn, nil, 0), nil, "00", false},
		{"sign-off", netFrame(t, "100001", iso8583.NMISignOff, nil, 0), nil, "00", false},
		{"echo on an unbound connection without DE 32", netFrame(t, "", iso8583.NMIEcho, nil, 0), nil, "00", false},
		{"key change on an unbound connection without DE 32", netFrame(t, "", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31Shaped}, 1), nil, "58", false},
		{"unknown acquirer", netFrame(t, "555555", iso8583.NMISignOn, nil, 0), nil, "58", true},
		{"key change, TR-31", netFrame(t, "100001", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31Shaped}, 1), nil, "00", false},
		{"key change, legacy form not allowed", netFrame(t, "100001", iso8583.NMIKeyChange, legacy, 1), nil, "30", false},
		{"key change, unknown key index", netFrame(t, "100001", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31Shaped}, 7), nil, "30", false},
		{"key change, no ZMK configured", netFrame(t, "200001", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31Shaped}, 1), nil, "30", false},
		{"key change, KCV mismatch", netFrame(t, "100001", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31Shaped}, 1), pinblock.ErrKCVMismatch, "30", false},
		{"key change, key block refused", netFrame(t, "100001", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31Shaped}, 1), pinblock.ErrKeyBlock, "30", false},
		{"key change, module fails", netFrame(t, "100001", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31Shaped}, 1), errors.New("module fault"), "96", false},
		{"key change, block may only encipher (P0 E)", netFrame(t, "100001", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31EncryptOnly}, 1), nil, "30", false},
		{"key change, legacy, sign-on required", netFrame(t, "100002", iso8583.NMIKeyChange, legacy, 1), nil, "91", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			front := networkFront(t, approveAll(), &memSink{}, &fakeImporter{err: tt.importErr})
			runSteps(t, front, []frameStep{{tt.name, tt.give, iso8583.MTINetworkResponse, tt.wantCode, tt.wantClose}})
		})
	}
}

// TestHandleFrameKeyChangeImports: what the security module is asked to
// import, by the form of DE 123 and the acquirer's algorithm.
func TestHandleFrameKeyChangeImports(t *testing.T) {
	tests := []struct {
		name      string
		acq       string
		give      iso8583.KeyExchange
		wantID    string
		wantZMK   string
		wantAlg   pinblock.Algorithm
		wantBlock bool
	}{
		{"TR-31", "100001", iso8583.KeyExchange{KeyBlock: tr31Shaped}, devkeys.ATMZPK, devkeys.ATMZMK, "", true},
		{"legacy TDES (6-digit KCV)", "100002", iso8583.KeyExchange{KeyUnderZMK: keyHex, KCV: "08D7B4"}, devkeys.ATMZPK, "acq2-zmk", pinblock.TDES, false},
		{"legacy AES (10-digit KCV)", "100002", iso8583.KeyExchange{KeyUnderZMK: keyHex, KCV: "08D7B40123"}, devkeys.ATMZPK, "acq2-zmk", pinblock.AES, false},
		{"SM4 under the SM4 ZMK", "100003", iso8583.KeyExchange{KeyUnderZMK: keyHex, KCV: "08D7B40123456789"}, "acq3-zpk", "acq3-zmk", pinblock.SM4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := &fakeImporter{}
			front := networkFront(t, approveAll(), &memSink{}, keys)
			runSteps(t, front, []frameStep{
				{"sign-on", netFrame(t, tt.acq, iso8583.NMISignOn, nil, 0), iso8583.MTINetworkResponse, "00", false},
				{"key change", netFrame(t, tt.acq, iso8583.NMIKeyChange, &tt.give, 1), iso8583.MTINetworkResponse, "00", false},
			})
			got := keys.last(t)
			if got.ID != tt.wantID || got.ZMK.ID != tt.wantZMK || !got.Rotate || got.Usage != pinblock.UsageZPK || (got.KeyBlock != "") != tt.wantBlock {
				t.Errorf("Import(id %s, zmk %s, rotate %v, usage %v, key block %v), want id %s, zmk %s, rotated ZPK, key block %v",
					got.ID, got.ZMK.ID, got.Rotate, got.Usage, got.KeyBlock != "", tt.wantID, tt.wantZMK, tt.wantBlock)
			}
			if !tt.wantBlock && (got.Algorithm != tt.wantAlg || len(got.Enciphered) != 16 || got.KCV != tt.give.KCV) {
				t.Errorf("Import(algorithm %q, %d enciphered bytes, KCV %s), want %q, 16 bytes, KCV %s", got.Algorithm, len(got.Enciphered), got.KCV, tt.wantAlg, tt.give.KCV)
			}
		})
	}
}

// TestHandleFrameSessionRules: a connection is bound to the first
// acquirer it names; an acquirer that requires sign-on is refused PIN
// operations and key changes until it signs on and after it signs off.
func TestHandleFrameSessionRules(t *testing.T) {
	t.Run("binding", func(t *testing.T) {
		keys := &fakeImporter{}
		front := networkFront(t, approveAll(), &memSink{}, keys)
		runSteps(t, front, []frameStep{
			{"change from 100001", changeFrame(t, "000801"), iso8583.MTIAuthResponse, "00", false},
			{"sign-on from 200001 on the same connection", netFrame(t, "200001", iso8583.NMISignOn, nil, 0), iso8583.MTINetworkResponse, "58", false},
			{"key change without DE 32: for the bound acquirer", netFrame(t, "", iso8583.NMIKeyChange, &iso8583.KeyExchange{KeyBlock: tr31Shaped}, 1), iso8583.MTINetworkResponse, "00", false},
		})
		if got := keys.last(t).ID; got != devkeys.ATMZPK {
			t.Errorf("key change imported %s, want 100001's %s", got, devkeys.ATMZPK)
		}
	})
	t.Run("sign-on required", func(t *testing.T) {
		front := networkFront(t, approveAll(), &memSink{}, &fakeImporter{})
		legacy := &iso8583.KeyExchange{KeyUnderZMK: keyHex, KCV: "08D7B4"}
		runSteps(t, front, []frameStep{
			{"change before sign-on", changeFrameFrom(t, "100002", "000811"), iso8583.MTIAuthResponse, "91", false},
			{"echo before sign-on", netFrame(t, "100002", iso8583.NMIEcho, nil, 0), iso8583.MTINetworkResponse, "00", false},
			{"sign-on", netFrame(t, "100002", iso8583.NMISignOn, nil, 0), iso8583.MTINetworkResponse, "00", false},
			{"key change", netFrame(t, "100002", iso8583.NMIKeyChange, legacy, 1), iso8583.MTINetworkResponse, "00", false},
			{"change after sign-on", changeFrameFrom(t, "100002", "000813"), iso8583.MTIAuthResponse, "00", false},
			{"sign-off", netFrame(t, "100002", iso8583.NMISignOff, nil, 0), iso8583.MTINetworkResponse, "00", false},
			{"change after sign-off", changeFrameFrom(t, "100002", "000812"), iso8583.MTIAuthResponse, "91", false},
		})
	})
}

// TestHandleFrameReversalAdvice: an acquirer's 0420 for an approval this
// gateway gave is answered 0430 00 and undoes it; one whose DE 90 names no
// request of that acquirer is a format error; one that cannot be owed is
// answered 96 for the acquirer to send it again.
func TestHandleFrameReversalAdvice(t *testing.T) {
	tests := []struct {
		name         string
		give         []byte
		reverseErr   error
		wantCode     string
		wantReversed int
	}{
		{"reverses the approval", reversalFrame(t, "000901", iso8583.MTIAuthRequest, "100001", "68"), nil, "00", 1},
		{"original of another acquirer", reversalFrame(t, "000901", iso8583.MTIAuthRequest, "100009", "68"), nil, "30", 0},
		{"original not a PIN operation", reversalFrame(t, "000901", iso8583.MTIReversalAdvice, "100001", "68"), nil, "30", 0},
		{"unknown original", reversalFrame(t, "000999", iso8583.MTIAuthRequest, "100001", "68"), nil, "00", 0},
		{"reversal cannot be owed", reversalFrame(t, "000901", iso8583.MTIAuthRequest, "100001", "68"), errors.New("store down"), "96", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issuer := &reversingIssuer{code: iso8583.RCApproved, fail: tt.reverseErr}
			sink := &memSink{}
			front := networkFront(t, issuer, sink, &fakeImporter{})
			runSteps(t, front, []frameStep{
				{"the original", changeFrame(t, "000901"), iso8583.MTIAuthResponse, "00", false},
				{tt.name, tt.give, iso8583.MTIReversalResponse, tt.wantCode, false},
			})
			if len(issuer.reversed) != tt.wantReversed {
				t.Errorf("issuer owed %d reversals, want %d", len(issuer.reversed), tt.wantReversed)
			}
			if want := 1 + tt.wantReversed; len(sink.events) != want {
				t.Errorf("%d events, want %d", len(sink.events), want)
			}
		})
	}
}

// TestHandleFramePINOperations: branch operations carry their teller and
// identity check in DE 48; a request missing a mandatory element is a
// format error.
func TestHandleFramePINOperations(t *testing.T) {
	branch := func(f *iso8583.Fields) {
		f.AcquirerID, f.PINBlock = "200001", nil
		f.SecurityControl = iso8583.SecurityControl{Format: 4, KeyIndex: 1}.String()
		f.Additional = &iso8583.AdditionalData{TellerID: "T1", IdentityRef: "ID1"}
	}
	tests := []struct {
		name   string
		change func(f *iso8583.Fields)
		want   string
	}{
		{"reset from a branch", func(f *iso8583.Fields) {
			branch(f)
			f.ProcessingCode, f.NewPINBlock = iso8583.ProcPINReset, encipher(t, pinblock.Format4, devkeys.BranchZPK, "7391", testPAN)
		}, "00"},
		{"unblock from a branch", func(f *iso8583.Fields) {
			branch(f)
			f.ProcessingCode, f.NewPINBlock, f.SecurityControl = iso8583.ProcPINUnblock, nil, ""
		}, "00"},
		{"unblock without DE 48", func(f *iso8583.Fields) {
			branch(f)
			f.ProcessingCode, f.NewPINBlock, f.SecurityControl, f.Additional = iso8583.ProcPINUnblock, nil, "", nil
		}, "30"},
		{"change without DE 41", func(f *iso8583.Fields) { f.TerminalID = "" }, "30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var teller string
			issuer := issuerFunc(func(_ context.Context, _ string, req *IssuerRequest) (string, error) {
				teller = req.Teller
				return iso8583.RCApproved, nil
			})
			front := networkFront(t, issuer, &memSink{}, &fakeImporter{})
			runSteps(t, front, []frameStep{{tt.name, repack(t, changeFrame(t, "001101"), tt.change), iso8583.MTIAuthResponse, tt.want, false}})
			if tt.want == "00" && teller != "T1" {
				t.Errorf("the issuer got teller %q, want T1 from DE 48", teller)
			}
		})
	}
}

// TestFormatErrorAnswerMTI: a message that does not unpack is answered 30
// under the response MTI of its request or advice MTI (an 0420 cut short
// gets an 0430), and a response sent to the gateway, even one that
// unpacks, gets an 0110 (docs/iso8583-acquirer.md, "Framing and encoding").
func TestFormatErrorAnswerMTI(t *testing.T) {
	cut := func(b []byte) []byte { return b[:len(b)-3] }
	unsolicited := func(mti string, f *iso8583.Fields) []byte {
		f.MTI = mti
		b, err := iso8583.Pack(iso8583.AcquirerSpec, f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	front := networkFront(t, &reversingIssuer{code: iso8583.RCApproved}, &memSink{}, &fakeImporter{})
	runSteps(t, front, []frameStep{
		{"an 0100 cut short", cut(changeFrame(t, "000201")), iso8583.MTIAuthResponse, "30", false},
		{"an 0420 cut short", cut(reversalFrame(t, "000202", iso8583.MTIAuthRequest, "100001", "68")), iso8583.MTIReversalResponse, "30", false},
		{"an 0800 cut short", cut(netFrame(t, "100001", iso8583.NMIEcho, nil, 0)), iso8583.MTINetworkResponse, "30", false},
		{"an 0810 sent to the gateway", unsolicited(iso8583.MTINetworkResponse, &iso8583.Fields{TransmissionTime: "1125120000",
			STAN: "000203", AcquirerID: "100001", NetworkCode: iso8583.NMIEcho, ResponseCode: "00"}), iso8583.MTIAuthResponse, "30", false},
		{"an 0110 sent to the gateway", repack(t, changeFrame(t, "000204"), func(f *iso8583.Fields) {
			f.MTI, f.ResponseCode, f.PINBlock, f.NewPINBlock, f.SecurityControl, f.Additional = iso8583.MTIAuthResponse, "00", nil, nil, "", nil
		}), iso8583.MTIAuthResponse, "30", false},
	})
}
