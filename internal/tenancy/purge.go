package tenancy

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Purge drops a deleted tenant for good: its schema (with all data), its
// role, and its catalog row (with its module installs and tokens). Only a
// tenant in status deleted can be purged. Schema and role go in one
// transaction; when the tenant's database holds the catalog, the row goes
// in it too, else right after (a crash in between is finished by a rerun).
func (s *Service) Purge(ctx context.Context, slug Slug) error {
	return s.WithTenantLock(ctx, slug, s.purge)
}

func (s *Service) purge(ctx context.Context, t Tenant) error {
	slug := t.Slug
	if t.Status != StatusDeleted {
		return &StatusError{Slug: slug, Status: t.Status, Op: "purge (delete it first)"}
	}
	// Copies left by moves go too (they keep the tenant's data).
	if _, err := s.PurgeRetired(ctx, 0, slug); err != nil {
		return fmt.Errorf("purge %s: %w", slug, err)
	}
	if t.Kind == PlacementDatabase {
		return s.purgeDatabase(ctx, t)
	}
	db, err := s.ClusterAdmin(t.Cluster)
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
	sameDB := db == s.o.Admin
	if sameDB {
		if err := deleteRow(ctx, tx, t); err != nil {
			return err
		}
	}
	s.hook(StepDropped)
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("purge %s: commit: %w", slug, err)
	}
	if !sameDB {
		if err := deleteRow(ctx, s.o.Admin, t); err != nil {
			return err
		}
	}
	s.log.Info().Ctx(ctx).Str("tenant", slug.String()).Msg("tenant purged")
	s.Notify(slug)
	return nil
}

// purgeDatabase drops a database-placed tenant: its database, its role, then
// its row (a crash in between is finished by a rerun: both drops are IF EXISTS).
func (s *Service) purgeDatabase(ctx context.Context, t Tenant) error {
	if err := s.DropDatabase(ctx, t.Cluster, t.Database); err != nil {
		return fmt.Errorf("purge %s: %w", t.Slug, err)
	}
	server, err := s.ClusterAdmin(t.Cluster)
	if err != nil {
		return err
	}
	if _, err := server.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{t.Slug.RoleName()}.Sanitize()); err != nil {
		return fmt.Errorf("purge %s: %w", t.Slug, err)
	}
	s.hook(StepDropped)
	if err := deleteRow(ctx, s.o.Admin, t); err != nil {
		return err
	}
	s.log.Info().Ctx(ctx).Str("tenant", t.Slug.String()).Msg("tenant purged")
	s.Notify(t.Slug)
	return nil
}

func deleteRow(ctx context.Context, db DBTX, t Tenant) error {
	if _, err := db.ExecContext(ctx, `
		WITH d AS (DELETE FROM landlord.tenants t WHERE t.id = $1 AND t.status = 'deleted' RETURNING t.slug)
		SELECT `+notifyCol+` FROM d t`, t.ID); err != nil {
		return fmt.Errorf("purge %s: delete catalog row: %w", t.Slug, err)
	}
	return nil
}
