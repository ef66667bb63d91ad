package modules_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The modules of this build are in the catalog, registered once: a second
// registration writes nothing; digital_cards is a default, elections needs it.
func TestBuiltinModules(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	n, err := modules.Register(ctx, dbtest.AdminDB(t))
	require.NoError(t, err)
	assert.Zero(t, n, "registered already (dbtest.Landlord): nothing to write")

	cards, err := f.reg.Get(ctx, modules.DigitalCards)
	require.NoError(t, err)
	assert.True(t, cards.Builtin)
	assert.True(t, cards.Default)
	assert.Equal(t, []string{"modules/digital_cards.hcl"}, cards.SchemaFiles)
	el, err := f.reg.Get(ctx, modules.Elections)
	require.NoError(t, err)
	assert.False(t, el.Default)
	assert.Equal(t, []string{modules.DigitalCards}, el.Requires)
	assert.Equal(t, []string{modules.DigitalCards}, modules.DefaultNames())
	assert.Equal(t, []string{"modules/digital_cards.hcl"}, modules.DefaultFiles())
	for _, d := range modules.Builtin() {
		assert.NoError(t, d.Validate(), d.Name)
	}
}

// A module that needs another is refused until that one is installed, and
// the one it needs cannot go while it is installed. A default module that a
// tenant uninstalls stays uninstalled (the fleet runner leaves it), and can
// be installed again.
func TestModuleRequirementsAndRemovedDefaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	ten := f.tenant(t)

	_, err := f.reg.Install(ctx, ten.Slug, modules.Elections)
	require.NoError(t, err)
	assert.True(t, tableExists(t, ten.Schema, "election_ballots"))
	err = f.reg.Uninstall(ctx, ten.Slug, modules.DigitalCards, true)
	assert.ErrorIs(t, err, modules.ErrInUse)
	assert.True(t, tableExists(t, ten.Schema, "digital_cards"), "nothing dropped")

	require.NoError(t, f.reg.Uninstall(ctx, ten.Slug, modules.Elections, false), "no data: no purge needed")
	assert.False(t, tableExists(t, ten.Schema, "elections"))
	// Cards hold data: refused without purge.
	_, err = dbtest.AdminDB(t).ExecContext(ctx, `INSERT INTO `+pgx.Identifier{ten.Schema, "members"}.Sanitize()+
		` (tenant_id, full_name) VALUES ($1, 'M')`, ten.ID)
	require.NoError(t, err)
	_, err = dbtest.AdminDB(t).ExecContext(ctx, `INSERT INTO `+pgx.Identifier{ten.Schema, "digital_cards"}.Sanitize()+
		` (tenant_id, member_id, qr_code, expires_at) SELECT $1, id, 'q', now() + interval '1 day' FROM `+
		pgx.Identifier{ten.Schema, "members"}.Sanitize(), ten.ID)
	require.NoError(t, err)
	var de *modules.DataError
	require.ErrorAs(t, f.reg.Uninstall(ctx, ten.Slug, modules.DigitalCards, false), &de)
	assert.Equal(t, []string{"digital_cards"}, de.Tables)
	require.NoError(t, f.reg.Uninstall(ctx, ten.Slug, modules.DigitalCards, true))
	assert.False(t, tableExists(t, ten.Schema, "digital_cards"))
	assert.False(t, tableExists(t, ten.Schema, "card_activities"))
	assert.True(t, tableExists(t, ten.Schema, "members"), "the core stays")
	list, err := f.reg.Installed(ctx, ten.Slug)
	require.NoError(t, err)
	assert.Empty(t, list)
	resolved, err := f.tenants.Resolve(ctx, ten.Slug)
	require.NoError(t, err)
	assert.Empty(t, resolved.Modules)

	_, err = f.reg.Install(ctx, ten.Slug, modules.Elections)
	assert.ErrorIs(t, err, modules.ErrRequired)
	assert.False(t, tableExists(t, ten.Schema, "elections"))

	// The fleet runner does not bring the removed default back.
	res, err := apptest.Open(t, apptest.Options{}).Fleet().Apply(ctx, schemaapply.FleetOptions{
		Selection: schemaapply.Selection{Slugs: []string{ten.Slug.String()}}})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	assert.False(t, tableExists(t, ten.Schema, "digital_cards"))

	_, err = f.reg.Install(ctx, ten.Slug, modules.DigitalCards)
	require.NoError(t, err)
	_, err = f.reg.Install(ctx, ten.Slug, modules.Elections)
	require.NoError(t, err)
	resolved, err = f.tenants.Resolve(ctx, ten.Slug)
	require.NoError(t, err)
	assert.Equal(t, []string{modules.DigitalCards, modules.Elections}, resolved.Modules)
}

