package keystore

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"pingate/pinblock"
	"strings"
	"sync"
	"time"
)

// The custody log is the audit trail PCI PIN requirement 28 asks for: every
// key import, generation, combination, rotation, export and removal appends
// one record, as one JSON line, to an append-only file. Records form a hash
// chain: each carries the SHA-256 of its predecessor, and its own hash
// covers its whole content, so a record altered, reordered or removed
// anywhere but at the end breaks the chain at a seq that VerifyCustodyLog
// names. The chain alone proves nothing about who wrote it (anyone can
// recompute SHA-256), so records the key store writes also carry a MAC, an
// HMAC-SHA256 under a key derived from the LMK, which the store checks on
// every record. Removal from the end is caught by comparing with a head
// recorded elsewhere (the key store keeps one; see VerifyCustodyLogHead).
// Records carry key ids, usages, versions and KCVs: never key bytes.
// VerifyCustodyLog and CustodyLog.Append work on the unkeyed chain only;
// the keyed checks are the key store's (Store.CheckLog).

// Custody actions.
const (
	ActionImport     = "import"      // a key enciphered under a ZMK
	ActionImportTR31 = "import-tr31" // a key from a TR-31 key block
	ActionCombine    = "combine"     // a key combined from clear components
	ActionGenerate   = "generate"    // a random key generated here
	ActionRotate     = "rotate"      // a new version of an existing key
	ActionExport     = "export"      // a key sent out under a ZMK
	ActionRemove     = "remove"      // a key deleted with all its versions
	ActionExpire     = "expire"      // a rotated-out version dropped after its grace window
	ActionRepair     = "repair"      // the store repaired the log: a torn tail cut back, or records it never acknowledged marked not applied
	ActionMigrate    = "migrate"     // the first keyed record after records an older pingate wrote without a MAC
)

// RepairWho is the Who of records the key store writes itself (repair).
const RepairWho = "pingate"

// UnderComponents is the Under value of a key combined from components.
const UnderComponents = "components"

// genesisHash is the prev_hash of the first record.
var genesisHash = strings.Repeat("0", 64)

// ErrCustodyLog is wrapped by every *CustodyError.
var ErrCustodyLog = errors.New("custody log does not verify")

// CustodyError says which record of a custody log is bad and why. Seq is the
// sequence number expected at that place (line N holds seq N).
type CustodyError struct {
	Seq    int64
	Reason string
}

