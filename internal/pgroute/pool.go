package pgroute

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolConfig sizes and recycles a pgx pool.
type PoolConfig struct {
	MaxConns int32
	MinConns int32
	// MaxConnLifetime recycles connections: each backend caches catalog
	// entries for every tenant schema it touches, and a bounded lifetime
	// bounds that memory (with PgBouncer's server_lifetime).
	MaxConnLifetime   time.Duration
	MaxConnIdleTime   time.Duration
	HealthCheckPeriod time.Duration
	ApplicationName   string
}

// DefaultConnectTimeout bounds a new connection's dial and login when the
// URL sets no connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// DedicatedConfig bounds the pools of dedicated tenant databases, opened
// lazily on first use.
type DedicatedConfig struct {
	// MaxPools caps how many are open at once (the least recently used idle
	// one is closed to make room).
	MaxPools int
	// MaxConns sizes each.
	MaxConns int32
	// IdleClose closes a pool unused for this long.
	IdleClose time.Duration
}

// NewPool opens a pgx pool on url (normally through PgBouncer) for
// statements that do not depend on a tenant binding (the landlord
// catalog), in mode: QueryExecModeExec behind PgBouncer 1.18 (see
// LandlordExecMode). tracer may be nil.
func NewPool(ctx context.Context, url string, pc PoolConfig, mode pgx.QueryExecMode, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := poolConfig(url, pc, mode)
	if err != nil {
		return nil, err
	}
	if mode == pgx.QueryExecModeCacheStatement {
		cfg.ConnConfig.StatementCacheCapacity = 256
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	return openPool(ctx, cfg)
}

// poolConfig builds a pgxpool config with publicdigit's settings.
func poolConfig(url string, p PoolConfig, mode pgx.QueryExecMode) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pool config: %w", redactedParseError(err))
	}
	if p.MaxConns > 0 {
		cfg.MaxConns = p.MaxConns
	}
	cfg.MinConns = p.MinConns
	if p.MaxConnLifetime > 0 {
		cfg.MaxConnLifetime = p.MaxConnLifetime
		cfg.MaxConnLifetimeJitter = p.MaxConnLifetime / 10
	}
	if p.MaxConnIdleTime > 0 {
		cfg.MaxConnIdleTime = p.MaxConnIdleTime
	}
	if p.HealthCheckPeriod > 0 {
		cfg.HealthCheckPeriod = p.HealthCheckPeriod
	}
	// pgxpool pings a connection idle for more than a second before handing
	// it out: an extra round trip on quiet services. Ping only after a long
	// idle; a statement that fails on a dead connection before anything was
	// sent is retried once by the router instead.
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
		return p.IdleDuration > time.Minute
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A connection attempt holds a pool slot; one that hangs (a stalled
		// network, a pooler that never answers the login) must give it back.
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	cfg.ConnConfig.StatementCacheCapacity = 0
	cfg.ConnConfig.DescriptionCacheCapacity = 0
	if p.ApplicationName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = p.ApplicationName
	}
	return cfg, nil
}

// redactedParseError drops the connection string (it may hold a password
// that pgx's best-effort redaction misses) from a pgx parse error, keeping
// its reason.
func redactedParseError(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if cause := errors.Unwrap(pe); cause != nil {
			return fmt.Errorf("cannot parse the connection string: %w", cause)
		}
	}
	return errors.New("cannot parse the connection string")
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
// direct connections ("none") may cache prepared statements, saving a parse
// and plan per query. Tenant pools never cache: a statement prepared before
// the binding would not find the tenant's tables.
func LandlordExecMode(pgbouncer string) pgx.QueryExecMode {
	switch pgbouncer {
	case "1.21", "none":
		return pgx.QueryExecModeCacheStatement
	default:
		return pgx.QueryExecModeExec
	}
}
