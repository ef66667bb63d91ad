package tenancy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// DatabasePlacement is placement in a dedicated database tenant_<slug> (holding
// schema tenant_<slug>) on the named cluster.
func (s *Service) DatabasePlacement(slug Slug, cluster string) (Placement, error) {
	if _, err := s.cfg.Cluster(cluster); err != nil {
		return Placement{}, fmt.Errorf("%w: %w", ErrInvalidTenant, err)
	}
	return Placement{Kind: PlacementDatabase, Cluster: cluster, Database: slug.DatabaseName(), Schema: slug.SchemaName()}, nil
}

// PlacementFor is the placement of kind on cluster (the default cluster when empty).
func (s *Service) PlacementFor(slug Slug, kind PlacementKind, cluster string) (Placement, error) {
	if cluster == "" {
		cluster = s.cfg.DefaultCluster
	}
	switch kind {
	case PlacementSchema:
		return s.SchemaPlacement(slug, cluster)
	case PlacementDatabase:
		return s.DatabasePlacement(slug, cluster)
	}
	return Placement{}, fmt.Errorf("%w: placement must be %q or %q (got %q)", ErrInvalidTenant, PlacementSchema, PlacementDatabase, kind)
}

// AdminURL is the direct admin connection string of a database on a cluster.
func (s *Service) AdminURL(cluster, database string) (string, error) {
	cl, err := s.cfg.Cluster(cluster)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidTenant, err)
	}
	u, err := url.Parse(cl.AdminURL)
	if err != nil {
		return "", fmt.Errorf("cluster %s admin_url: %w", cluster, err)
	}
	u.Path = "/" + database
	return u.String(), nil
}

// OpenAdmin opens a direct admin connection pool (database/sql) to a database
// of a cluster; the caller closes it. Dedicated databases are opened per
// operation, never cached, so that they can be renamed or dropped after.
func (s *Service) OpenAdmin(ctx context.Context, cluster, database string) (*sql.DB, error) {
	raw, err := s.AdminURL(cluster, database)
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

// EnsureDatabase creates a tenant's dedicated database when missing, from
// template0 in UTF8, owned by the admin role, open to the application role
// only, with the extensions every publicdigit database has. Idempotent.
func (s *Service) EnsureDatabase(ctx context.Context, cluster, database string) error {
	server, err := s.ClusterAdmin(cluster)
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
		if err != nil && !isDuplicateDatabase(err) {
			return fmt.Errorf("create database %s on cluster %s: %w", database, cluster, err)
		}
	}
	for _, stmt := range []string{
		"REVOKE ALL ON DATABASE " + db + " FROM PUBLIC",
		"GRANT CONNECT ON DATABASE " + db + " TO " + pgx.Identifier{s.cfg.Tenant.AppRole}.Sanitize(),
	} {
		if _, err := server.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("database %s: %w", database, err)
		}
	}
	conn, err := s.OpenAdmin(ctx, cluster, database)
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

// DropDatabase drops a database, ending the application's idle connections
// to it (PgBouncer keeps some) first.
func (s *Service) DropDatabase(ctx context.Context, cluster, database string) error {
	server, err := s.ClusterAdmin(cluster)
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
func (s *Service) RenameDatabase(ctx context.Context, cluster, from, to string) error {
	server, err := s.ClusterAdmin(cluster)
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
	for _, stmt := range []string{
		"ALTER DATABASE " + pgx.Identifier{from}.Sanitize() + " ALLOW_CONNECTIONS false",
	} {
		if _, err := server.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("rename database %s: %w", from, err)
		}
	}
	if _, err := server.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, from); err != nil {
		return fmt.Errorf("rename database %s: end connections: %w", from, err)
	}
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		_, lastErr = server.ExecContext(ctx, "ALTER DATABASE "+pgx.Identifier{from}.Sanitize()+" RENAME TO "+pgx.Identifier{to}.Sanitize())
		if lastErr == nil {
			break
		}
		// 55006 object_in_use: a backend is still exiting.
		if !isObjectInUse(lastErr) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeAfter(attempt):
		}
	}
	if lastErr != nil {
		return fmt.Errorf("rename database %s to %s: %w", from, to, lastErr)
	}
	return nil
}

func isDuplicateDatabase(err error) bool { return sqlState(err) == "42P04" }
func isObjectInUse(err error) bool       { return sqlState(err) == "55006" }

func sqlState(err error) string {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return pe.SQLState()
	}
	return ""
}

func timeAfter(attempt int) <-chan time.Time {
	return time.After(time.Duration(attempt+1) * 50 * time.Millisecond)
}
