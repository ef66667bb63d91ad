package pgroute

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/tenancy"
)

// Router runs tenant work on the shared pools. Tenant code never sees a
// pool: it gets a *Batch (Do) or a *Tx (Tx), already bound to its tenant.
type Router struct {
	cfg      config.Config
	log      zerolog.Logger
	cache    *placementCache
	pools    *pools
	landlord *pgxpool.Pool // owned when the router opened it
	mode     pgx.QueryExecMode

	binds     sync.Map // bindKey → binding statement text (simple protocol)
	bindCount atomic.Int64
}

// Options adjust a Router; the zero value is the production setting.
type Options struct {
	// Resolver finds placements; default: the landlord catalog through a pool
	// on cfg.Landlord.URL that the router opens and closes.
	Resolver Resolver
	// ExecMode is the pgx mode of the tenant pools. Default (0):
	// QueryExecModeSimpleProtocol, the fastest form measured (see README):
	// binding and statements travel as one multi-statement Query message,
	// which PostgreSQL runs as one implicit transaction. QueryExecModeExec
	// (extended protocol, one Sync) is the alternative; both are one round trip.
	ExecMode pgx.QueryExecMode
	// ConfigurePool, when set, may adjust each tenant pool's config (tests
	// use it to count network writes).
	ConfigurePool func(*pgxpool.Config)
}

