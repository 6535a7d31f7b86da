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
