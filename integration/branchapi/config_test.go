package branchapi

import (
	"strings"
	"testing"
)

func TestConfigRefusesKioskWithOtherRoles(t *testing.T) {
	cfg := DevConfig(t.TempDir(), "127.0.0.1:0", "200001")
	cfg.Clients[3].Roles = []Role{RoleKiosk, RoleTeller}
	if err := cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "kiosk cannot be combined") {
		t.Errorf("Validate(kiosk+teller) = %v, want the kiosk role refused with another", err)
	}
}

func TestConfigRefusesIDsAnEventRefuses(t *testing.T) {
	for _, id := range []string{"123456789012", "DEADBEEF01234567"} {
		cfg := DevConfig(t.TempDir(), "127.0.0.1:0", "200001")
		cfg.Clients[0].ID = id
		if err := cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "run of 12 or more digits") {
			t.Errorf("Validate(client id of %d characters) = %v, want the id refused", len(id), err)
		}
	}
}
