// Package dbtest gives tests real PostgreSQL connections to the test database
// that `make db-up` prepares (publicdigit_test, never the platform database):
// the admin role direct, and the application role both through PgBouncer (a
// tiny server pool) and direct, so one suite can run on both paths.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

// DirectPGPort is where the local PostgreSQL listens (deploy/local/env.sh).
const DirectPGPort = "15432"

// Config returns the configuration for tests: the defaults (and any PD_
// environment) with every connection pointed at the test database. It fails
// the test rather than touch a database whose name does not end in _test.
func Config(t testing.TB) config.Config {
	t.Helper()
	c, err := config.Load(nil)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	db := os.Getenv("PD_TEST_DB")
	if db == "" {
		db = "publicdigit_test"
	}
	if !strings.HasSuffix(db, "_test") {
		t.Fatalf("dbtest: refusing test database %q: its name must end in _test", db)
	}
	c.Landlord.URL = WithDatabase(t, c.Landlord.URL, db)
	if c.Landlord.ListenURL != "" {
		c.Landlord.ListenURL = WithDatabase(t, c.Landlord.ListenURL, db)
	}
	c.Admin.URL = WithDatabase(t, c.Admin.URL, db)
	for name, cl := range c.Clusters {
		cl.URL = WithDatabase(t, cl.URL, db)
		cl.AdminURL = WithDatabase(t, cl.AdminURL, db)
		c.Clusters[name] = cl
	}
	c.Log.Level = "warn"
	return c
}

// WithDatabase returns raw with its database name replaced (and the local
// password, if raw has none: see passfile.go).
func WithDatabase(t testing.TB, raw, db string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("dbtest: parse %s: %v", config.Redact(raw), err)
	}
	u.Path = "/" + db
	return withLocalPassword(u.String())
}

// WithPort returns raw with its port replaced.
func WithPort(t testing.TB, raw, port string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("dbtest: parse %s: %v", config.Redact(raw), err)
	}
	u.Host = u.Hostname() + ":" + port
	return withLocalPassword(u.String())
}

// Path names one way from the application to PostgreSQL.
type Path string

const (
	// Bouncer goes through PgBouncer in transaction pooling mode.
	Bouncer Path = "pgbouncer"
	// Direct goes straight to PostgreSQL.
	Direct Path = "direct"
)

// Paths lists both, for suites that run on each.
var Paths = []Path{Bouncer, Direct}

// AppURL is the application role's URL on the test database for the path.
func AppURL(t testing.TB, p Path) string {
	t.Helper()
	c := Config(t)
	cl := c.Clusters[c.DefaultCluster]
	if p == Direct {
		return WithPort(t, cl.URL, DirectPGPort)
	}
	return cl.URL
}

// AdminURL is the admin role's direct URL on the test database.
func AdminURL(t testing.TB) string {
	t.Helper()
	return Config(t).Admin.URL
}

// AdminDB opens a database/sql handle as the admin role (direct), closed at cleanup.
func AdminDB(t testing.TB) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(AdminURL(t))
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("dbtest: admin connection (is the database up? run make db-up): %v", err)
	}
	return db
}

// AdminPool opens a pgx pool as the admin role (direct), closed at cleanup.
func AdminPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return pool(t, AdminURL(t), 8)
}

// AppPool opens a plain pgx pool as the application role on the path, in
// QueryExecModeExec (PgBouncer-safe), closed at cleanup.
func AppPool(t testing.TB, p Path, maxConns int32) *pgxpool.Pool {
	t.Helper()
	return pool(t, AppURL(t, p), maxConns)
}

func pool(t testing.TB, raw string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(p.Close)
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("dbtest: connect %s (is the database up? run make db-up): %v", config.Redact(raw), err)
	}
	return p
}

var landlordOnce sync.Once
var landlordErr error

// Landlord makes sure the landlord catalog exists in the test database, with
// the built-in modules registered.
func Landlord(t testing.TB) {
	t.Helper()
	db := AdminDB(t)
	landlordOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, landlordErr = schemaapply.Apply(ctx, db, schemaapply.Landlord(Config(t).Tenant.AppRole), schemaapply.Options{})
		if landlordErr == nil {
			_, landlordErr = modules.Register(ctx, db)
		}
	})
	if landlordErr != nil {
		t.Fatalf("dbtest: landlord apply: %v", landlordErr)
	}
}

// Name returns prefix + a random suffix, usable as a schema or slug.
func Name(prefix string) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// Schema creates an empty schema owned by the admin role and drops it
// (with everything in it) at cleanup.
func Schema(t testing.TB, db *sql.DB, prefix string) string {
	t.Helper()
	name := Name(prefix)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("dbtest: create schema: %v", err)
	}
	t.Cleanup(func() { DropSchema(t, db, name) })
	return name
}

// DropSchema drops a schema and everything in it, if it exists.
func DropSchema(t testing.TB, db *sql.DB, name string) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("dbtest: drop schema %s: %v", name, err)
	}
}

// SetEnv points the PD_ environment at the test database, for code under
// test that loads its own configuration (the CLI). Not for parallel tests.
func SetEnv(t *testing.T) config.Config {
	t.Helper()
	c := Config(t)
	t.Setenv("PD_LANDLORD__URL", c.Landlord.URL)
	t.Setenv("PD_LANDLORD__LISTEN_URL", c.Landlord.ListenURL)
	t.Setenv("PD_ADMIN__URL", c.Admin.URL)
	for name, cl := range c.Clusters {
		up := strings.ToUpper(name)
		t.Setenv("PD_CLUSTERS__"+up+"__URL", cl.URL)
		t.Setenv("PD_CLUSTERS__"+up+"__ADMIN_URL", cl.AdminURL)
	}
	return c
}

// ClusterB ports: the second local cluster that `make db-up-b` starts.
const (
	ClusterBPGPort      = "15433"
	ClusterBBouncerPort = "16433"
)

// WithClusterB adds cluster "b" (the second local PostgreSQL and its
// PgBouncer, same roles, same test database) to c, and fails the test when
// it is not running.
func WithClusterB(t testing.TB, c *config.Config) {
	t.Helper()
	main := c.Clusters[c.DefaultCluster]
	b := config.Cluster{
		URL:       WithPort(t, main.URL, ClusterBBouncerPort),
		AdminURL:  WithPort(t, main.AdminURL, ClusterBPGPort),
		PgBouncer: main.PgBouncer,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.AdminURL)
	if err != nil {
		t.Fatalf("dbtest: cluster b is not reachable (run make db-up-b): %v", err)
	}
	conn.Close(ctx)
	clusters := make(map[string]config.Cluster, len(c.Clusters)+1)
	for k, v := range c.Clusters {
		clusters[k] = v
	}
	clusters["b"] = b
	c.Clusters = clusters
}
