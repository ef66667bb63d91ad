package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/config"

	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func TestProvisionCold(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	ctx := context.Background()
	s := b.slug(t, "cold")

	res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Cold Co"})
	require.NoError(t, err)
	assert.Equal(t, provision.Cold, res.Path)
	assert.False(t, res.Resumed)
	assert.Equal(t, tenant.StatusActive, res.Tenant.Status)
	assert.Equal(t, tenant.PlacementSchema, res.Tenant.Kind)
	assert.Equal(t, "main", res.Tenant.Cluster)
	assert.Equal(t, "publicdigit_test", res.Tenant.Database)
	assert.Equal(t, int64(2), res.Tenant.Version, "inserted at 1, bumped by activation")
	ten := assertHealthy(t, b, s)
	assert.Equal(t, res.Tenant.ID, ten.ID)
	assert.Contains(t, b.changes(), s, "activation is announced")

	_, err = b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Cold Co"})
	assert.ErrorIs(t, err, tenant.ErrExists)
	assertNoOrphans(t, b, s)
}

func TestProvisionWarmClaimsASpare(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{warm: 2})
	ctx := context.Background()

	built, err := b.prov.FillWarmPool(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, built)
	st, err := b.prov.WarmPoolStats(ctx)
	require.NoError(t, err)
	assert.Equal(t, provision.WarmPoolStats{Ready: 2}, st)
	built, err = b.prov.FillWarmPool(ctx)
	require.NoError(t, err)
	assert.Zero(t, built, "a full pool builds nothing")

	s := b.slug(t, "warm")
	res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Warm Co"})
	require.NoError(t, err)
	assert.Equal(t, provision.Warm, res.Path)
	ten := assertHealthy(t, b, s)
	assert.Equal(t, int64(2), ten.Version)

	assert.NotEmpty(t, catalogtest.Recorded(t, b.admin, ten.ID).Fingerprint, "the spare's fingerprint is recorded for the fleet runner")

	st, err = b.prov.WarmPoolStats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Ready)
	assertNoOrphans(t, b, s)

	built, err = b.prov.FillWarmPool(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, built, "refill replaces the claimed spare")
	assertNoOrphans(t, b, s)
}

func TestProvisionWarmFallsBackToCold(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{warm: 1}) // nothing built yet
	s := b.slug(t, "empty")
	res, err := b.prov.Provision(context.Background(), provision.Request{Slug: s, Name: "E"})
	require.NoError(t, err)
	assert.Equal(t, provision.Cold, res.Path)
	assertHealthy(t, b, s)
}

func TestConcurrentProvisionOfOneSlug(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	s := b.slug(t, "race")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.prov.Provision(context.Background(), provision.Request{Slug: s, Name: "Race"})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			assert.ErrorIs(t, err, tenant.ErrExists)
		}
	}
	assert.Equal(t, 1, ok, "exactly one creates the tenant")
	assertHealthy(t, b, s)
	assertNoOrphans(t, b, s)
}

func TestProvisionRefusesBadInputWithoutChanges(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	ctx := context.Background()
	s := b.slug(t, "bad")
	for name, r := range map[string]provision.Request{
		"empty name":                {Slug: s, Name: ""},
		"control char":              {Slug: s, Name: "a\x00b"},
		"spaces":                    {Slug: s, Name: " x "},
		"zero slug":                 {Name: "x"},
		"unknown cluster":           {Slug: s, Name: "x", Placement: &tenant.Placement{Kind: tenant.PlacementSchema, Cluster: "nope"}},
		"bad kind":                  {Slug: s, Name: "x", Placement: &tenant.Placement{Kind: "cloud"}},
		"database, unknown cluster": {Slug: s, Name: "x", Placement: &tenant.Placement{Kind: tenant.PlacementDatabase, Cluster: "nope"}},
		"database, wrong name":      {Slug: s, Name: "x", Placement: &tenant.Placement{Kind: tenant.PlacementDatabase, Database: "postgres"}},
		"wrong schema":              {Slug: s, Name: "x", Placement: &tenant.Placement{Kind: tenant.PlacementSchema, Schema: "public"}},
	} {
		_, err := b.prov.Provision(ctx, r)
		require.Error(t, err, name)
		assert.True(t, errors.Is(err, tenant.ErrInvalid) || errors.Is(err, tenant.ErrInvalidSlug), "%s: %v", name, err)
	}
	_, err := b.tenants.Get(ctx, s)
	assert.ErrorIs(t, err, tenant.ErrNotFound, "nothing was written")
	assertNoOrphans(t, b, s)
}

