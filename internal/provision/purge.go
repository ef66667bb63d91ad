package provision

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Purge drops a deleted tenant for good: its schema (with all data), its
// role, and its catalog row (with its module installs and tokens). Only a
// tenant in status deleted can be purged. Schema and role go in one
// transaction; when the tenant's database holds the catalog, the row goes
// in it too, else right after (a crash in between is finished by a rerun).
func (p *Provisioner) Purge(ctx context.Context, slug tenant.Slug) error {
	var id uuid.UUID
	err := p.cat.WithTenantLock(ctx, slug, func(ctx context.Context, t tenant.Tenant) error {
		id = t.ID
		return p.purge(ctx, t)
	})
	if err != nil {
		p.cat.Audit().Failed(ctx, audit.Event{Action: audit.TenantPurge, TenantID: id, Tenant: slug.String()}, err)
	}
	return err
}

// purgedEvent is the audit record of a purge, written with the deletion of
// the catalog row.
func purgedEvent(t tenant.Tenant) audit.Event {
	return audit.Event{Action: audit.TenantPurge, TenantID: t.ID, Tenant: t.Slug.String(), Detail: map[string]any{
		"placement": string(t.Kind), "cluster": t.Cluster, "database": t.Database, "schema": t.Schema}}
}

// deletePurged deletes the row of a purged tenant and records the purge, in
// tx.
func deletePurged(ctx context.Context, tx catalog.DBTX, t tenant.Tenant) error {
	if err := catalog.DeletePurged(ctx, tx, t); err != nil {
		return err
	}
	return audit.Record(ctx, tx, purgedEvent(t))
}

// ErrUnsafeName: a name read from the catalog is not one that purge may
// drop (a tampered or corrupted row); nothing was dropped.
var ErrUnsafeName = errors.New("refusing to drop a name that is not the tenant's own")

// retiredName is the name moves give a retired schema or database.
var retiredName = regexp.MustCompile(`^pd_retired_[0-9a-f]{12}$`)

// checkTenantNames re-validates, before any DROP, the names of a tenant's
// catalog row against its slug: schema tenant_<slug>; for schema placement
// the cluster's shared database (the schema is dropped there, never the
// database); for database placement tenant_<slug>, never the shared one.
func (p *Provisioner) checkTenantNames(t tenant.Tenant) error {
	if t.Schema != t.Slug.SchemaName() {
		return fmt.Errorf("purge %s: schema %q: %w", t.Slug, t.Schema, ErrUnsafeName)
	}
	shared, err := p.cl.SharedDatabase(t.Cluster)
	if err != nil {
		return err
	}
	switch t.Kind {
	case tenant.PlacementSchema:
		if t.Database != shared {
			return fmt.Errorf("purge %s: schema placement in database %q, not the shared %q: %w", t.Slug, t.Database, shared, ErrUnsafeName)
		}
	case tenant.PlacementDatabase:
		if t.Database != t.Slug.DatabaseName() || t.Database == shared {
			return fmt.Errorf("purge %s: database %q: %w", t.Slug, t.Database, ErrUnsafeName)
		}
	default:
		return fmt.Errorf("purge %s: placement %q: %w", t.Slug, t.Kind, ErrUnsafeName)
	}
	return nil
}

// checkRetiredNames re-validates the names of a retired copy before it is
// dropped: schema pd_retired_<hex> in the cluster's shared database, or a
// whole database renamed pd_retired_<hex> (one still under the tenant's
// name is not dropped: its move has not finished).
func (p *Provisioner) checkRetiredNames(c catalog.RetiredCopy) error {
	if _, err := tenant.ParseSlug(c.Slug); err != nil {
		return fmt.Errorf("retired copy %s: slug %q: %w", c.ID, c.Slug, ErrUnsafeName)
	}
	if !retiredName.MatchString(c.Schema) {
		return fmt.Errorf("retired copy %s: schema %q: %w", c.ID, c.Schema, ErrUnsafeName)
	}
	shared, err := p.cl.SharedDatabase(c.Cluster)
	if err != nil {
		return err
	}
	if c.WholeDatabase {
		if c.Database != c.Schema {
			return fmt.Errorf("retired copy %s: database %q is not renamed %s yet (run the tenant's move again to finish it): %w",
				c.ID, c.Database, c.Schema, ErrUnsafeName)
		}
		return nil
	}
	if c.Database != shared {
		return fmt.Errorf("retired copy %s: schema in database %q, not the shared %q: %w", c.ID, c.Database, shared, ErrUnsafeName)
	}
	return nil
}

func (p *Provisioner) purge(ctx context.Context, t tenant.Tenant) error {
	slug := t.Slug
	if t.Status != tenant.StatusDeleted {
		return &tenant.StatusError{Slug: slug, Status: t.Status, Op: "purge (delete it first)"}
	}
	if err := p.checkTenantNames(t); err != nil {
		return err
	}
	// Copies left by moves go too (they keep the tenant's data).
	if _, err := p.PurgeRetired(ctx, 0, slug); err != nil {
		return fmt.Errorf("purge %s: %w", slug, err)
	}
	if t.Kind == tenant.PlacementDatabase {
		return p.purgeDatabase(ctx, t)
	}
	db, err := p.cl.Admin(t.Cluster)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("purge %s: %w", slug, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('schema:' || $1))", t.Schema); err != nil {
		return fmt.Errorf("purge %s: lock: %w", slug, err)
	}
	for _, stmt := range []string{
		"DROP SCHEMA IF EXISTS " + pgx.Identifier{t.Schema}.Sanitize() + " CASCADE",
		"DROP ROLE IF EXISTS " + pgx.Identifier{slug.RoleName()}.Sanitize(),
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("purge %s: %w", slug, err)
		}
	}
	sameDB := db == p.admin
	if sameDB {
		if err := deletePurged(ctx, tx, t); err != nil {
			return err
		}
	}
	p.hook(StepDropped)
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("purge %s: commit: %w", slug, err)
	}
	if !sameDB {
		if err := p.inTx(ctx, func(tx *sql.Tx) error { return deletePurged(ctx, tx, t) }); err != nil {
			return fmt.Errorf("purge %s: %w", slug, err)
		}
	}
	p.log.Info().Ctx(ctx).Str("tenant", slug.String()).Msg("tenant purged")
	p.cat.Notify(slug)
	return nil
}

// purgeDatabase drops a database-placed tenant: its database, its role, then
// its row (a crash in between is finished by a rerun: both drops are IF EXISTS).
func (p *Provisioner) purgeDatabase(ctx context.Context, t tenant.Tenant) error {
	if err := p.cl.DropDatabase(ctx, t.Cluster, t.Database); err != nil {
		return fmt.Errorf("purge %s: %w", t.Slug, err)
	}
	server, err := p.cl.Admin(t.Cluster)
	if err != nil {
		return err
	}
	if _, err := server.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{t.Slug.RoleName()}.Sanitize()); err != nil {
		return fmt.Errorf("purge %s: %w", t.Slug, err)
	}
	p.hook(StepDropped)
	if err := p.inTx(ctx, func(tx *sql.Tx) error { return deletePurged(ctx, tx, t) }); err != nil {
		return fmt.Errorf("purge %s: %w", t.Slug, err)
	}
	p.log.Info().Ctx(ctx).Str("tenant", t.Slug.String()).Msg("tenant purged")
	p.cat.Notify(t.Slug)
	return nil
}
