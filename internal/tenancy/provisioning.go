package tenancy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DBTX is what *sql.DB and *sql.Tx have in common (direct admin connections).
type DBTX interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// CheckPlacement returns the placement for a new tenant: the default one when
// want is nil, else want checked against the config (empty fields filled).
func (s *Service) CheckPlacement(slug Slug, want *Placement) (Placement, error) {
	if want == nil {
		return s.DefaultPlacement(slug)
	}
	switch want.Kind {
	case PlacementSchema:
	case PlacementDatabase:
		return Placement{}, fmt.Errorf("%w: placement %q is not supported yet", ErrInvalidTenant, want.Kind)
	default:
		return Placement{}, fmt.Errorf("%w: placement must be %q or %q", ErrInvalidTenant, PlacementSchema, PlacementDatabase)
	}
	cluster := want.Cluster
	if cluster == "" {
		cluster = s.cfg.DefaultCluster
	}
	pl, err := s.SchemaPlacement(slug, cluster)
	if err != nil {
		return Placement{}, err
	}
	if (want.Database != "" && want.Database != pl.Database) || (want.Schema != "" && want.Schema != pl.Schema) {
		return Placement{}, fmt.Errorf("%w: a schema placement on cluster %s is database %s, schema %s",
			ErrInvalidTenant, cluster, pl.Database, pl.Schema)
	}
	return pl, nil
}

// InsertProvisioning inserts a tenant's catalog row in status provisioning,
// or returns the existing row of that slug (inserted false).
func (s *Service) InsertProvisioning(ctx context.Context, slug Slug, name string, pl Placement) (Tenant, bool, error) {
	if err := ValidateName(name); err != nil {
		return Tenant{}, false, err
	}
	t, err := scanTenant(s.o.Landlord.QueryRow(ctx, `
		INSERT INTO landlord.tenants AS t (slug, name, status, placement, cluster, database_name, schema_name)
		VALUES ($1, $2, 'provisioning', $3, $4, $5, $6)
		ON CONFLICT (slug) DO NOTHING
		RETURNING `+tenantCols, slug.String(), name, string(pl.Kind), pl.Cluster, pl.Database, pl.Schema))
	if err == nil {
		return t, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, false, fmt.Errorf("insert tenant %s: %w", slug, err)
	}
	t, err = s.Get(ctx, slug)
	return t, false, err
}

// Activate flips a provisioning tenant to active and bumps its version, on
// db (the landlord database, often inside the transaction that built the
// schema). A tenant no longer provisioning (deleted meanwhile) is a *StatusError.
func Activate(ctx context.Context, db DBTX, t Tenant) (Tenant, error) {
	var a Tenant
	err := db.QueryRowContext(ctx, `UPDATE landlord.tenants t
		   SET status = 'active', version = t.version + 1, updated_at = now()
		 WHERE t.id = $1 AND t.status = 'provisioning'
		RETURNING `+tenantCols, t.ID).Scan(tenantDest(&a)...)
	if errors.Is(err, sql.ErrNoRows) {
		var st string
		if err := db.QueryRowContext(ctx, `SELECT status FROM landlord.tenants WHERE id = $1`, t.ID).Scan(&st); err != nil {
			return Tenant{}, fmt.Errorf("tenant %s: %w", t.Slug, ErrTenantNotFound)
		}
		return Tenant{}, &StatusError{Slug: t.Slug, Status: Status(st), Op: "activate"}
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("activate tenant %s: %w", t.Slug, err)
	}
	if err := a.finish(); err != nil {
		return Tenant{}, err
	}
	return a, nil
}
