package pgroute_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/chaos"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// forEachPath runs the same suite direct to PostgreSQL and through PgBouncer
// (whose test database has a server pool of 2, so tenants share connections).
func forEachPath(t *testing.T, fn func(t *testing.T, path dbtest.Path)) {
	for _, p := range dbtest.Paths {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			fn(t, p)
		})
	}
}

// TestNoCrossTenantLeak: 64 goroutines × 50 tenants, mixed reads, writes,
// transactions and failing statements on one shared pool. Every read checks
// that it sees only its own tenant's rows (and its marker); afterwards every
// schema holds exactly its own acknowledged writes and nothing else.
func TestNoCrossTenantLeak(t *testing.T) {
	forEachPath(t, func(t *testing.T, path dbtest.Path) {
		tenants := newTenants(t, 50)
		r := newRouter(t, routerConfig(t, path), pgroute.Options{})
		ctx := context.Background()

		var (
			reads, leaks, missingMarker atomic.Int64
			acked                       sync.Map // slug → *atomic.Int64 of acknowledged writes
			failedAsExpected            atomic.Int64
			unexpected                  atomic.Int64
		)
		for _, tt := range tenants {
			acked.Store(tt.slug.String(), new(atomic.Int64))
		}
		const workers, opsPerWorker = 64, 40
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 42))
				for i := 0; i < opsPerWorker; i++ {
					tt := tenants[rng.IntN(len(tenants))]
					var err error
					switch op := rng.IntN(10); {
					case op < 4: // read everything, check ownership
						err = r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
							b.Queue(`SELECT tenant_id, full_name FROM members`).Query(func(rows pgx.Rows) error {
								sawMarker := false
								for rows.Next() {
									var id uuid.UUID
									var name string
									if err := rows.Scan(&id, &name); err != nil {
										return err
									}
									if id != tt.id || !(name == tt.marker || strings.HasPrefix(name, "w-"+tt.slug.String()+"-")) {
										leaks.Add(1)
									}
									sawMarker = sawMarker || name == tt.marker
								}
								if !sawMarker {
									missingMarker.Add(1)
								}
								reads.Add(1)
								return rows.Err()
							})
							return nil
						})
					case op < 7: // acknowledged write
						name := fmt.Sprintf("w-%s-%d-%d", tt.slug, w, i)
						err = r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
							b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, b.Tenant().ID, name)
							return nil
						})
						if err == nil {
							v, _ := acked.Load(tt.slug.String())
							v.(*atomic.Int64).Add(1)
						}
					case op < 9: // a write followed by a failing statement: nothing may land
						name := fmt.Sprintf("fail-%s-%d-%d", tt.slug, w, i)
						err = r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
							b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, b.Tenant().ID, name)
							b.Queue(`SELECT 1 / (random() * 0)::int`)
							return nil
						})
						if err != nil {
							failedAsExpected.Add(1)
							err = nil
						} else {
							unexpected.Add(1)
						}
					default: // read-decide-write transaction
						name := fmt.Sprintf("w-%s-%d-%d", tt.slug, w, i)
						err = r.Tx(ctx, tt.slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
							var owner uuid.UUID
							tx.Queue(`SELECT tenant_id FROM members WHERE full_name = $1`, tt.marker).
								QueryRow(func(row pgx.Row) error { return row.Scan(&owner) })
							if err := tx.Flush(ctx); err != nil {
								return err
							}
							if owner != tt.id {
								leaks.Add(1)
								return errors.New("marker of another tenant")
							}
							tx.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, owner, name)
							return nil
						})
						if err == nil {
							v, _ := acked.Load(tt.slug.String())
							v.(*atomic.Int64).Add(1)
						}
					}
					if err != nil {
						unexpected.Add(1)
						t.Errorf("tenant %s: %v", tt.slug, err)
					}
				}
			}(w)
		}
		wg.Wait()

		assert.Zero(t, leaks.Load(), "rows of another tenant seen")
		assert.Zero(t, missingMarker.Load(), "a read missed its own marker")
		assert.Zero(t, unexpected.Load())
		assert.Positive(t, reads.Load())
		assert.Positive(t, failedAsExpected.Load())

		// Afterwards, as the admin: each schema holds its marker, exactly its
		// acknowledged writes, nothing of a failed batch and nothing foreign.
		admin := dbtest.AdminPool(t)
		for _, tt := range tenants {
			var total, own, foreign, failed int64
			schema := pgx.Identifier{tt.slug.SchemaName()}.Sanitize()
			require.NoError(t, admin.QueryRow(ctx, `SELECT count(*),
				count(*) FILTER (WHERE full_name LIKE $2),
				count(*) FILTER (WHERE tenant_id <> $1),
				count(*) FILTER (WHERE full_name LIKE 'fail-%')
				FROM `+schema+`.members`, tt.id, "w-"+tt.slug.String()+"-%").Scan(&total, &own, &foreign, &failed))
			v, _ := acked.Load(tt.slug.String())
			assert.Equal(t, v.(*atomic.Int64).Load(), own, "acknowledged writes of %s", tt.slug)
			assert.Equal(t, own+1, total, "only own writes and the marker in %s", tt.slug)
			assert.Zero(t, foreign, "rows of another tenant in %s", tt.slug)
			assert.Zero(t, failed, "writes of failed batches in %s", tt.slug)
		}
		assertNoSessionLeak(t, path)
	})
}

