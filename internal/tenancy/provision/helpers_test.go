package provision_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenancy"
	"github.com/publicdigit/publicdigit/internal/tenancy/provision"
)

// bundle is one test's services on the test database.
type bundle struct {
	admin   *sql.DB
	tenants *tenancy.Service
	prov    *provision.Provisioner
	prefix  string // spare prefix of this test

	mu      sync.Mutex
	changed []tenancy.Slug
}

type setup struct {
	warm int
	hook func(tenancy.Step)
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
func newChildBundle(t testing.TB, warm int, sparePrefix string, hook func(tenancy.Step)) *bundle {
	t.Helper()
	s := setup{warm: warm, hook: hook}
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	b := &bundle{admin: dbtest.AdminDB(t), prefix: sparePrefix}
	var err error
	b.tenants, err = tenancy.New(tenancy.Options{
		Config:   cfg,
		Landlord: dbtest.AppPool(t, dbtest.Bouncer, 4),
		Admin:    b.admin,
		Log:      zerolog.Nop(),
		Hook:     s.hook,
		OnChange: func(sl tenancy.Slug) {
			b.mu.Lock()
			b.changed = append(b.changed, sl)
			b.mu.Unlock()
		},
	})
	require.NoError(t, err)
	t.Cleanup(b.tenants.Close)
	b.prov, err = provision.New(provision.Options{
		Tenants: b.tenants, Log: zerolog.Nop(), WarmPool: s.warm, SparePrefix: b.prefix, Hook: s.hook,
	})
	require.NoError(t, err)
	return b
}

// slug returns a fresh random slug whose row, schema and role are removed at cleanup.
func (b *bundle) slug(t testing.TB, prefix string) tenancy.Slug {
	t.Helper()
	s := tenancy.MustSlug(dbtest.Name(prefix))
	t.Cleanup(func() { dropTenant(t, b.admin, s) })
	return s
}

func dropTenant(t testing.TB, db *sql.DB, s tenancy.Slug) {
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `DELETE FROM landlord.tenants WHERE slug = $1`, s.String()); err != nil {
		t.Errorf("cleanup %s: %v", s, err)
	}
	dbtest.DropSchema(t, db, s.SchemaName())
	if _, err := db.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{s.RoleName()}.Sanitize()); err != nil {
		t.Errorf("cleanup role %s: %v", s, err)
	}
}

func (b *bundle) changes() []tenancy.Slug {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]tenancy.Slug(nil), b.changed...)
}

// assertHealthy checks one active tenant whose live schema is exactly its
// desired one, whose role exists, is granted to the application role and
// can use its tables.
func assertHealthy(t *testing.T, b *bundle, s tenancy.Slug, moduleFiles ...string) tenancy.Tenant {
	t.Helper()
	ctx := context.Background()
	ten, err := b.tenants.Get(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusActive, ten.Status)
	assert.Equal(t, s.SchemaName(), ten.Schema)
	assert.NotEmpty(t, ten.SchemaHash)

	target, err := schemaapply.TenantTarget(b.prov.Spec(ten, moduleFiles))
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
func assertNoOrphans(t *testing.T, b *bundle, s tenancy.Slug) {
	t.Helper()
	ctx := context.Background()
	var rows, schemas, roles int
	require.NoError(t, b.admin.QueryRowContext(ctx, `
		SELECT (SELECT count(*) FROM landlord.tenants WHERE slug = $1),
		       (SELECT count(*) FROM pg_namespace WHERE nspname = $2),
		       (SELECT count(*) FROM pg_roles WHERE rolname = $2)`, s.String(), s.SchemaName()).Scan(&rows, &schemas, &roles))
	assert.LessOrEqual(t, rows, 1)
	if rows == 0 {
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
