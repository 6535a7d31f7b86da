package keystore

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"pingate/pinblock"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The key store keeps pingate's keys at rest, each enciphered under the
// local master key (LMK) as a TR-31 key block: version D under an AES LMK,
// version B under a TDES one. The LMK itself is never in the store or in
// config: config names where it is (LMKRef). The store file is JSON, written
// atomically (temporary file, fsync, rename, fsync of the directory) and
// authenticated as a whole with an HMAC-SHA256 under a key derived from the
// LMK, which also covers the custody log head it records. A store is created
// only by InitStore.
//
// Every change is committed in this order: its custody records are chained
// onto the log's head and written into the store file with the change
// (custody_tail, under the store's MAC); only after the store file is
// durably replaced are they appended to the log. So the log never holds a
// record of a change that did not happen: a failed store write leaves the
// log untouched. A crash or full disk after the store write leaves the log
// behind the store, perhaps with a torn last line; the store still holds the
// records, and the next change cuts the torn line back, appends the missing
// records, and records the repair (action "repair"). Readers (OpenStore,
// Load, List) accept such a log: it is behind by records the store proves.

// Store errors that callers branch on.
var (
	// ErrStore: the store file is malformed, was altered, or was written under
	// another LMK.
	ErrStore = errors.New("key store does not verify")
	// ErrNoStore: the store file does not exist. A store is created only by
	// InitStore (pingate key init), and never over a custody log that
	// already has records.
	ErrNoStore = errors.New("no key store")
	// ErrStoreExists: key init was asked to create a store where one is
	// (a store file), or belongs (a custody log with records). Nothing
	// about the existing store is wrong.
	ErrStoreExists = errors.New("key store exists")
	// ErrCustodyPending: a change was made and stored, with its custody
	// records, but the records could not be appended to the log. They are
	// kept in the store file (MAC-protected) and appended by the next change.
	ErrCustodyPending = errors.New("custody records kept in the key store, not yet in the log")
)

// DefaultGrace is how long a rotated-out version stays usable when
// StoreConfig.Grace is zero.
const DefaultGrace = 24 * time.Hour

const storeFormat = "pingate-keystore/1"

// bindingBlockID is the proprietary TR-31 optional block that binds a block
// under the LMK to its store entry: "<usage>:<version>:<id>".
const bindingBlockID = "01"

// LMKRef says where the LMK is: a file holding it, or an environment
// variable holding it, never the key itself. The value is "aes:" or "tdes:"
// followed by hex; bare hex of 32 or 48 digits is TDES, of 64 digits AES.
type LMKRef struct {
	File string `json:"file,omitempty" yaml:"file,omitempty"`
	Env  string `json:"env,omitempty" yaml:"env,omitempty"`
}

// String names the reference; it never reads or shows the key.
func (r LMKRef) String() string {
	switch {
	case r.File != "" && r.Env != "":
		return "lmk(file=" + r.File + ", env=" + r.Env + ")"
	case r.File != "":
		return "lmk(file=" + r.File + ")"
	case r.Env != "":
		return "lmk(env=" + r.Env + ")"
	}
	return "lmk(none)"
}

// Validate requires exactly one of File and Env.
func (r LMKRef) Validate() error {
	if (r.File == "") == (r.Env == "") {
		return fmt.Errorf("%w: LMK reference needs exactly one of a file or an env var, got %s", pinblock.ErrInvalidKey, r)
	}
	return nil
}

// Load reads the LMK. A file readable by group or others is refused, like
// ssh refuses such private keys. Errors never include the value.
func (r LMKRef) Load() (pinblock.Key, error) {
	if err := r.Validate(); err != nil {
		return pinblock.Key{}, err
	}
	var raw []byte
	if r.File != "" {
		st, err := os.Stat(r.File)
		if err != nil {
			return pinblock.Key{}, fmt.Errorf("%w: %s: %w", pinblock.ErrInvalidKey, r, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return pinblock.Key{}, fmt.Errorf("%w: %s is readable by group or others (mode %04o); chmod 600 it", pinblock.ErrInvalidKey, r, st.Mode().Perm())
		}
		if raw, err = os.ReadFile(r.File); err != nil {
			return pinblock.Key{}, fmt.Errorf("%w: %s: %w", pinblock.ErrInvalidKey, r, err)
		}
	} else {
		v, ok := os.LookupEnv(r.Env)
		if !ok || v == "" {
			return pinblock.Key{}, fmt.Errorf("%w: %s is unset or empty", pinblock.ErrInvalidKey, r)
		}
		raw = []byte(v)
	}
	defer clear(raw)
	k, err := parseLMK(raw)
	if err != nil {
		return pinblock.Key{}, fmt.Errorf("%s: %w", r, err)
	}
	return k, nil
}

func parseLMK(v []byte) (pinblock.Key, error) {
	s := bytes.TrimSpace(v)
	var alg pinblock.Algorithm
	switch {
	case bytes.HasPrefix(bytes.ToLower(s), []byte("aes:")):
		alg, s = pinblock.AES, s[4:]
	case bytes.HasPrefix(bytes.ToLower(s), []byte("tdes:")):
		alg, s = pinblock.TDES, s[5:]
	case len(s) == 32 || len(s) == 48:
		alg = pinblock.TDES
	case len(s) == 64:
		alg = pinblock.AES
	default:
		return pinblock.Key{}, fmt.Errorf("%w: LMK must be aes:HEX, tdes:HEX, or 32, 48 or 64 hex digits", pinblock.ErrInvalidKey)
	}
	raw := make([]byte, hex.DecodedLen(len(s)))
	defer clear(raw)
	if _, err := hex.Decode(raw, s); err != nil {
		return pinblock.Key{}, fmt.Errorf("%w: LMK is not hexadecimal", pinblock.ErrInvalidKey)
	}
	return pinblock.NewKey("lmk", pinblock.UsageLMK, alg, 1, raw)
}

// WriteLMKFile writes a new random LMK ("aes:" + 64 hex digits for AES-256,
// or "tdes:" + 48 for triple-length TDES) to path with mode 0600, refusing
// to overwrite an existing file, and returns its KCV. It is a development
// helper: a production LMK lives in an HSM or is entered as components.
func WriteLMKFile(path string, alg pinblock.Algorithm) (string, error) {
	n := 32
	if alg == pinblock.TDES {
		n = 24
	} else if alg != pinblock.AES {
		return "", fmt.Errorf("%w: unknown algorithm %q", pinblock.ErrInvalidKey, alg)
	}
	raw, err := pinblock.RandomKeyMaterial(rand.Reader, alg, n)
	if err != nil {
		return "", err
	}
	defer clear(raw)
	k, err := pinblock.NewKey("lmk", pinblock.UsageLMK, alg, 1, raw)
	if err != nil {
		return "", err
	}
	defer k.Zeroize()
	text := []byte(string(alg) + ":" + strings.ToUpper(hex.EncodeToString(raw)) + "\n")
	defer clear(text)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write LMK: %w", err)
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return "", fmt.Errorf("write LMK: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("write LMK: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write LMK: %w", err)
	}
	syncDir(filepath.Dir(path))
	return k.KCV(), nil
}

// StoreConfig configures a key store.
type StoreConfig struct {
	// Path is the store file; InitStore creates it, every other use
	// requires it (ErrNoStore).
	Path string
	// LogPath is the custody log (JSON lines), created with the store.
	LogPath string
	// LMK says where the local master key is.
	LMK LMKRef
	// Grace is how long a rotated-out version stays usable (and stays in the
	// store); zero means DefaultGrace.
	Grace time.Duration
}

// Validate names the offending fields.
func (c StoreConfig) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("key store: path is empty"))
	}
	if c.LogPath == "" {
		errs = append(errs, errors.New("key store: custody log path is empty"))
	}
	if c.Path != "" && c.Path == c.LogPath {
		errs = append(errs, errors.New("key store: store and custody log are the same file"))
	}
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("key store: grace %s is negative", c.Grace))
	}
	if err := c.LMK.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("key store: %w", err))
	}
	return errors.Join(errs...)
}

