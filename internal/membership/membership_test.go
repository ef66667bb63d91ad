package membership_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/apptest"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

type geoStub map[int64]bool

func (g geoStub) Exists(_ context.Context, id int64) (bool, error) { return g[id], nil }

func setup(t *testing.T) (*membership.Service, tenant.Slug, tenant.Slug) {
	t.Helper()
	a := dbtest.Tenant(t, "mema")
	b := dbtest.Tenant(t, "memb")
	cfg := dbtest.Config(t)
	r := apptest.Router(t, cfg, nil)
	// The unit-level geography check uses a known-ids set; the HTTP tests use the real catalog.
	return membership.NewService(r, geoStub{7: true}), tenant.MustSlug(a.Slug), tenant.MustSlug(b.Slug)
}

func ptr[T any](v T) *T { return &v }

func TestMemberCRUD(t *testing.T) {
	t.Parallel()
	s, a, b := setup(t)
	ctx := context.Background()

	m, err := s.Create(ctx, a, membership.New{FullName: "  Ada Lovelace ", Email: ptr("ada@example.test"), GeoUnitID: ptr(int64(7))})
	require.NoError(t, err)
	assert.Equal(t, "Ada Lovelace", m.FullName)
	assert.Equal(t, "active", m.Status)
	assert.Equal(t, int64(7), *m.GeoUnitID)

	got, err := s.Get(ctx, a, m.ID)
	require.NoError(t, err)
	assert.Equal(t, m.ID, got.ID)

	_, err = s.Get(ctx, b, m.ID)
	assert.ErrorIs(t, err, membership.ErrNotFound, "tenant B cannot see A's member")

	_, err = s.Create(ctx, a, membership.New{FullName: "Other", Email: ptr("ada@example.test")})
	assert.ErrorIs(t, err, membership.ErrEmailTaken)
	_, err = s.Create(ctx, b, membership.New{FullName: "Same email, other tenant", Email: ptr("ada@example.test")})
	assert.NoError(t, err, "emails are unique per tenant only")

	var patch membership.Patch
	require.NoError(t, patch.Email.UnmarshalJSON([]byte("null")))
	patch.Status = ptr("inactive")
	up, err := s.Update(ctx, a, m.ID, patch)
	require.NoError(t, err)
	assert.Nil(t, up.Email, "null clears")
	assert.Equal(t, "inactive", up.Status)
	assert.Equal(t, "Ada Lovelace", up.FullName, "absent stays")
	assert.Equal(t, int64(7), *up.GeoUnitID)

	_, err = s.Update(ctx, b, m.ID, patch)
	assert.ErrorIs(t, err, membership.ErrNotFound)

	require.NoError(t, s.Delete(ctx, a, m.ID))
	assert.ErrorIs(t, s.Delete(ctx, a, m.ID), membership.ErrNotFound)
}

func TestMemberValidation(t *testing.T) {
	t.Parallel()
	s, a, _ := setup(t)
	ctx := context.Background()
	for _, in := range []membership.New{
		{FullName: ""},
		{FullName: "   "},
		{FullName: string(make([]byte, 300))},
		{FullName: "x", Email: ptr("not an email")},
		{FullName: "x", Email: ptr("Ada <ada@example.test>")},
		{FullName: "x", Phone: ptr("call me")},
		{FullName: "x", Status: "emperor"},
		{FullName: "x", GeoUnitID: ptr(int64(999))},
	} {
		_, err := s.Create(ctx, a, in)
		require.Error(t, err, "%+v", in)
	}
	_, _, err := s.List(ctx, a, membership.ListQuery{Limit: 0})
	assert.ErrorIs(t, err, membership.ErrInvalidData)
	_, _, err = s.List(ctx, a, membership.ListQuery{Limit: 10, Status: "x"})
	assert.ErrorIs(t, err, membership.ErrInvalidData)
	_, _, err = s.List(ctx, a, membership.ListQuery{Limit: 10, GeoUnitID: ptr(int64(999))})
	assert.ErrorIs(t, err, membership.ErrUnknownGeo)
}

// Keyset pages stay stable while other members are inserted concurrently:
// every member that existed before is seen exactly once.
func TestPaginationStableUnderConcurrentInserts(t *testing.T) {
	t.Parallel()
	s, a, _ := setup(t)
	ctx := context.Background()
	before := map[uuid.UUID]bool{}
	for i := 0; i < 45; i++ {
		m, err := s.Create(ctx, a, membership.New{FullName: fmt.Sprintf("m%d", i)})
		require.NoError(t, err)
		before[m.ID] = true
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := s.Create(ctx, a, membership.New{FullName: fmt.Sprintf("new-%d-%d", w, i)})
				assert.NoError(t, err)
				time.Sleep(time.Millisecond)
			}
		}(w)
	}
	seen := map[uuid.UUID]int{}
	var after *uuid.UUID
	for pages := 0; ; pages++ {
		page, more, err := s.List(ctx, a, membership.ListQuery{After: after, Limit: 7})
		require.NoError(t, err)
		for _, m := range page {
			seen[m.ID]++
		}
		if !more || pages > 1000 {
			break
		}
		last := page[len(page)-1].ID
		after = &last
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for id := range before {
		assert.Equal(t, 1, seen[id], "member %s seen once", id)
	}
	for id, n := range seen {
		assert.Equal(t, 1, n, "no duplicates (%s)", id)
	}
}
