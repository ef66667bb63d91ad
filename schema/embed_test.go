package schema_test

import (
	"errors"
	"testing"

	hcl "github.com/publicdigit/publicdigit/schema"
)

func TestModuleFiles(t *testing.T) {
	files := hcl.ModuleFiles()
	want := map[string]bool{"modules/events.hcl": false, "modules/donations.hcl": false}
	for _, f := range files {
		if _, ok := want[f]; ok {
			want[f] = true
		}
		if _, err := hcl.TenantModule(f); err != nil {
			t.Errorf("TenantModule(%q): %v", f, err)
		}
	}
	for f, seen := range want {
		if !seen {
			t.Errorf("ModuleFiles() = %v, missing %s", files, f)
		}
	}
}

func TestTenantModuleRefusesOtherPaths(t *testing.T) {
	for _, f := range []string{"", "core.hcl", "../landlord.hcl", "modules/../core.hcl", "modules/Events.hcl",
		"modules/events", "/modules/events.hcl", "modules/sub/x.hcl", "modules/nope.hcl"} {
		if _, err := hcl.TenantModule(f); !errors.Is(err, hcl.ErrModuleFile) {
			t.Errorf("TenantModule(%q) = %v, want ErrModuleFile", f, err)
		}
	}
}