// StoredKey describes one stored key version without revealing it.
type StoredKey struct {
	pinblock.KeyInfo
	// RetiredAt is when a newer version replaced this one; nil for the
	// current version.
	RetiredAt *time.Time `json:"retired_at,omitempty"`
	// NonExportable keys are refused by ExportTR31.
	NonExportable bool `json:"non_exportable,omitempty"`
	// ModeOfUse is the version's TR-31 mode of use: the one its block
	// arrived with (import-tr31, rotate --block, an online key change), kept
	// by a rotation from another source; B (C for a TAK or PVK) for a key
	// that never came in a block, and for every version stored before
	// pingate kept it.
	ModeOfUse pinblock.ModeOfUse `json:"mode_of_use"`
}

// Store is the persistent key store. Every method re-reads and verifies the
// file, so one Store may be used by a long-running process while operators
// change the file with the CLI; changes from several processes are
// serialised by an exclusive lock on Path + ".lock". It is safe for
// concurrent use.
type Store struct {
	cfg    StoreConfig
	lmk    pinblock.Key
	macKey *pinblock.DerivedMAC // the store file's MAC
	logKey *pinblock.DerivedMAC // custody record MACs
	now    func() time.Time
	rnd    io.Reader

	mu sync.Mutex
}

// OpenStore loads the LMK, and verifies the store file (if it exists yet)
// and the custody log against the head the store recorded. Errors:
// ErrInvalidKey for the LMK, ErrStore, ErrCustodyLog.
func OpenStore(cfg StoreConfig) (*Store, error) { return openStore(cfg, true) }

func openStore(cfg StoreConfig, checkLog bool) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	lmk, err := cfg.LMK.Load()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, lmk: lmk, now: time.Now, rnd: rand.Reader}
	if s.macKey, err = pinblock.NewDerivedMAC(lmk, "pingate key store MAC key"); err == nil {
		s.logKey, err = pinblock.NewDerivedMAC(lmk, "pingate custody log MAC key")
	}
	if err != nil {
		lmk.Zeroize()
		return nil, err
	}
	f, err := s.read()
	if err == nil && checkLog {
		_, err = s.checkLog(f)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// InitStore creates a new, empty key store under the LMK cfg names, and an
// empty custody log, and opens the store. It refuses when the store file
// exists, or when the custody log already holds anything: a log with
// records belongs to a store that must be restored, not replaced. The new
// store's first change is the log's seq 1. Errors: ErrInvalidKey for the
// LMK, ErrStoreExists, ErrStore (an existing store that does not verify).
func InitStore(cfg StoreConfig) (*Store, error) {
	s, err := OpenStore(cfg)
	if err == nil {
		s.Close()
		return nil, fmt.Errorf("%w: %s already exists: a store is created once (open it with the other key commands)", ErrStoreExists, cfg.Path)
	}
	if !errors.Is(err, ErrNoStore) {
		return nil, err
	}
	if st, err := os.Stat(cfg.LogPath); err == nil && st.Size() > 0 {
		return nil, fmt.Errorf("%w: custody log %s already has records: restore its key store from a backup; a new store is never started over an existing log", ErrStoreExists, cfg.LogPath)
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	lmk, err := cfg.LMK.Load()
	if err != nil {
		return nil, err
	}
	s = &Store{cfg: cfg, lmk: lmk, now: time.Now, rnd: rand.Reader}
	if s.macKey, err = pinblock.NewDerivedMAC(lmk, "pingate key store MAC key"); err == nil {
		s.logKey, err = pinblock.NewDerivedMAC(lmk, "pingate custody log MAC key")
	}
	if err != nil {
		lmk.Zeroize()
		return nil, err
	}
	defer s.Close()
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(cfg.Path); !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s already exists: a store is created once (open it with the other key commands)", ErrStoreExists, cfg.Path)
	}
	log, _, err := openCustodyLogTolerant(cfg.LogPath, nil)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	if log.size > 0 {
		return nil, fmt.Errorf("%w: custody log %s already has records", ErrStore, cfg.LogPath)
	}
	if err := s.write(storeFile{Custody: CustodyHead{Hash: genesisHash}, Keys: []storeEntry{}}); err != nil {
		return nil, err
	}
	return OpenStore(cfg)
}

// checkLog verifies the custody log against f without changing anything: the
// chain must verify up to its last complete line; the record at the store's
// head must be the one the store recorded, or, when the log is behind, the
// missing records must be in the store's custody_tail and follow on from the
// log. A torn last line is accepted (the next change cuts it back). It
// returns the state for key log verify.
func (s *Store) checkLog(f storeFile) (LogState, error) {
	lf, err := os.Open(s.cfg.LogPath)
	if errors.Is(err, os.ErrNotExist) {
		return LogState{}, fmt.Errorf("%w: custody log %s does not exist but key store %s does (records at seq %d): a wrong --log path or a missing mount?", ErrCustodyLog, s.cfg.LogPath, s.cfg.Path, f.Custody.Seq)
	}
	if err != nil {
		return LogState{}, fmt.Errorf("open custody log: %w", err)
	}
	defer lf.Close()
	sc, err := scanCustody(lf, true, s.logKey)
	if err != nil {
		return LogState{}, err
	}
	if sc.legacy() {
		return LogState{}, errUnkeyedLog(sc)
	}
	_, missing, err := reconcile(sc, f)
	if err != nil {
		return LogState{}, err
	}
	st := LogState{Records: sc.head.Seq, TornBytes: sc.torn, Pending: int64(len(missing))}
	if sc.head.Seq > f.Custody.Seq {
		st.Unacknowledged = sc.head.Seq - f.Custody.Seq
	}
	return st, nil
}

func errUnkeyedLog(sc custodyScan) error {
	return &CustodyError{Seq: 1, Reason: fmt.Sprintf("the log's %d records have no MAC (written by an older pingate): check it and key it with pingate key log migrate", sc.unkeyed)}
}

// LogState is what Store.CheckLog found in the custody log.
type LogState struct {
	Records        int64 // complete records in the log
	TornBytes      int64 // bytes of an incomplete last line (cut back by the next change)
	Pending        int64 // records the store holds that the log does not yet (appended by the next change)
	Unacknowledged int64 // records after the store's head (marked not applied by the next change)
}

// CheckLog verifies the custody log against the store (see checkLog).
func (s *Store) CheckLog() (LogState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.read()
	if err != nil {
		return LogState{}, err
	}
	return s.checkLog(f)
}

// reconcile compares a scanned log with the store file. It returns the base
// the next records chain onto and the tail records the log is missing.
func reconcile(sc custodyScan, f storeFile) (CustodyHead, []CustodyRecord, error) {
	if sc.head.Seq >= f.Custody.Seq {
		if err := checkHead(sc, f.Custody); err != nil {
			return CustodyHead{}, nil, err
		}
		return sc.head, nil, nil
	}
	// The log is behind the store: the store's tail must hold the rest.
	var missing []CustodyRecord
	for _, rec := range f.Tail {
		if rec.Seq > sc.head.Seq {
			missing = append(missing, rec)
		}
	}
	if len(missing) == 0 || missing[0].Seq != sc.head.Seq+1 || missing[0].PrevHash != sc.head.Hash ||
		missing[len(missing)-1].Seq != f.Custody.Seq || missing[len(missing)-1].Hash != f.Custody.Hash {
		return CustodyHead{}, nil, checkHead(sc, f.Custody)
	}
	return f.Custody, missing, nil
}

// Close zeroizes the LMK; the Store cannot be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lmk.Zeroize()
	if s.macKey != nil {
		s.macKey.Zeroize()
	}
	if s.logKey != nil {
		s.logKey.Zeroize()
	}
	return nil
}

