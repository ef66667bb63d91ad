// Package schema embeds the Atlas HCL schemas: landlord.hcl (the landlord
// catalog) and tenant/*.hcl (one tenant schema: the core plus module files).
// The same files serve the in-process applier and DBAs using the atlas CLI.
package schema

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
)

// Files holds landlord.hcl and tenant/*.hcl (tenant/core.hcl and tenant/modules/*.hcl).
//
//go:embed landlord.hcl tenant
var Files embed.FS

// Paths of the files inside Files (and inside a schema folder on disk).
const (
	LandlordFile = "landlord.hcl"
	TenantDir    = "tenant"
	CoreFile     = "core.hcl" // relative to TenantDir
)

// Landlord returns the landlord catalog HCL.
func Landlord() []byte {
	b, err := Files.ReadFile(LandlordFile)
	if err != nil {
		panic(err) // embedded at build time
	}
	return b
}

// TenantCore returns the core tenant schema HCL (schema/tenant/core.hcl).
func TenantCore() []byte {
	b, err := Files.ReadFile(TenantDir + "/" + CoreFile)
	if err != nil {
		panic(err) // embedded at build time
	}
	return b
}

// ErrModuleFile is wrapped by every error about a module schema file name.
var ErrModuleFile = errors.New("invalid module schema file")

var moduleFilePattern = regexp.MustCompile(`^modules/[a-z][a-z0-9_]{0,62}\.hcl$`)

// ValidModuleFile checks the form of a module schema file name, relative to
// schema/tenant/: "modules/<name>.hcl" with a lower-case name. It does not
// check that the file exists.
func ValidModuleFile(file string) error {
	if !moduleFilePattern.MatchString(file) {
		return fmt.Errorf("%w: %q must look like modules/<name>.hcl", ErrModuleFile, file)
	}
	return nil
}

// TenantModuleFS reads a module schema file (relative to the tenant folder,
// e.g. "modules/events.hcl") from fsys, laid out like this package's folder
// (landlord.hcl, tenant/…): Files, or os.DirFS of a checkout's schema/.
func TenantModuleFS(fsys fs.FS, file string) ([]byte, error) {
	if err := ValidModuleFile(file); err != nil {
		return nil, err
	}
	b, err := fs.ReadFile(fsys, TenantDir+"/"+file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist under schema/%s/", ErrModuleFile, file, TenantDir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return b, nil
}

// TenantModule returns the embedded HCL of a module schema file, named
// relative to schema/tenant/ as in landlord.modules.schema_files
// (e.g. "modules/events.hcl").
func TenantModule(file string) ([]byte, error) {
	return TenantModuleFS(Files, file)
}

// ModuleFiles lists the embedded module schema files, relative to
// schema/tenant/ ("modules/donations.hcl", "modules/events.hcl", …), sorted.
func ModuleFiles() []string {
	entries, err := Files.ReadDir(TenantDir + "/modules")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		f := "modules/" + e.Name()
		if !e.IsDir() && ValidModuleFile(f) == nil {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}
