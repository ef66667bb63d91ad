// Package catalog owns the landlord catalog of tenants: every statement on
// landlord.tenants and landlord.retired_copies is in this package (make lint
// checks it). Reads, lifecycle changes and the router's placement lookups
// run on the landlord pool (the application role, through PgBouncer);
// statements that must commit together with a tenant's schema change
// (provisioning, schema records, moves, purge) are package functions on a
// DBTX, usually a transaction on the direct admin connection.
//
// Every status or placement change is announced on tenant.NotifyChannel in
// the same statement or transaction, so that every server drops its cached
// placement when, and only when, the change commits.
package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/requestid"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// DBTX is what *sql.DB and *sql.Tx have in common (direct admin connections).
type DBTX interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Options configure a Catalog.
type Options struct {
	// Pool is the landlord pool (application role, through PgBouncer). Required.
	Pool *pgxpool.Pool
	// Admin is the direct admin connection to the landlord database (never
	// PgBouncer), for the package functions' transactions. Required.
	Admin *sql.DB
	// Locks is a pool of direct admin connections to the landlord database
	// that holds nothing but tenant operation locks (Lock). Kept apart from
	// Admin so that operations holding a lock never wait for a connection
	// that other lock holders took (a pool shared by both deadlocks once
	// every connection holds a lock). Nil: Admin (tests that take few locks).
	Locks *sql.DB
	// LockWait bounds the wait for a tenant operation lock (for a lock
	// connection, then for the lock itself); past it, tenant.ErrBusy.
	// Default 30s.
	LockWait time.Duration
	// Log receives lifecycle events.
	Log zerolog.Logger
	// OnChange is called after a tenant's status or placement changed through
	// this process (e.g. the router's Invalidate). May be nil.
	OnChange func(tenant.Slug)
	// Audit records failed lifecycle actions (successful ones are recorded
	// in their own transaction). May be nil.
	Audit *audit.Log
}

// Catalog reads and changes the tenant catalog. Safe for concurrent use.
type Catalog struct {
	pool     *pgxpool.Pool
	admin    *sql.DB
	locks    *sql.DB
	lockWait time.Duration
	log      zerolog.Logger
	onChange func(tenant.Slug)
	audit    *audit.Log
}

// New returns a Catalog.
func New(o Options) (*Catalog, error) {
	if o.Pool == nil || o.Admin == nil {
		return nil, errors.New("catalog: Pool and Admin are required")
	}
	if o.Locks == nil {
		o.Locks = o.Admin
	}
	if o.LockWait <= 0 {
		o.LockWait = 30 * time.Second
	}
	return &Catalog{pool: o.Pool, admin: o.Admin, locks: o.Locks, lockWait: o.LockWait,
		log: o.Log.Hook(requestid.Hook), onChange: o.OnChange, audit: o.Audit}, nil
}

// Admin is the direct admin connection to the landlord database, for the
// package functions that take a DBTX.
func (c *Catalog) Admin() *sql.DB { return c.admin }

// Audit is the audit trail the catalog records failures in (nil: none),
// for the services that act on tenants with the catalog's functions.
func (c *Catalog) Audit() *audit.Log { return c.audit }

// Notify tells the OnChange callback that a tenant's status or placement
// changed (callers that changed it with a package function call it after
// their transaction committed).
func (c *Catalog) Notify(slug tenant.Slug) {
	if c.onChange != nil {
		c.onChange(slug)
	}
}

// columns are the catalog columns every read returns, in scanner order.
// Queries alias landlord.tenants as t.
const columns = `t.id, t.slug, t.name, t.status, t.placement, t.cluster, t.database_name, t.schema_name,
	coalesce(t.schema_hash, ''), coalesce(t.schema_fingerprint, ''), coalesce(t.schema_stamp, ''), coalesce(t.statement_timeout_ms, 0),
	coalesce(t.max_concurrent_requests, 0), t.version, t.created_at, t.updated_at, t.deleted_at`

// notifyColumn announces the change of the row aliased t on
// tenant.NotifyChannel, as a text column (pg_notify returns void).
const notifyColumn = `pg_notify('` + tenant.NotifyChannel + `', t.slug)::text`