// A tenant from before cards became a module has the cards' tables and no
// install record: the fleet runner records digital_cards as installed,
// without a statement on the tenant's schema; a rerun has nothing to do.
func TestFleetInstallsDefaultModules(t *testing.T) {
	t.Parallel()
	a := apptest.Open(t, apptest.Options{})
	ctx := context.Background()
	// The schema as core.hcl used to build it (core + the cards' tables), no record.
	old := dbtest.BareTenantRow(t, "oldt")
	db := dbtest.AdminDB(t)
	_, err := schemaapply.ApplyTenant(ctx, db, old.Spec(dbtest.Config(t).Tenant.AppRole, "modules/digital_cards.hcl"), schemaapply.Options{})
	require.NoError(t, err)
	slug := tenant.MustSlug(old.Slug)
	resolved, err := a.Catalog.Resolve(ctx, slug)
	require.NoError(t, err)
	assert.Empty(t, resolved.Modules)

	res, err := a.Fleet().Apply(ctx, schemaapply.FleetOptions{Selection: schemaapply.Selection{Slugs: []string{old.Slug}}})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.Len(t, res.Tenants, 1)
	assert.Equal(t, schemaapply.StatusUnchanged, res.Tenants[0].Status, "the tables were there: no statement")
	resolved, err = a.Catalog.Resolve(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, []string{modules.DigitalCards}, resolved.Modules)

	res, err = a.Fleet().Apply(ctx, schemaapply.FleetOptions{Selection: schemaapply.Selection{Slugs: []string{old.Slug}}})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Converged, "converged: skipped without inspection")
}

// A tenant in its own database cannot drop and record in one transaction:
// its routes go off first, then its tables, then the record — the same end
// state.
func TestUninstallInADedicatedDatabase(t *testing.T) {
	t.Parallel()
	a := apptest.Open(t, apptest.Options{})
	ctx := context.Background()
	s := tenant.MustSlug(dbtest.Name("moddb"))
	dbtest.RemoveAtCleanup(t, s)
	t.Cleanup(func() { _ = a.Clusters.DropDatabase(context.Background(), "main", s.DatabaseName()) })
	_, err := a.Provisioner.Provision(ctx, provision.Request{Slug: s, Name: "Dedicated",
		Placement: &tenant.Placement{Kind: tenant.PlacementDatabase}})
	require.NoError(t, err)
	shared, err := a.Provisioner.SharesCatalog(mustGet(t, a.Catalog.Get, s))
	require.NoError(t, err)
	assert.False(t, shared)

	_, err = a.Modules.Install(ctx, s, modules.Elections)
	require.NoError(t, err)
	resolved, err := a.Catalog.Resolve(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, []string{modules.DigitalCards, modules.Elections}, resolved.Modules)
	require.NoError(t, a.Modules.Uninstall(ctx, s, modules.Elections, false))
	resolved, err = a.Catalog.Resolve(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, []string{modules.DigitalCards}, resolved.Modules)
	files, err := a.Modules.FilesOf(ctx, resolved.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"modules/digital_cards.hcl"}, files)
	db, done, err := a.Clusters.TenantDB(ctx, resolved.Placement)
	require.NoError(t, err)
	defer done()
	var n int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'election%'`,
		resolved.Schema).Scan(&n))
	assert.Zero(t, n)
}

func mustGet(t *testing.T, get func(context.Context, tenant.Slug) (tenant.Tenant, error), s tenant.Slug) tenant.Tenant {
	t.Helper()
	ten, err := get(context.Background(), s)
	require.NoError(t, err)
	return ten
}