// Grace is the store's grace window; give a Keyring filled by Load the same.
func (s *Store) Grace() time.Duration { return s.cfg.Grace }

// LMKKCV is the check value of the LMK in use.
func (s *Store) LMKKCV() string { return s.lmk.KCV() }

type storeFile struct {
	Format  string      `json:"format"`
	LMK     storeLMK    `json:"lmk"`
	Custody CustodyHead `json:"custody_head"`
	// Tail is the custody records of the last change, written here before
	// they are appended to the log (see the package comment on the order).
	Tail []CustodyRecord `json:"custody_tail,omitempty"`
	Keys []storeEntry    `json:"keys"`
	MAC  string          `json:"mac"`
}

type storeLMK struct {
	Algorithm pinblock.Algorithm `json:"algorithm"`
	KCV       string             `json:"kcv"`
}

type storeEntry struct {
	ID        string             `json:"id"`
	Usage     pinblock.Usage     `json:"usage"`
	Algorithm pinblock.Algorithm `json:"algorithm"`
	Length    int                `json:"length"`
	Version   int                `json:"version"`
	KCV       string             `json:"kcv"`
	Created   time.Time          `json:"created"`
	RetiredAt *time.Time         `json:"retired_at,omitempty"`
	// NonExportable is set for a key that arrived in a TR-31 block marked
	// non-exportable ('N') or sensitive ('S'), and kept across rotations.
	NonExportable bool   `json:"non_exportable,omitempty"`
	KeyUnderLMK   string `json:"key_under_lmk"`
}

func (e storeEntry) info() StoredKey {
	return StoredKey{KeyInfo: pinblock.KeyInfo{ID: e.ID, Usage: e.Usage, Algorithm: e.Algorithm, Length: e.Length, Version: e.Version, KCV: e.KCV, Created: e.Created}, RetiredAt: e.RetiredAt, NonExportable: e.NonExportable,
		ModeOfUse: e.modeOfUse()}
}

// modeOfUse is the mode of use in the clear header of the entry's block
// under the LMK, read without deciphering anything. The store file's MAC
// covers it, and the block's own MAC binds it to the key. An entry written
// before pingate kept the mode carries the header pingate always wrote
// then: B for a PIN key or a ZMK, C for a TAK or PVK, the unrestricted
// modes. A header that does not parse reads as no mode (0), which permits
// nothing; Load refuses such a block anyway.
func (e storeEntry) modeOfUse() pinblock.ModeOfUse {
	h, err := pinblock.ParseKeyBlockHeader(e.KeyUnderLMK)
	if err != nil {
		return 0
	}
	return pinblock.ModeOfUse(h.ModeOfUse)
}

func (s *Store) mac(f storeFile) (string, error) {
	f.MAC = ""
	b, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	return s.macKey.Sum(b), nil
}

