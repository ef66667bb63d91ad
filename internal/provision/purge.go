package provision

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Purge drops a deleted tenant for good: its schema (with all data), its
// role, and its catalog row (with its module installs and tokens). Only a
// tenant in status deleted can be purged. Schema and role go in one
// transaction; when the tenant's database holds the catalog, the row goes
// in it too, else right after (a crash in between is finished by a rerun).
func (p *Provisioner) Purge(ctx context.Context, slug tenant.Slug) error {
	return p.cat.WithTenantLock(ctx, slug, p.purge)
}

func (p *Provisioner) purge(ctx context.Context, t tenant.Tenant) error {
	slug := t.Slug
	if t.Status != tenant.StatusDeleted {
		return &tenant.StatusError{Slug: slug, Status: t.Status, Op: "purge (delete it first)"}
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
		if err := catalog.DeletePurged(ctx, tx, t); err != nil {
			return err
		}
	}
	p.hook(StepDropped)
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("purge %s: commit: %w", slug, err)
	}
	if !sameDB {
		if err := catalog.DeletePurged(ctx, p.admin, t); err != nil {
			return err
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
	if err := catalog.DeletePurged(ctx, p.admin, t); err != nil {
		return err
	}
	p.log.Info().Ctx(ctx).Str("tenant", t.Slug.String()).Msg("tenant purged")
	p.cat.Notify(t.Slug)
	return nil
}
