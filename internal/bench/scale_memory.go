package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/pgroute"
)

// memoryStage measures one backend that serves every tenant: an App whose
// tenant pool is one direct connection runs the API's two statements (GET
// card, issue card) for each tenant, twice. It records the backend's
// private memory before and after (RssAnon in /proc: its memory contexts,
// CacheMemoryContext and the relcache's index contexts most of all; only a
// superuser may read pg_backend_memory_contexts, and only its own), the
// memory per tenant, and the time per tenant on the first pass (every
// catalog entry loaded) and the second (all cached).
func (s *scaleRun) memoryStage(ctx context.Context, n int) error {
	seeds, err := s.seed(ctx)
	if err != nil {
		return err
	}
	pcfg := s.cfg
	cl := pcfg.Clusters[pcfg.DefaultCluster]
	if cl.URL, err = withDatabase(cl.URL, s.f.db, DirectPGPort); err != nil {
		return err
	}
	cl.PgBouncer = "none"
	pcfg.Clusters = map[string]config.Cluster{pcfg.DefaultCluster: cl}
	// The landlord pool takes the default cluster's exec mode: with "none",
	// cached prepared statements, which through PgBouncer (transaction mode)
	// meet the previous run's on a server connection ("already exists").
	pcfg.Landlord.URL = cl.URL
	pcfg.Pool.MaxConns, pcfg.Pool.MinConns = 1, 1
	a, err := app.Open(ctx, pcfg, zerolog.Nop(), app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	// The backend of the tenant pool's one connection.
	var pid int
	if err := a.Router.Do(ctx, seeds[0].t.Slug, func(b *pgroute.Batch) error {
		b.Queue(`SELECT pg_backend_pid()`).QueryRow(func(r pgx.Row) error { return r.Scan(&pid) })
		return nil
	}); err != nil {
		return fmt.Errorf("probe backend: %w", err)
	}
	before, err := rssAnonMB(pid)
	if err != nil {
		return err
	}
	pass := func() (time.Duration, error) {
		start := time.Now()
		for i, sd := range seeds {
			if _, err := a.Cards.Get(ctx, sd.t.Slug, sd.cards[i%len(sd.cards)]); err != nil {
				return 0, fmt.Errorf("get card of %s: %w", sd.t.Slug, err)
			}
			if _, err := a.Cards.Issue(ctx, sd.t.Slug, cards.Issue{MemberID: sd.members[i%len(sd.members)]}, "bench"); err != nil {
				return 0, fmt.Errorf("issue card for %s: %w", sd.t.Slug, err)
			}
		}
		return time.Since(start), nil
	}
	cold, err := pass()
	if err != nil {
		return err
	}
	after, err := rssAnonMB(pid)
	if err != nil {
		return err
	}
	warm, err := pass()
	if err != nil {
		return err
	}
	per := func(d time.Duration) float64 { return provMS(d) / float64(len(seeds)) }
	for _, m := range []struct {
		name string
		v    float64
	}{
		{"backend_mb_fresh", before},
		{"backend_mb_all_tenants", after},
		{"backend_kb_per_tenant", (after - before) * 1024 / float64(len(seeds))},
		{"touch_cold_ms_per_tenant", per(cold)},
		{"touch_warm_ms_per_tenant", per(warm)},
	} {
		if err := s.res.put(ctx, m.name, n, m.v); err != nil {
			return err
		}
	}
	return nil
}