// assertNoSessionLeak is the test guard against session state left on a
// server connection: it probes the server connections of the path with
// unbound statements (several at once, so that behind PgBouncer every server
// connection of the tiny pool is hit) and requires the role defaults.
func assertNoSessionLeak(t *testing.T, path dbtest.Path) {
	t.Helper()
	pool := dbtest.AppPool(t, path, 4)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				tx, err := pool.Begin(ctx)
				if !assert.NoError(t, err) {
					return
				}
				var sp, role, timeout string
				err = tx.QueryRow(ctx, `SELECT current_setting('search_path'), current_user, current_setting('statement_timeout')`).Scan(&sp, &role, &timeout)
				_ = tx.Rollback(ctx)
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, `""`, sp, "a server connection kept a search_path")
				assert.Equal(t, "pd_app", role, "a server connection kept a role")
				assert.Equal(t, "0", timeout, "a server connection kept a statement_timeout")
			}
		}()
	}
	wg.Wait()
}

// The guard catches a session-level SET that a bug runs outside the router.
func TestSessionLeakGuardCatchesSlippedSET(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.AppURL(t, dbtest.Direct))
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `SET search_path = tenant_somebody`)
	require.NoError(t, err)
	var sp string
	require.NoError(t, conn.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&sp))
	assert.NotEqual(t, `""`, sp, "the probe of assertNoSessionLeak sees a slipped SET")

	// Through the router, the same SET is refused before anything is sent.
	tenants := newTenants(t, 1)
	wc := &writeCounter{}
	r := newRouter(t, routerConfig(t, dbtest.Direct), pgroute.Options{ConfigurePool: wc.configure})
	before := wc.n.Load()
	err = r.Do(ctx, tenants[0].slug, func(b *pgroute.Batch) error {
		b.Queue(`SET search_path = tenant_somebody`)
		return nil
	})
	require.ErrorIs(t, err, pgroute.ErrSessionStatement)
	assert.Equal(t, before, wc.n.Load(), "nothing sent")
}

func TestUnboundStatementFails(t *testing.T) {
	newTenants(t, 1)
	forEachPath(t, func(t *testing.T, path dbtest.Path) {
		pool := dbtest.AppPool(t, path, 2)
		ctx := context.Background()
		_, err := pool.Exec(ctx, `SELECT count(*) FROM members`)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		assert.Equal(t, "42P01", pgErr.Code, "no search_path: the table is not found")
		assert.ErrorIs(t, pgroute.Classify(err), pgroute.ErrTenantNotProvisioned)
	})
}

