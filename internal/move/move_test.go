package move_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// schema on main → dedicated database on b → schema on main, in each mode:
// same data, a converged target, the source retired and closed, the
// tenant's role gone from the server it left, no replication artefact left.
func TestMoveAcrossPlacementsAndClusters(t *testing.T) {
	for _, mode := range []move.Mode{move.ModeLogical, move.ModeLock} {
		t.Run(string(mode), func(t *testing.T) { moveAcross(t, mode) })
	}
}

func moveAcross(t *testing.T, mode move.Mode) {
	e := newEnv(t, envOptions{})
	slug := e.tenant(t, 300)
	ctx := context.Background()
	before := e.snapshot(t, slug)
	require.Len(t, before, 300)
	mainDB, err := e.clusters.Admin("main")
	require.NoError(t, err)
	keys := keysOf(t, mainDB, slug)

	res, err := e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b", Mode: mode})
	require.NoError(t, err)
	assert.Equal(t, mode, res.Mode)
	assert.Equal(t, tenant.PlacementDatabase, res.Tenant.Kind)
	assert.Equal(t, "b", res.Tenant.Cluster)
	assert.Equal(t, slug.DatabaseName(), res.Tenant.Database)
	assert.Equal(t, tenant.StatusActive, res.Tenant.Status)
	assert.EqualValues(t, 900, res.Rows, "members + cards + activities")
	assert.Positive(t, res.WritePause)
	assert.Equal(t, before, e.snapshot(t, slug), "same data on the new placement")
	exists, grants := e.roleOn(t, "main", slug)
	assert.False(t, exists, "the tenant's role left main with the tenant")
	assert.Zero(t, grants, "no privilege of the tenant's role left on main")

	// The target's indexes and keys were rebuilt after the copy exactly as
	// the schema wants them: Atlas plans nothing for it.
	tdb, err := e.clusters.Open(ctx, "b", slug.DatabaseName())
	require.NoError(t, err)
	target, err := schemaapply.TenantTarget(schemaapply.TenantSpec{Schema: slug.SchemaName(), Role: slug.RoleName(), AppRole: "pd_app",
		Modules: modules.DefaultFiles()})
	require.NoError(t, err)
	stmts, _, err := schemaapply.Plan(ctx, tdb, target)
	require.NoError(t, err)
	assert.Empty(t, stmts, "moved schema converged")
	assert.Equal(t, keys, keysOf(t, tdb, slug), "the same keys, foreign keys and indexes, validated as they were")
	tdb.Close()

	res2, err := e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementSchema, Cluster: "main", Mode: mode})
	require.NoError(t, err)
	assert.Equal(t, tenant.PlacementSchema, res2.Tenant.Kind)
	assert.Equal(t, "main", res2.Tenant.Cluster)
	assert.Equal(t, before, e.snapshot(t, slug))
	assert.Equal(t, keys, keysOf(t, mainDB, slug), "the same keys back on main")
	exists, grants = e.roleOn(t, "b", slug)
	assert.False(t, exists, "the tenant's role left b with the tenant")
	assert.Zero(t, grants)
	exists, _ = e.roleOn(t, "main", slug)
	assert.True(t, exists, "the tenant's role is back on main")
	assert.Empty(t, e.leftovers(t, slug), "no publication, subscription, slot or prepared transaction left")

	// Two retired copies: the schema on main, the whole database on b.
	copies, err := e.tenants.RetiredCopies(ctx, slug)
	require.NoError(t, err)
	require.Len(t, copies, 2)
	assert.False(t, copies[0].WholeDatabase)
	assert.Equal(t, res.Retired, copies[0].Schema)
	assert.True(t, copies[1].WholeDatabase)
	assert.Equal(t, res2.Retired, copies[1].Database, "the dedicated database was renamed")

	// The retired schema is closed to the tenant's role (back on main).
	admin := dbtest.AdminDB(t)
	var usable bool
	require.NoError(t, admin.QueryRow(`SELECT has_schema_privilege($1, $2, 'USAGE')`, slug.RoleName(), res.Retired).Scan(&usable))
	assert.False(t, usable)

	// Grace period: nothing purged yet; then everything.
	purged, err := e.prov.PurgeRetired(ctx, time.Hour, slug)
	require.NoError(t, err)
	assert.Empty(t, purged)
	purged, err = e.prov.PurgeRetired(ctx, 0, slug)
	require.NoError(t, err)
	assert.Len(t, purged, 2)
	var n int
	require.NoError(t, admin.QueryRow(`SELECT count(*) FROM pg_namespace WHERE nspname = $1`, res.Retired).Scan(&n))
	assert.Zero(t, n)
	b, err := e.clusters.Admin("b")
	require.NoError(t, err)
	require.NoError(t, b.QueryRow(`SELECT count(*) FROM pg_database WHERE datname = $1`, res2.Retired).Scan(&n))
	assert.Zero(t, n)
	assert.Equal(t, before, e.snapshot(t, slug), "purging retired copies leaves the live tenant alone")
}

