// Package clusters reaches the PostgreSQL servers of the configuration
// ("clusters") as the admin role, directly (never through PgBouncer): one
// cached connection pool per cluster's shared database, short-lived ones to
// dedicated tenant databases, and the database-level operations on them
// (create, drop, rename, size). It also knows which placements a cluster
// offers: schema tenant_<slug> in its shared database, or a dedicated
// database tenant_<slug>.
package clusters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Clusters opens and caches the admin connections of the configured
// clusters. Safe for concurrent use; Close releases what it opened.
type Clusters struct {
	cfg      config.Config
	landlord *sql.DB // the landlord's own admin connection, reused for its cluster

	mu        sync.Mutex
	admins    map[string]*sql.DB // cluster → admin connection to its shared database
	databases map[string]string  // cluster → its shared database name
}

// New returns the clusters of cfg. landlord is the direct admin connection
// to the landlord database: a cluster whose admin_url is cfg.Admin.URL uses
// it (so that one transaction can change a tenant's schema and its catalog
// row together).
func New(cfg config.Config, landlord *sql.DB) *Clusters {
	return &Clusters{cfg: cfg, landlord: landlord, admins: map[string]*sql.DB{}, databases: map[string]string{}}
}

// Close closes the connections this value opened (not the landlord's).
func (c *Clusters) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, db := range c.admins {
		_ = db.Close()
		delete(c.admins, name)
	}
}

// Default names the cluster that new tenants go to.
func (c *Clusters) Default() string { return c.cfg.DefaultCluster }

// Landlord is the direct admin connection to the landlord database.
func (c *Clusters) Landlord() *sql.DB { return c.landlord }

// Admin returns the direct admin connection to the cluster's shared
// database, opening it on first use.
func (c *Clusters) Admin(name string) (*sql.DB, error) {
	cl, err := c.cluster(name)
	if err != nil {
		return nil, err
	}
	if cl.AdminURL == c.cfg.Admin.URL && c.landlord != nil {
		return c.landlord, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if db, ok := c.admins[name]; ok {
		return db, nil
	}
	db, err := OpenAdmin(cl.AdminURL, c.cfg.Pool)
	if err != nil {
		return nil, fmt.Errorf("cluster %s admin_url: %w", name, err)
	}
	c.admins[name] = db
	return db, nil
}

func (c *Clusters) cluster(name string) (config.Cluster, error) {
	cl, err := c.cfg.Cluster(name)
	if err != nil {
		return config.Cluster{}, fmt.Errorf("%w: %w", tenant.ErrInvalid, err)
	}
	return cl, nil
}

// OpenAdmin opens a direct admin connection pool (database/sql over pgx,
// connecting lazily) sized and recycled like the configured pools. Its
// statements use pgx's exec mode: one round trip each and no statement
// cache, since DDL texts (tenant names) rarely repeat.
func OpenAdmin(url string, p config.Pool) (*sql.DB, error) {
	pc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("admin connection %s: %w", config.Redact(url), err)
	}
	pc.DefaultQueryExecMode = pgx.QueryExecModeExec
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = pgroute.DefaultConnectTimeout
	}
	db := stdlib.OpenDB(*pc)
	db.SetMaxOpenConns(int(max(p.MaxConns, 4)))
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(p.MaxConnIdleTime)
	db.SetConnMaxLifetime(p.MaxConnLifetime)
	return db, nil
}

// SharedDatabase is the database name of a cluster's shared pool (parsed once).
func (c *Clusters) SharedDatabase(name string) (string, error) {
	cl, err := c.cluster(name)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	db, ok := c.databases[name]
	c.mu.Unlock()
	if ok {
		return db, nil
	}
	pc, err := pgx.ParseConfig(cl.AdminURL)
	if err != nil {
		return "", fmt.Errorf("cluster %s admin_url: %w", name, err)
	}
	c.mu.Lock()
	c.databases[name] = pc.Database
	c.mu.Unlock()
	return pc.Database, nil
}

// AdminURL is the direct admin connection string of a database on a cluster.
func (c *Clusters) AdminURL(cluster, database string) (string, error) {
	cl, err := c.cluster(cluster)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(cl.AdminURL)
	if err != nil {
		return "", fmt.Errorf("cluster %s admin_url: %w", cluster, err)
	}
	u.Path = "/" + database
	return u.String(), nil
}

// Open opens a direct admin connection pool to a database of a cluster and
// checks it; the caller closes it. Dedicated databases are opened per
// operation, never cached, so that they can be renamed or dropped after.
func (c *Clusters) Open(ctx context.Context, cluster, database string) (*sql.DB, error) {
	raw, err := c.AdminURL(cluster, database)
	if err != nil {
		return nil, err
	}
	pc, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*pc)
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s on cluster %s: %w", database, cluster, err)
	}
	return db, nil
}

// TenantDB returns a direct admin connection to the database that holds a
// placement's schema: the cluster's shared one (cached) or a dedicated one
// (opened for the caller). Call the returned func when done.
func (c *Clusters) TenantDB(ctx context.Context, pl tenant.Placement) (*sql.DB, func(), error) {
	shared, err := c.SharedDatabase(pl.Cluster)
	if err != nil {
		return nil, nil, err
	}
	if pl.Database == shared {
		db, err := c.Admin(pl.Cluster)
		return db, func() {}, err
	}
	db, err := c.Open(ctx, pl.Cluster, pl.Database)
	if err != nil {
		return nil, nil, err
	}
	return db, func() { db.Close() }, nil
}

