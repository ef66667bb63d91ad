package move_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/provision"
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
	modules  move.ModuleFiles
}

// envOptions adjust newEnv.
type envOptions struct {
	hook      func(move.Step)
	writeWait time.Duration // default 500ms
	path      dbtest.Path   // how the router reaches PostgreSQL; default through PgBouncer
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.writeWait == 0 {
		o.writeWait = 500 * time.Millisecond
	}
	var cfg config.Config
	a := apptest.Open(t, apptest.Options{
		Options: app.Options{MoveHook: o.hook},
		Configure: func(c *config.Config) {
			dbtest.WithClusterB(t, c)
			c.HTTP.WriteWait = o.writeWait
			if o.path == dbtest.Direct {
				// The router straight to each server, not through PgBouncer.
				for name, cl := range c.Clusters {
					cl.URL = dbtest.WithPort(t, cl.URL, portOf(t, cl.AdminURL))
					c.Clusters[name] = cl
				}
			}
			cfg = *c
		},
	})
	return &env{cfg: cfg, tenants: a.Catalog, clusters: a.Clusters, prov: a.Provisioner, mover: a.Mover, router: a.Router,
		modules: a.Modules}
}

func portOf(t *testing.T, raw string) string {
	t.Helper()
	c, err := pgx.ParseConfig(raw)
	require.NoError(t, err)
	return strconv.Itoa(int(c.Port))
}