// read loads and verifies the store file. A missing file is ErrNoStore,
// never an empty store: a mistyped path or a missing mount must not look
// like a store without keys, and the next change must not fork the store.
func (s *Store) read() (storeFile, error) {
	empty := storeFile{Format: storeFormat, LMK: storeLMK{Algorithm: s.lmk.Algorithm(), KCV: s.lmk.KCV()}, Custody: CustodyHead{Hash: genesisHash}}
	raw, err := os.ReadFile(s.cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		if head, herr := VerifyCustodyLog(s.cfg.LogPath); herr == nil && head.Seq > 0 || herr != nil && !errors.Is(herr, os.ErrNotExist) {
			return empty, fmt.Errorf("%w: %s does not exist, but the custody log %s has records: a wrong --store path or a missing mount? Restore the store file; pingate never starts a new store over an existing log", ErrNoStore, s.cfg.Path, s.cfg.LogPath)
		}
		return empty, fmt.Errorf("%w: %s does not exist: create a new store with pingate key init", ErrNoStore, s.cfg.Path)
	}
	if err != nil {
		return empty, fmt.Errorf("read key store: %w", err)
	}
	var f storeFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return empty, fmt.Errorf("%w: %s is not a key store file", ErrStore, s.cfg.Path)
	}
	if f.Format != storeFormat {
		return empty, fmt.Errorf("%w: %s: format %q, want %q", ErrStore, s.cfg.Path, f.Format, storeFormat)
	}
	if f.LMK.Algorithm != s.lmk.Algorithm() || subtle.ConstantTimeCompare([]byte(f.LMK.KCV), []byte(s.lmk.KCV())) != 1 {
		return empty, fmt.Errorf("%w: %s was written under LMK %s %s, not the LMK given (%s)", ErrStore, s.cfg.Path, f.LMK.Algorithm, f.LMK.KCV, s.lmk.KCV())
	}
	want, err := s.mac(f)
	if err != nil || !hmac.Equal([]byte(want), []byte(f.MAC)) {
		return empty, fmt.Errorf("%w: %s: MAC does not verify: the file was altered", ErrStore, s.cfg.Path)
	}
	return f, nil
}

// write replaces the store file atomically.
func (s *Store) write(f storeFile) error {
	f.Format = storeFormat
	f.LMK = storeLMK{Algorithm: s.lmk.Algorithm(), KCV: s.lmk.KCV()}
	slices.SortFunc(f.Keys, func(a, b storeEntry) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	var err error
	if f.MAC, err = s.mac(f); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	dir := filepath.Dir(s.cfg.Path)
	tmp, err := os.CreateTemp(dir, ".keystore-*")
	if err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write key store: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write key store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write key store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.cfg.Path); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	syncDir(dir)
	return nil
}

// lock takes the cross-process writer lock; the returned func releases it.
func (s *Store) lock() (func(), error) {
	s.mu.Lock()
	lf, err := os.OpenFile(s.cfg.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("lock key store: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		lf.Close()
		s.mu.Unlock()
		return nil, fmt.Errorf("lock key store: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
		lf.Close()
		s.mu.Unlock()
	}, nil
}

// List describes every stored version, ordered by id then version, without
// deciphering anything.
func (s *Store) List() ([]StoredKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	out := make([]StoredKey, 0, len(f.Keys))
	for _, e := range f.Keys {
		out = append(out, e.info())
	}
	return out, nil
}

// Load deciphers every version usable at now (current versions, and previous
// ones still in the store's grace window) into kr, oldest first, so that kr
// ends with the same current versions and grace windows as the store. Each
// block is checked against its entry (MAC, binding to id, usage and version,
// KCV). It returns how many versions it added. On error, keys already added
// stay in kr (owned by it); the caller normally discards kr.
func (s *Store) Load(kr *pinblock.Keyring, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.read()
	if err != nil {
		return 0, err
	}
	n := 0
	for i, e := range f.Keys {
		if e.RetiredAt != nil && !now.Before(e.RetiredAt.Add(s.cfg.Grace)) {
			continue // grace over: not loaded
		}
		k, err := s.unwrapEntry(e)
		if err != nil {
			return n, err
		}
		first := i == 0 || f.Keys[i-1].ID != e.ID || (f.Keys[i-1].RetiredAt != nil && !now.Before(f.Keys[i-1].RetiredAt.Add(s.cfg.Grace)))
		if first {
			err = kr.Add(k)
		} else {
			err = kr.Rotate(k, *f.Keys[i-1].RetiredAt)
		}
		if err != nil {
			k.Zeroize()
			return n, fmt.Errorf("load %s v%d: %w", e.ID, e.Version, err)
		}
		n++
	}
	return n, nil
}

// unwrapEntry deciphers one entry and checks it against the entry.
func (s *Store) unwrapEntry(e storeEntry) (pinblock.Key, error) {
	k, h, err := pinblock.UnwrapKeyBlock(s.lmk, e.KeyUnderLMK, pinblock.UnwrapOptions{ID: e.ID, Version: e.Version, Usage: e.Usage})
	if err != nil {
		return pinblock.Key{}, fmt.Errorf("%w: key %s v%d: %w", ErrStore, e.ID, e.Version, err)
	}
	bound := ""
	for _, ob := range h.Optional {
		if ob.ID == bindingBlockID {
			bound = ob.Data
		}
	}
	if bound != bindingFor(e.ID, e.Usage, e.Version) || k.Algorithm() != e.Algorithm || k.CheckKCV(e.KCV) != nil {
		k.Zeroize()
		return pinblock.Key{}, fmt.Errorf("%w: key %s v%d: key block does not belong to this entry", ErrStore, e.ID, e.Version)
	}
	return k, nil
}

func bindingFor(id string, u pinblock.Usage, version int) string {
	return string(u) + ":" + strconv.Itoa(version) + ":" + id
}

// wrapUnderLMK enciphers k under the LMK with the binding block, its header
// carrying mode as the key's mode of use (the store keeps it there).
func (s *Store) wrapUnderLMK(k pinblock.Key, mode pinblock.ModeOfUse) (string, error) {
	if err := pinblock.CheckKEKStrength(s.lmk, k); err != nil {
		return "", err
	}
	h, err := pinblock.NewKeyBlockHeader(k, s.lmk)
	if err != nil {
		return "", err
	}
	h.ModeOfUse = byte(mode)
	h.Exportability = 'N' // under the LMK the block itself never leaves
	h.Optional = []pinblock.OptionalBlock{{ID: bindingBlockID, Data: bindingFor(k.ID(), k.Usage(), k.Version())}}
	return pinblock.WrapKeyBlock(s.lmk, h, k)
}

// ValidKeyID refuses a key id that is not 1–64 characters of letters,
// digits, '.', '_' and '-', starting with a letter or digit: the ids the
// store, its custody log and the routes' labels take. pingate hsm-key
// holds new HSM keys to the same rule.
func ValidKeyID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: key id must be 1 to 64 characters", pinblock.ErrInvalidKey)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("%w: key id %q: use letters, digits, '.', '_' and '-'", pinblock.ErrInvalidKey, id)
		}
	}
	return nil
}

// Custodian says who does a change and why; both are recorded.
type Custodian struct {
	Who, Why string
}

func (c Custodian) validate() error {
	if strings.TrimSpace(c.Who) == "" || strings.TrimSpace(c.Why) == "" {
		return errors.New("custody: who and why are required")
	}
	return nil
}