func (e *CustodyError) Error() string {
	return fmt.Sprintf("custody log: seq %d: %s", e.Seq, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCustodyLog) true.
func (e *CustodyError) Unwrap() error { return ErrCustodyLog }

// CustodyRecord is one custody log entry. Append fills Seq, Time (when
// zero), PrevHash and Hash.
type CustodyRecord struct {
	Seq     int64          `json:"seq"`
	Time    time.Time      `json:"time"`
	Who     string         `json:"who"`
	Action  string         `json:"action"`
	KeyID   string         `json:"key_id"`
	Usage   pinblock.Usage `json:"usage"`
	Version int            `json:"version"`
	KCV     string         `json:"kcv"`
	Why     string         `json:"why"`
	// Under is what the key arrived or left under: a ZMK id, "lmk" for a
	// generated key, or "components" (then ComponentKCVs lists their KCVs).
	Under         string   `json:"under"`
	ComponentKCVs []string `json:"component_kcvs,omitempty"`
	// ModeOfUse is the TR-31 mode of use of the version an import-tr31 or
	// rotate record adds, or that an export record wrote; absent in other
	// records and in records written before pingate kept it.
	ModeOfUse pinblock.ModeOfUse `json:"mode_of_use,omitempty"`
	PrevHash  string             `json:"prev_hash"`
	Hash      string             `json:"hash"`
	// MAC is the hex HMAC-SHA256 of the record's JSON encoding with MAC
	// empty (so it covers Hash and PrevHash), under a key derived from the
	// LMK. Only a holder of the LMK can write a record that verifies.
	// Empty in records written by a pingate older than the keyed chain.
	MAC string `json:"mac,omitempty"`
}

// hash is the hex SHA-256 of the record's JSON encoding with Hash and MAC
// empty.
func (r CustodyRecord) hash() (string, error) {
	r.Hash, r.MAC = "", ""
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// mac is the hex HMAC-SHA256 under key of the record's JSON with MAC empty.
func (r CustodyRecord) mac(key *pinblock.DerivedMAC) (string, error) {
	r.MAC = ""
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return key.Sum(b), nil
}

// CustodyHead is the position of a log's last record: what a key store
// remembers to detect records removed from the end.
type CustodyHead struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// CustodyLog appends records to a custody log file. Open it with
// OpenCustodyLog, which verifies the whole chain first: nothing is appended
// to a log that does not verify. It is safe for concurrent use within one
// process; across processes the key store serialises writers with a lock
// file, and Append refuses if the file grew behind its back.
type CustodyLog struct {
	path string
	now  func() time.Time

	mu   sync.Mutex
	f    *os.File
	size int64
	head CustodyHead
	torn int64 // bytes of an incomplete last line (openCustodyLogTolerant)
}

// OpenCustodyLog opens (creating, mode 0640) the custody log at path and
// verifies it. Errors: *CustodyError (wrapping ErrCustodyLog) for a broken
// chain, or the file error.
func OpenCustodyLog(path string) (*CustodyLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open custody log: %w", err)
	}
	head, size, err := verifyCustody(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if size == 0 {
		syncDir(filepath.Dir(path))
	}
	return &CustodyLog{path: path, now: time.Now, f: f, size: size, head: head}, nil
}

// Head is the position of the last record (seq 0 for an empty log).
func (l *CustodyLog) Head() CustodyHead {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Append completes rec (seq, time, chain hashes), writes it as one line and
// fsyncs the file before returning it. Who, Action and KeyID (except for
// repair records) are required; text fields may not hold control
// characters.
func (l *CustodyLog) Append(rec CustodyRecord) (CustodyRecord, error) {
	l.mu.Lock()
	head := l.head
	l.mu.Unlock()
	recs, err := chainRecords(head, l.now, nil, []CustodyRecord{rec})
	if err != nil {
		return rec, err
	}
	if err := l.appendChained(recs); err != nil {
		return recs[0], err
	}
	return recs[0], nil
}

// CheckCustodyText refuses the text of a custody record's fields (who, why,
// ids) that Append would refuse: a control character, or more than 1024
// bytes. A caller that acts before it appends the record (an HSM ceremony)
// checks its fields first, so that nothing happens that cannot be recorded.
func CheckCustodyText(fields ...string) error {
	for _, s := range fields {
		if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 || len(s) > 1024 {
			return fmt.Errorf("custody record: a field holds control characters or exceeds 1024 bytes")
		}
	}
	return nil
}

// chainRecords validates recs and completes them (seq, time, chain hashes,
// and with macKey the MAC) as the records that follow head, without writing
// anything.
func chainRecords(head CustodyHead, now func() time.Time, macKey *pinblock.DerivedMAC, recs []CustodyRecord) ([]CustodyRecord, error) {
	out := make([]CustodyRecord, 0, len(recs))
	for _, rec := range recs {
		if rec.Who == "" || rec.Action == "" || (rec.KeyID == "" && rec.Action != ActionRepair) {
			return nil, fmt.Errorf("custody record: who, action and key id are required")
		}
		if err := CheckCustodyText(append([]string{rec.Who, rec.Why, rec.Action, rec.KeyID, rec.Under, rec.KCV}, rec.ComponentKCVs...)...); err != nil {
			return nil, err
		}
		rec.Seq = head.Seq + 1
		if rec.Time.IsZero() {
			rec.Time = now()
		}
		rec.Time = rec.Time.UTC().Truncate(time.Microsecond)
		rec.PrevHash = head.Hash
		h, err := rec.hash()
		if err != nil {
			return nil, fmt.Errorf("custody record: %w", err)
		}
		rec.Hash = h
		if macKey != nil {
			if rec.MAC, err = rec.mac(macKey); err != nil {
				return nil, fmt.Errorf("custody record: %w", err)
			}
		}
		head = CustodyHead{Seq: rec.Seq, Hash: rec.Hash}
		out = append(out, rec)
	}
	return out, nil
}

// appendChained writes complete records (from chainRecords, or kept by the
// key store) as lines and fsyncs once. Records the log already holds, with
// the same hash, are skipped; the first new one must follow the log's head.
// The write is one call; if it fails part-way the log ends in a torn line,
// which the key store cuts back at its next change (see Store).
func (l *CustodyLog) appendChained(recs []CustodyRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("custody log %s is closed", l.path)
	}
	if l.torn > 0 {
		return &CustodyError{Seq: l.head.Seq + 1, Reason: "last line is incomplete (torn write or truncated file)"}
	}
	if st, err := l.f.Stat(); err != nil {
		return fmt.Errorf("custody log: %w", err)
	} else if st.Size() != l.size {
		return &CustodyError{Seq: l.head.Seq + 1, Reason: "the log changed since it was opened; reopen it"}
	}
	var buf []byte
	head := l.head
	for _, rec := range recs {
		if rec.Seq <= head.Seq {
			continue // already in the log; the caller checked it is the same record
		}
		if rec.Seq != head.Seq+1 || rec.PrevHash != head.Hash {
			return &CustodyError{Seq: head.Seq + 1, Reason: fmt.Sprintf("record seq %d does not follow the log's last record", rec.Seq)}
		}
		line, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("custody record: %w", err)
		}
		buf = append(append(buf, line...), '\n')
		head = CustodyHead{Seq: rec.Seq, Hash: rec.Hash}
	}
	if len(buf) == 0 {
		return nil
	}
	n, err := l.f.Write(buf)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		if n > 0 {
			// Whatever reached the file is a torn tail now: keep the
			// handle from appending after it.
			l.size += int64(n)
			l.torn = int64(n)
		}
		return fmt.Errorf("append custody record: %w", err)
	}
	l.size += int64(len(buf))
	l.head = head
	return nil
}

