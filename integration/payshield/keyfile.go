package payshield

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"pingate/pinblock"
)

// LoadFile adds the keys of a key file (a JSON array of Key: LMK tokens and
// KCVs, never a clear key) to s: the first version of an id as it is, later
// ones as rotations, the earlier staying in its grace window (which starts
// again at the load).
func (s *Keys) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var list []Key
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("not a JSON array of keys: %w", err)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].ID != list[j].ID {
			return list[i].ID < list[j].ID
		}
		return list[i].Version < list[j].Version
	})
	for _, k := range list {
		if err := checkFileKey(k); err != nil {
			return err
		}
	}
	for i, k := range list {
		rotate := i > 0 && list[i-1].ID == k.ID
		if _, err := s.Add(k, rotate); err != nil {
			return err
		}
	}
	return nil
}

// checkFileKey refuses a key file entry the module could not use, naming
// the entry by id and version and the field, never repeating the token.
func checkFileKey(k Key) error {
	name := fmt.Sprintf("key %s v%d", k.ID, k.Version)
	tok, rest, err := takeToken("key file", []byte(k.Token))
	switch {
	case k.ID == "":
		return fmt.Errorf("%w: a key without an id", pinblock.ErrInvalidKey)
	case !k.Usage.Valid() || k.Usage == pinblock.UsageLMK:
		return fmt.Errorf("%w: %s: usage %q: want ZMK, ZPK, TPK, PVK or TAK", pinblock.ErrInvalidKey, name, k.Usage)
	case k.Algorithm != pinblock.TDES:
		return fmt.Errorf("%w: %s: algorithm %q: the payShield module holds tdes keys only", pinblock.ErrInvalidKey, name, k.Algorithm)
	case err != nil || len(rest) != 0 || tok == "":
		return fmt.Errorf("%w: %s: token is not a key under the LMK (U, T, X or Y and hex, or a key block S…)", pinblock.ErrInvalidKey, name)
	case len(k.KCV) < 6 || !isHex([]byte(k.KCV)):
		return fmt.Errorf("%w: %s: kcv %q: want the key's check value, 6 hex digits or more", pinblock.ErrInvalidKey, name, k.KCV)
	}
	return nil
}

// SaveKeyFile replaces the key file at path with keys: written to a
// temporary file beside it (0600), synced, and renamed over it, so a reader
// sees the old file or the new one, never a part.
func SaveKeyFile(path string, keys []Key) error {
	b, err := json.MarshalIndent(keys, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hsm-keys-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return errors.Join(errors.New("key file"), err)
	}
	return nil
}