// TR31ImportRequest brings a key in from a TR-31 key block made under a ZMK
// the store holds.
type TR31ImportRequest struct {
	ID    string
	Usage pinblock.Usage // empty: the usage the block's key usage maps to (P0 → ZPK)
	Block string
	KBPK  string // id of the ZMK in the store; every version still in its grace window is tried
	Custodian
}

// CombineRequest makes a key from 2 or 3 clear components.
type CombineRequest struct {
	ID         string
	Usage      pinblock.Usage // empty: ZMK
	Algorithm  pinblock.Algorithm
	Components []pinblock.Component // cleared by the call
	Custodian
}

// GenerateRequest makes a random key.
type GenerateRequest struct {
	ID        string
	Usage     pinblock.Usage
	Algorithm pinblock.Algorithm
	Length    int // bytes: TDES 16 or 24, AES 16, 24 or 32
	Custodian
}

// RotateRequest makes a new version of an existing key; it keeps the key's
// usage and algorithm. The new material comes from exactly one of: a key
// enciphered under a ZMK (Enciphered, ZMK, KCV), a TR-31 block (Block,
// KBPK), components (Components), or, when none is given, the random
// generator (same length as the current version).
type RotateRequest struct {
	ID         string
	Enciphered []byte
	ZMK        string
	KCV        string
	Block      string
	KBPK       string
	Components []pinblock.Component
	// Fresh refuses new material that the store holds already for the key
	// (one of its versions) or under it (the ZMK it came under): the
	// operators' rotation sets it. An online key change does not: an
	// acquirer that sends its key change again, its 0810 lost, brings the
	// same key.
	Fresh bool
	Custodian
}

// obtained is new key material and how it arrived, for the custody record.
type obtained struct {
	key           pinblock.Key
	action        string
	under         string
	componentKCVs []string
	nonExportable bool
	// fromBlock: the material came in a TR-31 block, whose mode of use
	// the key carries (Key.ModeOfUse).
	fromBlock bool
}

// ImportUnderZMK adds req.ID at version 1 from a key enciphered under a ZMK
// in the store (TDES-ECB under a TDES ZMK, AES Key Wrap under an AES one, as
// SoftwareModule.Import), checking req.KCV. req.ZMK.Version is ignored: the
// ZMK's current version is tried first, then previous versions still in
// their grace window, and the first whose result matches the KCV wins. Errors:
// ErrKeyExists, ErrUnknownKey, ErrKeyUsage, ErrKCVMismatch, ErrWeakKEK.
func (s *Store) ImportUnderZMK(req pinblock.ImportRequest) (pinblock.KeyInfo, error) {
	c := Custodian{Who: req.Who, Why: req.Why}
	return s.put(req.ID, false, c, func(f *storeFile, version int) (obtained, error) {
		return s.fromEnciphered(f, req.ID, req.Usage, req.Algorithm, version, req.Enciphered, req.ZMK.ID, req.KCV)
	})
}

// ImportTR31 adds req.ID at version 1 from a TR-31 key block under a ZMK in
// the store. Errors: ErrKeyExists, ErrUnknownKey, ErrKeyBlock (ErrKeyBlockMAC
// when no version of the ZMK verifies it), ErrKeyUsage, ErrWeakKEK.
func (s *Store) ImportTR31(req TR31ImportRequest) (pinblock.KeyInfo, error) {
	return s.put(req.ID, false, req.Custodian, func(f *storeFile, version int) (obtained, error) {
		return s.fromBlock(f, req.ID, req.Usage, version, req.Block, req.KBPK)
	})
}

// CombineComponents adds req.ID at version 1 from clear components (see
// CombineComponents); the custody record lists the components' KCVs.
func (s *Store) CombineComponents(req CombineRequest) (pinblock.KeyInfo, error) {
	defer func() {
		for _, c := range req.Components {
			c.Zeroize()
		}
	}()
	u := req.Usage
	if u == "" {
		u = pinblock.UsageZMK
	}
	return s.put(req.ID, false, req.Custodian, func(_ *storeFile, version int) (obtained, error) {
		return fromComponents(req.ID, u, req.Algorithm, version, req.Components)
	})
}

// Generate adds req.ID at version 1 with random bytes from crypto/rand (TDES
// keys with odd parity and distinct halves).
func (s *Store) Generate(req GenerateRequest) (pinblock.KeyInfo, error) {
	return s.put(req.ID, false, req.Custodian, func(_ *storeFile, version int) (obtained, error) {
		return s.generated(req.ID, req.Usage, req.Algorithm, version, req.Length)
	})
}

// Rotate adds the next version of req.ID. The version it replaces gets a
// retired_at of now and stays usable for the grace window; versions whose
// window is over are dropped from the store (each with an "expire" custody
// record). Errors: ErrUnknownKey, and those of the material's source.
func (s *Store) Rotate(req RotateRequest) (pinblock.KeyInfo, error) {
	defer func() {
		for _, c := range req.Components {
			c.Zeroize()
		}
	}()
	sources := 0
	for _, set := range []bool{req.Enciphered != nil || req.ZMK != "", req.Block != "", len(req.Components) > 0} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: rotate %s: give one source of key material", pinblock.ErrInvalidKey, req.ID)
	}
	return s.put(req.ID, true, req.Custodian, func(f *storeFile, version int) (obtained, error) {
		cur := current(f, req.ID)
		var (
			o   obtained
			err error
		)
		switch {
		case req.Enciphered != nil || req.ZMK != "":
			o, err = s.fromEnciphered(f, req.ID, cur.Usage, cur.Algorithm, version, req.Enciphered, req.ZMK, req.KCV)
		case req.Block != "":
			o, err = s.fromBlock(f, req.ID, cur.Usage, version, req.Block, req.KBPK)
		case len(req.Components) > 0:
			o, err = fromComponents(req.ID, cur.Usage, cur.Algorithm, version, req.Components)
		default:
			o, err = s.generated(req.ID, cur.Usage, cur.Algorithm, version, cur.Length)
		}
		if err != nil {
			return o, err
		}
		if o.key.Usage() != cur.Usage || o.key.Algorithm() != cur.Algorithm {
			o.key.Zeroize()
			return o, fmt.Errorf("%w: rotate %s: new version is %s %s, current is %s %s", pinblock.ErrKeyUsage, req.ID, o.key.Usage(), o.key.Algorithm(), cur.Usage, cur.Algorithm)
		}
		if err := notReused(f, req.ID, o); req.Fresh && err != nil {
			o.key.Zeroize()
			return o, err
		}
		o.action = ActionRotate
		return o, nil
	})
}