// A burst of 1,000 failing pipelines leaves every connection clean and the
// number of server connections as it was (give or take the pool warming up).
func TestFailureBurstLeavesConnectionsClean(t *testing.T) {
	forEachPath(t, func(t *testing.T, path dbtest.Path) {
		tenants := newTenants(t, 4)
		cfg := routerConfig(t, path)
		cfg.Pool.ApplicationName = dbtest.Name("burst")
		cfg.Pool.MaxConns = 4
		r := newRouter(t, cfg, pgroute.Options{})
		ctx := context.Background()

		warm := func() {
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					require.NoError(t, r.Do(ctx, tenants[i%4].slug, func(b *pgroute.Batch) error {
						b.Queue(`SELECT count(*) FROM members`)
						return nil
					}))
				}(i)
			}
			wg.Wait()
		}
		warm()
		before := serverConnections(t, path, cfg.Pool.ApplicationName)

		var wg sync.WaitGroup
		var failures atomic.Int64
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 125; i++ {
					tt := tenants[(w+i)%4]
					err := r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
						switch i % 4 {
						case 0:
							b.Queue(`SELECT 1/0`)
						case 1:
							b.Queue(`INSERT INTO members (tenant_id, full_name, status) VALUES ($1, 'x', 'bogus')`, tt.id)
						case 2:
							b.Queue(`SELECT * FROM no_such_table`)
						default:
							b.Queue(`INSERT INTO members (id, tenant_id, full_name) SELECT id, tenant_id, full_name FROM members LIMIT 1`)
						}
						return nil
					})
					if err != nil {
						failures.Add(1)
					}
				}
			}(w)
		}
		wg.Wait()
		assert.EqualValues(t, 1000, failures.Load())

		warm()
		after := serverConnections(t, path, cfg.Pool.ApplicationName)
		assert.InDelta(t, before, after, float64(cfg.Pool.MaxConns), "server connections before %d, after %d", before, after)
		assertNoSessionLeak(t, path)
	})
}