// openCustodyLogTolerant is OpenCustodyLog for the key store: a torn last
// line does not stop it; Torn reports its length, and cutTorn removes it.
func openCustodyLogTolerant(path string, macKey *pinblock.DerivedMAC) (*CustodyLog, custodyScan, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, custodyScan{}, fmt.Errorf("open custody log: %w", err)
	}
	sc, err := scanCustody(f, true, macKey)
	if err != nil {
		f.Close()
		return nil, sc, err
	}
	if sc.size == 0 {
		syncDir(filepath.Dir(path))
	}
	return &CustodyLog{path: path, now: time.Now, f: f, size: sc.size, head: sc.head, torn: sc.torn}, sc, nil
}

// cutTorn truncates a torn last line and fsyncs; it returns the number of
// bytes cut.
func (l *CustodyLog) cutTorn() (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.torn == 0 {
		return 0, nil
	}
	keep := l.size - l.torn
	if err := l.f.Truncate(keep); err != nil {
		return 0, fmt.Errorf("cut back custody log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return 0, fmt.Errorf("cut back custody log: %w", err)
	}
	n := l.torn
	l.size, l.torn = keep, 0
	return n, nil
}

// Close closes the file.
func (l *CustodyLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// VerifyCustodyLog checks the whole chain of the log at path and returns its
// head. The first bad record is reported as a *CustodyError naming the seq
// expected there: a record altered (its hash no longer matches, or its line
// is not in the canonical form the writer produces), out of order or missing
// (the seq found differs), or cut short (a torn or truncated line). A missing
// file is an error; an empty one verifies with seq 0.
func VerifyCustodyLog(path string) (CustodyHead, error) {
	f, err := os.Open(path)
	if err != nil {
		return CustodyHead{}, fmt.Errorf("open custody log: %w", err)
	}
	defer f.Close()
	head, _, err := verifyCustody(f)
	return head, err
}

// VerifyCustodyLogHead is VerifyCustodyLog plus a check that the log still
// holds the record want names, with the same hash: records removed from the
// end, or a log replaced by another, are detected this way.
func VerifyCustodyLogHead(path string, want CustodyHead) (CustodyHead, error) {
	f, err := os.Open(path)
	if err != nil {
		return CustodyHead{}, fmt.Errorf("open custody log: %w", err)
	}
	defer f.Close()
	return verifyCustodyWith(f, want)
}

func verifyCustody(r io.ReadSeeker) (CustodyHead, int64, error) {
	sc, err := scanCustody(r, false, nil)
	return sc.head, sc.size, err
}

// custodyScan is what scanCustody found: the last complete record, the
// file's size, the length of a torn last line (tolerant scans only), and the
// hash of every record by seq (for the key store's checks).
type custodyScan struct {
	head   CustodyHead
	size   int64
	torn   int64
	hashes []string // hashes[i] is the hash of seq i+1
	// unkeyed counts the records without a MAC at the start of the log
	// (keyed scans only); keyed is set once a record with a MAC is seen.
	unkeyed int64
	keyed   bool
}

// legacy: the log holds only records an older pingate wrote without a MAC.
func (sc custodyScan) legacy() bool { return sc.unkeyed > 0 && !sc.keyed }

func (sc custodyScan) hashAt(seq int64) (string, bool) {
	if seq == 0 {
		return genesisHash, true
	}
	if seq < 0 || seq > int64(len(sc.hashes)) {
		return "", false
	}
	return sc.hashes[seq-1], true
}

// verifyCustodyWith reads r from its start; when want.Seq > 0 the record at
// want.Seq must carry want.Hash.
func verifyCustodyWith(r io.ReadSeeker, want CustodyHead) (CustodyHead, error) {
	sc, err := scanCustody(r, false, nil)
	if err != nil {
		return sc.head, err
	}
	return sc.head, checkHead(sc, want)
}

// checkHead: the log holds want (a head the key store recorded).
func checkHead(sc custodyScan, want CustodyHead) error {
	if want.Seq > sc.head.Seq {
		return &CustodyError{Seq: sc.head.Seq + 1, Reason: fmt.Sprintf("log ends at seq %d but the key store recorded seq %d: records were removed from the end", sc.head.Seq, want.Seq)}
	}
	if want.Seq > 0 {
		if h, _ := sc.hashAt(want.Seq); h != want.Hash {
			return &CustodyError{Seq: want.Seq, Reason: "record differs from the one the key store recorded"}
		}
	}
	return nil
}

// scanCustody verifies the chain of r from its start. With tolerant, an
// incomplete last line ends the scan and is reported in torn, not as an
// error. With macKey, every record's MAC is verified too: records without a
// MAC are accepted only at the start of the log (written before the chain
// was keyed), and the first keyed record after them must be a migrate
// record; a record without a MAC after a keyed one, or with a MAC that does
// not verify, is a *CustodyError.
func scanCustody(r io.ReadSeeker, tolerant bool, macKey *pinblock.DerivedMAC) (custodyScan, error) {
	sc := custodyScan{head: CustodyHead{Hash: genesisHash}}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return sc, fmt.Errorf("custody log: %w", err)
	}
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		sc.size += int64(len(line))
		if len(line) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return sc, fmt.Errorf("custody log: %w", err)
		}
		seq := sc.head.Seq + 1
		if err == io.EOF {
			if tolerant {
				sc.torn = int64(len(line))
				break
			}
			return sc, &CustodyError{Seq: seq, Reason: "last line is incomplete (torn write or truncated file)"}
		}
		line = line[:len(line)-1]
		var rec CustodyRecord
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil || dec.More() {
			return sc, &CustodyError{Seq: seq, Reason: "record is not a well-formed custody record"}
		}
		if rec.Seq != seq {
			return sc, &CustodyError{Seq: seq, Reason: fmt.Sprintf("found seq %d: a record is missing or out of order", rec.Seq)}
		}
		if rec.PrevHash != sc.head.Hash {
			return sc, &CustodyError{Seq: seq, Reason: "prev_hash does not match the previous record"}
		}
		sum, err := rec.hash()
		if err != nil || sum != rec.Hash {
			return sc, &CustodyError{Seq: seq, Reason: "hash does not match the record: it was altered"}
		}
		canon, err := json.Marshal(rec)
		if err != nil || !bytes.Equal(canon, line) {
			return sc, &CustodyError{Seq: seq, Reason: "record is not in canonical form: it was edited"}
		}
		if macKey != nil {
			switch {
			case rec.MAC == "" && sc.keyed:
				return sc, &CustodyError{Seq: seq, Reason: "record has no MAC: it was not written by the key store (a chain hash alone can be recomputed by anyone)"}
			case rec.MAC == "":
				sc.unkeyed++
			default:
				want, err := rec.mac(macKey)
				if err != nil || !hmac.Equal([]byte(want), []byte(rec.MAC)) {
					return sc, &CustodyError{Seq: seq, Reason: "MAC does not verify: the record was not written under this LMK"}
				}
				if !sc.keyed && sc.unkeyed > 0 && rec.Action != ActionMigrate {
					return sc, &CustodyError{Seq: seq, Reason: "first keyed record after unkeyed ones is not a migrate record"}
				}
				sc.keyed = true
			}
		}
		sc.head = CustodyHead{Seq: seq, Hash: rec.Hash}
		sc.hashes = append(sc.hashes, rec.Hash)
	}
	return sc, nil
}

// syncDir fsyncs a directory so a newly created or renamed file in it
// survives a crash. Errors are ignored: not every file system supports it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
