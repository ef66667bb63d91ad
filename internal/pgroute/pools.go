package pgroute

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// pools holds one pgx pool per (cluster, database, lane). A cluster's
// shared pools (its shared database, where schema-placed tenants live: one
// per lane, see Options.Lanes) open with the router and stay; pools of
// dedicated tenant databases open lazily on first use, are capped in
// number, and close when idle.
type pools struct {
	o      Options
	tracer *tracer

	mu       sync.Mutex
	entries  map[poolKey]*poolEntry
	sharedDB map[string]string // cluster → its shared database name
	closed   bool
	stop     chan struct{}
	done     chan struct{}
}

type poolKey struct {
	cluster, database string
	lane              int
}

type poolEntry struct {
	pool      *pgxpool.Pool
	dedicated bool
	lastUsed  time.Time
}

func newPools(o Options, tr *tracer) *pools {
	ps := &pools{
		o: o, tracer: tr,
		entries:  map[poolKey]*poolEntry{},
		sharedDB: map[string]string{},
		stop:     make(chan struct{}), done: make(chan struct{}),
	}
	go ps.closeIdleLoop()
	return ps
}

// shared opens the shared pools of a cluster (one per lane).
func (ps *pools) shared(ctx context.Context, cluster string) error {
	raw, ok := ps.o.Clusters[cluster]
	if !ok {
		return fmt.Errorf("%w: tenant placed on unknown cluster %q", ErrUnavailable, cluster)
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return fmt.Errorf("cluster %s url: %w", cluster, redactedParseError(err))
	}
	ps.mu.Lock()
	ps.sharedDB[cluster] = cfg.Database
	ps.mu.Unlock()
	for lane := range max(len(ps.o.Lanes[cluster]), 1) {
		if _, err := ps.get(ctx, cluster, cfg.Database, lane); err != nil {
			return err
		}
	}
	return nil
}

// forTenant returns the pool that serves t: its lane's in its cluster's
// shared database, else its dedicated database's.
func (ps *pools) forTenant(ctx context.Context, t tenant.Tenant) (*pgxpool.Pool, error) {
	lane := 0
	if n := len(ps.o.Lanes[t.Cluster]); n > 1 {
		ps.mu.Lock()
		shared := ps.sharedDB[t.Cluster]
		ps.mu.Unlock()
		if t.Database == shared {
			lane = LaneOf(t.Slug, n)
		}
	}
	return ps.get(ctx, t.Cluster, t.Database, lane)
}

// LaneOf is the lane, of lanes, that serves a tenant of a cluster's shared
// database: FNV-1a of its slug, so that every server process agrees.
func LaneOf(slug tenant.Slug, lanes int) int {
	if lanes <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(slug.String()))
	return int(h.Sum32() % uint32(lanes))
}

// get returns the pool for a placement (and lane), opening it when needed.
func (ps *pools) get(ctx context.Context, cluster, database string, lane int) (*pgxpool.Pool, error) {
	key := poolKey{cluster, database, lane}
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return nil, fmt.Errorf("%w: router closed", ErrUnavailable)
	}
	if e, ok := ps.entries[key]; ok {
		e.lastUsed = time.Now()
		ps.mu.Unlock()
		return e.pool, nil
	}
	shared, known := ps.sharedDB[cluster]
	ps.mu.Unlock()

	raw, ok := ps.o.Clusters[cluster]
	if !ok || !known {
		return nil, fmt.Errorf("%w: tenant placed on unknown cluster %q", ErrUnavailable, cluster)
	}
	sizes := ps.o.Pool
	dedicated := database != shared
	if lanes := ps.o.Lanes[cluster]; !dedicated && len(lanes) > 1 {
		// Each lane gets its share of the connections.
		raw = lanes[lane]
		n := int32(len(lanes))
		sizes.MaxConns = max(1, (sizes.MaxConns+n-1)/n)
		sizes.MinConns = (sizes.MinConns + n - 1) / n
	}
	if dedicated {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("cluster %s url: %w", cluster, err)
		}
		u.Path = "/" + database
		raw = u.String()
		sizes.MaxConns = ps.o.Dedicated.MaxConns
		sizes.MinConns = 0
	}
	pcfg, err := poolConfig(raw, sizes, ps.o.ExecMode)
	if err != nil {
		return nil, err
	}
	pcfg.ConnConfig.Tracer = ps.tracer
	if ps.o.ConfigurePool != nil {
		ps.o.ConfigurePool(pcfg)
	}

	ps.mu.Lock()
	defer ps.mu.Unlock()
	if e, ok := ps.entries[key]; ok { // opened meanwhile
		e.lastUsed = time.Now()
		return e.pool, nil
	}
	if dedicated && ps.dedicatedCount() >= ps.o.Dedicated.MaxPools && !ps.evictIdleLocked() {
		return nil, fmt.Errorf("%w: all %d dedicated pools are busy", ErrUnavailable, ps.o.Dedicated.MaxPools)
	}
	pool, err := openPool(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	ps.entries[key] = &poolEntry{pool: pool, dedicated: dedicated, lastUsed: time.Now()}
	return pool, nil
}

