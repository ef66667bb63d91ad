package modules_test

import (
	"context"
	"slices"
	"testing"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

type fixture struct {
	app     *app.App
	reg     *modules.Service
	tenants *catalog.Catalog
	prov    *provision.Provisioner
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	a := apptest.Open(t, apptest.Options{})
	return &fixture{app: a, reg: a.Modules, tenants: a.Catalog, prov: a.Provisioner}
}

// module registers a module with a random name; it is deleted at cleanup
// (register it before the tenants that install it).
func (f *fixture) module(t *testing.T, files ...string) modules.Module {
	t.Helper()
	m, err := f.reg.Create(context.Background(), modules.Module{
		Name: dbtest.Name("mod"), DisplayName: "Test module", Version: "1.0.0", Description: "test", SchemaFiles: files,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := dbtest.AdminDB(t).ExecContext(context.Background(), `DELETE FROM landlord.modules WHERE name = $1`, m.Name)
		assert.NoError(t, err)
	})
	return m
}

// tenant provisions a tenant, removed at cleanup.
func (f *fixture) tenant(t *testing.T) tenant.Tenant {
	t.Helper()
	s := tenant.MustSlug(dbtest.Name("reg"))
	dbtest.RemoveAtCleanup(t, s)
	res, err := f.prov.Provision(context.Background(), provision.Request{Slug: s, Name: "Registry test"})
	require.NoError(t, err)
	return res.Tenant
}

func tableExists(t *testing.T, schema, table string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, dbtest.AdminDB(t).QueryRowContext(context.Background(),
		`SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{schema, table}.Sanitize()).Scan(&ok))
	return ok
}

func TestModuleCatalog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	m := f.module(t, "modules/events.hcl")
	assert.Equal(t, []string{"modules/events.hcl"}, m.SchemaFiles)
	assert.False(t, m.CreatedAt.IsZero())

	got, err := f.reg.Get(ctx, m.Name)
	require.NoError(t, err)
	assert.Equal(t, m.Name, got.Name)
	all, err := f.reg.List(ctx)
	require.NoError(t, err)
	assert.Contains(t, names(all), m.Name)

	_, err = f.reg.Create(ctx, modules.Module{Name: m.Name, DisplayName: "x", Version: "1"})
	assert.ErrorIs(t, err, modules.ErrModuleExists)
	_, err = f.reg.Get(ctx, dbtest.Name("nomod"))
	assert.ErrorIs(t, err, modules.ErrModuleNotFound)
	_, err = f.reg.Get(ctx, "Bad-Name")
	assert.ErrorIs(t, err, modules.ErrModuleNotFound)
}

func names(ms []modules.Module) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

func TestCreateRefusesInvalidModules(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ok := modules.Module{Name: dbtest.Name("bad"), DisplayName: "X", Version: "1.0"}
	for name, mod := range map[string]func(m *modules.Module){
		"name":         func(m *modules.Module) { m.Name = "Events" },
		"display name": func(m *modules.Module) { m.DisplayName = "" },
		"version":      func(m *modules.Module) { m.Version = "1 0" },
		"missing file": func(m *modules.Module) { m.SchemaFiles = []string{"modules/nope.hcl"} },
		"path escape":  func(m *modules.Module) { m.SchemaFiles = []string{"../landlord.hcl"} },
		"core file":    func(m *modules.Module) { m.SchemaFiles = []string{"core.hcl"} },
		"duplicate":    func(m *modules.Module) { m.SchemaFiles = []string{"modules/events.hcl", "modules/events.hcl"} },
		"long descr":   func(m *modules.Module) { m.Description = string(make([]byte, 2001)) },
	} {
		m := ok
		mod(&m)
		_, err := f.reg.Create(context.Background(), m)
		assert.ErrorIs(t, err, modules.ErrInvalidModule, name)
	}
	_, err := f.reg.Get(context.Background(), ok.Name)
	assert.ErrorIs(t, err, modules.ErrModuleNotFound, "nothing was registered")
}

func TestInstallAndUninstall(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	events := f.module(t, "modules/events.hcl")
	donations := f.module(t, "modules/donations.hcl")
	ten := f.tenant(t)

	in, err := f.reg.Install(ctx, ten.Slug, events.Name)
	require.NoError(t, err)
	assert.Equal(t, events.Name, in.Module)
	assert.Equal(t, "installed", in.Status)
	assert.True(t, tableExists(t, ten.Schema, "events"))
	assert.True(t, tableExists(t, ten.Schema, "event_registrations"))

	_, err = f.reg.Install(ctx, ten.Slug, events.Name)
	assert.ErrorIs(t, err, modules.ErrAlreadyInstalled)

	_, err = f.reg.Install(ctx, ten.Slug, donations.Name)
	require.NoError(t, err)
	list, err := f.reg.Installed(ctx, ten.Slug)
	require.NoError(t, err)
	require.Len(t, list, 3, "the default module and both")

	// The recorded hash is that of core + the three modules, and the schema matches it.
	cur, err := f.tenants.Get(ctx, ten.Slug)
	require.NoError(t, err)
	target, err := schemaapply.TenantTarget(f.prov.Spec(cur, []string{"modules/digital_cards.hcl", "modules/donations.hcl", "modules/events.hcl"}))
	require.NoError(t, err)
	assert.Equal(t, target.Hash(), cur.SchemaHash)
	stmts, _, err := schemaapply.Plan(ctx, dbtest.AdminDB(t), target)
	require.NoError(t, err)
	assert.Empty(t, stmts)

	// A row in the module's table blocks the uninstall unless forced.
	_, err = dbtest.AdminDB(t).ExecContext(ctx, `INSERT INTO `+pgx.Identifier{ten.Schema, "events"}.Sanitize()+
		` (tenant_id, title, starts_at) VALUES ($1, 'Gala', now())`, ten.ID)
	require.NoError(t, err)
	err = f.reg.Uninstall(ctx, ten.Slug, events.Name, false)
	var de *modules.DataError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, []string{"events"}, de.Tables)
	assert.ErrorIs(t, err, modules.ErrModuleHasData)
	assert.True(t, tableExists(t, ten.Schema, "events"), "nothing dropped")

	require.NoError(t, f.reg.Uninstall(ctx, ten.Slug, events.Name, true))
	assert.False(t, tableExists(t, ten.Schema, "events"))
	assert.False(t, tableExists(t, ten.Schema, "event_registrations"))
	assert.True(t, tableExists(t, ten.Schema, "donations"), "the other modules stay")
	assert.True(t, tableExists(t, ten.Schema, "digital_cards"), "the other modules stay")
	list, err = f.reg.Installed(ctx, ten.Slug)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, []string{modules.DigitalCards, donations.Name}, []string{list[0].Module, list[1].Module})

	// An empty module uninstalls without force.
	require.NoError(t, f.reg.Uninstall(ctx, ten.Slug, donations.Name, false))
	assert.False(t, tableExists(t, ten.Schema, "donations"))
	assert.ErrorIs(t, f.reg.Uninstall(ctx, ten.Slug, donations.Name, false), modules.ErrNotInstalled)
	assert.ErrorIs(t, f.reg.Uninstall(ctx, ten.Slug, dbtest.Name("nomod"), false), modules.ErrModuleNotFound)
}

func TestInstallNeedsALiveTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	events := f.module(t, "modules/events.hcl")
	ten := f.tenant(t)
	_, err := f.tenants.Delete(ctx, ten.Slug)
	require.NoError(t, err)
	_, err = f.reg.Install(ctx, ten.Slug, events.Name)
	assert.ErrorIs(t, err, tenant.ErrWrongStatus)
	assert.False(t, tableExists(t, ten.Schema, "events"))
	_, err = f.reg.Install(ctx, tenant.MustSlug(dbtest.Name("ghost")), events.Name)
	assert.ErrorIs(t, err, tenant.ErrNotFound)
	_, err = f.reg.Install(ctx, ten.Slug, dbtest.Name("nomod"))
	assert.ErrorIs(t, err, tenant.ErrWrongStatus, "the tenant's status is checked first")
}

// A tenant in its own database keeps its module tables there: the "does the
// module hold rows?" check looks in that database (the shared one has no
// such schema, and a missing table there is not "no rows"), so an uninstall
// without force is refused and nothing is dropped.
func TestUninstallOfADedicatedTenantChecksItsOwnDatabase(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	events := f.module(t, "modules/events.hcl")
	s := tenant.MustSlug(dbtest.Name("regded"))
	dbtest.RemoveAtCleanup(t, s)
	t.Cleanup(func() { _ = f.app.Clusters.DropDatabase(context.Background(), "main", s.DatabaseName()) })
	res, err := f.prov.Provision(ctx, provision.Request{Slug: s, Name: "Dedicated registry test",
		Placement: &tenant.Placement{Kind: tenant.PlacementDatabase}})
	require.NoError(t, err)
	ten := res.Tenant
	_, err = f.reg.Install(ctx, s, events.Name)
	require.NoError(t, err)

	own, err := f.app.Clusters.Open(ctx, "main", s.DatabaseName())
	require.NoError(t, err)
	defer own.Close()
	ownTable := func(table string) bool {
		var ok bool
		require.NoError(t, own.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`,
			pgx.Identifier{ten.Schema, table}.Sanitize()).Scan(&ok))
		return ok
	}
	require.True(t, ownTable("events"))
	assert.False(t, tableExists(t, ten.Schema, "events"), "nothing of the tenant in the shared database")
	_, err = own.ExecContext(ctx, `INSERT INTO `+pgx.Identifier{ten.Schema, "events"}.Sanitize()+
		` (tenant_id, title, starts_at) VALUES ($1, 'Gala', now())`, ten.ID)
	require.NoError(t, err)

	err = f.reg.Uninstall(ctx, s, events.Name, false)
	var de *modules.DataError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, []string{"events"}, de.Tables)
	assert.True(t, ownTable("events"), "nothing dropped")
	assert.True(t, ownTable("event_registrations"), "nothing dropped")
	var rows int
	require.NoError(t, own.QueryRowContext(ctx, `SELECT count(*) FROM `+pgx.Identifier{ten.Schema, "events"}.Sanitize()).Scan(&rows))
	assert.Equal(t, 1, rows)
	list, err := f.reg.Installed(ctx, s)
	require.NoError(t, err)
	i := slices.IndexFunc(list, func(x modules.Install) bool { return x.Module == events.Name })
	require.GreaterOrEqual(t, i, 0, "still installed: %v", list)
	assert.Equal(t, modules.StatusInstalled, list[i].Status, "its routes on again")

	require.NoError(t, f.reg.Uninstall(ctx, s, events.Name, true))
	assert.False(t, ownTable("events"))
	assert.False(t, ownTable("event_registrations"))
}