// notReused refuses a new version of id that is a key the store holds
// already for it or under it: a version of id (current or still in its grace
// window, whose blocks it would then keep deciphering), or the ZMK it came
// under. Keys are compared by check value.
func notReused(f *storeFile, id string, o obtained) error {
	kcv := o.key.KCV()
	for _, e := range f.Keys {
		switch {
		case e.ID == id && e.KCV == kcv:
			return fmt.Errorf("%w: rotate %s: the new version has the check value of version %d (%s): a rotation must bring a new key",
				pinblock.ErrInvalidKey, id, e.Version, kcv)
		case e.ID == o.under && e.KCV == kcv:
			return fmt.Errorf("%w: rotate %s: the new version has the check value of %s v%d (%s), the key it came under",
				pinblock.ErrInvalidKey, id, e.ID, e.Version, kcv)
		}
	}
	return nil
}

// Remove deletes every version of id, recording each version removed (one
// remove record per version, oldest first, with its KCV): a retired version
// still in its grace window is a key in use too.
func (s *Store) Remove(id string, c Custodian) error {
	if err := c.validate(); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	ch, err := s.begin()
	if err != nil {
		return err
	}
	defer ch.log.Close()
	cur := current(&ch.f, id)
	if cur == nil {
		return fmt.Errorf("%w: %s", pinblock.ErrUnknownKey, id)
	}
	now := s.now()
	var recs []CustodyRecord
	for _, e := range ch.f.Keys { // sorted by id, then version
		if e.ID == id {
			recs = append(recs, CustodyRecord{Time: now, Who: c.Who, Why: c.Why, Action: ActionRemove, KeyID: id, Usage: e.Usage, Version: e.Version, KCV: e.KCV, Under: "lmk"})
		}
	}
	ch.f.Keys = slices.DeleteFunc(ch.f.Keys, func(e storeEntry) bool { return e.ID == id })
	_, err = s.commit(ch, recs...)
	return err
}

// ExportTR31 returns the current version of id as a TR-31 key block under
// the ZMK zmkID (version B or D by the ZMK's algorithm), with the key's
// stored mode of use, recording the export. A key that arrived marked
// non-exportable is refused, and so is a ZMK whose current version's mode of
// use does not permit wrapping (ErrModeOfUse: a K0 D). Errors:
// ErrUnknownKey, ErrKeyUsage, ErrWeakKEK.
func (s *Store) ExportTR31(id, zmkID string, c Custodian) (string, error) {
	if err := c.validate(); err != nil {
		return "", err
	}
	unlock, err := s.lock()
	if err != nil {
		return "", err
	}
	defer unlock()
	ch, err := s.begin()
	if err != nil {
		return "", err
	}
	defer ch.log.Close()
	f := &ch.f
	cur := current(f, id)
	if cur == nil {
		return "", fmt.Errorf("%w: %s", pinblock.ErrUnknownKey, id)
	}
	if cur.NonExportable {
		return "", fmt.Errorf("%w: %s arrived marked non-exportable", pinblock.ErrKeyUsage, id)
	}
	k, err := s.unwrapEntry(*cur)
	if err != nil {
		return "", err
	}
	defer k.Zeroize()
	zmks, err := s.zmkVersions(f, zmkID)
	if err != nil {
		return "", err
	}
	zmk := zmks[0]
	defer func() {
		for _, z := range zmks {
			z.Zeroize()
		}
	}()
	if err := zmk.Permits(pinblock.OpWrap); err != nil {
		return "", fmt.Errorf("export %s under %s: %w", id, zmkID, err)
	}
	if err := pinblock.CheckKEKStrength(zmk, k); err != nil {
		return "", err
	}
	h, err := pinblock.NewKeyBlockHeader(k, zmk)
	if err != nil {
		return "", err
	}
	block, err := pinblock.WrapKeyBlock(zmk, h, k)
	if err != nil {
		return "", err
	}
	rec := CustodyRecord{Time: s.now(), Who: c.Who, Why: c.Why, Action: ActionExport, KeyID: id, Usage: k.Usage(), Version: k.Version(), KCV: k.KCV(), Under: zmkID,
		ModeOfUse: pinblock.ModeOfUse(h.ModeOfUse)}
	if _, err := s.commit(ch, rec); err != nil {
		if errors.Is(err, ErrCustodyPending) {
			return block, err
		}
		return "", err
	}
	return block, nil
}

// change is one change in progress: the store file as read, the custody
// log, the head new records chain onto, tail records the log is missing,
// and repair records to write first.
type change struct {
	f       storeFile
	log     *CustodyLog
	base    CustodyHead
	missing []CustodyRecord
	repairs []CustodyRecord
}

// begin reads the store and opens the custody log, checking the log against
// the store (reconcile) and preparing the repairs the change will make: a
// torn last line is cut back, records the store holds but the log lacks are
// appended, records after the store's head (never acknowledged by it) are
// marked not applied; each is recorded. The caller holds the lock and
// closes ch.log.
func (s *Store) begin() (*change, error) { return s.beginChange(false) }

func (s *Store) beginChange(migrate bool) (*change, error) {
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	log, sc, err := openCustodyLogTolerant(s.cfg.LogPath, s.logKey)
	if err != nil {
		return nil, err
	}
	if sc.legacy() && !migrate {
		log.Close()
		return nil, errUnkeyedLog(sc)
	}
	if migrate && !sc.legacy() {
		log.Close()
		return nil, fmt.Errorf("%w: custody log %s is already keyed (or empty): nothing to migrate", ErrCustodyLog, s.cfg.LogPath)
	}
	base, missing, err := reconcile(sc, f)
	if err != nil {
		log.Close()
		return nil, err
	}
	ch := &change{f: f, log: log, base: base, missing: missing}
	now := s.now()
	if sc.head.Seq > f.Custody.Seq {
		ch.repairs = append(ch.repairs, CustodyRecord{Time: now, Who: RepairWho, Action: ActionRepair, Under: "lmk",
			Why: fmt.Sprintf("records seq %d to %d were never acknowledged by the key store: not applied", f.Custody.Seq+1, sc.head.Seq)})
	}
	if sc.torn > 0 {
		why := fmt.Sprintf("torn last line (%d bytes after seq %d) cut back: it was never a complete record", sc.torn, sc.head.Seq)
		if len(missing) > 0 {
			why += fmt.Sprintf("; seq %d to %d appended from the key store, which held them", missing[0].Seq, missing[len(missing)-1].Seq)
		}
		ch.repairs = append(ch.repairs, CustodyRecord{Time: now, Who: RepairWho, Action: ActionRepair, Under: "lmk", Why: why})
	} else if len(missing) > 0 {
		ch.repairs = append(ch.repairs, CustodyRecord{Time: now, Who: RepairWho, Action: ActionRepair, Under: "lmk",
			Why: fmt.Sprintf("seq %d to %d appended from the key store, which held them", missing[0].Seq, missing[len(missing)-1].Seq)})
	}
	return ch, nil
}

