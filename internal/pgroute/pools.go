package pgroute

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/config"
)

// pools holds one pgx pool per (cluster, database). A cluster's shared pool
// (its platform database, where schema-placed tenants live) opens with the
// router and stays; pools of dedicated tenant databases open lazily on first
// use, are capped in number, and close when idle.
type pools struct {
	cfg       config.Config
	mode      pgx.QueryExecMode
	tracer    *tracer
	configure func(*pgxpool.Config)

	mu      sync.Mutex
	entries map[poolKey]*poolEntry
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

type poolKey struct{ cluster, database string }

type poolEntry struct {
	pool      *pgxpool.Pool
	dedicated bool
	lastUsed  time.Time
}

func newPools(cfg config.Config, mode pgx.QueryExecMode, tr *tracer, configure func(*pgxpool.Config)) *pools {
	ps := &pools{
		cfg: cfg, mode: mode, tracer: tr, configure: configure,
		entries: map[poolKey]*poolEntry{},
		stop:    make(chan struct{}), done: make(chan struct{}),
	}
	go ps.closeIdleLoop()
	return ps
}

// clusterDatabase returns the database name of a cluster's shared pool.
func clusterDatabase(cl config.Cluster) (string, error) {
	cfg, err := pgx.ParseConfig(cl.URL)
	if err != nil {
		return "", fmt.Errorf("cluster url: %w", err)
	}
	return cfg.Database, nil
}

// get returns the pool for a placement, opening it when needed.
func (ps *pools) get(ctx context.Context, cluster, database string) (*pgxpool.Pool, error) {
	key := poolKey{cluster, database}
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
	ps.mu.Unlock()

	cl, err := ps.cfg.Cluster(cluster)
	if err != nil {
		return nil, fmt.Errorf("%w: tenant placed on %v", ErrUnavailable, err)
	}
	shared, err := clusterDatabase(cl)
	if err != nil {
		return nil, err
	}
	raw := cl.URL
	sizes := ps.cfg.Pool
	dedicated := database != shared
	if dedicated {
		u, err := url.Parse(cl.URL)
		if err != nil {
			return nil, fmt.Errorf("cluster %s url: %w", cluster, err)
		}
		u.Path = "/" + database
		raw = u.String()
		sizes.MaxConns = ps.cfg.Pool.DedicatedMaxConns
		sizes.MinConns = 0
	}
	pcfg, err := poolConfig(raw, sizes, ps.mode)
	if err != nil {
		return nil, err
	}
	pcfg.ConnConfig.Tracer = ps.tracer
	if ps.configure != nil {
		ps.configure(pcfg)
	}

	ps.mu.Lock()
	defer ps.mu.Unlock()
	if e, ok := ps.entries[key]; ok { // opened meanwhile
		e.lastUsed = time.Now()
		return e.pool, nil
	}
	if dedicated && ps.dedicatedCount() >= ps.cfg.Pool.DedicatedMaxPools && !ps.evictIdleLocked() {
		return nil, fmt.Errorf("%w: all %d dedicated pools are busy", ErrUnavailable, ps.cfg.Pool.DedicatedMaxPools)
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
	every := ps.cfg.Pool.DedicatedIdleClose / 4
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
			ps.closeIdle(time.Now().Add(-ps.cfg.Pool.DedicatedIdleClose))
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
	e, ok := ps.entries[poolKey{cluster, database}]
	if ok && e.dedicated {
		delete(ps.entries, poolKey{cluster, database})
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
	Dedicated bool
	Stat      *pgxpool.Stat
}

func (ps *pools) stats() []PoolStat {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]PoolStat, 0, len(ps.entries))
	for k, e := range ps.entries {
		out = append(out, PoolStat{Cluster: k.cluster, Database: k.database, Dedicated: e.dedicated, Stat: e.pool.Stat()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cluster != out[j].Cluster {
			return out[i].Cluster < out[j].Cluster
		}
		return out[i].Database < out[j].Database
	})
	return out
}
