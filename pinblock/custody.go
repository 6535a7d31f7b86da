package pinblock

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// names. Removal from the end is caught by comparing with a head recorded
// elsewhere (the key store keeps one; see VerifyCustodyLogHead). Records
// carry key ids, usages, versions and KCVs: never key bytes.

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
)

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
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Who     string    `json:"who"`
	Action  string    `json:"action"`
	KeyID   string    `json:"key_id"`
	Usage   Usage     `json:"usage"`
	Version int       `json:"version"`
	KCV     string    `json:"kcv"`
	Why     string    `json:"why"`
	// Under is what the key arrived or left under: a ZMK id, "lmk" for a
	// generated key, or "components" (then ComponentKCVs lists their KCVs).
	Under         string   `json:"under"`
	ComponentKCVs []string `json:"component_kcvs,omitempty"`
	PrevHash      string   `json:"prev_hash"`
	Hash          string   `json:"hash"`
}

// hash is the hex SHA-256 of the record's JSON encoding with Hash empty.
func (r CustodyRecord) hash() (string, error) {
	r.Hash = ""
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
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
// fsyncs the file before returning it. Who, Action and KeyID are required;
// text fields may not hold control characters.
func (l *CustodyLog) Append(rec CustodyRecord) (CustodyRecord, error) {
	if rec.Who == "" || rec.Action == "" || rec.KeyID == "" {
		return rec, fmt.Errorf("custody record: who, action and key id are required")
	}
	for _, s := range append([]string{rec.Who, rec.Why, rec.Action, rec.KeyID, rec.Under, rec.KCV}, rec.ComponentKCVs...) {
		if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 || len(s) > 1024 {
			return rec, fmt.Errorf("custody record: a field holds control characters or exceeds 1024 bytes")
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return rec, fmt.Errorf("custody log %s is closed", l.path)
	}
	if st, err := l.f.Stat(); err != nil {
		return rec, fmt.Errorf("custody log: %w", err)
	} else if st.Size() != l.size {
		return rec, &CustodyError{Seq: l.head.Seq + 1, Reason: "the log changed since it was opened; reopen it"}
	}
	rec.Seq = l.head.Seq + 1
	if rec.Time.IsZero() {
		rec.Time = l.now()
	}
	rec.Time = rec.Time.UTC().Truncate(time.Microsecond)
	rec.PrevHash = l.head.Hash
	h, err := rec.hash()
	if err != nil {
		return rec, fmt.Errorf("custody record: %w", err)
	}
	rec.Hash = h
	line, err := json.Marshal(rec)
	if err != nil {
		return rec, fmt.Errorf("custody record: %w", err)
	}
	line = append(line, '\n')
	if _, err := l.f.Write(line); err != nil {
		return rec, fmt.Errorf("append custody record: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return rec, fmt.Errorf("sync custody log: %w", err)
	}
	l.size += int64(len(line))
	l.head = CustodyHead{Seq: rec.Seq, Hash: rec.Hash}
	return rec, nil
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
	head, err := verifyCustodyWith(r, CustodyHead{})
	if err != nil {
		return head, 0, err
	}
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return head, 0, fmt.Errorf("custody log: %w", err)
	}
	return head, size, nil
}

// verifyCustodyWith reads r from its start; when want.Seq > 0 the record at
// want.Seq must carry want.Hash.
func verifyCustodyWith(r io.ReadSeeker, want CustodyHead) (CustodyHead, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return CustodyHead{}, fmt.Errorf("custody log: %w", err)
	}
	head := CustodyHead{Hash: genesisHash}
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return head, fmt.Errorf("custody log: %w", err)
		}
		seq := head.Seq + 1
		if err == io.EOF {
			return head, &CustodyError{Seq: seq, Reason: "last line is incomplete (torn write or truncated file)"}
		}
		line = line[:len(line)-1]
		var rec CustodyRecord
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil || dec.More() {
			return head, &CustodyError{Seq: seq, Reason: "record is not a well-formed custody record"}
		}
		if rec.Seq != seq {
			return head, &CustodyError{Seq: seq, Reason: fmt.Sprintf("found seq %d: a record is missing or out of order", rec.Seq)}
		}
		if rec.PrevHash != head.Hash {
			return head, &CustodyError{Seq: seq, Reason: "prev_hash does not match the previous record"}
		}
		sum, err := rec.hash()
		if err != nil || sum != rec.Hash {
			return head, &CustodyError{Seq: seq, Reason: "hash does not match the record: it was altered"}
		}
		canon, err := json.Marshal(rec)
		if err != nil || !bytes.Equal(canon, line) {
			return head, &CustodyError{Seq: seq, Reason: "record is not in canonical form: it was edited"}
		}
		head = CustodyHead{Seq: seq, Hash: rec.Hash}
		if want.Seq == seq && want.Hash != rec.Hash {
			return head, &CustodyError{Seq: seq, Reason: "record differs from the one the key store recorded"}
		}
	}
	if want.Seq > head.Seq {
		return head, &CustodyError{Seq: head.Seq + 1, Reason: fmt.Sprintf("log ends at seq %d but the key store recorded seq %d: records were removed from the end", head.Seq, want.Seq)}
	}
	if head.Seq == 0 {
		head.Hash = genesisHash
	}
	return head, nil
}

// syncDir fsyncs a directory so a newly created or renamed file in it
// survives a crash. Errors are ignored: not every file system supports it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
