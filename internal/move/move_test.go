package move_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/provision"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// env is one test's services on the two local clusters.
type env struct {
	cfg      config.Config
	tenants  *catalog.Catalog
	clusters *clusters.Clusters
	prov     *provision.Provisioner
	mover    *move.Mover
	router   *pgroute.Router
}

func newEnv(t *testing.T, hook func(move.Step)) *env {
	return newEnvWait(t, hook, 500*time.Millisecond)
}

func newEnvWait(t *testing.T, hook func(move.Step), writeWait time.Duration) *env {
	t.Helper()
	var cfg config.Config
	a := apptest.Open(t, apptest.Options{
		Options: app.Options{MoveHook: hook},
		Configure: func(c *config.Config) {
			dbtest.WithClusterB(t, c)
			c.HTTP.WriteWait = writeWait
			cfg = *c
		},
	})
	return &env{cfg: cfg, tenants: a.Catalog, clusters: a.Clusters, prov: a.Provisioner, mover: a.Mover, router: a.Router}
}

// tenant provisions a tenant on the main cluster with some data, and
// removes everything it may have become (rows, databases, schemas, roles on
// both clusters) at cleanup.
func (e *env) tenant(t *testing.T, members int) tenant.Slug {
	t.Helper()
	tt := dbtest.Tenant(t, "mv")
	slug := tenant.MustSlug(tt.Slug)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = e.prov.PurgeRetired(ctx, 0, slug)
		for _, cl := range []string{"main", "b"} {
			_ = e.clusters.DropDatabase(ctx, cl, slug.DatabaseName())
			if db, err := e.clusters.Admin(cl); err == nil {
				_, _ = db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{slug.SchemaName()}.Sanitize()+" CASCADE")
				_, _ = db.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{slug.RoleName()}.Sanitize())
			}
		}
	})
	admin := dbtest.AdminDB(t)
	schema := pgx.Identifier{tt.Schema}.Sanitize()
	_, err := admin.Exec(`
		INSERT INTO `+schema+`.members (tenant_id, full_name, email, geo_unit_id)
		SELECT $1, 'member ' || g, 'm' || g || '@example.test', g FROM generate_series(1, $2) g;
		`, tt.ID, members)
	require.NoError(t, err)
	_, err = admin.Exec(`
		INSERT INTO ` + schema + `.digital_cards (tenant_id, member_id, qr_code, status, expires_at)
		SELECT tenant_id, id, 'PD1-' || md5(id::text), 'active', now() + interval '1 year' FROM ` + schema + `.members;
		INSERT INTO ` + schema + `.card_activities (tenant_id, card_id, action, detail)
		SELECT tenant_id, id, 'issued', jsonb_build_object('n', qr_code) FROM ` + schema + `.digital_cards`)
	require.NoError(t, err)
	return slug
}

// snapshot reads every member name through the router (the tenant's
// current placement), sorted.
func (e *env) snapshot(t *testing.T, slug tenant.Slug) []string {
	t.Helper()
	var names []string
	require.NoError(t, e.router.Do(context.Background(), slug, func(b *pgroute.Batch) error {
		names = names[:0]
		b.Queue(`SELECT m.full_name || '/' || c.qr_code || '/' || a.detail::text FROM members m
			JOIN digital_cards c ON c.member_id = m.id JOIN card_activities a ON a.card_id = c.id`).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var s string
					if err := rows.Scan(&s); err != nil {
						return err
					}
					names = append(names, s)
				}
				return rows.Err()
			})
		return nil
	}))
	sort.Strings(names)
	return names
}

