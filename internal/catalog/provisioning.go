package catalog

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Lock takes the tenant's operation lock on the landlord database and
// holds it until the returned function is called. Every operation that
// creates or drops a tenant's schema or role (provision, module install and
// uninstall, purge, moves) holds it, so that none of them can recreate what
// another just dropped. A crashed holder's lock dies with its connection.
//
// The lock lives in a transaction of its own on the lock pool (Options.Locks),
// never on a connection the operation needs for its work; the wait for a
// lock connection and for the lock itself is bounded by Options.LockWait
// (tenant.ErrBusy past it).
func (c *Catalog) Lock(ctx context.Context, slug tenant.Slug) (func(), error) {
	acquire, cancel := context.WithTimeout(ctx, c.lockWait)
	defer cancel()
	conn, err := c.locks.Conn(acquire)
	if err != nil {
		if acquire.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("lock tenant %s: no lock connection within %s: %w", slug, c.lockWait, tenant.ErrBusy)
		}
		return nil, fmt.Errorf("lock tenant %s: %w", slug, err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("lock tenant %s: %w", slug, err)
	}
	release := func() {
		_ = tx.Rollback()
		_ = conn.Close()
	}
	if _, err := tx.ExecContext(ctx, `SELECT set_config('lock_timeout', $1, true)`,
		strconv.FormatInt(c.lockWait.Milliseconds(), 10)); err != nil {
		release()
		return nil, fmt.Errorf("lock tenant %s: %w", slug, err)
	}
	if err := LockTx(ctx, tx, slug); err != nil {
		release()
		if sqlState(err) == "55P03" { // lock_not_available: lock_timeout
			return nil, fmt.Errorf("lock tenant %s: another operation held it for %s: %w", slug, c.lockWait, tenant.ErrBusy)
		}
		return nil, err
	}
	return release, nil
}

// WithTenantLock runs fn while holding the tenant's operation lock, with the
// tenant as the catalog has it once the lock is held.
func (c *Catalog) WithTenantLock(ctx context.Context, slug tenant.Slug, fn func(ctx context.Context, t tenant.Tenant) error) error {
	unlock, err := c.Lock(ctx, slug)
	if err != nil {
		return err
	}
	defer unlock()
	t, err := c.Get(ctx, slug)
	if err != nil {
		return err
	}
	return fn(ctx, t)
}

// lockSQL takes the tenant's operation lock ($1: the slug) for the rest of
// the transaction.
const lockSQL = `SELECT pg_advisory_xact_lock(hashtext('tenant-op:' || $1))`

// LockTx takes the tenant's operation lock in the transaction tx (on the
// landlord database); see Catalog.Lock.
func LockTx(ctx context.Context, tx DBTX, slug tenant.Slug) error {
	if _, err := tx.ExecContext(ctx, lockSQL, slug.String()); err != nil {
		return fmt.Errorf("lock tenant %s: %w", slug, err)
	}
	return nil
}