// serverConnections counts the PostgreSQL backends serving the path: for the
// direct path those with our application_name, behind PgBouncer the server
// connections of the test database's pool (from PgBouncer's SHOW POOLS).
func serverConnections(t *testing.T, path dbtest.Path, appName string) int {
	t.Helper()
	ctx := context.Background()
	if path == dbtest.Bouncer {
		cfg, err := pgx.ParseConfig(dbtest.AppURL(t, dbtest.Bouncer))
		require.NoError(t, err)
		db := cfg.Database
		cfg.Database = "pgbouncer"
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		conn, err := pgx.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, "SHOW POOLS")
		require.NoError(t, err)
		defer rows.Close()
		total := 0
		for rows.Next() {
			m, err := pgx.RowToMap(rows)
			require.NoError(t, err)
			if m["database"] != db || m["user"] != "pd_app" {
				continue
			}
			for _, k := range []string{"sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"} {
				total += int(toInt(m[k]))
			}
		}
		require.NoError(t, rows.Err())
		return total
	}
	var n int
	require.NoError(t, dbtest.AdminPool(t).QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND usename = 'pd_app' AND application_name = $1`, appName).Scan(&n))
	return n
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case string:
		var n int64
		fmt.Sscan(x, &n)
		return n
	}
	return 0
}

// With tenant roles on, a wrong search_path (another tenant's schema) is an
// error, never rows: the resolver below binds tenant A's role with B's schema.
type wrongSchemaResolver struct {
	inner pgroute.Resolver
	other tenant.Slug
}

func (w wrongSchemaResolver) Resolve(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error) {
	p, err := w.inner.Resolve(ctx, slug)
	p.Schema = w.other.SchemaName()
	return p, err
}

func TestWrongSearchPathIsAnErrorWithRoles(t *testing.T) {
	forEachPath(t, func(t *testing.T, path dbtest.Path) {
		tenants := newTenants(t, 2)
		a, b := tenants[0], tenants[1]
		cfg := routerConfig(t, path)
		r := newRouter(t, cfg, pgroute.Options{Resolver: wrongSchemaResolver{inner: dbtest.Catalog(t), other: b.slug}})
		ctx := context.Background()

		rows := 0
		err := r.Do(ctx, a.slug, func(q *pgroute.Batch) error {
			q.Queue(`SELECT full_name FROM members`).Query(func(r pgx.Rows) error {
				for r.Next() {
					rows++
				}
				return r.Err()
			})
			return nil
		})
		// Without USAGE on B's schema, PostgreSQL skips it in the search_path:
		// "relation does not exist". Either error is fine; rows are not.
		require.Error(t, err)
		assert.True(t, errors.Is(err, pgroute.ErrPermission) || errors.Is(err, pgroute.ErrTenantNotProvisioned), "%v", err)
		assert.Zero(t, rows)

		// Schema-qualified access to the other tenant fails the same way.
		r2 := newRouter(t, cfg, pgroute.Options{})
		err = r2.Do(ctx, a.slug, func(q *pgroute.Batch) error {
			q.Queue(`SELECT full_name FROM ` + pgx.Identifier{b.slug.SchemaName(), "members"}.Sanitize()).Query(func(r pgx.Rows) error {
				for r.Next() {
					rows++
				}
				return r.Err()
			})
			return nil
		})
		assert.ErrorIs(t, err, pgroute.ErrPermission)
		assert.Zero(t, rows)
	})
}

func TestRoundTrips(t *testing.T) {
	forEachPath(t, func(t *testing.T, path dbtest.Path) {
		tenants := newTenants(t, 1)
		tt := tenants[0]
		wc := &writeCounter{}
		cfg := routerConfig(t, path)
		cfg.Pool.MaxConns = 1
		r := newRouter(t, cfg, pgroute.Options{ConfigurePool: wc.configure})
		ctx := context.Background()
		// Warm: the pool connects (not counted) and the placement is cached.
		require.NoError(t, r.Do(ctx, tt.slug, func(b *pgroute.Batch) error { b.Queue(`SELECT 1`); return nil }))

		before := wc.n.Load()
		var name string
		require.NoError(t, r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
			b.Queue(`SELECT full_name FROM members WHERE tenant_id = $1 AND full_name = $2`, b.Tenant().ID, tt.marker).
				QueryRow(func(row pgx.Row) error { return row.Scan(&name) })
			b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, b.Tenant().ID, "w-"+tt.slug.String()+"-rt")
			return nil
		}))
		assert.Equal(t, tt.marker, name)
		assert.EqualValues(t, 1, wc.n.Load()-before, "single-shot work is one round trip")

		before = wc.n.Load()
		require.NoError(t, r.Tx(ctx, tt.slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
			var n int
			tx.Queue(`SELECT count(*) FROM members WHERE tenant_id = $1`, tx.Tenant().ID).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
			if err := tx.Flush(ctx); err != nil {
				return err
			}
			tx.Queue(`UPDATE members SET updated_at = now() WHERE tenant_id = $1 AND full_name = $2`, tx.Tenant().ID, tt.marker)
			tx.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, tx.Tenant().ID, fmt.Sprintf("w-%s-n%d", tt.slug, n))
			return nil
		}))
		assert.EqualValues(t, 2, wc.n.Load()-before, "read-decide-write transaction is two round trips")
	})
}

func TestTxRollsBackOnError(t *testing.T) {
	tenants := newTenants(t, 1)
	tt := tenants[0]
	r := newRouter(t, routerConfig(t, dbtest.Bouncer), pgroute.Options{})
	ctx := context.Background()
	boom := errors.New("business rule says no")
	err := r.Tx(ctx, tt.slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
		tx.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, 'w-rolled-back')`, tx.Tenant().ID)
		if err := tx.Flush(ctx); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)

	// A failed flush poisons the transaction even if fn ignores the error.
	err = r.Tx(ctx, tt.slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
		tx.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, 'w-rolled-back-2')`, tx.Tenant().ID)
		tx.Queue(`SELECT 1/0`)
		_ = tx.Flush(ctx)
		tx.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, 'w-rolled-back-3')`, tx.Tenant().ID)
		return nil
	})
	require.Error(t, err)

	var n int
	require.NoError(t, r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
		b.Queue(`SELECT count(*) FROM members WHERE full_name LIKE 'w-rolled-back%'`).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
		return nil
	}))
	assert.Zero(t, n)
	assertNoSessionLeak(t, dbtest.Bouncer)
}