// EnsureDatabase creates a tenant's dedicated database when missing, from
// template0 in UTF8, owned by the admin role, open to the application role
// only, with the extensions every publicdigit database has. Idempotent.
func (c *Clusters) EnsureDatabase(ctx context.Context, cluster, database string) error {
	server, err := c.Admin(cluster)
	if err != nil {
		return err
	}
	db := pgx.Identifier{database}.Sanitize()
	var exists bool
	if err := server.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, database).Scan(&exists); err != nil {
		return fmt.Errorf("database %s: %w", database, err)
	}
	if !exists {
		// CREATE DATABASE cannot run in a transaction; a concurrent creator
		// (a rerun racing a crashed one cannot: the tenant lock) would get 42P04.
		_, err := server.ExecContext(ctx, "CREATE DATABASE "+db+" TEMPLATE template0 ENCODING 'UTF8'")
		if err != nil && sqlState(err) != "42P04" {
			return fmt.Errorf("create database %s on cluster %s: %w", database, cluster, err)
		}
	}
	for _, stmt := range []string{
		"REVOKE ALL ON DATABASE " + db + " FROM PUBLIC",
		"GRANT CONNECT ON DATABASE " + db + " TO " + pgx.Identifier{c.cfg.Tenant.AppRole}.Sanitize(),
	} {
		if _, err := server.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("database %s: %w", database, err)
		}
	}
	conn, err := c.Open(ctx, cluster, database)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, ext := range []string{"ltree", "btree_gin"} {
		if _, err := conn.ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{ext}.Sanitize()); err != nil {
			return fmt.Errorf("database %s: extension %s: %w", database, ext, err)
		}
	}
	return nil
}

// ErrNotDroppable: DropDatabase refuses a database that is not a tenant's
// (tenant_<slug>) or a retired copy (pd_retired_<hex>), and always the
// platform's own databases.
var ErrNotDroppable = errors.New("refusing to drop a database that is not a tenant's or a retired copy")

var droppable = regexp.MustCompile(`^(tenant_[a-z][a-z0-9_]{0,55}|pd_retired_[0-9a-f]{12})$`)

// checkDroppable is the last check before DROP DATABASE: the name has a
// tenant's or a retired copy's shape, and is neither a configured shared
// database nor the landlord's.
func (c *Clusters) checkDroppable(cluster, database string) error {
	if !droppable.MatchString(database) {
		return fmt.Errorf("drop database %q on cluster %s: %w", database, cluster, ErrNotDroppable)
	}
	platform := []string{c.cfg.Admin.URL, c.cfg.Landlord.URL}
	for _, cl := range c.cfg.Clusters {
		platform = append(platform, cl.URL, cl.AdminURL)
	}
	for _, raw := range platform {
		if pc, err := pgx.ParseConfig(raw); err == nil && pc.Database == database {
			return fmt.Errorf("drop database %q on cluster %s: a platform database: %w", database, cluster, ErrNotDroppable)
		}
	}
	return nil
}

// DropDatabase drops a tenant's or a retired copy's database, ending the
// application's idle connections to it (PgBouncer keeps some) first. Any
// other name is refused (checkDroppable).
func (c *Clusters) DropDatabase(ctx context.Context, cluster, database string) error {
	if err := c.checkDroppable(cluster, database); err != nil {
		return err
	}
	server, err := c.Admin(cluster)
	if err != nil {
		return err
	}
	if _, err := server.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{database}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s on cluster %s: %w", database, cluster, err)
	}
	return nil
}

// RenameDatabase renames a database after ending every connection to it
// (a database in use cannot be renamed). Renaming a database that is
// already gone while to exists is a no-op, so a rerun may call it again.
func (c *Clusters) RenameDatabase(ctx context.Context, cluster, from, to string) error {
	server, err := c.Admin(cluster)
	if err != nil {
		return err
	}
	var fromExists, toExists bool
	if err := server.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1),
		EXISTS (SELECT FROM pg_database WHERE datname = $2)`, from, to).Scan(&fromExists, &toExists); err != nil {
		return err
	}
	if !fromExists && toExists {
		return nil
	}
	// Closing the database to new connections first, then ending the open
	// ones, leaves no window for a reconnect between the two.
	if _, err := server.ExecContext(ctx, "ALTER DATABASE "+pgx.Identifier{from}.Sanitize()+" ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("rename database %s: %w", from, err)
	}
	if _, err := server.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, from); err != nil {
		return fmt.Errorf("rename database %s: end connections: %w", from, err)
	}
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		_, lastErr = server.ExecContext(ctx, "ALTER DATABASE "+pgx.Identifier{from}.Sanitize()+" RENAME TO "+pgx.Identifier{to}.Sanitize())
		if lastErr == nil || sqlState(lastErr) != "55006" { // object_in_use: a backend is still exiting
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	if lastErr != nil {
		return fmt.Errorf("rename database %s to %s: %w", from, to, lastErr)
	}
	return nil
}

func sqlState(err error) string {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return pe.SQLState()
	}
	return ""
}