// A logical move within one server (schema → dedicated database on main and
// back): the slot and the target live on the same server.
func TestMoveWithinOneServer(t *testing.T) {
	e := newEnv(t, envOptions{})
	slug := e.tenant(t, 200)
	ctx := context.Background()
	before := e.snapshot(t, slug)
	for _, to := range []tenant.PlacementKind{tenant.PlacementDatabase, tenant.PlacementSchema} {
		res, err := e.mover.Move(ctx, move.Request{Slug: slug, To: to})
		require.NoError(t, err, "to %s", to)
		assert.Equal(t, move.ModeLogical, res.Mode)
		assert.Equal(t, "main", res.Tenant.Cluster)
		assert.Equal(t, to, res.Tenant.Kind)
		assert.Equal(t, before, e.snapshot(t, slug))
		exists, _ := e.roleOn(t, "main", slug)
		assert.True(t, exists, "the tenant still lives on main")
	}
	assert.Empty(t, e.leftovers(t, slug))
}

func TestMoveRefusesBadRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	slug := e.tenant(t, 5)
	ctx := context.Background()
	get := func() tenant.Tenant {
		tn, err := e.tenants.Get(ctx, slug)
		require.NoError(t, err)
		return tn
	}
	orig := get()

	_, err := e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementSchema})
	assert.ErrorIs(t, err, move.ErrSamePlacement)
	_, err = e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementSchema, Cluster: "main"})
	assert.ErrorIs(t, err, move.ErrSamePlacement)
	_, err = e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "mars"})
	assert.ErrorIs(t, err, tenant.ErrInvalid)
	_, err = e.mover.Move(ctx, move.Request{Slug: slug, To: "cloud"})
	assert.ErrorIs(t, err, tenant.ErrInvalid)
	_, err = e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Mode: "rsync"})
	assert.ErrorIs(t, err, tenant.ErrInvalid)
	_, err = e.mover.Move(ctx, move.Request{Slug: tenant.MustSlug(dbtest.Name("nobody")), To: tenant.PlacementDatabase})
	assert.ErrorIs(t, err, tenant.ErrNotFound)

	_, err = e.tenants.Suspend(ctx, slug)
	require.NoError(t, err)
	_, err = e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase})
	assert.ErrorIs(t, err, tenant.ErrWrongStatus)
	_, err = e.tenants.Resume(ctx, slug)
	require.NoError(t, err)

	// An unfinished move to b: another target is refused.
	admin := dbtest.AdminDB(t)
	_, err = admin.Exec(`INSERT INTO landlord.tenant_moves (tenant_id, from_placement, from_cluster, from_database, from_schema,
		to_placement, to_cluster, to_database, to_schema, retired_name) VALUES ($1, 'schema', 'main', $2, $3, 'database', 'b', $4, $3, 'pd_retired_x')`,
		orig.ID, orig.Database, orig.Schema, slug.DatabaseName())
	require.NoError(t, err)
	_, err = e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "main"})
	assert.ErrorIs(t, err, move.ErrAlreadyMoving)
	_, err = admin.Exec(`DELETE FROM landlord.tenant_moves WHERE tenant_id = $1`, orig.ID)
	require.NoError(t, err)

	after := get()
	assert.Equal(t, orig.Placement, after.Placement, "nothing changed")
	assert.Equal(t, tenant.StatusActive, after.Status)
}

