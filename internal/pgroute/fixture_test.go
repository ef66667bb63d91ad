package pgroute_test

import (
	"context"
	"database/sql"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// testTenant is one provisioned tenant of a test: catalog row, schema with
// the core tables, its own role, and a marker member row.
type testTenant struct {
	slug   tenant.Slug
	id     uuid.UUID
	marker string
}

// newTenants provisions n tenants in the test database and removes them
// (rows, schemas, roles) at cleanup.
func newTenants(t *testing.T, n int) []testTenant {
	t.Helper()
	dbtest.Landlord(t)
	db := dbtest.AdminDB(t)
	out := make([]testTenant, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 4)
	for i := range out {
		out[i] = testTenant{slug: tenant.MustSlug(dbtest.Name("pr"))}
		out[i].marker = "marker-" + out[i].slug.String()
		dbtest.RemoveAtCleanup(t, out[i].slug)
		wg.Add(1)
		go func(tt *testTenant) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- provision(db, tt)
		}(&out[i])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return out
}

func provision(db *sql.DB, tt *testTenant) error {
	ctx := context.Background()
	schemaName := tt.slug.SchemaName()
	var database string
	if err := db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&database); err != nil {
		return err
	}
	row, _, err := catalog.InsertProvisioning(ctx, db, tt.slug, "Test "+tt.slug.String(), tenant.Placement{
		Kind: tenant.PlacementSchema, Cluster: "main", Database: database, Schema: schemaName})
	if err != nil {
		return err
	}
	if _, err := catalog.Activate(ctx, db, row); err != nil {
		return err
	}
	tt.id = row.ID
	spec := schemaapply.TenantSpec{Schema: schemaName, Role: tt.slug.RoleName(), AppRole: "pd_app",
		Modules: []string{"modules/digital_cards.hcl"}}
	if _, err := schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{}); err != nil {
		return err
	}
	schema := pgx.Identifier{schemaName}.Sanitize()
	_, err = db.ExecContext(ctx, `INSERT INTO `+schema+`.members (tenant_id, full_name) VALUES ($1, $2)`, tt.id, tt.marker)
	return err
}

// routerConfig points the tenant pool of the default cluster at the path.
func routerConfig(t *testing.T, path dbtest.Path) config.Config {
	t.Helper()
	cfg := dbtest.Config(t)
	cl := cfg.Clusters[cfg.DefaultCluster]
	cl.URL = dbtest.AppURL(t, path)
	cfg.Clusters[cfg.DefaultCluster] = cl
	cfg.Pool.MaxConns = 8
	cfg.Tenant.StatementTimeout = 5 * time.Second
	return cfg
}

// newRouter opens a router with cfg's settings; the set fields of opts
// (Resolver, ExecMode, ConfigurePool) replace the defaults.
func newRouter(t *testing.T, cfg config.Config, opts pgroute.Options) *pgroute.Router {
	t.Helper()
	return apptest.Router(t, cfg, func(o *pgroute.Options) {
		if opts.Resolver != nil {
			o.Resolver = opts.Resolver
		}
		if opts.ExecMode != 0 {
			o.ExecMode = opts.ExecMode
		}
		o.ConfigurePool = opts.ConfigurePool
		o.Log = opts.Log
	})
}

// writeCounter counts the writes of every connection of the pools it
// configures: pgx sends one pipeline with one write, so the count of writes
// is the count of network round trips the client started.
type writeCounter struct{ n atomic.Int64 }

func (w *writeCounter) configure(cfg *pgxpool.Config) {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, w: w}, nil
	}
	// Connect up front, so that connection start-up is not counted.
	cfg.MinConns = 1
}

type countingConn struct {
	net.Conn
	w       *writeCounter
	started atomic.Bool
}

func (c *countingConn) Write(b []byte) (int, error) {
	// The first writes of a connection are its start-up and authentication.
	if c.started.Load() {
		c.w.n.Add(1)
	}
	return c.Conn.Write(b)
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	// 'Z' (ReadyForQuery) ends start-up; count from then on.
	if !c.started.Load() && n > 0 {
		for i := 0; i+5 < n; i++ {
			if b[i] == 'Z' && b[i+1] == 0 && b[i+2] == 0 && b[i+3] == 0 && b[i+4] == 5 {
				c.started.Store(true)
				break
			}
		}
	}
	return n, err
}

// moveToOwnDatabase copies a test tenant (core schema, its marker member)
// into a dedicated database tenant_<slug>, points its catalog row there and
// drops the old schema: what a move leaves, without the mover. It returns
// an admin connection to the new database; the database goes at cleanup.
func moveToOwnDatabase(t *testing.T, tt testTenant) *sql.DB {
	t.Helper()
	ctx := context.Background()
	admin := dbtest.AdminDB(t)
	name := tt.slug.DatabaseName()
	ident := pgx.Identifier{name}.Sanitize()
	for _, q := range []string{
		`CREATE DATABASE ` + ident + ` TEMPLATE template0 ENCODING 'UTF8'`,
		`GRANT CONNECT ON DATABASE ` + ident + ` TO pd_app`,
	} {
		_, err := admin.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	t.Cleanup(func() { _, _ = admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`) })
	cfg, err := pgx.ParseConfig(dbtest.WithDatabase(t, dbtest.AdminURL(t), name))
	require.NoError(t, err)
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	for _, ext := range []string{"ltree", "btree_gin"} {
		_, err := db.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS `+ext)
		require.NoError(t, err)
	}
	spec := schemaapply.TenantSpec{Schema: tt.slug.SchemaName(), Role: tt.slug.RoleName(), AppRole: "pd_app"}
	_, err = schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{})
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO `+pgx.Identifier{tt.slug.SchemaName(), "members"}.Sanitize()+
		` (tenant_id, full_name) VALUES ($1, $2)`, tt.id, tt.marker)
	require.NoError(t, err)
	catalogtest.SetPlacement(t, admin, tt.id, tenant.Placement{Kind: tenant.PlacementDatabase, Cluster: "main",
		Database: name, Schema: tt.slug.SchemaName()})
	_, err = admin.ExecContext(ctx, `DROP SCHEMA `+pgx.Identifier{tt.slug.SchemaName()}.Sanitize()+` CASCADE`)
	require.NoError(t, err)
	return db
}