func TestPurgeDropsEverything(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	ctx := context.Background()
	s := b.slug(t, "purge")
	_, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "P"})
	require.NoError(t, err)

	err = b.prov.Purge(ctx, s)
	var se *tenant.StatusError
	require.ErrorAs(t, err, &se, "an active tenant cannot be purged")
	assert.Equal(t, tenant.StatusActive, se.Status)

	_, err = b.tenants.Delete(ctx, s)
	require.NoError(t, err)
	var kept bool
	require.NoError(t, b.admin.QueryRowContext(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, s.SchemaName()).Scan(&kept))
	assert.True(t, kept, "delete keeps the data")

	require.NoError(t, b.prov.Purge(ctx, s))
	_, err = b.tenants.Get(ctx, s)
	assert.ErrorIs(t, err, tenant.ErrNotFound)
	assertNoOrphans(t, b, s)
	assert.ErrorIs(t, b.prov.Purge(ctx, s), tenant.ErrNotFound)

	// The slug is free again.
	res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "P again"})
	require.NoError(t, err)
	assert.Equal(t, "P again", res.Tenant.Name)
}

// Concurrent provisionings claim distinct spares (SKIP LOCKED) and fall back
// to the cold path once the pool is empty; a drain running meanwhile never
// drops a claimed schema.
func TestConcurrentWarmClaims(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{warm: 3})
	ctx := context.Background()
	_, err := b.prov.FillWarmPool(ctx)
	require.NoError(t, err)
	slugs := make([]tenant.Slug, 5)
	for i := range slugs {
		slugs[i] = b.slug(t, "cw")
	}
	var wg sync.WaitGroup
	paths := make([]provision.Path, len(slugs))
	errs := make([]error, len(slugs))
	for i, s := range slugs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res provision.Result
			res, errs[i] = b.prov.Provision(ctx, provision.Request{Slug: s, Name: "C"})
			paths[i] = res.Path
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = b.prov.DrainWarmPool(ctx)
	}()
	wg.Wait()
	for i, s := range slugs {
		require.NoError(t, errs[i])
		assertHealthy(t, b, s)
		assertNoOrphans(t, b, s)
	}
	warm := 0
	for _, p := range paths {
		if p == provision.Warm {
			warm++
		}
	}
	assert.LessOrEqual(t, warm, 3)
}

// A tenant may start in a dedicated database: created from template0 with
// the extensions, its schema applied there; purge drops the database.
func TestProvisionDatabasePlacement(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	ctx := context.Background()
	s := b.slug(t, "dedicated")
	t.Cleanup(func() { _ = b.app.Clusters.DropDatabase(context.Background(), "main", s.DatabaseName()) })
	res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Dedicated",
		Placement: &tenant.Placement{Kind: tenant.PlacementDatabase}})
	require.NoError(t, err)
	assert.Equal(t, tenant.PlacementDatabase, res.Tenant.Kind)
	assert.Equal(t, s.DatabaseName(), res.Tenant.Database)
	assert.Equal(t, tenant.StatusActive, res.Tenant.Status)

	db, err := b.app.Clusters.Open(ctx, "main", s.DatabaseName())
	require.NoError(t, err)
	var tables, exts int
	var encoding string
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1`, s.SchemaName()).Scan(&tables))
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM pg_extension WHERE extname IN ('ltree', 'btree_gin')`).Scan(&exts))
	require.NoError(t, db.QueryRowContext(ctx, `SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()`).Scan(&encoding))
	db.Close()
	assert.Equal(t, 3, tables)
	assert.Equal(t, 2, exts)
	assert.Equal(t, "UTF8", encoding)

	_, err = b.tenants.Delete(ctx, s)
	require.NoError(t, err)
	require.NoError(t, b.prov.Purge(ctx, s))
	var n int
	require.NoError(t, b.admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, s.DatabaseName()).Scan(&n))
	assert.Zero(t, n, "purge dropped the database")
	require.NoError(t, b.admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, s.RoleName()).Scan(&n))
	assert.Zero(t, n, "and the role")
}

