// Package modes implements the five ways the load test isolates tenants —
// schema, schema+role, database, rls, session — behind one Binder, so the
// workload runs the same SQL through each. schema and schema+role are the
// product's own router (product.go, the only file here that imports the
// product's packages); the other three bind with the code in this package.
package modes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
)

// Mode is one way to isolate tenants.
type Mode string

// The modes, in report order.
const (
	// Schema is the product's path: a schema per tenant, one shared pool,
	// search_path and statement_timeout bound per transaction (SET LOCAL).
	Schema Mode = "schema"
	// SchemaRole is the same with the tenant's own role assumed per transaction.
	SchemaRole Mode = "schema+role"
	// Database is a database per tenant and a pool per database.
	Database Mode = "database"
	// RLS is shared tables with tenant_id and a row-level-security policy on
	// app.tenant_id, set per transaction.
	RLS Mode = "rls"
	// Session is what most tenancy libraries do: SET search_path once per
	// connection checkout, outside any transaction.
	Session Mode = "session"
)

// All lists the modes.
var All = []Mode{Schema, SchemaRole, Database, RLS, Session}

// Layout is the scratch layout a mode runs on.
func (m Mode) Layout() scratch.Layout {
	switch m {
	case SchemaRole:
		return scratch.LayoutRole
	case Database:
		return scratch.LayoutDatabase
	case RLS:
		return scratch.LayoutRLS
	default:
		return scratch.LayoutSchema
	}
}

// SetName is the short name of the mode's scratch set (part of database names).
func (m Mode) SetName() string {
	if m == SchemaRole {
		return "role"
	}
	return string(m)
}

// Path is how the workload reaches PostgreSQL.
type Path string

// The paths.
const (
	Direct  Path = "direct"
	Bouncer Path = "pgbouncer" // PgBouncer in transaction pooling mode
)

// Paths lists both.
var Paths = []Path{Direct, Bouncer}

// Queue takes the statements of one unit of work (pgx.Batch and the
// router's Batch and Tx satisfy it).
type Queue interface {
	Queue(sql string, args ...any) *pgx.QueuedQuery
}

// Tx is an explicit transaction: statements are sent by Flush, and what is
// still queued when the function returns travels with the COMMIT.
type Tx interface {
	Queue
	Flush(ctx context.Context) error
}

// Binder runs units of work bound to a tenant.
type Binder interface {
	// Do runs the statements fn queues as one unit of work.
	Do(ctx context.Context, t *scratch.Tenant, fn func(Queue)) error
	// Tx runs fn in an explicit transaction.
	Tx(ctx context.Context, t *scratch.Tenant, fn func(context.Context, Tx) error) error
	// Close closes the binder's pools.
	Close()
}

// Target is where a Binder connects.
type Target struct {
	// URL is the application role's URL: PostgreSQL or PgBouncer (any database name).
	URL string
	// Bouncer tells that URL is PgBouncer in transaction mode.
	Bouncer bool
	// Conns sizes the pool (each pool, for Database).
	Conns int32
	// StatementTimeout is bound to each transaction (Database: set per database).
	StatementTimeout time.Duration
	// AppName is the connections' application_name (through PgBouncer too),
	// so the server's view of them can be told apart.
	AppName string
}

// Open returns the binder of mode m for set.
func Open(ctx context.Context, m Mode, set *scratch.Set, t Target) (Binder, error) {
	switch m {
	case Schema:
		return openRouter(ctx, set, t, false)
	case SchemaRole:
		return openRouter(ctx, set, t, true)
	case Database:
		return openPerDatabase(ctx, set, t)
	case RLS:
		return openRLS(ctx, set, t)
	case Session:
		return openSession(ctx, set, t)
	}
	return nil, fmt.Errorf("modes: unknown mode %q", m)
}

// binder is the Binder of the modes that are not the product's.
type binder struct {
	pools []*pgxpool.Pool // one shared pool, or one per tenant (by index)
	// bind queues the per-transaction binding at the head of each unit.
	bind func(b *pgx.Batch, t *scratch.Tenant)
	// session runs on each checked-out connection before the unit.
	session func(ctx context.Context, c *pgxpool.Conn, t *scratch.Tenant) error
}

func (b *binder) pool(t *scratch.Tenant) *pgxpool.Pool {
	if len(b.pools) == 1 {
		return b.pools[0]
	}
	return b.pools[t.Index]
}

func (b *binder) acquire(ctx context.Context, t *scratch.Tenant) (*pgxpool.Conn, error) {
	c, err := b.pool(t).Acquire(ctx)
	if err != nil {
		return nil, err
	}
	if b.session != nil {
		if err := b.session(ctx, c, t); err != nil {
			c.Release()
			return nil, err
		}
	}
	return c, nil
}

// Do sends the binding and the statements as one simple-protocol message:
// one round trip, one implicit transaction (session: one more for its SET).
func (b *binder) Do(ctx context.Context, t *scratch.Tenant, fn func(Queue)) error {
	c, err := b.acquire(ctx, t)
	if err != nil {
		return err
	}
	defer c.Release()
	pb := &pgx.Batch{}
	if b.bind != nil {
		b.bind(pb, t)
	}
	fn(pb)
	return c.SendBatch(ctx, pb).Close()
}

