package pgroute_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The application role is a member of every tenant role but NOINHERIT:
// without a binding it reaches no tenant's tables, even schema-qualified,
// and inside a transaction only the role it assumed counts.
func TestAppRoleReachesNoTenantWithoutItsRole(t *testing.T) {
	tenants := newTenants(t, 2)
	a, b := tenants[0], tenants[1]
	forEachPath(t, func(t *testing.T, path dbtest.Path) {
		pool := dbtest.AppPool(t, path, 2)
		ctx := context.Background()
		var inherit bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT rolinherit FROM pg_roles WHERE rolname = current_user`).Scan(&inherit))
		assert.False(t, inherit, "the application role is NOINHERIT")

		members := pgx.Identifier{a.slug.SchemaName(), "members"}.Sanitize()
		for _, q := range []string{
			`SELECT count(*) FROM ` + members,
			`INSERT INTO ` + members + ` (tenant_id, full_name) VALUES ('` + a.id.String() + `', 'intruder')`,
			`DELETE FROM ` + members,
		} {
			_, err := pool.Exec(ctx, q)
			assertPermissionDenied(t, err, q)
		}

		// Bound to B's role (search_path and all), A's table stays closed.
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck
		_, err = tx.Exec(ctx, `SELECT set_config('search_path', $1, true), set_config('role', $2, true)`,
			pgx.Identifier{b.slug.SchemaName()}.Sanitize(), b.slug.RoleName())
		require.NoError(t, err)
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM members`).Scan(&n), "B's own table")
		assert.Equal(t, 1, n)
		_, err = tx.Exec(ctx, `SELECT count(*) FROM `+members)
		assertPermissionDenied(t, err, "A's table as B")
	})
	assertNoSessionLeak(t, dbtest.Bouncer)
}

func assertPermissionDenied(t *testing.T, err error, what string) {
	t.Helper()
	var pe *pgconn.PgError
	if assert.ErrorAs(t, err, &pe, what) {
		assert.Equal(t, "42501", pe.Code, "%s: %s", what, pe.Message)
	}
}

// Tenant code cannot switch roles: the guard refuses every form of it
// before anything is sent, in Do and in Tx. (PostgreSQL 15 lets a member
// SET ROLE to any role it belongs to; the guard is what stops tenant code
// from doing so — see docs/SECURITY.md.)
func TestTenantCodeCannotSwitchRoles(t *testing.T) {
	tenants := newTenants(t, 2)
	a, b := tenants[0], tenants[1]
	wc := &writeCounter{}
	r := newRouter(t, routerConfig(t, dbtest.Bouncer), pgroute.Options{ConfigurePool: wc.configure})
	ctx := context.Background()
	other := pgx.Identifier{b.slug.RoleName()}.Sanitize()
	for _, q := range []string{
		`SET ROLE ` + other,
		`SET LOCAL ROLE ` + other,
		`set role ` + other,
		`RESET ROLE`,
		`SET SESSION AUTHORIZATION ` + other,
		`SELECT set_config('role', '` + b.slug.RoleName() + `', true)`,
		`SELECT pg_catalog.set_config('role', '` + b.slug.RoleName() + `', false)`,
		`SELECT 1; SET ROLE ` + other,
	} {
		before := wc.n.Load()
		err := r.Do(ctx, a.slug, func(bt *pgroute.Batch) error {
			bt.Queue(q)
			return nil
		})
		assert.ErrorIs(t, err, pgroute.ErrSessionStatement, q)
		err = r.Tx(ctx, a.slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
			tx.Queue(q)
			return tx.Flush(ctx)
		})
		assert.ErrorIs(t, err, pgroute.ErrSessionStatement, q)
		assert.Equal(t, before, wc.n.Load(), "nothing sent: %s", q)
	}
}

// A tenant whose role this server no longer has (its copy retired by a move
// while a request still held the old placement) is a placement that is gone,
// not a client's invalid data: the router re-reads the placement, and a
// tenant that did not move gets the not-provisioned answer.
func TestMissingTenantRoleIsAGonePlacement(t *testing.T) {
	tenants := newTenants(t, 2)
	a, b := tenants[0], tenants[1]
	db := dbtest.AdminDB(t)
	// Renamed away (and back at cleanup, for the tenant's own cleanup to
	// drop it): SET ROLE to its name then finds no such role.
	role, gone := pgx.Identifier{a.slug.RoleName()}.Sanitize(), pgx.Identifier{a.slug.RoleName() + "_gone"}.Sanitize()
	_, err := db.Exec(`ALTER ROLE ` + role + ` RENAME TO ` + gone)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Exec(`ALTER ROLE ` + gone + ` RENAME TO ` + role) })
	r := newRouter(t, routerConfig(t, dbtest.Bouncer), pgroute.Options{})
	ctx := context.Background()
	count := func(slug tenant.Slug) error {
		return r.Do(ctx, slug, func(bt *pgroute.Batch) error {
			bt.Queue(`SELECT count(*) FROM members`).QueryRow(func(row pgx.Row) error { var n int; return row.Scan(&n) })
			return nil
		})
	}
	err = count(a.slug)
	assert.ErrorIs(t, err, pgroute.ErrTenantNotProvisioned)
	assert.NotErrorIs(t, err, pgroute.ErrInvalidData)
	assert.NoError(t, count(b.slug), "the other tenant is served")
}
