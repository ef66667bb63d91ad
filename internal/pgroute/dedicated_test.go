package pgroute_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenancy"
	provisioning "github.com/publicdigit/publicdigit/internal/tenancy/provision"
)

// Tenants in dedicated databases get pools of their own, opened on first use
// (through PgBouncer's wildcard route), capped in number, closed when idle.
func TestDedicatedPools(t *testing.T) {
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	admin := dbtest.AdminDB(t)
	tenants, err := tenancy.New(tenancy.Options{Config: cfg, Landlord: dbtest.AppPool(t, dbtest.Bouncer, 2), Admin: admin, Log: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(tenants.Close)
	prov, err := provisioning.New(provisioning.Options{Tenants: tenants, Log: zerolog.Nop()})
	require.NoError(t, err)
	ctx := context.Background()
	var slugs []tenancy.Slug
	for i := 0; i < 2; i++ {
		s := tenancy.MustSlug(dbtest.Name("ded"))
		t.Cleanup(func() {
			_ = tenants.DropDatabase(ctx, "main", s.DatabaseName())
			_, _ = admin.ExecContext(ctx, `DELETE FROM landlord.tenants WHERE slug = $1`, s.String())
			_, _ = admin.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{s.RoleName()}.Sanitize())
		})
		_, err := prov.Provision(ctx, provisioning.Request{Slug: s, Name: "dedicated", Placement: &tenancy.Placement{Kind: tenancy.PlacementDatabase}})
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
	count := func(s tenancy.Slug) error {
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
	err = count(slugs[0])
	assert.ErrorIs(t, err, pgroute.ErrUnavailable, "every dedicated pool busy")
	close(hold)

	// Idle pools close by themselves.
	require.Eventually(t, func() bool { return len(dedicated()) == 0 }, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, count(slugs[0]), "and reopen on demand")
}
