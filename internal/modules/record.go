package modules

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/google/uuid"
)

// RecordInstalls records in tx (on the landlord database) that a tenant has
// the named modules installed, for a tenant whose schema was built with
// them in that transaction (a tenant import, internal/transfer).
func RecordInstalls(ctx context.Context, tx *sql.Tx, tenantID uuid.UUID, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO landlord.tenant_modules (tenant_id, module_name, status)
		SELECT $1, unnest($2::text[]), 'installed'`, tenantID, names); err != nil {
		return fmt.Errorf("record module installs: %w", err)
	}
	return nil
}