// New opens the shared pool of every configured cluster (lazily connecting)
// and returns a router.
func New(ctx context.Context, cfg config.Config, log zerolog.Logger, opts Options) (*Router, error) {
	r := &Router{cfg: cfg, log: log, mode: opts.ExecMode}
	if r.mode == 0 {
		r.mode = pgx.QueryExecModeSimpleProtocol
	}
	if r.mode != pgx.QueryExecModeSimpleProtocol && r.mode != pgx.QueryExecModeExec {
		return nil, fmt.Errorf("pgroute: exec mode %v is not safe for tenant binding (DESIGN.md §2 rule 2)", r.mode)
	}
	resolver := opts.Resolver
	if resolver == nil {
		ll, err := NewLandlordPool(ctx, cfg, nil)
		if err != nil {
			return nil, err
		}
		r.landlord = ll
		resolver = CatalogResolver{Pool: ll}
	}
	r.cache = newPlacementCache(resolver, cfg.Tenant.CacheTTL)
	r.pools = newPools(cfg, r.mode, &tracer{log: log, slow: cfg.Tenant.SlowStatement}, opts.ConfigurePool)
	for name, cl := range cfg.Clusters {
		db, err := clusterDatabase(cl)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		if _, err := r.pools.get(ctx, name, db); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// Close closes every pool the router opened.
func (r *Router) Close() {
	r.pools.close()
	if r.landlord != nil {
		r.landlord.Close()
	}
}

// Invalidate forgets the cached placement of one tenant: the next request
// re-reads the catalog. Moves and status changes call it.
func (r *Router) Invalidate(slug tenancy.Slug) { r.cache.invalidate(slug) }

// InvalidateAll forgets every cached placement.
func (r *Router) InvalidateAll() { r.cache.invalidateAll() }

// ClosePool closes the pool of a dedicated database (after a tenant left it).
func (r *Router) ClosePool(cluster, database string) { r.pools.drop(cluster, database) }

// PoolStats describes the open pools (for /metrics).
func (r *Router) PoolStats() []PoolStat { return r.pools.stats() }

// Placement resolves a tenant (cached) and refuses tenants that may not be
// served: unknown or deleted (ErrTenantNotFound), provisioning
// (ErrTenantNotReady), suspended (ErrTenantSuspended). A moving tenant is
// served: reads go on and writes wait on the database's locks.
func (r *Router) Placement(ctx context.Context, slug tenancy.Slug) (Placement, error) {
	if slug.IsZero() {
		return Placement{}, fmt.Errorf("%w: empty slug", ErrTenantNotFound)
	}
	p, err := r.cache.get(ctx, slug)
	if err != nil {
		return Placement{}, err
	}
	switch p.Status {
	case "active", "moving":
		return p, nil
	case "suspended":
		return p, fmt.Errorf("%w: %s", ErrTenantSuspended, slug)
	case "provisioning":
		return p, fmt.Errorf("%w: %s", ErrTenantNotReady, slug)
	default:
		return p, fmt.Errorf("%w: %s", ErrTenantNotFound, slug)
	}
}

// The binding of a tenant lasts for the rest of its transaction only: in
// the simple protocol SET LOCAL statements (see bindStatements), in the
// extended protocol set_config(…, true) with bound parameters. Either way
// each setting dies with the transaction, so nothing leaks to the next
// client of the server connection.
const (
	bindSQL       = `SELECT set_config('search_path', $1, true), set_config('statement_timeout', $2, true), set_config('role', $3, true)`
	bindSQLNoRole = `SELECT set_config('search_path', $1, true), set_config('statement_timeout', $2, true)`
	// While a tenant moves, its writes wait on the mover's table locks: bound
	// that wait so the client gets a quick retryable error instead.
	bindMovingSQL = `SELECT set_config('lock_timeout', $1, true)`
)

// queueBind queues the binding statement for p at the head of b.
func (r *Router) queueBind(b *pgx.Batch, p Placement) {
	timeout := p.StatementTimeout
	if timeout <= 0 {
		timeout = r.cfg.Tenant.StatementTimeout
	}
	if r.mode == pgx.QueryExecModeSimpleProtocol {
		// The simple protocol sends values as literals anyway; the binding of
		// a placement never changes, so its text is built (and quoted) once.
		// SET LOCAL is a utility statement: measured cheaper for the server
		// than one SELECT of three set_config() calls (no plan, no row).
		for _, stmt := range r.bindStatements(p, timeout) {
			b.Queue(stmt)
		}
		if p.Status == "moving" {
			b.Queue("SET LOCAL lock_timeout = " + strconv.FormatInt(r.cfg.HTTP.WriteWait.Milliseconds(), 10))
		}
		return
	}
	path := pgx.Identifier{p.Schema}.Sanitize()
	ms := strconv.FormatInt(timeout.Milliseconds(), 10)
	if r.cfg.Tenant.Roles {
		b.Queue(bindSQL, path, ms, p.Slug.RoleName())
	} else {
		b.Queue(bindSQLNoRole, path, ms)
	}
	if p.Status == "moving" {
		b.Queue(bindMovingSQL, strconv.FormatInt(r.cfg.HTTP.WriteWait.Milliseconds(), 10))
	}
}

// bindKey identifies a binding: the role, when tenant.roles is on, is the
// slug's RoleName (built only when the statements are).
type bindKey struct {
	schema  string
	slug    tenancy.Slug
	timeout time.Duration
}

// bindStatements returns the SET LOCAL statements that bind p, cached. Every
// name is quoted as an identifier; the timeout is an integer.
func (r *Router) bindStatements(p Placement, timeout time.Duration) []string {
	k := bindKey{schema: p.Schema, timeout: timeout}
	if r.cfg.Tenant.Roles {
		k.slug = p.Slug
	}
	if s, ok := r.binds.Load(k); ok {
		return s.([]string)
	}
	stmts := []string{
		"SET LOCAL search_path = " + pgx.Identifier{k.schema}.Sanitize(),
		"SET LOCAL statement_timeout = " + strconv.FormatInt(timeout.Milliseconds(), 10),
	}
	if !k.slug.IsZero() {
		stmts = append(stmts, "SET LOCAL ROLE "+pgx.Identifier{k.slug.RoleName()}.Sanitize())
	}
	if r.bindCount.Add(1) < maxCachedPlacements {
		r.binds.Store(k, stmts)
	}
	return stmts
}

type ctxKey struct{}

// TenantFromContext returns the tenant whose work is running, for logs.
func TenantFromContext(ctx context.Context) (tenancy.Slug, bool) {
	s, ok := ctx.Value(ctxKey{}).(tenancy.Slug)
	return s, ok
}

func (r *Router) pool(ctx context.Context, p Placement) (*pgxpool.Pool, error) {
	pool, err := r.pools.get(ctx, p.Cluster, p.Database)
	if err != nil {
		return nil, err
	}
	return pool, nil
}

// Do runs single-shot work for a tenant: fn queues statements on b, and the
// router sends the binding and those statements as one pipeline — one
// network round trip, one implicit transaction. Either every statement
// succeeds or none takes effect. Results reach the callbacks attached to the
// queued statements (QueryRow, Query, Exec) before Do returns.
//
// If the tenant's schema is gone because the tenant moved, Do re-reads the
// placement and runs fn once more on the new one: fn must only queue
// statements (and reset what its callbacks fill), so that it can run twice.
func (r *Router) Do(ctx context.Context, slug tenancy.Slug, fn func(b *Batch) error) error {
	ctx = context.WithValue(ctx, ctxKey{}, slug)
	p, err := r.Placement(ctx, slug)
	if err != nil {
		return err
	}
	err = r.do(ctx, p, fn)
	if p2, moved := r.movedAway(ctx, p, err); moved {
		err = r.do(ctx, p2, fn)
	}
	return wrapTenant(slug, err)
}

func (r *Router) do(ctx context.Context, p Placement, fn func(b *Batch) error) error {
	pool, err := r.pool(ctx, p)
	if err != nil {
		return err
	}
	b := &Batch{p: p}
	b.pb.QueuedQueries = b.qs[:0]
	r.queueBind(&b.pb, p)
	if err := fn(b); err != nil {
		return err
	}
	if b.err != nil {
		return b.err
	}
	if b.n == 0 {
		return nil
	}
	err = pool.SendBatch(ctx, &b.pb).Close()
	if err != nil && pgconn.SafeToRetry(err) && ctx.Err() == nil {
		// The connection was dead before anything was sent: once more on a fresh one.
		err = pool.SendBatch(ctx, &b.pb).Close()
	}
	return Classify(err)
}

// movedAway reports whether err means that p's schema is gone and the
// catalog now places the tenant elsewhere; it returns the new placement.
func (r *Router) movedAway(ctx context.Context, p Placement, err error) (Placement, bool) {
	if !errors.Is(err, ErrTenantNotProvisioned) || ctx.Err() != nil {
		return p, false
	}
	r.Invalidate(p.Slug)
	p2, err := r.Placement(ctx, p.Slug)
	if err != nil || p2.Version == p.Version && p2.Cluster == p.Cluster && p2.Database == p.Database && p2.Schema == p.Schema {
		return p, false
	}
	r.log.Info().Str("tenant", p.Slug.String()).Str("cluster", p2.Cluster).Str("database", p2.Database).
		Msg("tenant moved: retrying on its new placement")
	return p2, true
}

// TxOptions configure an explicit transaction.
type TxOptions struct {
	IsoLevel pgx.TxIsoLevel // default: read committed
	ReadOnly bool
	// MaxRetries reruns fn, in a new transaction, up to this many times when
	// the transaction failed with ErrRetryable (serialization failure or
	// deadlock). fn must then be safe to run again.
	MaxRetries int
}

// Tx runs work that needs Go logic between statements in one explicit
// transaction. BEGIN and the binding travel with the first statements that
// fn flushes, and statements still queued when fn returns travel with the
// COMMIT: a read-decide-write unit of work costs two round trips. If fn
// returns an error, the transaction is rolled back. Like Do, Tx runs fn once
// more on the new placement when the tenant moved away meanwhile.
func (r *Router) Tx(ctx context.Context, slug tenancy.Slug, opts TxOptions, fn func(ctx context.Context, tx *Tx) error) error {
	ctx = context.WithValue(ctx, ctxKey{}, slug)
	p, err := r.Placement(ctx, slug)
	if err != nil {
		return err
	}
	movedOnce := false
	for attempt := 0; ; attempt++ {
		err = r.runTx(ctx, p, opts, fn)
		if p2, moved := r.movedAway(ctx, p, err); moved && !movedOnce {
			p, movedOnce = p2, true
			err = r.runTx(ctx, p, opts, fn)
		}
		if err == nil || attempt >= opts.MaxRetries || !errors.Is(err, ErrRetryable) || ctx.Err() != nil {
			return wrapTenant(slug, err)
		}
		r.log.Debug().Str("tenant", slug.String()).Int("attempt", attempt+1).Err(err).Msg("retrying transaction")
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
}

func (r *Router) runTx(ctx context.Context, p Placement, opts TxOptions, fn func(context.Context, *Tx) error) error {
	pool, err := r.pool(ctx, p)
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return Classify(err)
	}
	// Release destroys the connection if it is still in a transaction.
	defer conn.Release()
	tx := &Tx{r: r, conn: conn, p: p, begin: beginSQL(opts)}
	if err := fn(ctx, tx); err != nil {
		tx.rollback(ctx)
		return err
	}
	if err := tx.commit(ctx); err != nil {
		tx.rollback(ctx)
		return err
	}
	return nil
}

func beginSQL(o TxOptions) string {
	s := "BEGIN"
	if o.IsoLevel != "" {
		s += " ISOLATION LEVEL " + string(o.IsoLevel)
	}
	if o.ReadOnly {
		s += " READ ONLY"
	}
	return s
}

// wrapTenant adds the tenant to an error's message.
func wrapTenant(slug tenancy.Slug, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("tenant %s: %w", slug, err)
}
