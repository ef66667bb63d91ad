package tenancy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
	cluster := want.Cluster
	if cluster == "" {
		cluster = s.cfg.DefaultCluster
	}
	pl, err := s.PlacementFor(slug, want.Kind, cluster)
	if err != nil {
		return Placement{}, err
	}
	if (want.Database != "" && want.Database != pl.Database) || (want.Schema != "" && want.Schema != pl.Schema) {
		return Placement{}, fmt.Errorf("%w: a %s placement on cluster %s is database %s, schema %s",
			ErrInvalidTenant, pl.Kind, cluster, pl.Database, pl.Schema)
	}
	return pl, nil
}

// LockTx takes the tenant's operation lock in the transaction tx (on the
// landlord database); see Service.Lock.
func LockTx(ctx context.Context, tx DBTX, slug Slug) error {
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('tenant-op:' || $1))", slug.String()); err != nil {
		return fmt.Errorf("lock tenant %s: %w", slug, err)
	}
	return nil
}

// InsertProvisioning inserts a tenant's catalog row in status provisioning
// on db (the landlord database), or returns the existing row of that slug
// (inserted false).
func InsertProvisioning(ctx context.Context, db DBTX, slug Slug, name string, pl Placement) (Tenant, bool, error) {
	return insertProvisioning(ctx, db, slug, name, pl, `SELECT 1`)
}

// LockAndInsertProvisioning is LockTx and InsertProvisioning in one
// statement (one round trip), for a transaction tx that does both.
func LockAndInsertProvisioning(ctx context.Context, tx DBTX, slug Slug, name string, pl Placement) (Tenant, bool, error) {
	return insertProvisioning(ctx, tx, slug, name, pl, `SELECT pg_advisory_xact_lock(hashtext('tenant-op:' || $1))`)
}

// insertProvisioning inserts the row once source (one row, may use $1, the
// slug) has been evaluated: the INSERT reads its row from it, so a lock
// taken there is held before the insert is tried.
func insertProvisioning(ctx context.Context, db DBTX, slug Slug, name string, pl Placement, source string) (Tenant, bool, error) {
	if err := ValidateName(name); err != nil {
		return Tenant{}, false, err
	}
	var t Tenant
	err := db.QueryRowContext(ctx, `
		WITH src AS (`+source+`)
		INSERT INTO landlord.tenants AS t (slug, name, status, placement, cluster, database_name, schema_name)
		SELECT $1::text, $2, 'provisioning', $3, $4, $5, $6 FROM src
		ON CONFLICT (slug) DO NOTHING
		RETURNING `+tenantCols, slug.String(), name, string(pl.Kind), pl.Cluster, pl.Database, pl.Schema).Scan(tenantDest(&t)...)
	inserted := err == nil
	if errors.Is(err, sql.ErrNoRows) {
		err = db.QueryRowContext(ctx, `SELECT `+tenantCols+` FROM landlord.tenants t WHERE t.slug = $1`, slug.String()).
			Scan(tenantDest(&t)...)
		if errors.Is(err, sql.ErrNoRows) { // purged between the two statements
			return Tenant{}, false, fmt.Errorf("tenant %s: %w", slug, ErrTenantNotFound)
		}
	}
	if err != nil {
		return Tenant{}, false, fmt.Errorf("insert tenant %s: %w", slug, err)
	}
	if err := t.finish(); err != nil {
		return Tenant{}, false, err
	}
	return t, inserted, nil
}

// Activate flips a provisioning tenant to active, bumps its version and
// announces it (NOTIFY), on db (the landlord database, often inside the
// transaction that built the schema). A tenant no longer provisioning
// (deleted meanwhile) is a *StatusError.
func Activate(ctx context.Context, db DBTX, t Tenant) (Tenant, error) {
	return activate(ctx, db, t, activateSQL)
}

// ActivateApplied is Activate recording, in the same statement, a schema
// apply's hash and fingerprint (the columns schemaapply.RecordApplied sets).
func ActivateApplied(ctx context.Context, db DBTX, t Tenant, hash, fingerprint string) (Tenant, error) {
	return activate(ctx, db, t, activateAppliedSQL, hash, fingerprint)
}

// The activation statements: $1 is the tenant id; activateAppliedSQL also
// records the apply ($2 hash, $3 fingerprint).
const (
	activateSQL = `
		WITH upd AS (
			UPDATE landlord.tenants t
			   SET status = 'active', version = t.version + 1, updated_at = now()
			 WHERE t.id = $1 AND t.status = 'provisioning'
			RETURNING t.*)
		SELECT ` + tenantCols + `, ` + notifyCol + ` FROM upd t`
	activateAppliedSQL = `
		WITH upd AS (
			UPDATE landlord.tenants t
			   SET status = 'active', version = t.version + 1, updated_at = now(),
			       schema_hash = $2, schema_fingerprint = $3, schema_applied_at = now(), schema_error = NULL
			 WHERE t.id = $1 AND t.status = 'provisioning'
			RETURNING t.*)
		SELECT ` + tenantCols + `, ` + notifyCol + ` FROM upd t`
)

func activate(ctx context.Context, db DBTX, t Tenant, query string, args ...any) (Tenant, error) {
	var a Tenant
	err := db.QueryRowContext(ctx, query, append([]any{t.ID}, args...)...).Scan(append(tenantDest(&a), new(string))...)
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
