package tenancy_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenancy"
)

type recorder struct {
	mu sync.Mutex
	s  []tenancy.Slug
}

func (r *recorder) add(s tenancy.Slug) { r.mu.Lock(); r.s = append(r.s, s); r.mu.Unlock() }
func (r *recorder) count(s tenancy.Slug) int {
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

func newService(t *testing.T) (*tenancy.Service, *recorder) {
	t.Helper()
	dbtest.Landlord(t)
	rec := &recorder{}
	s, err := tenancy.New(tenancy.Options{
		Config:   dbtest.Config(t),
		Landlord: dbtest.AppPool(t, dbtest.Bouncer, 4),
		Admin:    dbtest.AdminDB(t),
		Log:      zerolog.Nop(),
		OnChange: rec.add,
	})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s, rec
}

// activeRow makes a catalog row (no schema: lifecycle changes do not need one).
func activeRow(t *testing.T, s *tenancy.Service, prefix string) tenancy.Tenant {
	t.Helper()
	ctx := context.Background()
	slug := tenancy.MustSlug(dbtest.Name(prefix))
	pl, err := s.DefaultPlacement(slug)
	require.NoError(t, err)
	row, inserted, err := tenancy.InsertProvisioning(ctx, s.Admin(), slug, "Tenant "+slug.String(), pl)
	require.NoError(t, err)
	require.True(t, inserted)
	t.Cleanup(func() {
		_, err := s.Admin().ExecContext(context.Background(), `DELETE FROM landlord.tenants WHERE id = $1`, row.ID)
		assert.NoError(t, err)
	})
	active, err := tenancy.Activate(ctx, s.Admin(), row)
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
	assert.Equal(t, tenancy.StatusSuspended, sus.Status)
	assert.Equal(t, v+1, sus.Version, "a status change bumps the version")
	assert.True(t, sus.UpdatedAt.After(ten.UpdatedAt) || sus.UpdatedAt.Equal(ten.UpdatedAt))
	assert.Equal(t, 1, rec.count(slug))

	again, err := s.Suspend(ctx, slug)
	require.NoError(t, err, "suspending a suspended tenant is a no-op")
	assert.Equal(t, sus.Version, again.Version)
	assert.Equal(t, 1, rec.count(slug))

	res, err := s.Resume(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusActive, res.Status)
	assert.Equal(t, v+2, res.Version)

	del, err := s.Delete(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusDeleted, del.Status)
	require.NotNil(t, del.DeletedAt)

	for op, f := range map[string]func(context.Context, tenancy.Slug) (tenancy.Tenant, error){
		"suspend": s.Suspend, "resume": s.Resume,
	} {
		_, err := f(ctx, slug)
		var se *tenancy.StatusError
		require.ErrorAs(t, err, &se, op)
		assert.ErrorIs(t, err, tenancy.ErrWrongStatus)
		assert.Equal(t, tenancy.StatusDeleted, se.Status)
	}
	_, err = s.Rename(ctx, slug, "New name")
	assert.ErrorIs(t, err, tenancy.ErrWrongStatus, "a deleted tenant is not renamed")
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
	st := tenancy.StatusSuspended
	got, err := s.Update(ctx, ten.Slug, tenancy.Patch{Name: &name, Status: &st})
	require.NoError(t, err)
	assert.Equal(t, "Renamed", got.Name)
	assert.Equal(t, tenancy.StatusSuspended, got.Status)
	assert.Equal(t, ten.Version+1, got.Version)
	assert.Equal(t, 1, rec.count(ten.Slug))

	// A rename alone does not bump the version.
	name2 := "Renamed again"
	got2, err := s.Update(ctx, ten.Slug, tenancy.Patch{Name: &name2})
	require.NoError(t, err)
	assert.Equal(t, got.Version, got2.Version)
	assert.Equal(t, 1, rec.count(ten.Slug))

	bad := tenancy.StatusDeleted
	_, err = s.Update(ctx, ten.Slug, tenancy.Patch{Name: &name, Status: &bad})
	assert.ErrorIs(t, err, tenancy.ErrInvalidTenant)
	empty := ""
	_, err = s.Update(ctx, ten.Slug, tenancy.Patch{Name: &empty})
	assert.ErrorIs(t, err, tenancy.ErrInvalidTenant)
	_, err = s.Update(ctx, ten.Slug, tenancy.Patch{})
	assert.ErrorIs(t, err, tenancy.ErrInvalidTenant)

	// Resume of a provisioning tenant is refused, and the name in the same patch is not applied.
	slug := tenancy.MustSlug(dbtest.Name("updp"))
	pl, err := s.DefaultPlacement(slug)
	require.NoError(t, err)
	row, _, err := tenancy.InsertProvisioning(ctx, s.Admin(), slug, "Prov", pl)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = s.Admin().ExecContext(context.Background(), `DELETE FROM landlord.tenants WHERE id = $1`, row.ID)
	})
	active := tenancy.StatusActive
	_, err = s.Update(ctx, slug, tenancy.Patch{Name: &name, Status: &active})
	assert.ErrorIs(t, err, tenancy.ErrWrongStatus)
	cur, err := s.Get(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, "Prov", cur.Name)

	_, err = s.Update(ctx, tenancy.MustSlug("no_such_tenant_x"), tenancy.Patch{Name: &name})
	assert.ErrorIs(t, err, tenancy.ErrTenantNotFound)
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
	var after tenancy.Slug
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10000)
		p, err := s.List(ctx, tenancy.ListOptions{After: after, Limit: 2})
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

	_, err := s.List(ctx, tenancy.ListOptions{Limit: tenancy.MaxPage + 1})
	assert.ErrorIs(t, err, tenancy.ErrInvalidTenant)
	_, err = s.List(ctx, tenancy.ListOptions{Status: "nope"})
	assert.ErrorIs(t, err, tenancy.ErrInvalidTenant)
	p, err := s.List(ctx, tenancy.ListOptions{Status: tenancy.StatusMoving, Limit: 500})
	require.NoError(t, err)
	for _, ten := range p.Tenants {
		assert.Equal(t, tenancy.StatusMoving, ten.Status)
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	assert.NoError(t, tenancy.ValidateName("Rotary Club of Kathmandu — Nepal"))
	for _, bad := range []string{"", "  ", " x", "x ", "a\nb", strings.Repeat("é", 201)} {
		assert.ErrorIs(t, tenancy.ValidateName(bad), tenancy.ErrInvalidTenant, "%q", bad)
	}
}

// Every status change is announced on tenancy.NotifyChannel in its own
// transaction; a refused change announces nothing.
func TestChangesAreNotified(t *testing.T) {
	t.Parallel()
	s, _ := newService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbtest.AdminURL(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{tenancy.NotifyChannel}.Sanitize())
	require.NoError(t, err)

	ten := activeRow(t, s, "ntf") // activation notifies once
	name := "Quiet rename"
	_, err = s.Update(ctx, ten.Slug, tenancy.Patch{Name: &name}) // no status change: no notice
	require.NoError(t, err)
	_, err = s.Suspend(ctx, ten.Slug)
	require.NoError(t, err)
	_, err = s.Resume(ctx, ten.Slug)
	require.NoError(t, err)
	_, err = s.Delete(ctx, ten.Slug)
	require.NoError(t, err)
	_, err = s.Resume(ctx, ten.Slug) // refused
	require.Error(t, err)
	require.NoError(t, s.Purge(ctx, ten.Slug))

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
	assert.Equal(t, 5, got, "activate, suspend, resume, delete, purge")
}
