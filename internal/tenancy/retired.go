package tenancy

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RetiredCopy is a copy a move left behind (landlord.retired_copies): a
// renamed schema, closed to the tenant's role, or a whole retired database.
type RetiredCopy struct {
	ID            string     `json:"id"`
	TenantID      string     `json:"tenant_id"`
	Slug          string     `json:"slug"`
	Cluster       string     `json:"cluster"`
	Database      string     `json:"database_name"`
	Schema        string     `json:"schema_name"`
	WholeDatabase bool       `json:"whole_database"`
	RetiredAt     time.Time  `json:"retired_at"`
	PurgedAt      *time.Time `json:"purged_at,omitempty"`
}

// RetiredCopies lists the copies not purged yet, oldest first; a non-zero
// slug limits the list to that tenant.
func (s *Service) RetiredCopies(ctx context.Context, slug Slug) ([]RetiredCopy, error) {
	var filter *string
	if !slug.IsZero() {
		v := slug.String()
		filter = &v
	}
	rows, err := s.o.Admin.QueryContext(ctx, `SELECT id::text, tenant_id::text, slug, cluster, database_name, schema_name,
			whole_database, retired_at FROM landlord.retired_copies
		 WHERE purged_at IS NULL AND ($1::text IS NULL OR slug = $1) ORDER BY retired_at, id`, filter)
	if err != nil {
		return nil, fmt.Errorf("retired copies: %w", err)
	}
	defer rows.Close()
	var out []RetiredCopy
	for rows.Next() {
		var c RetiredCopy
		if err := rows.Scan(&c.ID, &c.TenantID, &c.Slug, &c.Cluster, &c.Database, &c.Schema, &c.WholeDatabase, &c.RetiredAt); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// PurgeRetired drops the retired copies older than grace (all of them for
// grace 0), of one tenant when slug is set, and returns what it dropped.
// A copy is dropped before its row is marked, so a crash is finished by a
// rerun (the drops are IF EXISTS).
func (s *Service) PurgeRetired(ctx context.Context, grace time.Duration, slug Slug) ([]RetiredCopy, error) {
	copies, err := s.RetiredCopies(ctx, slug)
	if err != nil {
		return nil, err
	}
	var done []RetiredCopy
	cutoff := time.Now().Add(-grace)
	for _, c := range copies {
		if grace > 0 && c.RetiredAt.After(cutoff) {
			continue
		}
		if err := s.dropCopy(ctx, c); err != nil {
			return done, err
		}
		now := time.Now()
		if _, err := s.o.Admin.ExecContext(ctx, `UPDATE landlord.retired_copies SET purged_at = now() WHERE id = $1`, c.ID); err != nil {
			return done, fmt.Errorf("retired copy %s: %w", c.Schema, err)
		}
		c.PurgedAt = &now
		done = append(done, c)
		s.log.Info().Ctx(ctx).Str("tenant", c.Slug).Str("cluster", c.Cluster).Str("database", c.Database).
			Str("schema", c.Schema).Msg("retired copy purged")
	}
	return done, nil
}

func (s *Service) dropCopy(ctx context.Context, c RetiredCopy) error {
	if c.WholeDatabase {
		if err := s.DropDatabase(ctx, c.Cluster, c.Database); err != nil {
			return fmt.Errorf("retired copy %s: %w", c.Database, err)
		}
		return nil
	}
	db, err := s.OpenAdmin(ctx, c.Cluster, c.Database)
	if err != nil {
		return fmt.Errorf("retired copy %s: %w", c.Schema, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{c.Schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("retired copy %s: %w", c.Schema, err)
	}
	return nil
}
