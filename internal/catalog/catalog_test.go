package catalog_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

type recorder struct {
	mu sync.Mutex
	s  []tenant.Slug
}

func (r *recorder) add(s tenant.Slug) { r.mu.Lock(); r.s = append(r.s, s); r.mu.Unlock() }
func (r *recorder) count(s tenant.Slug) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.s {
		if x == s {
			n++
		}
	}
	return n
}

func newService(t *testing.T) (*catalog.Catalog, *recorder) {
	t.Helper()
	dbtest.Landlord(t)
	rec := &recorder{}
	s, err := catalog.New(catalog.Options{
		Pool:     dbtest.AppPool(t, dbtest.Bouncer, 4),
		Admin:    dbtest.AdminDB(t),
		Log:      zerolog.Nop(),
		OnChange: rec.add,
	})
	require.NoError(t, err)
	return s, rec
}

// placement is a schema placement in the test database.
func placement(t *testing.T, s *catalog.Catalog, slug tenant.Slug) tenant.Placement {
	t.Helper()
	var db string
	require.NoError(t, s.Admin().QueryRow(`SELECT current_database()`).Scan(&db))
	return tenant.Placement{Kind: tenant.PlacementSchema, Cluster: "main", Database: db, Schema: slug.SchemaName()}
}

// activeRow makes a catalog row (no schema: lifecycle changes do not need one).
func activeRow(t *testing.T, s *catalog.Catalog, prefix string) tenant.Tenant {
	t.Helper()
	ctx := context.Background()
	slug := tenant.MustSlug(dbtest.Name(prefix))
	row, inserted, err := catalog.InsertProvisioning(ctx, s.Admin(), slug, "Tenant "+slug.String(), placement(t, s, slug))
	require.NoError(t, err)
	require.True(t, inserted)
	t.Cleanup(func() { catalogtest.DeleteID(t, s.Admin(), row.ID) })
	active, err := catalog.Activate(ctx, s.Admin(), row)
	require.NoError(t, err)
	return active
}

func TestLifecycleTransitions(t *testing.T) {
	t.Parallel()
	s, rec := newService(t)
	ctx := context.Background()
	ten := activeRow(t, s, "life")
	slug := ten.Slug
	v := ten.Version

	sus, err := s.Suspend(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, tenant.StatusSuspended, sus.Status)
	assert.Equal(t, v+1, sus.Version, "a status change bumps the version")
	assert.True(t, sus.UpdatedAt.After(ten.UpdatedAt) || sus.UpdatedAt.Equal(ten.UpdatedAt))
	assert.Equal(t, 1, rec.count(slug))

	again, err := s.Suspend(ctx, slug)
	require.NoError(t, err, "suspending a suspended tenant is a no-op")
	assert.Equal(t, sus.Version, again.Version)
	assert.Equal(t, 1, rec.count(slug))

	res, err := s.Resume(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, tenant.StatusActive, res.Status)
	assert.Equal(t, v+2, res.Version)

	del, err := s.Delete(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, tenant.StatusDeleted, del.Status)
	require.NotNil(t, del.DeletedAt)

	for op, f := range map[string]func(context.Context, tenant.Slug) (tenant.Tenant, error){
		"suspend": s.Suspend, "resume": s.Resume,
	} {
		_, err := f(ctx, slug)
		var se *tenant.StatusError
		require.ErrorAs(t, err, &se, op)
		assert.ErrorIs(t, err, tenant.ErrWrongStatus)
		assert.Equal(t, tenant.StatusDeleted, se.Status)
	}
	_, err = s.Rename(ctx, slug, "New name")
	assert.ErrorIs(t, err, tenant.ErrWrongStatus, "a deleted tenant is not renamed")
	got, err := s.Get(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, del.Version, got.Version, "refused changes change nothing")
}

