package pgroute_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func TestLaneOfIsStableAndEven(t *testing.T) {
	slug := tenant.MustSlug("acme")
	assert.Equal(t, 0, pgroute.LaneOf(slug, 1))
	assert.Equal(t, 0, pgroute.LaneOf(slug, 0))
	assert.Equal(t, pgroute.LaneOf(slug, 16), pgroute.LaneOf(tenant.MustSlug("acme"), 16), "same slug, same lane")

	counts := make([]int, 16)
	for i := 0; i < 10_000; i++ {
		lane := pgroute.LaneOf(tenant.MustSlug(fmt.Sprintf("tenant_%05d", i)), 16)
		require.True(t, lane >= 0 && lane < 16)
		counts[lane]++
	}
	for lane, n := range counts {
		// 625 expected; a lane's backends cache its tenants, so no lane may be much fuller.
		assert.InDelta(t, 625, n, 100, "lane %d", lane)
	}
}

// With lanes, every backend serves the tenants of one lane only, however
// the traffic is spread: its catalog cache holds 1/lanes of the tenants.
func TestLanesKeepEachBackendOnOneLane(t *testing.T) {
	tenants := newTenants(t, 16)
	const lanes = 4
	for _, path := range dbtest.Paths {
		t.Run(string(path), func(t *testing.T) {
			cfg := routerConfig(t, path)
			cl := cfg.Clusters[cfg.DefaultCluster]
			cl.Lanes = lanes
			if path == dbtest.Direct {
				cl.PgBouncer = "none"
			}
			cfg.Clusters[cfg.DefaultCluster] = cl
			cfg.Pool.MaxConns = 2 * lanes
			r := newRouter(t, cfg, pgroute.Options{})

			var mu sync.Mutex
			lanesOf := map[int32]map[int]bool{} // backend → lanes it served
			used := map[int]bool{}
			serve := func(tt testTenant) error {
				var pid int32
				var marker string
				err := r.Do(context.Background(), tt.slug, func(b *pgroute.Batch) error {
					b.Queue(`SELECT pg_backend_pid(), (SELECT full_name FROM members LIMIT 1)`).
						QueryRow(func(row pgx.Row) error { return row.Scan(&pid, &marker) })
					return nil
				})
				if err != nil {
					return err
				}
				if marker != tt.marker {
					return fmt.Errorf("tenant %s read %q", tt.slug, marker)
				}
				lane := pgroute.LaneOf(tt.slug, lanes)
				mu.Lock()
				defer mu.Unlock()
				if lanesOf[pid] == nil {
					lanesOf[pid] = map[int]bool{}
				}
				lanesOf[pid][lane] = true
				used[lane] = true
				return nil
			}
			var wg sync.WaitGroup
			errs := make(chan error, 8*len(tenants))
			for round := 0; round < 8; round++ {
				for _, tt := range tenants {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- serve(tt)
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.Greater(t, len(used), 1, "the tenants fall on several lanes")
			for pid, ls := range lanesOf {
				assert.Len(t, ls, 1, "backend %d served lanes %v", pid, ls)
			}

			shared := 0
			for _, st := range r.PoolStats() {
				if !st.Dedicated {
					shared++
					assert.Equal(t, int32(2), st.Stat.MaxConns(), "lane %d has its share of pool.max_conns", st.Lane)
				}
			}
			assert.Equal(t, lanes, shared, "one pool per lane")
		})
	}
}
