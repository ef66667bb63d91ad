package pgroute

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/config"
)

// NewPool opens a pgx pool on raw (normally through PgBouncer) with the pool
// settings of p, for statements that do not depend on a tenant binding (the
// landlord catalog). It uses QueryExecModeExec: one round trip with the
// unnamed prepared statement and no statement cache, safe behind PgBouncer
// in transaction mode (DESIGN.md §2 rule 2). tracer may be nil.
func NewPool(ctx context.Context, raw string, p config.Pool, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := poolConfig(raw, p, pgx.QueryExecModeExec)
	if err != nil {
		return nil, err
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	return openPool(ctx, cfg)
}

// poolConfig builds a pgxpool config with publicdigit's settings.
func poolConfig(raw string, p config.Pool, mode pgx.QueryExecMode) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("pool config %s: %w", config.Redact(raw), err)
	}
	cfg.MaxConns = p.MaxConns
	cfg.MinConns = p.MinConns
	// Each backend caches catalog entries for every tenant schema it touches;
	// a bounded lifetime bounds that memory (with PgBouncer's server_lifetime).
	cfg.MaxConnLifetime = p.MaxConnLifetime
	cfg.MaxConnLifetimeJitter = p.MaxConnLifetime / 10
	cfg.MaxConnIdleTime = p.MaxConnIdleTime
	cfg.HealthCheckPeriod = p.HealthCheckPeriod
	// pgxpool pings a connection idle for more than a second before handing
	// it out: an extra round trip on quiet services. Ping only after a long
	// idle; a statement that fails on a dead connection before anything was
	// sent is retried once by the router instead.
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
		return p.IdleDuration > time.Minute
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	cfg.ConnConfig.StatementCacheCapacity = 0
	cfg.ConnConfig.DescriptionCacheCapacity = 0
	if p.ApplicationName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = p.ApplicationName
	}
	return cfg, nil
}

func openPool(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool %s@%s:%d/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host,
			cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// LandlordExecMode is the pgx mode for pools whose statements never depend
// on a tenant binding (schema-qualified landlord queries). Behind PgBouncer
// 1.18 no named prepared statement may outlive a transaction, so it is
// QueryExecModeExec; PgBouncer ≥ 1.21 (with max_prepared_statements) and
// direct connections may cache prepared statements, saving a parse and plan
// per query. Tenant pools never cache: a statement prepared before the
// binding would not find the tenant's tables (DESIGN.md §2 rule 2).
func LandlordExecMode(pgbouncer string) pgx.QueryExecMode {
	switch pgbouncer {
	case "1.21", "none":
		return pgx.QueryExecModeCacheStatement
	default:
		return pgx.QueryExecModeExec
	}
}

// NewLandlordPool opens the landlord pool with the exec mode that suits the
// PgBouncer in front of the default cluster.
func NewLandlordPool(ctx context.Context, cfg config.Config, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	mode := LandlordExecMode(cfg.Clusters[cfg.DefaultCluster].PgBouncer)
	pcfg, err := poolConfig(cfg.Landlord.URL, cfg.Pool, mode)
	if err != nil {
		return nil, err
	}
	if mode == pgx.QueryExecModeCacheStatement {
		pcfg.ConnConfig.StatementCacheCapacity = 256
	}
	if tracer != nil {
		pcfg.ConnConfig.Tracer = tracer
	}
	return openPool(ctx, pcfg)
}
