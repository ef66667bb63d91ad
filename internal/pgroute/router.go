package pgroute

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Resolver finds a tenant in the catalog (any status; the router decides
// what it serves). The catalog package implements it.
type Resolver interface {
	Resolve(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error)
}

// Options configure a Router. Resolver and Clusters are required; zero
// values elsewhere take the defaults noted.
type Options struct {
	// Resolver looks tenants up on a cache miss.
	Resolver Resolver
	// Clusters maps each cluster name to the URL of its shared pool (the
	// application role through PgBouncer, on the cluster's shared database).
	// Dedicated tenant databases use the same URL with their database name.
	Clusters map[string]string
	// Lanes, for a cluster, split its shared pool into one pool per URL
	// (lane), each with its share of Pool.MaxConns: a tenant of the shared
	// database always runs on lane LaneOf(slug, len(lanes)). Through
	// PgBouncer each lane is a database alias with its own server pool, so
	// a server connection only ever serves — and caches the catalog entries
	// of — its lane's tenants (each PostgreSQL backend keeps those of every
	// table it touched, some 90 KB a tenant). One URL or none: no lanes.
	Lanes map[string][]string
	// Pool sizes and recycles the shared pools; Dedicated the pools of
	// dedicated tenant databases.
	Pool      PoolConfig
	Dedicated DedicatedConfig
	// StatementTimeout is the default per-statement limit of tenant work
	// (a tenant's own StatementTimeout overrides it). Default 5s.
	StatementTimeout time.Duration
	// Roles makes every transaction assume the tenant's own role (defense in depth).
	Roles bool
	// MovingLockTimeout bounds how long a write of a moving tenant waits for
	// the mover's locks before it fails with ErrRetryable. Default 1s.
	MovingLockTimeout time.Duration
	// CacheTTL bounds how long a resolved tenant is trusted while no change
	// listener (Listen) is connected; ListenCacheTTL how long one resolved
	// while it was connected is trusted as long as it stays connected: every
	// change the product makes to a tenant is announced and drops its entry
	// at once, so this TTL is only a backstop for changes made around the
	// product (SQL by hand). CacheSize bounds the entries (LRU). Defaults
	// 30s, CacheTTL and 100,000.
	CacheTTL       time.Duration
	ListenCacheTTL time.Duration
	// ListenCheck is how often a quiet change listener pings its connection
	// (and how long the ping may take) to notice one that hangs. Default 30s.
	ListenCheck time.Duration
	CacheSize   int
	// SlowStatement logs statements slower than this (0: off).
	SlowStatement time.Duration
	// ExecMode is the pgx mode of the tenant pools. Default (0):
	// QueryExecModeSimpleProtocol, the fastest form measured: binding and
	// statements travel as one multi-statement Query message, which
	// PostgreSQL runs as one implicit transaction. QueryExecModeExec
	// (extended protocol, one Sync) is the alternative; both are one round
	// trip. The caching modes are refused: a statement prepared before the
	// binding would not find the tenant's tables.
	ExecMode pgx.QueryExecMode
	// ConfigurePool, when set, may adjust each tenant pool's config (tests
	// use it to count network writes).
	ConfigurePool func(*pgxpool.Config)
	// Log receives slow statements and the listener's events.
	Log zerolog.Logger
	// OnNotify, when set, hears every tenant change that Listen hears, after
	// the router dropped the tenant (a zero slug: any tenant may have
	// changed), so that other caches of tenant state follow (the token cache).
	OnNotify func(tenant.Slug)
}

func (o *Options) setDefaults() error {
	if o.Resolver == nil || len(o.Clusters) == 0 {
		return errors.New("pgroute: Resolver and Clusters are required")
	}
	if o.ExecMode == 0 {
		o.ExecMode = pgx.QueryExecModeSimpleProtocol
	}
	if o.ExecMode != pgx.QueryExecModeSimpleProtocol && o.ExecMode != pgx.QueryExecModeExec {
		return fmt.Errorf("pgroute: exec mode %v is not safe for tenant binding (a statement prepared "+
			"before the binding does not find the tenant's tables; see docs/ARCHITECTURE.md)", o.ExecMode)
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 5 * time.Second
	}
	if o.MovingLockTimeout <= 0 {
		o.MovingLockTimeout = time.Second
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 30 * time.Second
	}
	if o.ListenCacheTTL <= 0 {
		o.ListenCacheTTL = o.CacheTTL
	}
	if o.ListenCheck <= 0 {
		o.ListenCheck = 30 * time.Second
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 100_000
	}
	if o.Dedicated.MaxPools <= 0 {
		o.Dedicated.MaxPools = 32
	}
	if o.Dedicated.MaxConns <= 0 {
		o.Dedicated.MaxConns = 4
	}
	if o.Dedicated.IdleClose <= 0 {
		o.Dedicated.IdleClose = 5 * time.Minute
	}
	return nil
}

// Router runs tenant work on the shared pools. Tenant code never sees a
// pool: it gets a *Batch (Do) or a *Tx (Tx), already bound to its tenant.
type Router struct {
	o     Options
	cache *cache
	pools *pools
}

// New opens the shared pool of every configured cluster (connecting lazily)
// and returns a router. Close it when done.
func New(ctx context.Context, o Options) (*Router, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	r := &Router{o: o}
	r.cache = newCache(o.Resolver, o.CacheSize, o.CacheTTL, o.ListenCacheTTL, r.bindStatements)
	r.pools = newPools(o, &tracer{log: o.Log, slow: o.SlowStatement})
	for name := range o.Clusters {
		if err := r.pools.shared(ctx, name); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// Close closes every pool the router opened.
func (r *Router) Close() { r.pools.close() }

// Invalidate forgets the cached tenant: the next request re-reads the
// catalog. Moves and status changes call it.
func (r *Router) Invalidate(slug tenant.Slug) { r.cache.invalidate(slug) }

// InvalidateAll forgets every cached tenant.
func (r *Router) InvalidateAll() { r.cache.invalidateAll() }

// ClosePool closes the pool of a dedicated database (after a tenant left it).
func (r *Router) ClosePool(cluster, database string) { r.pools.drop(cluster, database) }

// CacheStats counts the tenant lookups so far (for /metrics and tests).
func (r *Router) CacheStats() CacheStats {
	return CacheStats{Lookups: r.cache.lookups.Load(), Misses: r.cache.misses.Load()}
}

// PoolStats describes the open pools (for /metrics).
func (r *Router) PoolStats() []PoolStat { return r.pools.stats() }

type ctxKey struct{}

// Resolve returns the tenant as the router serves it (from the cache, the
// catalog on a miss) and a context that carries it: Do and Tx on that
// context bind it without looking it up again. It refuses tenants that may
// not be served: unknown or deleted (tenant.ErrNotFound), provisioning
// (tenant.ErrNotReady), suspended (tenant.ErrSuspended). A moving tenant is
// served: reads go on and writes wait on the database's locks.
func (r *Router) Resolve(ctx context.Context, slug tenant.Slug) (context.Context, tenant.Tenant, error) {
	e, err := r.entry(ctx, slug)
	if err != nil {
		return ctx, tenant.Tenant{}, err
	}
	return context.WithValue(ctx, ctxKey{}, e), e.t, nil
}

// entry returns the servable cache entry of slug: the one ctx carries, or
// one from the cache.
func (r *Router) entry(ctx context.Context, slug tenant.Slug) (*entry, error) {
	if e, ok := ctx.Value(ctxKey{}).(*entry); ok && e.t.Slug == slug {
		return e, nil
	}
	return r.lookup(ctx, slug)
}

// lookup returns the servable cache entry of slug from the cache.
func (r *Router) lookup(ctx context.Context, slug tenant.Slug) (*entry, error) {
	if slug.IsZero() {
		return nil, fmt.Errorf("%w: empty slug", tenant.ErrNotFound)
	}
	e, err := r.cache.get(ctx, slug)
	if err != nil {
		return nil, err
	}
	if err := e.t.Status.Servable(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, slug)
	}
	return e, nil
}

// TenantFromContext returns the tenant whose work runs in ctx (set by
// Resolve, Do and Tx), for logs and handlers.
func TenantFromContext(ctx context.Context) (tenant.Tenant, bool) {
	e, ok := ctx.Value(ctxKey{}).(*entry)
	if !ok {
		return tenant.Tenant{}, false
	}
	return e.t, true
}

// Errors of Do and Tx are those of fn as it returned them, or the router's
// own (resolution, pools, the database: classified, see Classify); logs
// find the tenant in the context (TenantFromContext).

// Do runs single-shot work for a tenant: fn queues statements on b, and the
// router sends the binding and those statements as one pipeline — one
// network round trip, one implicit transaction. Either every statement
// succeeds or none takes effect. Results reach the callbacks attached to the
// queued statements (QueryRow, Query, Exec) before Do returns.
//
// If the tenant's schema is gone because the tenant moved, Do re-reads the
// placement and runs fn once more on the new one: fn must only queue
// statements (and reset what its callbacks fill), so that it can run twice.
func (r *Router) Do(ctx context.Context, slug tenant.Slug, fn func(b *Batch) error) error {
	e, err := r.entry(ctx, slug)
	if err != nil {
		return err
	}
	ctx = context.WithValue(ctx, ctxKey{}, e)
	err = r.do(ctx, e, fn)
	if e2, moved := r.movedAway(ctx, e, err); moved {
		err = r.do(context.WithValue(ctx, ctxKey{}, e2), e2, fn)
	}
	return err
}

func (r *Router) do(ctx context.Context, e *entry, fn func(b *Batch) error) error {
	pool, err := r.pools.forTenant(ctx, e.t)
	if err != nil {
		return err
	}
	b := &Batch{t: e.t}
	b.pb.QueuedQueries = b.qs[:0]
	r.queueBind(&b.pb, e)
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

// movedAway reports whether err means that e's placement is gone — its
// schema or table missing, its database dropped or renamed, or the
// connection ended by the server (a move retires a dedicated database by
// ending its connections) — and the catalog now places the tenant
// elsewhere; it returns the new entry.
func (r *Router) movedAway(ctx context.Context, e *entry, err error) (*entry, bool) {
	if !placementGone(err) || ctx.Err() != nil {
		return e, false
	}
	r.Invalidate(e.t.Slug)
	e2, err := r.lookup(ctx, e.t.Slug)
	if err != nil || e2.t.Version == e.t.Version && e2.t.Placement == e.t.Placement {
		return e, false
	}
	r.o.Log.Info().Str("tenant", e.t.Slug.String()).Str("cluster", e2.t.Cluster).Str("database", e2.t.Database).
		Msg("tenant moved: retrying on its new placement")
	return e2, true
}

// placementGone reports whether err may mean that the placement the work
// ran on no longer exists.
func placementGone(err error) bool {
	if errors.Is(err, ErrTenantNotProvisioned) {
		return true
	}
	var pe *Error
	if errors.As(err, &pe) {
		switch pe.SQLState {
		case "57P01", "3D000": // admin_shutdown (terminated), invalid_catalog_name (no such database)
			return true
		}
	}
	return false
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
func (r *Router) Tx(ctx context.Context, slug tenant.Slug, opts TxOptions, fn func(ctx context.Context, tx *Tx) error) error {
	e, err := r.entry(ctx, slug)
	if err != nil {
		return err
	}
	movedOnce := false
	for attempt := 0; ; attempt++ {
		err = r.runTx(context.WithValue(ctx, ctxKey{}, e), e, opts, fn)
		if e2, moved := r.movedAway(ctx, e, err); moved && !movedOnce {
			e, movedOnce = e2, true
			err = r.runTx(context.WithValue(ctx, ctxKey{}, e), e, opts, fn)
		}
		if err == nil || attempt >= opts.MaxRetries || !errors.Is(err, ErrRetryable) || ctx.Err() != nil {
			return err
		}
		r.o.Log.Debug().Str("tenant", slug.String()).Int("attempt", attempt+1).Err(err).Msg("retrying transaction")
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
}

func (r *Router) runTx(ctx context.Context, e *entry, opts TxOptions, fn func(context.Context, *Tx) error) error {
	pool, err := r.pools.forTenant(ctx, e.t)
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return Classify(err)
	}
	// Release destroys the connection if it is still in a transaction.
	defer conn.Release()
	tx := &Tx{r: r, conn: conn, e: e, begin: beginSQL(opts)}
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

// entry is one resolved tenant with its binding statements (built once).
type entry struct {
	t        tenant.Tenant
	bind     []string  // SET LOCAL statements (simple protocol)
	resolved time.Time // when the catalog read began
	epoch    int64     // the listener's epoch then (0: not listening)
}

// cache is the router's one cache: tenants by slug, bounded (LRU) and
// trusted for ttl — or, for an entry resolved while the change listener
// was connected and as long as that connection lasts, listenTTL;
// Invalidate drops one entry at once (a move or a status change, heard
// over LISTEN/NOTIFY).
type cache struct {
	source         Resolver
	ttl, listenTTL time.Duration
	lru            *lru.Cache[tenant.Slug, *entry]
	bind           func(tenant.Tenant) []string
	now            func() time.Time

	// epoch numbers the listener's connections: 0 while none is
	// listening, a new number each time LISTEN is in place (so that an
	// entry resolved before a lost connection is not trusted after it).
	epoch, epochs atomic.Int64
	// drops counts invalidations: a resolve that one overlapped may have
	// read the catalog before the change it announced, so its result is
	// used once and not cached.
	drops atomic.Int64

	lookups, misses atomic.Int64
}

// CacheStats counts the router's tenant lookups since it opened: every
// lookup, and those that missed the cache and asked the Resolver.
type CacheStats struct {
	Lookups, Misses int64
}

func newCache(source Resolver, size int, ttl, listenTTL time.Duration, bind func(tenant.Tenant) []string) *cache {
	l, err := lru.New[tenant.Slug, *entry](size)
	if err != nil {
		panic(err) // size is positive (Options.setDefaults)
	}
	return &cache{source: source, ttl: ttl, listenTTL: listenTTL, lru: l, bind: bind, now: time.Now}
}

// get returns the entry of slug, resolving it on a miss or once it is no
// longer trusted.
func (c *cache) get(ctx context.Context, slug tenant.Slug) (*entry, error) {
	c.lookups.Add(1)
	now := c.now()
	if e, ok := c.lru.Get(slug); ok && now.Before(e.resolved.Add(c.trust(e))) {
		return e, nil
	}
	c.misses.Add(1)
	// The epoch before the read: a change committed after it began is
	// announced on a connection that was listening already.
	epoch, drops := c.epoch.Load(), c.drops.Load()
	t, err := c.source.Resolve(ctx, slug)
	if err != nil {
		return nil, Classify(err)
	}
	e := &entry{t: t, bind: c.bind(t), resolved: now, epoch: epoch}
	c.lru.Add(slug, e)
	if c.drops.Load() != drops {
		// An invalidation landed during the read (after it, if Add came
		// first): whichever it was, the entry must not outlive it.
		c.lru.Remove(slug)
	}
	return e, nil
}

// trust is how long e is trusted from when it was resolved.
func (c *cache) trust(e *entry) time.Duration {
	if e.epoch != 0 && e.epoch == c.epoch.Load() {
		return c.listenTTL
	}
	return c.ttl
}

// listening starts a listener epoch (LISTEN is in place); unheard ends it.
func (c *cache) listening() { c.epoch.Store(c.epochs.Add(1)) }
func (c *cache) unheard()   { c.epoch.Store(0) }

func (c *cache) invalidate(slug tenant.Slug) {
	c.drops.Add(1)
	c.lru.Remove(slug)
}

func (c *cache) invalidateAll() {
	c.drops.Add(1)
	c.lru.Purge()
}