// tenant provisions a tenant on the main cluster with some data, and
// removes everything it may have become (rows, databases, schemas, roles,
// prepared transactions of its moves on both clusters) at cleanup.
func (e *env) tenant(t *testing.T, members int) tenant.Slug {
	t.Helper()
	tt := dbtest.Tenant(t, "mv")
	slug := tenant.MustSlug(tt.Slug)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, cl := range []string{"main", "b"} {
			rollbackPrepared(t, e, cl, slug)
		}
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

// rollbackPrepared ends the prepared source transactions a failed test
// left behind (they would hold locks on the server forever).
func rollbackPrepared(t *testing.T, e *env, cluster string, slug tenant.Slug) {
	ctx := context.Background()
	server, err := e.clusters.Admin(cluster)
	if err != nil {
		return
	}
	for _, id := range movesOf(t, slug) {
		var database string
		if server.QueryRowContext(ctx, `SELECT database FROM pg_prepared_xacts WHERE gid = $1`, "pd_move_"+id).Scan(&database) != nil {
			continue
		}
		if db, err := e.clusters.Open(ctx, cluster, database); err == nil {
			_, _ = db.ExecContext(ctx, "ROLLBACK PREPARED 'pd_move_"+id+"'")
			db.Close()
		}
	}
}

// movesOf lists the ids of every move of a tenant.
func movesOf(t *testing.T, slug tenant.Slug) []string {
	t.Helper()
	cat := dbtest.Catalog(t)
	tn, err := cat.Get(context.Background(), slug)
	if err != nil {
		return nil
	}
	rows, err := dbtest.AdminDB(t).Query(`SELECT id::text FROM landlord.tenant_moves WHERE tenant_id = $1`, tn.ID)
	require.NoError(t, err)
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	return ids
}

// leftover is a replication artefact or a prepared transaction of a move.
type leftover struct{ cluster, kind, name string }

// leftovers lists, on both clusters, the publications (in every database),
// subscriptions, replication slots and prepared transactions named after
// the tenant's moves.
func (e *env) leftovers(t *testing.T, slug tenant.Slug) []leftover {
	t.Helper()
	ctx := context.Background()
	var names, gids []string
	for _, id := range movesOf(t, slug) {
		names = append(names, "pd_move_"+stripDashes(id))
		gids = append(gids, "pd_move_"+id)
	}
	var out []leftover
	for _, cl := range []string{"main", "b"} {
		server, err := e.clusters.Admin(cl)
		require.NoError(t, err)
		for _, q := range []struct{ kind, sql string }{
			{"slot", `SELECT slot_name::text FROM pg_replication_slots WHERE left(slot_name, 40) = ANY($1)`},
			{"subscription", `SELECT subname::text FROM pg_subscription WHERE subname = ANY($1) OR subname LIKE 'pd_move_%'`},
		} {
			for _, n := range column(t, server, q.sql, names) {
				out = append(out, leftover{cl, q.kind, n})
			}
		}
		for _, n := range column(t, server, `SELECT gid FROM pg_prepared_xacts WHERE gid = ANY($1)`, gids) {
			out = append(out, leftover{cl, "prepared transaction", n})
		}
		for _, d := range column(t, server, `SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate AND $1::text[] IS NOT NULL`, names) {
			db, err := e.clusters.Open(ctx, cl, d)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "3D000" {
				continue // dropped meanwhile (another test's)
			}
			if err != nil {
				continue // being dropped, or closed to connections
			}
			for _, n := range column(t, db, `SELECT pubname::text FROM pg_publication WHERE pubname = ANY($1)`, names) {
				out = append(out, leftover{cl, "publication in " + d, n})
			}
			db.Close()
		}
	}
	return out
}

func stripDashes(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

// column runs q and returns its one text column.
func column(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(q, args...)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// roleOn reports whether the tenant's role exists on a cluster, and whether
// anything there still grants it a privilege.
func (e *env) roleOn(t *testing.T, cluster string, slug tenant.Slug) (exists bool, grants int) {
	t.Helper()
	server, err := e.clusters.Admin(cluster)
	require.NoError(t, err)
	require.NoError(t, server.QueryRow(`SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1),
		(SELECT count(*) FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid WHERE r.rolname = $1)`,
		slug.RoleName()).Scan(&exists, &grants))
	return exists, grants
}

// snapshot reads every member, card and activity through the router (the
// tenant's current placement), sorted.
func (e *env) snapshot(t *testing.T, slug tenant.Slug) []string {
	t.Helper()
	names, err := e.read(slug)
	require.NoError(t, err)
	return names
}

func (e *env) read(slug tenant.Slug) ([]string, error) {
	var names []string
	err := e.router.Do(context.Background(), slug, func(b *pgroute.Batch) error {
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
	})
	sort.Strings(names)
	return names, err
}

// kindOf sorts writer errors: retryable ones mean "try again later" to a client (503).
func kindOf(err error) string {
	switch {
	case errors.Is(err, pgroute.ErrRetryable), errors.Is(err, pgroute.ErrTimeout), errors.Is(err, pgroute.ErrUnavailable):
		return "retryable"
	}
	return "other: " + err.Error()
}

// startMemberWriters runs n writers that insert members into slug's tenant
// through the router, as fast as they can, until the returned stop is
// called; stop waits for them and returns the names acknowledged and the
// failures by kind.
func (e *env) startMemberWriters(slug tenant.Slug, n int) (stop func() (acked map[string]bool, failed map[string]int)) {
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	acked, failed := map[string]bool{}, map[string]int{}
	done := make(chan struct{})
	ctx := context.Background()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
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
					failed[kindOf(err)]++
				}
				mu.Unlock()
			}
		}()
	}
	return func() (map[string]bool, map[string]int) {
		close(done)
		wg.Wait()
		return acked, failed
	}
}

// keysOf lists the keys, foreign keys and indexes of a tenant's schema in
// db as the catalog holds them (definition, validated, deferrable, primary,
// unique, valid), the schema's name left out: a move must rebuild them
// exactly, whatever order it builds them in.
func keysOf(t *testing.T, db *sql.DB, slug tenant.Slug) []string {
	t.Helper()
	out := column(t, db, `
		SELECT format('constraint %s.%s %s %s validated=%s deferrable=%s/%s', r.relname, k.conname, k.contype,
		              pg_get_constraintdef(k.oid), k.convalidated, k.condeferrable, k.condeferred)
		  FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid WHERE k.connamespace = $1::regnamespace
		UNION ALL
		SELECT format('index %s %s primary=%s unique=%s immediate=%s valid=%s ready=%s', c.relname,
		              replace(pg_get_indexdef(i.indexrelid), $1 || '.', ''), i.indisprimary, i.indisunique, i.indimmediate,
		              i.indisvalid, i.indisready)
		  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = $1::regnamespace
		 ORDER BY 1`, slug.SchemaName())
	require.NotEmpty(t, out)
	return out
}