func TestErrorClassification(t *testing.T) {
	tenants := newTenants(t, 1)
	tt := tenants[0]
	admin := dbtest.AdminPool(t)
	ctx := context.Background()
	catalogtest.SetStatementTimeout(t, dbtest.AdminDB(t), tt.slug, 200)
	r := newRouter(t, routerConfig(t, dbtest.Bouncer), pgroute.Options{})

	do := func(sql string, args ...any) error {
		return r.Do(ctx, tt.slug, func(b *pgroute.Batch) error { b.Queue(sql, args...); return nil })
	}
	start := time.Now()
	err := do(`SELECT pg_sleep(3)`)
	assert.ErrorIs(t, err, pgroute.ErrTimeout, "the tenant's own statement_timeout")
	assert.Less(t, time.Since(start), 2*time.Second)

	id := uuid.New()
	require.NoError(t, do(`INSERT INTO members (id, tenant_id, full_name) VALUES ($1, $2, 'w-dup')`, id, tt.id))
	err = do(`INSERT INTO members (id, tenant_id, full_name) VALUES ($1, $2, 'w-dup')`, id, tt.id)
	require.ErrorIs(t, err, pgroute.ErrConflict)
	var ce *pgroute.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "23505", ce.SQLState)
	assert.Equal(t, "members_pkey", ce.Constraint)

	assert.ErrorIs(t, do(`INSERT INTO members (tenant_id, full_name, status) VALUES ($1, 'w-x', 'bogus')`, tt.id), pgroute.ErrInvalidData)
	assert.ErrorIs(t, do(`INSERT INTO digital_cards (tenant_id, member_id, qr_code, expires_at) VALUES ($1, $2, 'q', now())`, tt.id, uuid.New()), pgroute.ErrReferenced)
	assert.ErrorIs(t, do(`SELECT * FROM no_such_table`), pgroute.ErrTenantNotProvisioned)

	// A catalog row without its schema: not provisioned.
	_, err = admin.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{tt.slug.SchemaName()}.Sanitize()+` CASCADE`)
	require.NoError(t, err)
	err = do(`SELECT count(*) FROM members`)
	assert.ErrorIs(t, err, pgroute.ErrTenantNotProvisioned)
	assert.NotErrorIs(t, err, pgroute.ErrConflict)
}

func TestTenantStatusAndInvalidation(t *testing.T) {
	tenants := newTenants(t, 1)
	tt := tenants[0]
	admin := dbtest.AdminDB(t)
	ctx := context.Background()
	r := newRouter(t, routerConfig(t, dbtest.Bouncer), pgroute.Options{})
	noop := func(b *pgroute.Batch) error { b.Queue(`SELECT 1`); return nil }

	require.NoError(t, r.Do(ctx, tt.slug, noop))
	catalogtest.SetStatus(t, admin, tt.slug, tenant.StatusSuspended)
	require.NoError(t, r.Do(ctx, tt.slug, noop), "cached placement until invalidated or expired")
	r.Invalidate(tt.slug)
	assert.ErrorIs(t, r.Do(ctx, tt.slug, noop), tenant.ErrSuspended)

	for status, want := range map[tenant.Status]error{tenant.StatusProvisioning: tenant.ErrNotReady, tenant.StatusDeleted: tenant.ErrNotFound} {
		catalogtest.SetStatusQuietly(t, admin, tt.slug, status)
		r.Invalidate(tt.slug)
		assert.ErrorIs(t, r.Do(ctx, tt.slug, noop), want, status)
	}
	catalogtest.SetStatusQuietly(t, admin, tt.slug, tenant.StatusMoving)
	r.Invalidate(tt.slug)
	assert.NoError(t, r.Do(ctx, tt.slug, noop), "a moving tenant is still served")

	assert.ErrorIs(t, r.Do(ctx, tenant.MustSlug(dbtest.Name("nobody")), noop), tenant.ErrNotFound)
	assert.ErrorIs(t, r.Do(ctx, tenant.Slug{}, noop), tenant.ErrNotFound)
}