func (ps *pools) dedicatedCount() int {
	n := 0
	for _, e := range ps.entries {
		if e.dedicated {
			n++
		}
	}
	return n
}

// evictIdleLocked closes the least recently used dedicated pool that has no
// connection in use; it reports whether one was closed.
func (ps *pools) evictIdleLocked() bool {
	var victim poolKey
	var oldest time.Time
	found := false
	for k, e := range ps.entries {
		if !e.dedicated || e.pool.Stat().AcquiredConns() > 0 {
			continue
		}
		if !found || e.lastUsed.Before(oldest) {
			victim, oldest, found = k, e.lastUsed, true
		}
	}
	if found {
		go ps.entries[victim].pool.Close()
		delete(ps.entries, victim)
	}
	return found
}

func (ps *pools) closeIdleLoop() {
	defer close(ps.done)
	every := ps.o.Dedicated.IdleClose / 4
	if every < time.Second {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ps.stop:
			return
		case <-t.C:
			ps.closeIdle(time.Now().Add(-ps.o.Dedicated.IdleClose))
		}
	}
}

// closeIdle closes dedicated pools unused since before cutoff.
func (ps *pools) closeIdle(cutoff time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, e := range ps.entries {
		if e.dedicated && e.lastUsed.Before(cutoff) && e.pool.Stat().AcquiredConns() == 0 {
			go e.pool.Close()
			delete(ps.entries, k)
		}
	}
}

// drop closes the pool of one (cluster, database), e.g. after a tenant moved
// out of a dedicated database that is about to be dropped.
func (ps *pools) drop(cluster, database string) {
	ps.mu.Lock()
	e, ok := ps.entries[poolKey{cluster, database, 0}]
	if ok && e.dedicated {
		delete(ps.entries, poolKey{cluster, database, 0})
	}
	ps.mu.Unlock()
	if ok && e.dedicated {
		e.pool.Close()
	}
}

func (ps *pools) close() {
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return
	}
	ps.closed = true
	entries := ps.entries
	ps.entries = map[poolKey]*poolEntry{}
	ps.mu.Unlock()
	close(ps.stop)
	<-ps.done
	for _, e := range entries {
		e.pool.Close()
	}
}

// PoolStat describes one open pool.
type PoolStat struct {
	Cluster   string
	Database  string
	Lane      int // of the cluster's shared database (Options.Lanes); 0 otherwise
	Dedicated bool
	Stat      *pgxpool.Stat
}

func (ps *pools) stats() []PoolStat {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]PoolStat, 0, len(ps.entries))
	for k, e := range ps.entries {
		out = append(out, PoolStat{Cluster: k.cluster, Database: k.database, Lane: k.lane, Dedicated: e.dedicated, Stat: e.pool.Stat()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cluster != out[j].Cluster {
			return out[i].Cluster < out[j].Cluster
		}
		if out[i].Database != out[j].Database {
			return out[i].Database < out[j].Database
		}
		return out[i].Lane < out[j].Lane
	})
	return out
}