func TestUpdateIsAllOrNothing(t *testing.T) {
	t.Parallel()
	s, rec := newService(t)
	ctx := context.Background()
	ten := activeRow(t, s, "upd")
	name := "Renamed"
	st := tenant.StatusSuspended
	got, err := s.Update(ctx, ten.Slug, catalog.Patch{Name: &name, Status: &st})
	require.NoError(t, err)
	assert.Equal(t, "Renamed", got.Name)
	assert.Equal(t, tenant.StatusSuspended, got.Status)
	assert.Equal(t, ten.Version+1, got.Version)
	assert.Equal(t, 1, rec.count(ten.Slug))

	// A rename alone does not bump the version.
	name2 := "Renamed again"
	got2, err := s.Update(ctx, ten.Slug, catalog.Patch{Name: &name2})
	require.NoError(t, err)
	assert.Equal(t, got.Version, got2.Version)
	assert.Equal(t, 1, rec.count(ten.Slug))

	bad := tenant.StatusDeleted
	_, err = s.Update(ctx, ten.Slug, catalog.Patch{Name: &name, Status: &bad})
	assert.ErrorIs(t, err, tenant.ErrInvalid)
	empty := ""
	_, err = s.Update(ctx, ten.Slug, catalog.Patch{Name: &empty})
	assert.ErrorIs(t, err, tenant.ErrInvalid)
	_, err = s.Update(ctx, ten.Slug, catalog.Patch{})
	assert.ErrorIs(t, err, tenant.ErrInvalid)

	// Resume of a provisioning tenant is refused, and the name in the same patch is not applied.
	slug := tenant.MustSlug(dbtest.Name("updp"))
	row, _, err := catalog.InsertProvisioning(ctx, s.Admin(), slug, "Prov", placement(t, s, slug))
	require.NoError(t, err)
	t.Cleanup(func() { catalogtest.DeleteID(t, s.Admin(), row.ID) })
	active := tenant.StatusActive
	_, err = s.Update(ctx, slug, catalog.Patch{Name: &name, Status: &active})
	assert.ErrorIs(t, err, tenant.ErrWrongStatus)
	cur, err := s.Get(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, "Prov", cur.Name)

	_, err = s.Update(ctx, tenant.MustSlug("no_such_tenant_x"), catalog.Patch{Name: &name})
	assert.ErrorIs(t, err, tenant.ErrNotFound)
}

func TestListPages(t *testing.T) {
	t.Parallel()
	s, _ := newService(t)
	ctx := context.Background()
	prefix := dbtest.Name("lst") + "_"
	var want []string
	for i := 0; i < 5; i++ {
		ten := activeRow(t, s, prefix)
		want = append(want, ten.Slug.String())
	}
	// Walk the whole catalog in pages of 2 and keep ours.
	var got []string
	var after tenant.Slug
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10000)
		p, err := s.List(ctx, catalog.ListOptions{After: after, Limit: 2})
		require.NoError(t, err)
		assert.LessOrEqual(t, len(p.Tenants), 2)
		for _, ten := range p.Tenants {
			if len(ten.Slug.String()) > len(prefix) && ten.Slug.String()[:len(prefix)] == prefix {
				got = append(got, ten.Slug.String())
			}
		}
		if p.Next.IsZero() {
			break
		}
		after = p.Next
	}
	assert.ElementsMatch(t, want, got)

	_, err := s.List(ctx, catalog.ListOptions{Limit: catalog.MaxPage + 1})
	assert.ErrorIs(t, err, tenant.ErrInvalid)
	_, err = s.List(ctx, catalog.ListOptions{Status: "nope"})
	assert.ErrorIs(t, err, tenant.ErrInvalid)
	p, err := s.List(ctx, catalog.ListOptions{Status: tenant.StatusMoving, Limit: 500})
	require.NoError(t, err)
	for _, ten := range p.Tenants {
		assert.Equal(t, tenant.StatusMoving, ten.Status)
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	assert.NoError(t, tenant.ValidateName("Rotary Club of Kathmandu — Nepal"))
	for _, bad := range []string{"", "  ", " x", "x ", "a\nb", strings.Repeat("é", 201)} {
		assert.ErrorIs(t, tenant.ValidateName(bad), tenant.ErrInvalid, "%q", bad)
	}
}

