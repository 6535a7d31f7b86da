package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"pingate/pinblock/keystore"
)

// TestKeyCustodyDocListsActions: the custody log's actions listed in
// docs/key-custody.md ("- `action`: …") are exactly those the key store
// writes, so a tool that reads the log by the doc knows every record.
func TestKeyCustodyDocListsActions(t *testing.T) {
	raw, err := os.ReadFile("../../docs/key-custody.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)\n- `action`: (.*?)\n- ").FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatal("docs/key-custody.md has no \"- `action`:\" item")
	}
	// The names in backquotes that start the list or follow a comma.
	listed := map[string]bool{}
	for _, n := range regexp.MustCompile("(?:^|, )`([a-z0-9-]+)`").FindAllStringSubmatch(strings.Join(strings.Fields(m[1]), " "), -1) {
		listed[n[1]] = true
	}
	actions := []string{keystore.ActionImport, keystore.ActionImportTR31, keystore.ActionCombine, keystore.ActionGenerate,
		keystore.ActionRotate, keystore.ActionExport, keystore.ActionRemove, keystore.ActionExpire, keystore.ActionRepair, keystore.ActionMigrate}
	for _, a := range actions {
		if !listed[a] {
			t.Errorf("docs/key-custody.md: action %q is not listed", a)
		}
		delete(listed, a)
	}
	for a := range listed {
		t.Errorf("docs/key-custody.md lists action %q, which the key store never writes", a)
	}
}
