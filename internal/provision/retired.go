package provision

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// PurgeRetired drops the copies that moves retired (catalog.RetiredCopy)
// older than grace (all of them for grace 0), of one tenant when slug is
// set, and returns what it dropped. A copy is dropped before its record is
// marked, so a crash is finished by a rerun (the drops are IF EXISTS).
func (p *Provisioner) PurgeRetired(ctx context.Context, grace time.Duration, slug tenant.Slug) ([]catalog.RetiredCopy, error) {
	copies, err := p.cat.RetiredCopies(ctx, slug)
	if err != nil {
		return nil, err
	}
	var done []catalog.RetiredCopy
	cutoff := time.Now().Add(-grace)
	for _, c := range copies {
		if grace > 0 && c.RetiredAt.After(cutoff) {
			continue
		}
		if err := p.dropCopy(ctx, c); err != nil {
			return done, err
		}
		if err := p.cat.RetiredPurged(ctx, c.ID); err != nil {
			return done, err
		}
		now := time.Now()
		c.PurgedAt = &now
		done = append(done, c)
		p.log.Info().Ctx(ctx).Str("tenant", c.Slug).Str("cluster", c.Cluster).Str("database", c.Database).
			Str("schema", c.Schema).Msg("retired copy purged")
	}
	return done, nil
}

func (p *Provisioner) dropCopy(ctx context.Context, c catalog.RetiredCopy) error {
	if err := p.checkRetiredNames(c); err != nil {
		return err
	}
	if c.WholeDatabase {
		if err := p.cl.DropDatabase(ctx, c.Cluster, c.Database); err != nil {
			return fmt.Errorf("retired copy %s: %w", c.Database, err)
		}
		return nil
	}
	db, err := p.cl.Open(ctx, c.Cluster, c.Database)
	if err != nil {
		return fmt.Errorf("retired copy %s: %w", c.Schema, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{c.Schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("retired copy %s: %w", c.Schema, err)
	}
	return nil
}