func TestTxRetriesSerializationFailures(t *testing.T) {
	tenants := newTenants(t, 1)
	tt := tenants[0]
	r := newRouter(t, routerConfig(t, dbtest.Direct), pgroute.Options{})
	ctx := context.Background()

	// Two serializable transactions that each read then update the marker:
	// one must fail with 40001 and, with retries, succeed on its second run.
	// Their first attempts both read before either writes (a barrier), so the
	// conflict does not depend on timing (a loaded machine once let one
	// finish before the other began).
	var attempts atomic.Int64
	start := make(chan struct{})
	bothRead := make(chan struct{})
	var readers atomic.Int64
	var firstRead [2]sync.Once
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			errs[i] = r.Tx(ctx, tt.slug, pgroute.TxOptions{IsoLevel: pgx.Serializable, MaxRetries: 5}, func(ctx context.Context, tx *pgroute.Tx) error {
				attempts.Add(1)
				var phone *string
				tx.Queue(`SELECT phone FROM members WHERE full_name = $1`, tt.marker).QueryRow(func(row pgx.Row) error { return row.Scan(&phone) })
				if err := tx.Flush(ctx); err != nil {
					return err
				}
				firstRead[i].Do(func() {
					if readers.Add(1) == 2 {
						close(bothRead)
					}
				})
				select {
				case <-bothRead:
				case <-time.After(10 * time.Second):
					return fmt.Errorf("the other transaction did not read within 10 s")
				}
				tx.Queue(`UPDATE members SET phone = coalesce(phone, '') || $2 WHERE full_name = $1`, tt.marker, fmt.Sprint(i))
				return nil
			})
		}(i)
	}
	close(start)
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	assert.Greater(t, attempts.Load(), int64(2), "one transaction was retried")
	var phone string
	require.NoError(t, r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
		b.Queue(`SELECT phone FROM members WHERE full_name = $1`, tt.marker).QueryRow(func(row pgx.Row) error { return row.Scan(&phone) })
		return nil
	}))
	assert.ElementsMatch(t, []rune("01"), []rune(phone), "both updates applied once each")
}

