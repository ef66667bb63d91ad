package pgroute

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/config"
)

// NewPool opens a pgx pool on raw (normally through PgBouncer) with the pool
// settings of p. Statements use QueryExecModeExec: one round trip with the
// unnamed prepared statement, no statement cache, which is what PgBouncer in
// transaction mode and per-transaction tenant binding require (DESIGN.md §2
// rule 2). tracer may be nil.
func NewPool(ctx context.Context, raw string, p config.Pool, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("pool config %s: %w", config.Redact(raw), err)
	}
	cfg.MaxConns = p.MaxConns
	cfg.MinConns = p.MinConns
	cfg.MaxConnLifetime = p.MaxConnLifetime
	cfg.MaxConnLifetimeJitter = p.MaxConnLifetime / 10
	cfg.MaxConnIdleTime = p.MaxConnIdleTime
	cfg.HealthCheckPeriod = p.HealthCheckPeriod
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.ConnConfig.StatementCacheCapacity = 0
	cfg.ConnConfig.DescriptionCacheCapacity = 0
	if p.ApplicationName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = p.ApplicationName
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool %s: %w", config.Redact(raw), err)
	}
	return pool, nil
}