func TestMoveAcrossPlacementsAndClusters(t *testing.T) {
	e := newEnv(t, nil)
	slug := e.tenant(t, 300)
	ctx := context.Background()
	before := e.snapshot(t, slug)
	require.Len(t, before, 300)

	// schema on main → dedicated database on b → schema on main.
	res, err := e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	require.NoError(t, err)
	assert.Equal(t, tenant.PlacementDatabase, res.Tenant.Kind)
	assert.Equal(t, "b", res.Tenant.Cluster)
	assert.Equal(t, slug.DatabaseName(), res.Tenant.Database)
	assert.Equal(t, tenant.StatusActive, res.Tenant.Status)
	assert.EqualValues(t, 900, res.Rows, "members + cards + activities")
	assert.Equal(t, before, e.snapshot(t, slug), "same data on the new placement")

	// The target's indexes and keys were rebuilt after the copy exactly as
	// the schema wants them: Atlas plans nothing for it.
	tdb, err := e.clusters.Open(ctx, "b", slug.DatabaseName())
	require.NoError(t, err)
	target, err := schemaapply.TenantTarget(schemaapply.TenantSpec{Schema: slug.SchemaName(), Role: slug.RoleName(), AppRole: "pd_app",
		Modules: modules.DefaultFiles()})
	require.NoError(t, err)
	stmts, _, err := schemaapply.Plan(ctx, tdb, target)
	tdb.Close()
	require.NoError(t, err)
	assert.Empty(t, stmts, "moved schema converged")

	res2, err := e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementSchema, Cluster: "main"})
	require.NoError(t, err)
	assert.Equal(t, tenant.PlacementSchema, res2.Tenant.Kind)
	assert.Equal(t, "main", res2.Tenant.Cluster)
	assert.Equal(t, before, e.snapshot(t, slug))

	// Two retired copies: the schema on main, the whole database on b.
	copies, err := e.tenants.RetiredCopies(ctx, slug)
	require.NoError(t, err)
	require.Len(t, copies, 2)
	assert.False(t, copies[0].WholeDatabase)
	assert.Equal(t, res.Retired, copies[0].Schema)
	assert.True(t, copies[1].WholeDatabase)
	assert.Equal(t, res2.Retired, copies[1].Database, "the dedicated database was renamed")

	// The retired schema is closed to the tenant's role.
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

func TestMoveRefusesBadRequests(t *testing.T) {
	e := newEnv(t, nil)
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

// A writer issues numbered writes at full speed through the router during
// three moves. Every acknowledged write is present exactly once afterwards,
// no write lands in a retired copy, and every failed write failed with an
// error the router classifies as retryable.
func TestWritesDuringMoves(t *testing.T) {
	// With a generous write wait, writes ride out the pauses; with a tiny
	// one, some give up with a retryable error (a 503 to an HTTP client).
	for _, wait := range []time.Duration{500 * time.Millisecond, 5 * time.Millisecond} {
		t.Run(wait.String(), func(t *testing.T) { writesDuringMoves(t, wait) })
	}
}

func writesDuringMoves(t *testing.T, writeWait time.Duration) {
	e := newEnvWait(t, nil, writeWait)
	slug := e.tenant(t, 2000)
	ctx := context.Background()

	var (
		mu        sync.Mutex
		acked     = map[string]bool{}
		failedErr = map[string]int{}
		next      atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w-%06d", next.Add(1))
				err := e.router.Do(ctx, slug, func(b *pgroute.Batch) error {
					b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, b.Tenant().ID, name)
					return nil
				})
				mu.Lock()
				if err == nil {
					acked[name] = true
				} else {
					failedErr[kindOf(err)]++
				}
				mu.Unlock()
			}
		}()
	}

	time.Sleep(200 * time.Millisecond)
	var moves []move.Result
	for _, to := range []move.Request{
		{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"},
		{Slug: slug, To: tenant.PlacementSchema, Cluster: "b"},
		{Slug: slug, To: tenant.PlacementSchema, Cluster: "main"},
	} {
		res, err := e.mover.Move(ctx, to)
		require.NoError(t, err)
		moves = append(moves, res)
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	live := e.writes(t, slug)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, acked)
	dup := 0
	seen := map[string]bool{}
	for _, n := range live {
		if seen[n] {
			dup++
		}
		seen[n] = true
	}
	assert.Zero(t, dup, "no write present twice")
	for n := range acked {
		assert.True(t, seen[n], "acknowledged write %s is present", n)
	}
	for n := range seen {
		assert.True(t, acked[n], "write %s present but never acknowledged", n)
	}
	for kind, n := range failedErr {
		assert.Equal(t, "retryable", kind, "%d writes failed with a non-retryable error", n)
	}
	t.Logf("%d writes acknowledged, failures by kind %v; write pauses %v %v %v", len(acked), failedErr,
		moves[0].WritePause, moves[1].WritePause, moves[2].WritePause)

	// Retired copies hold only writes that are also live (their snapshot).
	copies, err := e.tenants.RetiredCopies(ctx, slug)
	require.NoError(t, err)
	require.Len(t, copies, 3)
	for _, c := range copies {
		if c.WholeDatabase {
			continue // renamed database: closed to connections, checked below via the schema copies
		}
		db, err := e.clusters.Open(ctx, c.Cluster, c.Database)
		require.NoError(t, err)
		rows, err := db.Query(`SELECT full_name FROM ` + pgx.Identifier{c.Schema, "members"}.Sanitize() + ` WHERE full_name LIKE 'w-%'`)
		require.NoError(t, err)
		for rows.Next() {
			var n string
			require.NoError(t, rows.Scan(&n))
			assert.True(t, acked[n], "retired copy %s holds %s, which is not a live acknowledged write", c.Schema, n)
		}
		require.NoError(t, rows.Err())
		rows.Close()
		db.Close()
	}
}