// Every status change is announced on tenant.NotifyChannel in its own
// transaction; a refused change announces nothing.
func TestChangesAreNotified(t *testing.T) {
	t.Parallel()
	s, _ := newService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbtest.AdminURL(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{tenant.NotifyChannel}.Sanitize())
	require.NoError(t, err)

	ten := activeRow(t, s, "ntf") // activation notifies once
	name := "Quiet rename"
	_, err = s.Update(ctx, ten.Slug, catalog.Patch{Name: &name}) // no status change: no notice
	require.NoError(t, err)
	_, err = s.Suspend(ctx, ten.Slug)
	require.NoError(t, err)
	_, err = s.Resume(ctx, ten.Slug)
	require.NoError(t, err)
	_, err = s.Delete(ctx, ten.Slug)
	require.NoError(t, err)
	_, err = s.Resume(ctx, ten.Slug) // refused
	require.Error(t, err)
	require.NoError(t, catalog.DeletePurged(ctx, s.Admin(), ten))

	got := 0
	for {
		wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		n, err := conn.WaitForNotification(wctx)
		wcancel()
		if err != nil {
			break
		}
		if n.Payload == ten.Slug.String() {
			got++
		}
	}
	assert.Equal(t, 5, got, "activate, suspend, resume, delete, delete of the purged row")
}

// The catalog refuses names that are not a tenant's own (CHECK
// constraints), whoever writes them: purge and purge-retired drop these.
func TestCatalogChecksTenantAndRetiredNames(t *testing.T) {
	t.Parallel()
	tt := dbtest.TenantRow(t, "names")
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	for _, q := range []string{
		`UPDATE landlord.tenants SET schema_name = 'landlord' WHERE id = $1`,
		`UPDATE landlord.tenants SET schema_name = 'public' WHERE id = $1`,
		`UPDATE landlord.tenants SET schema_name = 'tenant_other' WHERE id = $1`,
		`UPDATE landlord.tenants SET placement = 'database', database_name = current_database() WHERE id = $1`,
		`UPDATE landlord.tenants SET slug = 'Bad Slug' WHERE id = $1`,
		`INSERT INTO landlord.retired_copies (tenant_id, slug, cluster, database_name, schema_name)
		 SELECT id, slug, cluster, database_name, 'landlord' FROM landlord.tenants WHERE id = $1`,
		`INSERT INTO landlord.retired_copies (tenant_id, slug, cluster, database_name, schema_name, whole_database)
		 SELECT id, slug, cluster, current_database(), 'pd_retired_0123456789ab', true FROM landlord.tenants WHERE id = $1`,
	} {
		_, err := db.ExecContext(ctx, q, tt.ID)
		var pe *pgconn.PgError
		if assert.ErrorAs(t, err, &pe, q) {
			assert.Equal(t, "23514", pe.Code, "check_violation: %s", q)
		}
	}
}

// The application role reads the tenant catalog and changes what the
// lifecycle changes (name, status), never a placement: the names purge
// drops are written by the admin role only.
func TestAppRoleCannotRewriteAPlacement(t *testing.T) {
	t.Parallel()
	dbtest.Landlord(t)
	app := dbtest.AppPool(t, dbtest.Bouncer, 2)
	ctx := context.Background()
	for _, q := range []string{
		`UPDATE landlord.tenants SET schema_name = 'landlord' WHERE false`,
		`UPDATE landlord.tenants SET database_name = 'publicdigit' WHERE false`,
		`UPDATE landlord.tenants SET cluster = 'b', placement = 'database' WHERE false`,
		`UPDATE landlord.tenants SET schema_hash = NULL WHERE false`,
		`INSERT INTO landlord.tenants (slug, name, database_name, schema_name) SELECT 'x', 'x', 'x', 'tenant_x' WHERE false`,
		`DELETE FROM landlord.tenants WHERE false`,
	} {
		_, err := app.Exec(ctx, q)
		var pe *pgconn.PgError
		if assert.ErrorAs(t, err, &pe, q) {
			assert.Equal(t, "42501", pe.Code, "insufficient_privilege: %s", q)
		}
	}
	for _, q := range []string{
		`SELECT count(*) FROM landlord.tenants`,
		`UPDATE landlord.tenants SET status = status, name = name, version = version, updated_at = now(), deleted_at = deleted_at WHERE false`,
	} {
		_, err := app.Exec(ctx, q)
		assert.NoError(t, err, q)
	}
}