// scanner collects one row of columns and turns it into a tenant.Tenant.
type scanner struct {
	t                       tenant.Tenant
	slug, status, placement string
	timeoutMS, maxRequests  int64
}

func (s *scanner) dest() []any {
	t := &s.t
	return []any{&t.ID, &s.slug, &t.Name, &s.status, &s.placement, &t.Cluster, &t.Database, &t.Schema,
		&t.SchemaHash, &t.SchemaFingerprint, &t.SchemaStamp, &s.timeoutMS, &s.maxRequests, &t.Version, &t.CreatedAt, &t.UpdatedAt, &t.DeletedAt}
}

func (s *scanner) tenant() (tenant.Tenant, error) {
	var err error
	if s.t.Slug, err = tenant.ParseSlug(s.slug); err != nil {
		return tenant.Tenant{}, fmt.Errorf("catalog row %s: %w", s.t.ID, err)
	}
	s.t.Status = tenant.Status(s.status)
	s.t.Kind = tenant.PlacementKind(s.placement)
	s.t.StatementTimeout = time.Duration(s.timeoutMS) * time.Millisecond
	s.t.MaxConcurrentRequests = int(s.maxRequests)
	return s.t, nil
}

// scanRow scans columns and then any extra columns into extra.
func scanRow(row interface{ Scan(...any) error }, extra ...any) (tenant.Tenant, error) {
	var s scanner
	if err := row.Scan(append(s.dest(), extra...)...); err != nil {
		return tenant.Tenant{}, err
	}
	return s.tenant()
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) || errors.Is(err, sql.ErrNoRows) }

// Get returns a tenant, in any status.
func (c *Catalog) Get(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error) {
	if slug.IsZero() {
		return tenant.Tenant{}, fmt.Errorf("%w: empty slug", tenant.ErrInvalidSlug)
	}
	t, err := scanRow(c.pool.QueryRow(ctx, `SELECT `+columns+` FROM landlord.tenants t WHERE t.slug = $1`, slug.String()))
	if isNoRows(err) {
		return tenant.Tenant{}, fmt.Errorf("tenant %s: %w", slug, tenant.ErrNotFound)
	}
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("get tenant %s: %w", slug, err)
	}
	return t, nil
}

// GetByID returns a tenant by id, in any status.
func (c *Catalog) GetByID(ctx context.Context, id uuid.UUID) (tenant.Tenant, error) {
	t, err := scanRow(c.pool.QueryRow(ctx, `SELECT `+columns+` FROM landlord.tenants t WHERE t.id = $1`, id))
	if isNoRows(err) {
		return tenant.Tenant{}, fmt.Errorf("tenant %s: %w", id, tenant.ErrNotFound)
	}
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("get tenant %s: %w", id, err)
	}
	return t, nil
}

// Resolve is Get for the request router (pgroute.Resolver), with the
// tenant's installed modules (landlord.tenant_modules, written by
// internal/modules) read by the same query: the router caches them with the
// tenant, so a module's routes are refused or served without another round
// trip, and the notice that drops a changed tenant (tenant.NotifyChannel)
// also announces an install. Any status: the router decides what it serves.
func (c *Catalog) Resolve(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error) {
	if slug.IsZero() {
		return tenant.Tenant{}, fmt.Errorf("%w: empty slug", tenant.ErrInvalidSlug)
	}
	var mods []string
	t, err := scanRow(c.pool.QueryRow(ctx, `SELECT `+columns+`,
		ARRAY(SELECT tm.module_name FROM landlord.tenant_modules tm
		       WHERE tm.tenant_id = t.id AND tm.status = 'installed' ORDER BY tm.module_name)
		FROM landlord.tenants t WHERE t.slug = $1`, slug.String()), &mods)
	if isNoRows(err) {
		return tenant.Tenant{}, fmt.Errorf("tenant %s: %w", slug, tenant.ErrNotFound)
	}
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("resolve tenant %s: %w", slug, err)
	}
	t.Modules = mods
	return t, nil
}