// kindOf sorts writer errors: retryable ones mean "try again later" to a client (503).
func kindOf(err error) string {
	switch {
	case errors.Is(err, pgroute.ErrRetryable), errors.Is(err, pgroute.ErrTimeout), errors.Is(err, pgroute.ErrUnavailable):
		return "retryable"
	}
	return "other: " + err.Error()
}

func (e *env) writes(t *testing.T, slug tenant.Slug) []string {
	t.Helper()
	var names []string
	require.NoError(t, e.router.Do(context.Background(), slug, func(b *pgroute.Batch) error {
		names = names[:0]
		b.Queue(`SELECT full_name FROM members WHERE full_name LIKE 'w-%'`).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					return err
				}
				names = append(names, s)
			}
			return rows.Err()
		})
		return nil
	}))
	return names
}

// A move killed at each step leaves the tenant served from one complete
// placement, and running the move again finishes it.
func TestMoveKilledAtEachStep(t *testing.T) {
	if os.Getenv("PD_MOVE_CHILD") != "" {
		t.Skip("child process")
	}
	for _, step := range []move.Step{move.StepLocked, move.StepMidCopy, move.StepCopied, move.StepPrepared, move.StepFlipped} {
		t.Run(string(step), func(t *testing.T) {
			e := newEnv(t, nil)
			slug := e.tenant(t, 100)
			ctx := context.Background()
			before := e.snapshot(t, slug)

			cmd := exec.Command(os.Args[0], "-test.run=^TestMoveChild$", "-test.v")
			cmd.Env = append(os.Environ(), "PD_MOVE_CHILD=1", "PD_MOVE_SLUG="+slug.String(), "PD_MOVE_KILL_AT="+string(step))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "child must be killed, got %v: %s", err, out)
			assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "%s", out)

			// Served from one complete placement (reads), whatever the step.
			e.router.InvalidateAll()
			assert.Equal(t, before, e.snapshot(t, slug), "killed at %s: data complete and readable", step)

			// The rerun finishes the move.
			res, err := e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
			require.NoError(t, err, "rerun after a kill at %s", step)
			assert.True(t, res.Resumed)
			assert.Equal(t, "b", res.Tenant.Cluster)
			assert.Equal(t, tenant.StatusActive, res.Tenant.Status)
			e.router.InvalidateAll()
			assert.Equal(t, before, e.snapshot(t, slug))
			// And the tenant takes writes again.
			require.NoError(t, e.router.Do(ctx, slug, func(b *pgroute.Batch) error {
				b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, 'after')`, b.Tenant().ID)
				return nil
			}))
			var prepared int
			require.NoError(t, dbtest.AdminDB(t).QueryRow(`SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'pd_move_%' AND database = $1`,
				"publicdigit_test").Scan(&prepared))
			_ = prepared // other tests' moves may be in flight; ours is checked by Move's success
		})
	}
}

// TestMoveChild runs in the child process of TestMoveKilledAtEachStep: it
// moves the tenant and SIGKILLs itself at the named step.
func TestMoveChild(t *testing.T) {
	if os.Getenv("PD_MOVE_CHILD") == "" {
		t.Skip("only as a child process")
	}
	killAt := move.Step(os.Getenv("PD_MOVE_KILL_AT"))
	e := newEnv(t, func(s move.Step) {
		if s == killAt {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
	})
	slug := tenant.MustSlug(os.Getenv("PD_MOVE_SLUG"))
	_, err := e.mover.Move(context.Background(), move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	t.Fatalf("the move should have been killed at %s, got %v", killAt, err)
}
