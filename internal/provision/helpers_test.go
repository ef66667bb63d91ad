package provision_test

import (
	"context"
	"database/sql"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/modules"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// bundle is one test's services on the test database.
type bundle struct {
	app     *app.App
	admin   *sql.DB
	tenants *catalog.Catalog
	prov    *provision.Provisioner
	prefix  string // spare prefix of this test

	mu      sync.Mutex
	changed []tenant.Slug
}

type setup struct {
	warm int
	hook func(provision.Step)
}

func newBundle(t testing.TB, s setup) *bundle {
	t.Helper()
	b := newChildBundle(t, s.warm, dbtest.Name("pd_tspare")+"_", s.hook)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := b.prov.DrainWarmPool(ctx)
		assert.NoError(t, err)
	})
	return b
}

// newChildBundle is newBundle without the warm-pool cleanup (the crash
// child must leave what it built to its parent).
func newChildBundle(t testing.TB, warm int, sparePrefix string, hook func(provision.Step)) *bundle {
	t.Helper()
	b := &bundle{prefix: sparePrefix}
	b.app = apptest.Open(t, apptest.Options{
		Options: app.Options{SparePrefix: sparePrefix, ProvisionHook: hook, OnTenantChange: func(sl tenant.Slug) {
			b.mu.Lock()
			b.changed = append(b.changed, sl)
			b.mu.Unlock()
		}},
		Configure: func(c *config.Config) { c.Tenant.WarmPool = warm },
	})
	b.admin, b.tenants, b.prov = b.app.Admin, b.app.Catalog, b.app.Provisioner
	return b
}

// slug returns a fresh random slug whose row, schema and role are removed at cleanup.
func (b *bundle) slug(t testing.TB, prefix string) tenant.Slug {
	t.Helper()
	s := tenant.MustSlug(dbtest.Name(prefix))
	dbtest.RemoveAtCleanup(t, s)
	return s
}

func (b *bundle) changes() []tenant.Slug {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]tenant.Slug(nil), b.changed...)
}

// assertHealthy checks one active tenant whose live schema is exactly its
// desired one (the core, the default modules and moduleFiles), whose
// default modules are recorded installed, whose role exists, is granted to
// the application role and can use its tables.
func assertHealthy(t *testing.T, b *bundle, s tenant.Slug, moduleFiles ...string) tenant.Tenant {
	t.Helper()
	ctx := context.Background()
	ten, err := b.tenants.Get(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, tenant.StatusActive, ten.Status)
	assert.Equal(t, s.SchemaName(), ten.Schema)
	assert.NotEmpty(t, ten.SchemaHash)
	resolved, err := b.tenants.Resolve(ctx, s)
	require.NoError(t, err)
	for _, m := range modules.DefaultNames() {
		assert.True(t, resolved.HasModule(m), "default module %s installed", m)
	}

	files := append(modules.DefaultFiles(), moduleFiles...)
	sort.Strings(files)
	target, err := schemaapply.TenantTarget(b.prov.Spec(ten, files))
	require.NoError(t, err)
	assert.Equal(t, target.Hash(), ten.SchemaHash, "recorded hash is the desired one")
	stmts, _, err := schemaapply.Plan(ctx, b.admin, target)
	require.NoError(t, err)
	assert.Empty(t, stmts, "the live schema is the desired one")

	var roleOK, member, canUse bool
	require.NoError(t, b.admin.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1),
		       coalesce((SELECT pg_has_role($2, r.oid, 'MEMBER') FROM pg_roles r WHERE r.rolname = $1), false),
		       coalesce((SELECT has_table_privilege(r.oid, c.oid, 'INSERT') FROM pg_roles r, pg_class c
		                  WHERE r.rolname = $1 AND c.relname = 'members' AND c.relnamespace = to_regnamespace($3)), false)`,
		s.RoleName(), "pd_app", s.SchemaName()).Scan(&roleOK, &member, &canUse))
	assert.True(t, roleOK, "tenant role exists")
	assert.True(t, member, "application role may assume the tenant role")
	assert.True(t, canUse, "tenant role can write its tables")
	return ten
}

// assertNoOrphans checks that the tenant's schema and role exist only with
// a catalog row, and that this test's spares are exactly their catalog rows.
func assertNoOrphans(t *testing.T, b *bundle, s tenant.Slug) {
	t.Helper()
	ctx := context.Background()
	var schemas, roles int
	require.NoError(t, b.admin.QueryRowContext(ctx, `
		SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1),
		       (SELECT count(*) FROM pg_roles WHERE rolname = $1)`, s.SchemaName()).Scan(&schemas, &roles))
	if !catalogtest.Exists(t, b.admin, s) {
		assert.Zero(t, schemas, "orphan schema")
		assert.Zero(t, roles, "orphan role")
	}
	var spareRows, spareSchemas, spareRoles, unmatched int
	require.NoError(t, b.admin.QueryRowContext(ctx, `
		SELECT (SELECT count(*) FROM landlord.tenant_spares WHERE starts_with(name, $1)),
		       (SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, $1)),
		       (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)),
		       (SELECT count(*) FROM pg_namespace n WHERE starts_with(n.nspname, $1)
		           AND NOT EXISTS (SELECT FROM landlord.tenant_spares s WHERE s.name = n.nspname AND s.status = 'ready'))`,
		b.prefix).Scan(&spareRows, &spareSchemas, &spareRoles, &unmatched))
	assert.Equal(t, spareSchemas, spareRoles, "every spare schema has its role")
	assert.Zero(t, unmatched, "every spare schema has a ready catalog row")
	assert.Equal(t, spareRows, spareSchemas, "every spare row has its schema")
}