// Slugs returns the slugs of the tenants with the given ids (those that exist).
func (c *Catalog) Slugs(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]tenant.Slug, error) {
	out := make(map[uuid.UUID]tenant.Slug, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := c.pool.Query(ctx, `SELECT id, slug FROM landlord.tenants WHERE id = ANY($1::uuid[])`, uuidStrings(ids))
	if err != nil {
		return nil, fmt.Errorf("tenant slugs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var s string
		if err := rows.Scan(&id, &s); err != nil {
			return nil, fmt.Errorf("tenant slugs: %w", err)
		}
		slug, err := tenant.ParseSlug(s)
		if err != nil {
			return nil, fmt.Errorf("catalog row %s: %w", id, err)
		}
		out[id] = slug
	}
	return out, rows.Err()
}

// ListOptions page through the catalog in slug order.
type ListOptions struct {
	// After is the last slug of the previous page (zero: from the start).
	After tenant.Slug
	// Limit is the page size, 1 to MaxPage (0: DefaultPage).
	Limit int
	// Status, when set, lists tenants in that status only.
	Status tenant.Status
	// Prefix, when set, lists tenants whose slug starts with it.
	Prefix string
}

// Page sizes for List.
const (
	DefaultPage = 50
	MaxPage     = 500
)

// Page is one page of tenants; Next is the After of the next page, zero at the end.
type Page struct {
	Tenants []tenant.Tenant
	Next    tenant.Slug
}

// List returns one page of tenants ordered by slug (keyset pagination).
func (c *Catalog) List(ctx context.Context, o ListOptions) (Page, error) {
	if o.Limit == 0 {
		o.Limit = DefaultPage
	}
	if o.Limit < 1 || o.Limit > MaxPage {
		return Page{}, fmt.Errorf("%w: limit must be between 1 and %d", tenant.ErrInvalid, MaxPage)
	}
	if o.Status != "" {
		if _, err := tenant.ParseStatus(string(o.Status)); err != nil {
			return Page{}, err
		}
	}
	rows, err := c.pool.Query(ctx, `SELECT `+columns+` FROM landlord.tenants t
		WHERE t.slug > $1 AND ($2 = '' OR t.status = $2) AND starts_with(t.slug, $4)
		ORDER BY t.slug LIMIT $3`,
		o.After.String(), string(o.Status), o.Limit+1, o.Prefix)
	if err != nil {
		return Page{}, fmt.Errorf("list tenants: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant.Tenant, error) { return scanRow(r) })
	if err != nil {
		return Page{}, fmt.Errorf("list tenants: %w", err)
	}
	p := Page{Tenants: ts}
	if len(ts) > o.Limit {
		p.Tenants = ts[:o.Limit]
		p.Next = p.Tenants[o.Limit-1].Slug
	}
	return p, nil
}

// Selection picks live (not deleted) tenants for the fleet runner: all, the
// listed slugs, or those whose slug starts with a prefix.
type Selection struct {
	Slugs  []string
	Prefix string
}

// Select returns the selected live tenants in slug order, on db (the direct
// admin connection: the fleet runner's transactions are there too).
func Select(ctx context.Context, db DBTX, sel Selection) ([]tenant.Tenant, error) {
	slugs := sel.Slugs
	if slugs == nil {
		slugs = []string{}
	}
	rows, err := db.QueryContext(ctx, `SELECT `+columns+` FROM landlord.tenants t
		WHERE t.deleted_at IS NULL AND t.status <> 'deleted'
		  AND ($1::text = '' OR left(t.slug, length($1::text)) = $1::text)
		  AND (cardinality($2::text[]) = 0 OR t.slug = ANY($2::text[]))
		ORDER BY t.slug`, sel.Prefix, slugs)
	if err != nil {
		return nil, fmt.Errorf("select tenants: %w", err)
	}
	defer rows.Close()
	var out []tenant.Tenant
	for rows.Next() {
		t, err := scanRow(rows)
		if err != nil {
			return nil, fmt.Errorf("select tenants: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// uuidStrings is ids as text, for an array parameter ($1::uuid[]): pgx's
// exec mode cannot encode an array of uuid.UUID without knowing its type.
func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