// A tenant whose schema moved away while its placement was cached: the
// statement fails on the old schema, the router re-reads the catalog and
// runs the work once more on the new placement.
func TestRetryOnceAfterMove(t *testing.T) {
	tenants := newTenants(t, 1)
	tt := tenants[0]
	ctx := context.Background()
	r := newRouter(t, routerConfig(t, dbtest.Bouncer), pgroute.Options{})
	count := func() (int, error) {
		var n int
		err := r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
			n = 0
			b.Queue(`SELECT count(*) FROM members`).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
			return nil
		})
		return n, err
	}
	n, err := count()
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// "Move": a copy in a dedicated database, the catalog pointed at it, the
	// old schema gone.
	moved := moveToOwnDatabase(t, tt)
	n, err = count()
	require.NoError(t, err, "served from the new placement without invalidation")
	assert.Equal(t, 1, n)

	err = r.Tx(ctx, tt.slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
		tx.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, 'w-after-move')`, tx.Tenant().ID)
		return nil
	})
	require.NoError(t, err)

	// Without a newer placement, the error stands.
	_, err = moved.ExecContext(ctx, `DROP SCHEMA `+pgx.Identifier{tt.slug.SchemaName()}.Sanitize()+` CASCADE`)
	require.NoError(t, err)
	_, err = count()
	assert.ErrorIs(t, err, pgroute.ErrTenantNotProvisioned)
}

// A change announced on the channel reaches a listening router at once.
func TestListenInvalidates(t *testing.T) {
	tenants := newTenants(t, 1)
	tt := tenants[0]
	cfg := routerConfig(t, dbtest.Bouncer)
	r := newRouter(t, cfg, pgroute.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	go r.Listen(ctx, dbtest.AppURL(t, dbtest.Direct), ready)
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not start")
	}
	noop := func(b *pgroute.Batch) error { b.Queue(`SELECT 1`); return nil }
	require.NoError(t, r.Do(ctx, tt.slug, noop))

	// A change made elsewhere (this test's own catalog, not the router's):
	// the status and its notice commit together.
	cur, err := dbtest.Catalog(t).Get(ctx, tt.slug)
	require.NoError(t, err)
	tx, err := dbtest.AdminDB(t).BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, catalog.SetStatus(ctx, tx, cur, tenant.StatusActive, tenant.StatusSuspended, "suspend"))
	require.NoError(t, tx.Commit())

	require.Eventually(t, func() bool {
		return errors.Is(r.Do(ctx, tt.slug, noop), tenant.ErrSuspended)
	}, 5*time.Second, 20*time.Millisecond)
}

// A tenant resolved while the change listener is connected is trusted for
// ListenCacheTTL (changes drop it at once); without a listener, and once
// the listener's connection is gone, for CacheTTL only.
func TestListenerLengthensTrust(t *testing.T) {
	tt := newTenants(t, 1)[0]
	r := apptest.Router(t, routerConfig(t, dbtest.Bouncer), func(o *pgroute.Options) {
		o.CacheTTL, o.ListenCacheTTL = 100*time.Millisecond, time.Hour
	})
	ctx := context.Background()
	noop := func(b *pgroute.Batch) error { b.Queue(`SELECT 1`); return nil }
	misses := func() int64 {
		require.NoError(t, r.Do(ctx, tt.slug, noop))
		return r.CacheStats().Misses
	}
	past := func() { time.Sleep(150 * time.Millisecond) } // past CacheTTL

	require.Equal(t, int64(1), misses())
	past()
	require.Equal(t, int64(2), misses(), "no listener: CacheTTL")

	lctx, stop := context.WithCancel(ctx)
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		r.Listen(lctx, dbtest.AppURL(t, dbtest.Direct), ready)
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not start")
	}
	past()
	require.Equal(t, int64(3), misses(), "resolved before the listener: CacheTTL")
	past()
	require.Equal(t, int64(3), misses(), "resolved while listening: trusted past CacheTTL")

	stop()
	<-done
	require.Equal(t, int64(4), misses(), "the listener gone: CacheTTL again")
}

// invalidatingResolver announces a change of the tenant while its catalog
// read is in flight, as a NOTIFY heard mid-read would.
type invalidatingResolver struct {
	pgroute.Resolver
	r    *pgroute.Router
	once sync.Once
}

func (v *invalidatingResolver) Resolve(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error) {
	t, err := v.Resolver.Resolve(ctx, slug)
	v.once.Do(func() { v.r.Invalidate(slug) })
	return t, err
}

// A placement read while a change of the tenant was announced may predate
// the change: it serves the request that read it, and the next request
// reads the catalog again (even while the listener lengthens trust).
func TestChangeAnnouncedDuringAReadIsNotCached(t *testing.T) {
	tt := newTenants(t, 1)[0]
	var v *invalidatingResolver
	r := apptest.Router(t, routerConfig(t, dbtest.Bouncer), func(o *pgroute.Options) {
		v = &invalidatingResolver{Resolver: o.Resolver}
		o.Resolver = v
	})
	v.r = r
	ctx := context.Background()
	noop := func(b *pgroute.Batch) error { b.Queue(`SELECT 1`); return nil }
	require.NoError(t, r.Do(ctx, tt.slug, noop))
	require.Equal(t, int64(1), r.CacheStats().Misses)
	require.NoError(t, r.Do(ctx, tt.slug, noop))
	require.Equal(t, int64(2), r.CacheStats().Misses, "the overlapped read was not cached")
	require.NoError(t, r.Do(ctx, tt.slug, noop))
	require.Equal(t, int64(2), r.CacheStats().Misses, "the next read was")
}

// A change listener whose connection hangs (no answer, no reset) is noticed
// by its check: placements are trusted for CacheTTL again, not for
// ListenCacheTTL with no notice able to reach them.
func TestHungListenerIsNoticed(t *testing.T) {
	tt := newTenants(t, 1)[0]
	r := apptest.Router(t, routerConfig(t, dbtest.Bouncer), func(o *pgroute.Options) {
		o.CacheTTL, o.ListenCacheTTL, o.ListenCheck = 100*time.Millisecond, time.Hour, 200*time.Millisecond
	})
	proxy, err := chaos.NewProxy("127.0.0.1:0", "127.0.0.1:"+dbtest.DirectPGPort)
	require.NoError(t, err)
	t.Cleanup(proxy.Close)
	ctx, stop := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		r.Listen(ctx, dbtest.WithPort(t, dbtest.AppURL(t, dbtest.Direct), proxy.Port()), ready)
	}()
	t.Cleanup(func() { stop(); <-done })
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not start")
	}
	noop := func(b *pgroute.Batch) error { b.Queue(`SELECT 1`); return nil }
	misses := func() int64 {
		require.NoError(t, r.Do(context.Background(), tt.slug, noop))
		return r.CacheStats().Misses
	}
	require.Equal(t, int64(1), misses())
	time.Sleep(500 * time.Millisecond) // past CacheTTL, and the listener's checks pass
	require.Equal(t, int64(1), misses(), "listening: trusted past CacheTTL")

	proxy.Stall()
	time.Sleep(time.Second) // a check interval, then a ping that gets no answer
	require.Equal(t, int64(2), misses(), "the hung listener noticed: CacheTTL again")
}
