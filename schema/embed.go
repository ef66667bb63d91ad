// Package schema embeds the Atlas HCL schemas: landlord.hcl (the landlord
// catalog) and tenant/*.hcl (one tenant schema: the core plus module files).
// The same files serve the in-process applier and DBAs using the atlas CLI.
package schema

import "embed"

// Files holds landlord.hcl and tenant/*.hcl.
//
//go:embed landlord.hcl tenant
var Files embed.FS

// Landlord returns the landlord catalog HCL.
func Landlord() []byte {
	b, err := Files.ReadFile("landlord.hcl")
	if err != nil {
		panic(err) // embedded at build time
	}
	return b
}

// TenantCore returns the core tenant schema HCL (schema/tenant/core.hcl).
func TenantCore() []byte {
	b, err := Files.ReadFile("tenant/core.hcl")
	if err != nil {
		panic(err) // embedded at build time
	}
	return b
}