// commit records a change: recs (after any repairs) are chained onto the
// base and written, with the change already made to ch.f, into the store
// file; only then is the log cut back and appended. A store write that
// fails leaves the log as it was: nothing is recorded that did not happen.
// A log append that fails after the store write returns an error wrapping
// ErrCustodyPending: the change stands, and its records, held in the store,
// are appended by the next change. It returns recs as chained.
func (s *Store) commit(ch *change, recs ...CustodyRecord) ([]CustodyRecord, error) {
	chained, err := chainRecords(ch.base, s.now, s.logKey, append(slices.Clone(ch.repairs), recs...))
	if err != nil {
		return nil, err
	}
	last := chained[len(chained)-1]
	ch.f.Custody = CustodyHead{Seq: last.Seq, Hash: last.Hash}
	ch.f.Tail = append(slices.Clone(ch.missing), chained...)
	if err := s.write(ch.f); err != nil {
		return nil, err
	}
	if _, err := ch.log.cutTorn(); err != nil {
		return chained[len(ch.repairs):], fmt.Errorf("%w: %w", ErrCustodyPending, err)
	}
	if err := ch.log.appendChained(ch.f.Tail); err != nil {
		return chained[len(ch.repairs):], fmt.Errorf("%w: %w", ErrCustodyPending, err)
	}
	return chained[len(ch.repairs):], nil
}

// MigrateLog keys a custody log written by a pingate older than the keyed
// chain. Those records carry no MAC; the chain up to the store's head is
// checked against the head the (MAC-protected) store recorded, which
// authenticates it as of the store's last write. It then appends a keyed
// migrate record naming the records it vouches for (and repair records for
// a torn tail or records the store never acknowledged, which it does not
// vouch for). From then on every record must carry a valid MAC. It
// returns the log's state after. Errors: ErrCustodyLog when the log is
// already keyed or does not verify, and those of OpenStore.
func MigrateCustodyLog(cfg StoreConfig, c Custodian) (LogState, error) {
	if err := c.validate(); err != nil {
		return LogState{}, err
	}
	s, err := openStore(cfg, false) // the log is checked by beginChange
	if err != nil {
		return LogState{}, err
	}
	defer s.Close()
	if err := s.migrateLog(c); err != nil {
		return LogState{}, err
	}
	return s.CheckLog()
}

func (s *Store) migrateLog(c Custodian) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	ch, err := s.beginChange(true)
	if err != nil {
		return err
	}
	defer ch.log.Close()
	rec := CustodyRecord{Time: s.now(), Who: c.Who, Why: fmt.Sprintf("%s; records 1 to %d were written without a MAC and checked against the key store's head (seq %d)", c.Why, ch.f.Custody.Seq, ch.f.Custody.Seq),
		Action: ActionMigrate, KeyID: "custody-log", Under: "lmk", KCV: s.lmk.KCV()}
	// The migrate record comes first: it is the first keyed record.
	repairs := ch.repairs
	ch.repairs = nil
	_, err = s.commit(ch, append([]CustodyRecord{rec}, repairs...)...)
	return err
}

