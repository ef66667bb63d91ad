package pgroute

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/tenancy"
)

// Placement is where a tenant's data lives and how its transactions are bound.
type Placement struct {
	TenantID uuid.UUID
	Slug     tenancy.Slug
	Status   string // provisioning | active | suspended | moving | deleted
	// Kind is "schema" (a schema in the cluster's shared database) or
	// "database" (a dedicated database on the cluster).
	Kind     string
	Cluster  string
	Database string
	Schema   string
	// StatementTimeout overrides the configured default when positive.
	StatementTimeout time.Duration
	// Version changes with every placement or status change in the catalog.
	Version int64
}

// Resolver finds a tenant's placement.
type Resolver interface {
	Resolve(ctx context.Context, slug tenancy.Slug) (Placement, error)
}

// CatalogResolver reads placements from the landlord catalog.
type CatalogResolver struct {
	Pool *pgxpool.Pool // the landlord pool (application role, through PgBouncer)
}

const placementSQL = `SELECT id, status, placement, cluster, database_name, schema_name,
       coalesce(statement_timeout_ms, 0), version
  FROM landlord.tenants WHERE slug = $1`

// Resolve implements Resolver with one catalog query.
func (r CatalogResolver) Resolve(ctx context.Context, slug tenancy.Slug) (Placement, error) {
	p := Placement{Slug: slug}
	var timeoutMS int64
	err := r.Pool.QueryRow(ctx, placementSQL, slug.String()).Scan(
		&p.TenantID, &p.Status, &p.Kind, &p.Cluster, &p.Database, &p.Schema, &timeoutMS, &p.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return Placement{}, fmt.Errorf("%w: %s", ErrTenantNotFound, slug)
	}
	if err != nil {
		return Placement{}, fmt.Errorf("resolve tenant %s: %w", slug, Classify(err))
	}
	p.StatementTimeout = time.Duration(timeoutMS) * time.Millisecond
	return p, nil
}

// placementCache caches resolved placements for a bounded time; Invalidate
// drops one entry at once (a move or a status change calls it).
type placementCache struct {
	ttl     time.Duration
	source  Resolver
	mu      sync.RWMutex
	entries map[string]cachedPlacement
	now     func() time.Time
}

type cachedPlacement struct {
	p       Placement
	expires time.Time
}

func newPlacementCache(source Resolver, ttl time.Duration) *placementCache {
	return &placementCache{ttl: ttl, source: source, entries: map[string]cachedPlacement{}, now: time.Now}
}

// maxCachedPlacements bounds memory; past it the cache starts over.
const maxCachedPlacements = 100_000

func (c *placementCache) get(ctx context.Context, slug tenancy.Slug) (Placement, error) {
	key := slug.String()
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if ok && c.now().Before(e.expires) {
		return e.p, nil
	}
	p, err := c.source.Resolve(ctx, slug)
	if err != nil {
		return Placement{}, err
	}
	c.mu.Lock()
	if len(c.entries) >= maxCachedPlacements {
		c.entries = map[string]cachedPlacement{}
	}
	c.entries[key] = cachedPlacement{p: p, expires: c.now().Add(c.ttl)}
	c.mu.Unlock()
	return p, nil
}

func (c *placementCache) invalidate(slug tenancy.Slug) {
	c.mu.Lock()
	delete(c.entries, slug.String())
	c.mu.Unlock()
}

func (c *placementCache) invalidateAll() {
	c.mu.Lock()
	c.entries = map[string]cachedPlacement{}
	c.mu.Unlock()
}
