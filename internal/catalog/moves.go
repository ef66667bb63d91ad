package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The statements a move runs on the tenant's row, each in the mover's
// transaction together with its own records (landlord.tenant_moves).

// SetStatus changes the tenant's status from → to in tx (version bumped,
// announced at commit). Another status is a *tenant.StatusError.
func SetStatus(ctx context.Context, tx DBTX, t tenant.Tenant, from, to tenant.Status, op string) error {
	res, err := tx.ExecContext(ctx, `UPDATE landlord.tenants SET status = $3, version = version + 1, updated_at = now()
		WHERE id = $1 AND status = $2`, t.ID, from, to)
	if err != nil {
		return fmt.Errorf("%s: set status %s: %w", op, to, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return &tenant.StatusError{Slug: t.Slug, Status: from, Op: op}
	}
	return notify(ctx, tx, t.Slug)
}

// FlipMoved points a moving tenant at its new placement (status active,
// version bumped, announced at commit) and records its retired copy, in one
// statement: a move's switch, which writers wait for, runs it in the
// transaction that also writes the audit trail. c.Slug is taken from the
// catalog row.
func FlipMoved(ctx context.Context, db DBTX, t tenant.Tenant, to tenant.Placement, c RetiredCopy) error {
	var flipped bool
	err := db.QueryRowContext(ctx, `WITH flipped AS (
			UPDATE landlord.tenants SET placement = $2, cluster = $3, database_name = $4, schema_name = $5,
				status = 'active', version = version + 1, updated_at = now()
			 WHERE id = $1 AND status = 'moving' RETURNING slug),
		  retired AS (
			INSERT INTO landlord.retired_copies (tenant_id, slug, cluster, database_name, schema_name, whole_database)
			SELECT $1, slug, $6, $7, $8, $9 FROM flipped RETURNING 1)
		SELECT EXISTS (SELECT FROM flipped), (SELECT count(*) FROM retired), (SELECT pg_notify($10, slug) FROM flipped) IS NULL`,
		t.ID, to.Kind, to.Cluster, to.Database, to.Schema, c.Cluster, c.Database, c.Schema, c.WholeDatabase,
		tenant.NotifyChannel).Scan(&flipped, new(int), new(bool))
	if err != nil {
		return fmt.Errorf("move: flip: %w", err)
	}
	if !flipped {
		return fmt.Errorf("move: flip: tenant %s is no longer moving", t.Slug)
	}
	return nil
}

func notify(ctx context.Context, tx DBTX, slug tenant.Slug) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, tenant.NotifyChannel, slug.String())
	return err
}

// RetiredCopy is a copy a move left behind (landlord.retired_copies): a
// renamed schema, closed to the tenant's role, or a whole retired database.
type RetiredCopy struct {
	ID            uuid.UUID  `json:"id"`
	TenantID      uuid.UUID  `json:"tenant_id"`
	Slug          string     `json:"slug"`
	Cluster       string     `json:"cluster"`
	Database      string     `json:"database_name"`
	Schema        string     `json:"schema_name"`
	WholeDatabase bool       `json:"whole_database"`
	RetiredAt     time.Time  `json:"retired_at"`
	PurgedAt      *time.Time `json:"purged_at,omitempty"`
}

// InsertRetired records a retired copy in tx (the move's flip).
func InsertRetired(ctx context.Context, tx DBTX, c RetiredCopy) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO landlord.retired_copies (tenant_id, slug, cluster, database_name, schema_name, whole_database)
		VALUES ($1, $2, $3, $4, $5, $6)`, c.TenantID, c.Slug, c.Cluster, c.Database, c.Schema, c.WholeDatabase); err != nil {
		return fmt.Errorf("move: record retired copy: %w", err)
	}
	return nil
}

// RetiredDatabaseRenamed records that a retired copy's whole database now
// has the retired name.
func (c *Catalog) RetiredDatabaseRenamed(ctx context.Context, tenantID uuid.UUID, retired string) error {
	if _, err := c.admin.ExecContext(ctx, `UPDATE landlord.retired_copies SET database_name = $2
		WHERE tenant_id = $1 AND schema_name = $2`, tenantID, retired); err != nil {
		return fmt.Errorf("move: record retired database: %w", err)
	}
	return nil
}

// RetiredCopies lists the copies not purged yet, oldest first; a non-zero
// slug limits the list to that tenant.
func (c *Catalog) RetiredCopies(ctx context.Context, slug tenant.Slug) ([]RetiredCopy, error) {
	var filter *string
	if !slug.IsZero() {
		v := slug.String()
		filter = &v
	}
	rows, err := c.admin.QueryContext(ctx, `SELECT id, tenant_id, slug, cluster, database_name, schema_name,
			whole_database, retired_at FROM landlord.retired_copies
		 WHERE purged_at IS NULL AND ($1::text IS NULL OR slug = $1) ORDER BY retired_at, id`, filter)
	if err != nil {
		return nil, fmt.Errorf("retired copies: %w", err)
	}
	defer rows.Close()
	var out []RetiredCopy
	for rows.Next() {
		var r RetiredCopy
		if err := rows.Scan(&r.ID, &r.TenantID, &r.Slug, &r.Cluster, &r.Database, &r.Schema, &r.WholeDatabase, &r.RetiredAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RetiredPurged marks a retired copy as dropped.
func (c *Catalog) RetiredPurged(ctx context.Context, id uuid.UUID) error {
	if _, err := c.admin.ExecContext(ctx, `UPDATE landlord.retired_copies SET purged_at = now() WHERE id = $1`, id); err != nil {
		return fmt.Errorf("retired copy %s: %w", id, err)
	}
	return nil
}