// TryLockTx takes the tenant's operation lock in tx if no one holds it, and
// reports whether it did; it never waits (a transaction on a work
// connection must not wait for a lock whose holder may need a connection).
func TryLockTx(ctx context.Context, tx DBTX, slug tenant.Slug) (bool, error) {
	var ok bool
	if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock(hashtext('tenant-op:' || $1))`, slug.String()).Scan(&ok); err != nil {
		return false, fmt.Errorf("lock tenant %s: %w", slug, err)
	}
	return ok, nil
}

func sqlState(err error) string {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return pe.SQLState()
	}
	return ""
}

// InsertProvisioning inserts a tenant's catalog row in status provisioning
// on db (the landlord database), or returns the existing row of that slug
// (inserted false).
func InsertProvisioning(ctx context.Context, db DBTX, slug tenant.Slug, name string, pl tenant.Placement) (tenant.Tenant, bool, error) {
	if err := tenant.ValidateName(name); err != nil {
		return tenant.Tenant{}, false, err
	}
	t, err := scanRow(db.QueryRowContext(ctx, `
		INSERT INTO landlord.tenants AS t (slug, name, status, placement, cluster, database_name, schema_name)
		VALUES ($1, $2, 'provisioning', $3, $4, $5, $6)
		ON CONFLICT (slug) DO NOTHING
		RETURNING `+columns, slug.String(), name, string(pl.Kind), pl.Cluster, pl.Database, pl.Schema))
	inserted := err == nil
	if isNoRows(err) {
		t, err = scanRow(db.QueryRowContext(ctx, `SELECT `+columns+` FROM landlord.tenants t WHERE t.slug = $1`, slug.String()))
		if isNoRows(err) { // purged between the two statements
			return tenant.Tenant{}, false, fmt.Errorf("tenant %s: %w", slug, tenant.ErrNotFound)
		}
	}
	if err != nil {
		return tenant.Tenant{}, false, fmt.Errorf("insert tenant %s: %w", slug, err)
	}
	return t, inserted, nil
}

// Activate flips a provisioning tenant to active, bumps its version and
// announces it, on db (the landlord database, often inside the transaction
// that built the schema). A tenant no longer provisioning (deleted
// meanwhile) is a *tenant.StatusError.
func Activate(ctx context.Context, db DBTX, t tenant.Tenant) (tenant.Tenant, error) {
	return activate(ctx, db, t, activateSQL)
}

// ActivateApplied is Activate recording, in the same statement, a schema
// apply's hash and fingerprint (as RecordApplied does).
func ActivateApplied(ctx context.Context, db DBTX, t tenant.Tenant, hash, fingerprint string) (tenant.Tenant, error) {
	return activate(ctx, db, t, activateAppliedSQL, hash, fingerprint)
}

// The activation statements: $1 is the tenant id; activateAppliedSQL also
// records the apply ($2 hash, $3 fingerprint, none when empty).
const (
	activateSQL = `
		WITH upd AS (
			UPDATE landlord.tenants t
			   SET status = 'active', version = t.version + 1, updated_at = now()
			 WHERE t.id = $1 AND t.status = 'provisioning'
			RETURNING t.*)
		SELECT ` + columns + `, ` + notifyColumn + ` FROM upd t`
	activateAppliedSQL = `
		WITH upd AS (
			UPDATE landlord.tenants t
			   SET status = 'active', version = t.version + 1, updated_at = now(),
			       schema_hash = $2, schema_fingerprint = nullif($3, ''), schema_stamp = NULL, schema_applied_at = now(), schema_error = NULL
			 WHERE t.id = $1 AND t.status = 'provisioning'
			RETURNING t.*)
		SELECT ` + columns + `, ` + notifyColumn + ` FROM upd t`
)

func activate(ctx context.Context, db DBTX, t tenant.Tenant, query string, args ...any) (tenant.Tenant, error) {
	a, err := scanRow(db.QueryRowContext(ctx, query, append([]any{t.ID}, args...)...), new(string))
	if isNoRows(err) {
		var st string
		if err := db.QueryRowContext(ctx, `SELECT status FROM landlord.tenants WHERE id = $1`, t.ID).Scan(&st); err != nil {
			return tenant.Tenant{}, fmt.Errorf("tenant %s: %w", t.Slug, tenant.ErrNotFound)
		}
		return tenant.Tenant{}, &tenant.StatusError{Slug: t.Slug, Status: tenant.Status(st), Op: "activate"}
	}
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("activate tenant %s: %w", t.Slug, err)
	}
	return a, nil
}

// RecordApplied stores a successful schema apply's hash and fingerprint
// (and clears the last error), on db: the apply's own transaction when the
// catalog is in the tenant's database, so that the change and its record
// commit together.
func RecordApplied(ctx context.Context, db DBTX, id uuid.UUID, hash, fingerprint string) error {
	return RecordAppliedStamped(ctx, db, id, hash, fingerprint, "")
}

// RecordAppliedStamped is RecordApplied with the catalog stamp under which
// the fingerprint was computed (schemaapply.Result.Stamp; empty: none).
func RecordAppliedStamped(ctx context.Context, db DBTX, id uuid.UUID, hash, fingerprint, stamp string) error {
	_, err := db.ExecContext(ctx, `UPDATE landlord.tenants
		SET schema_hash = $2, schema_fingerprint = $3, schema_stamp = nullif($4, ''), schema_applied_at = now(), schema_error = NULL
		WHERE id = $1`, id, hash, fingerprint, stamp)
	if err != nil {
		return fmt.Errorf("record applied schema of tenant %s: %w", id, err)
	}
	return nil
}

// Stamp is the catalog stamp under which a tenant's live fingerprint was
// found equal to the recorded Fingerprint (see RecordStamps).
type Stamp struct {
	ID          uuid.UUID
	Fingerprint string
	Stamp       string
}

// RecordStamps stores catalog stamps, each unless its tenant's recorded
// fingerprint changed meanwhile (it is compared, so a concurrent apply
// wins): one statement per 1,000.
func RecordStamps(ctx context.Context, db DBTX, stamps []Stamp) error {
	for len(stamps) > 0 {
		k := min(len(stamps), 1000)
		ids, fps, sts := make([]string, k), make([]string, k), make([]string, k)
		for i, s := range stamps[:k] {
			ids[i], fps[i], sts[i] = s.ID.String(), s.Fingerprint, s.Stamp
		}
		_, err := db.ExecContext(ctx, `UPDATE landlord.tenants t SET schema_stamp = u.stamp
			FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, fingerprint, stamp)
			WHERE t.id = u.id AND t.schema_fingerprint = u.fingerprint`, ids, fps, sts)
		if err != nil {
			return fmt.Errorf("record schema stamps: %w", err)
		}
		stamps = stamps[k:]
	}
	return nil
}

// RecordFailed stores the error of a failed schema apply.
func RecordFailed(ctx context.Context, db DBTX, id uuid.UUID, cause error) error {
	_, err := db.ExecContext(ctx, `UPDATE landlord.tenants SET schema_error = $2 WHERE id = $1`, id, cause.Error())
	if err != nil {
		return fmt.Errorf("record failed apply of tenant %s: %w", id, err)
	}
	return nil
}

// DeletePurged deletes the catalog row of a deleted tenant whose data is
// gone (with its module installs and tokens), announcing it.
func DeletePurged(ctx context.Context, db DBTX, t tenant.Tenant) error {
	if _, err := db.ExecContext(ctx, `
		WITH d AS (DELETE FROM landlord.tenants t WHERE t.id = $1 AND t.status = 'deleted' RETURNING t.slug)
		SELECT `+notifyColumn+` FROM d t`, t.ID); err != nil {
		return fmt.Errorf("purge %s: delete catalog row: %w", t.Slug, err)
	}
	return nil
}