// Tx works like the router's: BEGIN and the binding travel with the first
// flush, the rest with COMMIT.
func (b *binder) Tx(ctx context.Context, t *scratch.Tenant, fn func(context.Context, Tx) error) error {
	c, err := b.acquire(ctx, t)
	if err != nil {
		return err
	}
	defer c.Release() // destroys a connection still in a transaction
	tx := &tx{c: c, head: func(pb *pgx.Batch) {
		pb.Queue("BEGIN")
		if b.bind != nil {
			b.bind(pb, t)
		}
	}}
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

func (b *binder) Close() {
	for _, p := range b.pools {
		p.Close()
	}
}

type tx struct {
	c       *pgxpool.Conn
	head    func(*pgx.Batch)
	begun   bool
	pending *pgx.Batch
	err     error
}

func (t *tx) Queue(sql string, args ...any) *pgx.QueuedQuery {
	if t.pending == nil {
		t.pending = &pgx.Batch{}
	}
	return t.pending.Queue(sql, args...)
}

func (t *tx) Flush(ctx context.Context) error {
	if t.err != nil || t.pending == nil {
		return t.err
	}
	pb := &pgx.Batch{}
	if !t.begun {
		t.head(pb)
		t.begun = true
	}
	pb.QueuedQueries = append(pb.QueuedQueries, t.pending.QueuedQueries...)
	t.pending = nil
	t.err = t.c.SendBatch(ctx, pb).Close()
	return t.err
}

var errRolledBack = errors.New("modes: transaction was rolled back by the server")

// commit sends what is queued with COMMIT (and BEGIN and the binding when
// nothing was flushed yet).
func (t *tx) commit(ctx context.Context) error {
	if t.err != nil {
		return t.err
	}
	var tag string
	t.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error { tag = ct.String(); return nil })
	if err := t.Flush(ctx); err != nil {
		return err
	}
	if tag != "COMMIT" {
		return errRolledBack
	}
	return nil
}

func (t *tx) rollback(ctx context.Context) {
	if !t.begun || t.c.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := t.c.Exec(ctx, "ROLLBACK"); err != nil {
		_ = t.c.Conn().Close(ctx)
	}
}

// poolConfig is the tenant pool setting of the product (pgroute): simple
// protocol, no statement cache, a ping only after a long idle.
func poolConfig(raw, db string, conns int32, appName string) (*pgxpool.Config, error) {
	u, err := scratch.WithDatabase(raw, db)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, fmt.Errorf("modes: pool config for %s: %w", db, err)
	}
	cfg.MaxConns = conns
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.ConnConfig.StatementCacheCapacity = 0
	cfg.ConnConfig.DescriptionCacheCapacity = 0
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool { return p.IdleDuration > time.Minute }
	return cfg, nil
}

func openPool(ctx context.Context, raw, db string, t Target) (*pgxpool.Pool, error) {
	cfg, err := poolConfig(raw, db, t.Conns, t.AppName)
	if err != nil {
		return nil, err
	}
	return pgxpool.NewWithConfig(ctx, cfg) // connects lazily
}

// openPerDatabase: a pool per tenant database, each warmed with one
// connection, as a running service's pools are. The database's role
// settings bind search_path and statement_timeout, so nothing is bound per
// transaction.
func openPerDatabase(ctx context.Context, set *scratch.Set, t Target) (Binder, error) {
	b := &binder{}
	for _, tn := range set.Tenants {
		p, err := openPool(ctx, t.URL, tn.Database, t)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.pools = append(b.pools, p)
	}
	if err := warm(ctx, b.pools); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// WarmError tells how many pools had a connection when warming failed.
type WarmError struct {
	Warmed, Pools int
	Err           error
}

func (e *WarmError) Error() string {
	return fmt.Sprintf("modes: %d of %d pools warmed: %v", e.Warmed, e.Pools, e.Err)
}

func (e *WarmError) Unwrap() error { return e.Err }

// warm opens one connection in every pool, 8 at a time, and stops at the
// first failure.
func warm(ctx context.Context, pools []*pgxpool.Pool) error {
	var (
		mu     sync.Mutex
		next   int
		warmed int
		first  error
		wg     sync.WaitGroup
	)
	for range min(8, len(pools)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := i >= len(pools) || first != nil
				mu.Unlock()
				if stop {
					return
				}
				c, err := pools[i].Acquire(ctx)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				} else if err == nil {
					warmed++
				}
				mu.Unlock()
				if err == nil {
					c.Release()
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return &WarmError{Warmed: warmed, Pools: len(pools), Err: first}
	}
	return nil
}

// openRLS: the shared schema, the statement timeout and the tenant's id bound
// per transaction; the id as a bound parameter of set_config.
func openRLS(ctx context.Context, set *scratch.Set, t Target) (Binder, error) {
	p, err := openPool(ctx, t.URL, set.Databases[0], t)
	if err != nil {
		return nil, err
	}
	path := "SET LOCAL search_path = " + pgx.Identifier{scratch.SharedSchema}.Sanitize()
	timeout := "SET LOCAL statement_timeout = " + strconv.FormatInt(t.StatementTimeout.Milliseconds(), 10)
	return &binder{pools: []*pgxpool.Pool{p}, bind: func(b *pgx.Batch, tn *scratch.Tenant) {
		b.Queue(path)
		b.Queue(timeout)
		b.Queue(`SELECT set_config('app.tenant_id', $1, true)`, tn.ID.String())
	}}, nil
}

// openSession: SET search_path on each checkout, outside any transaction,
// and nothing per transaction — the pattern of most tenancy libraries.
func openSession(ctx context.Context, set *scratch.Set, t Target) (Binder, error) {
	p, err := openPool(ctx, t.URL, set.Databases[0], t)
	if err != nil {
		return nil, err
	}
	return &binder{pools: []*pgxpool.Pool{p}, session: func(ctx context.Context, c *pgxpool.Conn, tn *scratch.Tenant) error {
		_, err := c.Exec(ctx, "SET search_path = "+pgx.Identifier{tn.Schema}.Sanitize())
		return err
	}}, nil
}
