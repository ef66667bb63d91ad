package modules

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Records lists every install record of a tenant, by module name:
// installed, uninstalling and removed (a default module it uninstalled) —
// what a tenant export carries (internal/transfer).
func (s *Service) Records(ctx context.Context, tenantID uuid.UUID) ([]Install, error) {
	in, err := s.installedOf(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := make([]Install, len(in))
	for i, x := range in {
		out[i] = x.Install
	}
	return out, nil
}

// RecordRestored records, in db (the landlord database, in the transaction
// that built the tenant's schema with the installed modules), the install
// records of a tenant restored from an archive: the installed modules, and
// the default modules it had removed, which stay removed (the fleet runner
// does not install them); and announces the change.
func RecordRestored(ctx context.Context, db catalog.DBTX, t tenant.Tenant, installed, removed []string) error {
	if len(removed) > 0 {
		if _, err := db.ExecContext(ctx, `INSERT INTO landlord.tenant_modules (tenant_id, module_name, status)
			SELECT $1, n, 'removed' FROM unnest($2::text[]) n`, t.ID, removed); err != nil {
			return fmt.Errorf("record removed modules %v of tenant %s: %w", removed, t.Slug, err)
		}
	}
	if len(installed) == 0 {
		_, err := db.ExecContext(ctx, notifySQL, t.Slug.String())
		return err
	}
	return RecordInstalled(ctx, db, t, installed)
}