// put runs one add or rotation under the lock: it obtains the material,
// wraps it under the LMK, appends the custody records, then writes the store.
func (s *Store) put(id string, rotate bool, c Custodian, get func(f *storeFile, version int) (obtained, error)) (pinblock.KeyInfo, error) {
	if err := ValidKeyID(id); err != nil {
		return pinblock.KeyInfo{}, err
	}
	if err := c.validate(); err != nil {
		return pinblock.KeyInfo{}, err
	}
	unlock, err := s.lock()
	if err != nil {
		return pinblock.KeyInfo{}, err
	}
	defer unlock()
	ch, err := s.begin()
	if err != nil {
		return pinblock.KeyInfo{}, err
	}
	defer ch.log.Close()
	f := &ch.f

	cur := current(f, id)
	version := 1
	switch {
	case rotate && cur == nil:
		return pinblock.KeyInfo{}, fmt.Errorf("%w: rotate %s: no such key", pinblock.ErrUnknownKey, id)
	case rotate:
		version = cur.Version + 1
	case cur != nil:
		return pinblock.KeyInfo{}, fmt.Errorf("%w: %s (use rotate)", pinblock.ErrKeyExists, id)
	}
	o, err := get(f, version)
	if err != nil {
		return pinblock.KeyInfo{}, err
	}
	k := o.key
	defer k.Zeroize()
	if k.Usage() == pinblock.UsageLMK {
		return pinblock.KeyInfo{}, fmt.Errorf("%w: an LMK is not stored in the key store", pinblock.ErrKeyUsage)
	}
	// The block's mode of use, or, for material that came without one, the
	// current version's: a rotation never widens what the key may do.
	mode := k.ModeOfUse()
	if !o.fromBlock && cur != nil {
		mode = cur.modeOfUse()
	}
	block, err := s.wrapUnderLMK(k, mode)
	if err != nil {
		return pinblock.KeyInfo{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	recs := []CustodyRecord{{Time: now, Who: c.Who, Why: c.Why, Action: o.action, KeyID: id, Usage: k.Usage(), Version: version, KCV: k.KCV(), Under: o.under, ComponentKCVs: o.componentKCVs}}
	if o.action == ActionImportTR31 || o.action == ActionRotate {
		recs[0].ModeOfUse = mode
	}
	if cur != nil {
		cur.RetiredAt = &now
	}
	// Drop versions whose grace window is over, recording each.
	var keep []storeEntry
	for _, e := range f.Keys {
		if e.ID == id && e.RetiredAt != nil && !now.Before(e.RetiredAt.Add(s.cfg.Grace)) {
			recs = append(recs, CustodyRecord{Time: now, Who: c.Who, Why: "grace window over", Action: ActionExpire, KeyID: id, Usage: e.Usage, Version: e.Version, KCV: e.KCV, Under: "lmk"})
			continue
		}
		keep = append(keep, e)
	}
	e := storeEntry{ID: id, Usage: k.Usage(), Algorithm: k.Algorithm(), Length: k.Len(), Version: version, KCV: k.KCV(), Created: now, KeyUnderLMK: block,
		NonExportable: o.nonExportable || (cur != nil && cur.NonExportable)}
	f.Keys = append(keep, e)
	if _, err := s.commit(ch, recs...); err != nil {
		if errors.Is(err, ErrCustodyPending) {
			return e.info().KeyInfo, err
		}
		return pinblock.KeyInfo{}, err
	}
	return e.info().KeyInfo, nil
}

// current returns a pointer to the highest version of id in f, or nil.
func current(f *storeFile, id string) *storeEntry {
	var cur *storeEntry
	for i := range f.Keys {
		if e := &f.Keys[i]; e.ID == id && (cur == nil || e.Version > cur.Version) {
			cur = e
		}
	}
	return cur
}

// zmkVersions deciphers the versions of a ZMK still usable now, current
// first. The caller zeroizes them.
func (s *Store) zmkVersions(f *storeFile, id string) ([]pinblock.Key, error) {
	var es []storeEntry
	now := s.now()
	for _, e := range f.Keys {
		if e.ID == id && (e.RetiredAt == nil || now.Before(e.RetiredAt.Add(s.cfg.Grace))) {
			es = append(es, e)
		}
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("%w: ZMK %s", pinblock.ErrUnknownKey, id)
	}
	slices.SortFunc(es, func(a, b storeEntry) int { return b.Version - a.Version })
	if es[0].Usage != pinblock.UsageZMK {
		return nil, fmt.Errorf("%w: %s is a %s, not a ZMK", pinblock.ErrKeyUsage, id, es[0].Usage)
	}
	var out []pinblock.Key
	for _, e := range es {
		k, err := s.unwrapEntry(e)
		if err != nil {
			for _, o := range out {
				o.Zeroize()
			}
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// unwrappingZMKs is zmkVersions without the versions whose mode of use does
// not permit unwrapping (a K0 E, wrap-only); when that leaves none the
// current version's refusal (ErrModeOfUse) is returned.
func (s *Store) unwrappingZMKs(f *storeFile, id, zmkID string) ([]pinblock.Key, error) {
	zmks, err := s.zmkVersions(f, zmkID)
	if err != nil {
		return nil, err
	}
	var ok []pinblock.Key
	var first error
	for _, z := range zmks {
		if err := z.Permits(pinblock.OpUnwrap); err != nil {
			first = cmp.Or(first, err)
			z.Zeroize()
			continue
		}
		ok = append(ok, z)
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("import %s under %s: %w", id, zmkID, first)
	}
	return ok, nil
}

func (s *Store) fromEnciphered(f *storeFile, id string, u pinblock.Usage, alg pinblock.Algorithm, version int, enc []byte, zmkID, kcv string) (obtained, error) {
	if !u.Valid() {
		return obtained{}, fmt.Errorf("%w: import %s: unknown usage %q", pinblock.ErrInvalidKey, id, u)
	}
	if strings.TrimSpace(kcv) == "" {
		return obtained{}, fmt.Errorf("%w: import %s: no KCV given", pinblock.ErrKCVMismatch, id)
	}
	zmks, err := s.unwrappingZMKs(f, id, zmkID)
	if err != nil {
		return obtained{}, err
	}
	defer func() {
		for _, z := range zmks {
			z.Zeroize()
		}
	}()
	lastErr := error(nil)
	for _, zmk := range zmks {
		k, err := pinblock.UnwrapKey(zmk, id, u, alg, version, enc)
		if err != nil {
			lastErr = fmt.Errorf("import %s under %s v%d: %w", id, zmkID, zmk.Version(), err)
			continue
		}
		if err := k.CheckKCV(kcv); err != nil {
			k.Zeroize()
			lastErr = fmt.Errorf("import %s under %s v%d: %w", id, zmkID, zmk.Version(), err)
			continue
		}
		if err := pinblock.CheckKEKStrength(zmk, k); err != nil {
			k.Zeroize()
			return obtained{}, err
		}
		return obtained{key: k, action: ActionImport, under: zmkID}, nil
	}
	return obtained{}, lastErr
}

func (s *Store) fromBlock(f *storeFile, id string, u pinblock.Usage, version int, block, kbpkID string) (obtained, error) {
	zmks, err := s.unwrappingZMKs(f, id, kbpkID)
	if err != nil {
		return obtained{}, err
	}
	defer func() {
		for _, z := range zmks {
			z.Zeroize()
		}
	}()
	var lastErr error
	for _, zmk := range zmks {
		k, h, err := pinblock.UnwrapKeyBlock(zmk, block, pinblock.UnwrapOptions{ID: id, Version: version, Usage: u})
		if errors.Is(err, pinblock.ErrKeyBlockMAC) {
			lastErr = fmt.Errorf("import %s: %w under any version of %s", id, err, kbpkID)
			continue
		}
		if err != nil {
			return obtained{}, fmt.Errorf("import %s: %w", id, err)
		}
		if err := pinblock.CheckKEKStrength(zmk, k); err != nil {
			k.Zeroize()
			return obtained{}, err
		}
		return obtained{key: k, action: ActionImportTR31, under: kbpkID, nonExportable: h.Exportability != 'E', fromBlock: true}, nil
	}
	return obtained{}, lastErr
}

func fromComponents(id string, u pinblock.Usage, alg pinblock.Algorithm, version int, comps []pinblock.Component) (obtained, error) {
	kcvs := make([]string, len(comps))
	for i, c := range comps {
		kcvs[i] = c.KCV()
	}
	k, err := pinblock.CombineComponents(id, u, alg, version, comps)
	if err != nil {
		return obtained{}, err
	}
	return obtained{key: k, action: ActionCombine, under: UnderComponents, componentKCVs: kcvs}, nil
}

func (s *Store) generated(id string, u pinblock.Usage, alg pinblock.Algorithm, version, length int) (obtained, error) {
	switch {
	case alg == pinblock.TDES && (length == 16 || length == 24):
	case alg == pinblock.AES && (length == 16 || length == 24 || length == 32):
	case alg == pinblock.SM4 && length == 16:
	default:
		return obtained{}, fmt.Errorf("%w: generate %s: a %s key cannot be %d bytes", pinblock.ErrInvalidKey, id, alg, length)
	}
	raw, err := pinblock.RandomKeyMaterial(rand.Reader, alg, length)
	if err != nil {
		return obtained{}, err
	}
	defer clear(raw)
	k, err := pinblock.NewKey(id, u, alg, version, raw)
	if err != nil {
		return obtained{}, err
	}
	return obtained{key: k, action: ActionGenerate, under: "lmk"}, nil
}
