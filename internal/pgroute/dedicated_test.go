package pgroute_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	provisioning "github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Tenants in dedicated databases get pools of their own, opened on first use
// (through PgBouncer's wildcard route), capped in number, closed when idle.
func TestDedicatedPools(t *testing.T) {
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	a := apptest.Open(t, apptest.Options{})
	ctx := context.Background()
	var slugs []tenant.Slug
	for i := 0; i < 2; i++ {
		s := tenant.MustSlug(dbtest.Name("ded"))
		dbtest.RemoveAtCleanup(t, s)
		t.Cleanup(func() { _ = a.Clusters.DropDatabase(ctx, "main", s.DatabaseName()) })
		_, err := a.Provisioner.Provision(ctx, provisioning.Request{Slug: s, Name: "dedicated", Placement: &tenant.Placement{Kind: tenant.PlacementDatabase}})
		require.NoError(t, err)
		slugs = append(slugs, s)
	}

	cfg.Pool.DedicatedMaxPools = 1
	cfg.Pool.DedicatedIdleClose = 2 * time.Second
	r := newRouter(t, cfg, pgroute.Options{})
	dedicated := func() []string {
		var out []string
		for _, p := range r.PoolStats() {
			if p.Dedicated {
				out = append(out, p.Database)
			}
		}
		return out
	}
	count := func(s tenant.Slug) error {
		return r.Do(ctx, s, func(b *pgroute.Batch) error {
			b.Queue(`SELECT count(*) FROM members`)
			return nil
		})
	}
	assert.Empty(t, dedicated(), "opened lazily")
	require.NoError(t, count(slugs[0]))
	assert.Equal(t, []string{slugs[0].DatabaseName()}, dedicated())

	// The cap: a second dedicated database evicts the idle first pool…
	require.NoError(t, count(slugs[1]))
	assert.Equal(t, []string{slugs[1].DatabaseName()}, dedicated())

	// …but not a busy one.
	hold := make(chan struct{})
	held := make(chan struct{})
	go func() {
		_ = r.Tx(ctx, slugs[1], pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
			tx.Queue(`SELECT 1 FROM members LIMIT 1`)
			if err := tx.Flush(ctx); err != nil {
				return err
			}
			close(held)
			<-hold
			return nil
		})
	}()
	<-held
	err := count(slugs[0])
	assert.ErrorIs(t, err, pgroute.ErrUnavailable, "every dedicated pool busy")
	close(hold)

	// Idle pools close by themselves.
	require.Eventually(t, func() bool { return len(dedicated()) == 0 }, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, count(slugs[0]), "and reopen on demand")
}
