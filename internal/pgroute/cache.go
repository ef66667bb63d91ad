package pgroute

import (
	"context"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// entry is one resolved tenant with its binding statements (built once).
type entry struct {
	t       tenant.Tenant
	bind    []string // SET LOCAL statements (simple protocol)
	expires time.Time
}

// cache is the router's one cache: tenants by slug, bounded (LRU) and
// trusted for ttl; Invalidate drops one entry at once (a move or a status
// change, heard over LISTEN/NOTIFY).
type cache struct {
	source Resolver
	ttl    time.Duration
	lru    *lru.Cache[tenant.Slug, *entry]
	bind   func(tenant.Tenant) []string
	now    func() time.Time

	lookups, misses atomic.Int64
}

// CacheStats counts the router's tenant lookups since it opened: every
// lookup, and those that missed the cache and asked the Resolver.
type CacheStats struct {
	Lookups, Misses int64
}

func newCache(source Resolver, size int, ttl time.Duration, bind func(tenant.Tenant) []string) *cache {
	l, err := lru.New[tenant.Slug, *entry](size)
	if err != nil {
		panic(err) // size is positive (Options.setDefaults)
	}
	return &cache{source: source, ttl: ttl, lru: l, bind: bind, now: time.Now}
}

// get returns the entry of slug, resolving it on a miss or after its ttl.
func (c *cache) get(ctx context.Context, slug tenant.Slug) (*entry, error) {
	c.lookups.Add(1)
	if e, ok := c.lru.Get(slug); ok && c.now().Before(e.expires) {
		return e, nil
	}
	c.misses.Add(1)
	t, err := c.source.Resolve(ctx, slug)
	if err != nil {
		return nil, Classify(err)
	}
	e := &entry{t: t, bind: c.bind(t), expires: c.now().Add(c.ttl)}
	c.lru.Add(slug, e)
	return e, nil
}

func (c *cache) invalidate(slug tenant.Slug) { c.lru.Remove(slug) }

func (c *cache) invalidateAll() { c.lru.Purge() }
