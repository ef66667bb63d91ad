package provision_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Purge-retired re-validates every name before it drops anything: a copy
// whose whole database still has the tenant's name (a move not finished, or
// a tampered row) would drop a live dedicated tenant's database.
func TestPurgeRetiredRefusesNamesNotItsOwn(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	ctx := context.Background()
	s := b.slug(t, "retnames")
	t.Cleanup(func() { _ = b.app.Clusters.DropDatabase(context.Background(), "main", s.DatabaseName()) })
	res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Live dedicated",
		Placement: &tenant.Placement{Kind: tenant.PlacementDatabase}})
	require.NoError(t, err)

	retired := func(database string, whole bool) uuid.UUID {
		var id uuid.UUID
		require.NoError(t, b.admin.QueryRowContext(ctx, `INSERT INTO landlord.retired_copies
			(tenant_id, slug, cluster, database_name, schema_name, whole_database)
			VALUES ($1, $2, 'main', $3, 'pd_retired_' || substr(md5(random()::text), 1, 12), $4) RETURNING id`,
			res.Tenant.ID, s.String(), database, whole).Scan(&id))
		t.Cleanup(func() {
			_, _ = b.admin.ExecContext(context.Background(), `DELETE FROM landlord.retired_copies WHERE id = $1`, id)
		})
		return id
	}
	for name, id := range map[string]uuid.UUID{
		"whole database under the tenant's live name": retired(s.DatabaseName(), true),
		"schema copy outside the shared database":     retired(s.DatabaseName(), false),
	} {
		done, err := b.prov.PurgeRetired(ctx, 0, s)
		assert.ErrorIs(t, err, provision.ErrUnsafeName, name)
		assert.Empty(t, done, name)
		_, err = b.admin.ExecContext(ctx, `DELETE FROM landlord.retired_copies WHERE id = $1`, id)
		require.NoError(t, err)
	}

	// The live tenant's database and data are untouched.
	db, err := b.app.Clusters.Open(ctx, "main", s.DatabaseName())
	require.NoError(t, err)
	defer db.Close()
	var tables int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1`, s.SchemaName()).Scan(&tables))
	assert.Equal(t, 3, tables)
}

// Whatever the catalog says, DropDatabase drops tenant and retired databases
// only, never a platform database.
func TestDropDatabaseRefusesPlatformDatabases(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	ctx := context.Background()
	shared, err := b.app.Clusters.SharedDatabase("main")
	require.NoError(t, err)
	for _, name := range []string{shared, "postgres", "template1", "landlord", "tenant_", "pd_retired_xyz"} {
		err := b.app.Clusters.DropDatabase(ctx, "main", name)
		assert.ErrorIs(t, err, clusters.ErrNotDroppable, name)
	}
	var n int
	require.NoError(t, b.admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_database WHERE datname IN ($1, 'postgres', 'template1')`, shared).Scan(&n))
	assert.Equal(t, 3, n)
}

// Purge checks the row's names against its slug before any DROP.
func TestPurgeChecksTheRowsNames(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	s := tenant.MustSlug("names_ok")
	shared, err := b.app.Clusters.SharedDatabase("main")
	require.NoError(t, err)
	ok := tenant.Tenant{Slug: s, Placement: tenant.Placement{Kind: tenant.PlacementSchema, Cluster: "main", Database: shared, Schema: s.SchemaName()}}
	require.NoError(t, provision.CheckTenantNames(b.prov, ok))
	dedicated := ok
	dedicated.Kind, dedicated.Database = tenant.PlacementDatabase, s.DatabaseName()
	require.NoError(t, provision.CheckTenantNames(b.prov, dedicated))

	for name, mod := range map[string]func(*tenant.Tenant){
		"schema not the slug's":          func(t *tenant.Tenant) { t.Schema = "landlord" },
		"schema of another tenant":       func(t *tenant.Tenant) { t.Schema = "tenant_other" },
		"schema placement elsewhere":     func(t *tenant.Tenant) { t.Database = "postgres" },
		"dedicated in the shared one":    func(t *tenant.Tenant) { t.Kind = tenant.PlacementDatabase },
		"dedicated database not its own": func(t *tenant.Tenant) { t.Kind, t.Database = tenant.PlacementDatabase, "tenant_other" },
		"unknown placement":              func(t *tenant.Tenant) { t.Kind = "cloud" },
	} {
		bad := ok
		mod(&bad)
		assert.ErrorIs(t, provision.CheckTenantNames(b.prov, bad), provision.ErrUnsafeName, name)
	}
}
