package provision

import "github.com/publicdigit/publicdigit/internal/tenant"

// CheckTenantNames exposes the names check that purge runs before any DROP.
func CheckTenantNames(p *Provisioner, t tenant.Tenant) error { return p.checkTenantNames(t) }