// Tenants provisioned cold one after another (the second on, from the
// first one's plan) and warm record what the fleet runner expects: it skips
// every one of them without inspection.
func TestProvisionedTenantsAreConvergedForTheFleet(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{warm: 1})
	ctx := context.Background()
	prefix := dbtest.Name("pf")
	var slugs []tenant.Slug
	for range 4 {
		s := b.slug(t, prefix)
		res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Fleet"})
		require.NoError(t, err)
		assert.Equal(t, provision.Cold, res.Path, "no spare built yet")
		slugs = append(slugs, s)
	}
	_, err := b.prov.FillWarmPool(ctx)
	require.NoError(t, err)
	s := b.slug(t, prefix)
	res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Fleet"})
	require.NoError(t, err)
	assert.Equal(t, provision.Warm, res.Path)
	slugs = append(slugs, s)

	for _, s := range slugs {
		ten := assertHealthy(t, b, s)
		live, err := schemaapply.Fingerprint(ctx, b.admin, ten.Schema, s.RoleName())
		require.NoError(t, err)
		assert.Equal(t, live, catalogtest.Recorded(t, b.admin, ten.ID).Fingerprint, "%s: the recorded fingerprint is the live one", s)
	}
	f := b.app.Fleet()
	fr, err := f.Apply(ctx, schemaapply.FleetOptions{Selection: schemaapply.Selection{SlugPrefix: prefix}})
	require.NoError(t, err)
	assert.Equal(t, len(slugs), fr.Total)
	assert.Equal(t, len(slugs), fr.Converged, "skipped without inspection")
	assert.Zero(t, fr.Inspected)
}

// More concurrent tenant operations than admin connections: each holds its
// tenant's lock on the lock pool, never on a connection that the others
// need for their work, so all of them finish (a shared pool deadlocked with
// every connection holding a lock and waiting for a second one).
func TestOperationsBeyondTheAdminPool(t *testing.T) {
	t.Parallel()
	events := dbtest.Module(t, "adm", "modules/events.hcl")
	b := &bundle{prefix: dbtest.Name("pd_tspare") + "_"}
	b.app = apptest.Open(t, apptest.Options{
		Options:   app.Options{SparePrefix: b.prefix},
		Configure: func(c *config.Config) { c.Pool.MaxConns = 4 },
	})
	b.admin, b.tenants, b.prov = b.app.Admin, b.app.Catalog, b.app.Provisioner
	require.Equal(t, 4, b.admin.Stats().MaxOpenConnections)

	const n = 12
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	slugs := make([]tenant.Slug, n)
	for i := range slugs {
		slugs[i] = b.slug(t, "adm")
	}
	run := func(op func(s tenant.Slug) error) {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i, s := range slugs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = op(s)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "%s", slugs[i])
		}
	}
	run(func(s tenant.Slug) error {
		res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Beyond the pool"})
		if err == nil && res.Path != provision.Cold {
			return fmt.Errorf("path %s, want cold", res.Path)
		}
		return err
	})
	run(func(s tenant.Slug) error {
		_, err := b.app.Modules.Install(ctx, s, events)
		return err
	})
	run(func(s tenant.Slug) error { return b.app.Modules.Uninstall(ctx, s, events, false) })
	require.NoError(t, ctx.Err(), "finished within the deadline")
	for _, s := range slugs {
		assertHealthy(t, b, s)
	}
}

// A tenant operation waits for another on the same tenant at most
// tenant.lock_wait, then fails with tenant_busy (503, retryable).
func TestTenantLockWaitIsBounded(t *testing.T) {
	t.Parallel()
	b := &bundle{prefix: dbtest.Name("pd_tspare") + "_"}
	b.app = apptest.Open(t, apptest.Options{
		Options:   app.Options{SparePrefix: b.prefix},
		Configure: func(c *config.Config) { c.Tenant.LockWait = 300 * time.Millisecond },
	})
	b.prov = b.app.Provisioner
	s := b.slug(t, "busy")
	ctx := context.Background()
	unlock, err := b.app.Catalog.Lock(ctx, s)
	require.NoError(t, err)
	start := time.Now()
	_, err = b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Busy"})
	assert.ErrorIs(t, err, tenant.ErrBusy)
	assert.Less(t, time.Since(start), 5*time.Second)
	unlock()
	_, err = b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Busy"})
	require.NoError(t, err, "free again")
}