// A tenant table without a primary key cannot be streamed: the move says so
// in one line, before anything changes, and names the lock mode.
func TestMoveSaysWhenLogicalReplicationCannotBeUsed(t *testing.T) {
	e := newEnv(t, envOptions{})
	slug := e.tenant(t, 5)
	ctx := context.Background()
	admin := dbtest.AdminDB(t)
	_, err := admin.Exec(`CREATE TABLE ` + pgx.Identifier{slug.SchemaName(), "notes"}.Sanitize() + ` (body text)`)
	require.NoError(t, err)
	orig, err := e.tenants.Get(ctx, slug)
	require.NoError(t, err)

	_, err = e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	require.ErrorIs(t, err, move.ErrLogicalUnavailable)
	assert.NotContains(t, err.Error(), "\n", "one line")
	assert.Contains(t, err.Error(), "table notes has no primary key")
	assert.Contains(t, err.Error(), "--mode=lock")

	after, err := e.tenants.Get(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, orig, after, "nothing changed")
	assert.Empty(t, movesOf(t, slug), "no move recorded")
}

// While a logical move streams, it is listed with its lag.
func TestMovesInProgressShowTheirLag(t *testing.T) {
	var e *env
	var mu sync.Mutex
	var seen []move.Progress
	var slug tenant.Slug
	e = newEnv(t, envOptions{hook: func(s move.Step) {
		if s != move.StepStreaming {
			return
		}
		ps, err := e.mover.InProgress(context.Background())
		if err != nil {
			t.Errorf("in progress: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range ps {
			if p.Slug == slug.String() {
				seen = append(seen, p)
			}
		}
	}})
	slug = e.tenant(t, 50)
	_, err := e.mover.Move(context.Background(), move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	require.NoError(t, err)
	mu.Lock()
	require.Len(t, seen, 1)
	p := seen[0]
	mu.Unlock()
	assert.Equal(t, move.ModeLogical, p.Mode)
	assert.Equal(t, "streaming", p.State)
	assert.Equal(t, "b", p.To.Cluster)
	assert.EqualValues(t, 150, p.RowsCopied)
	require.NotNil(t, p.LagBytes, "the slot's lag is measured")
	assert.GreaterOrEqual(t, *p.LagBytes, int64(0))
	require.NotNil(t, p.Lag, "the applier's lag is recorded")

	ps, err := e.mover.InProgress(context.Background())
	require.NoError(t, err)
	for _, p := range ps {
		assert.NotEqual(t, slug.String(), p.Slug, "a finished move is not listed")
	}
}

// A reader whose router never hears of the move (no notifications, a long
// cache) is never served stale rows: every write acknowledged before a read
// starts is in what that read returns, before, during and after the switch.
func TestStaleReaderIsNeverServedTheRetiredCopy(t *testing.T) {
	// The window between the flip and the release of the source is widened
	// from milliseconds to a second: the writer, told to retry after its
	// write wait (500ms), retries on the target meanwhile.
	e := newEnv(t, envOptions{hook: func(s move.Step) {
		if s == move.StepFlipped {
			time.Sleep(time.Second)
		}
	}})
	slug := e.tenant(t, 100)
	ctx := context.Background()
	stale := apptest.Router(t, e.cfg, func(o *pgroute.Options) { o.CacheTTL = time.Hour })
	_, _, err := stale.Resolve(ctx, slug) // cached now, and never told of the move
	require.NoError(t, err)

	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // one writer, numbered writes, each acknowledged before the next
		defer wg.Done()
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("s-%08d", i)
			for {
				err := e.router.Do(ctx, slug, func(b *pgroute.Batch) error {
					b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, b.Tenant().ID, name)
					return nil
				})
				if err == nil {
					acked.Store(i)
					break
				}
				if kindOf(err) != "retryable" {
					t.Errorf("write %s: %v", name, err)
					return
				}
			}
		}
	}()
	var reads, refused, stalereads atomic.Int64
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			before := acked.Load()
			var seen int64
			err := stale.Do(ctx, slug, func(b *pgroute.Batch) error {
				b.Queue(`SELECT count(*) FROM members WHERE full_name LIKE 's-%'`).QueryRow(func(r pgx.Row) error { return r.Scan(&seen) })
				return nil
			})
			switch {
			case err != nil && kindOf(err) == "retryable":
				refused.Add(1)
			case err != nil:
				t.Errorf("read: %v", err)
				return
			case seen < before:
				stalereads.Add(1)
				t.Errorf("stale read: %d writes visible, %d acknowledged before the read", seen, before)
			default:
				reads.Add(1)
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	_, err = e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Zero(t, stalereads.Load())
	assert.Positive(t, reads.Load())
	t.Logf("%d reads, %d refused (retryable), %d writes", reads.Load(), refused.Load(), acked.Load())
	_, tn, err := stale.Resolve(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, "b", tn.Cluster, "the stale router found the new placement by itself")
}
