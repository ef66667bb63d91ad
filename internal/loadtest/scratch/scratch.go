// Package scratch prepares and removes the load test's throwaway data on one
// PostgreSQL server — databases named pd_load_<run>_…, tenant roles named
// tenant_pdload_<run>_…, the tenants' tables and rows in one of four layouts —
// and reads what the server can tell about them: rows, size on disk,
// connections, backend memory. A live run holds an advisory lock named after
// its run id; a new run drops whatever runs without that lock left behind.
package scratch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Name prefixes: every database and role the load test makes starts with one.
const (
	DBPrefix   = "pd_load_"
	SlugPrefix = "pdload_"
	// RolePrefix is "tenant_" + SlugPrefix: the product names a tenant's role
	// "tenant_" + its slug.
	RolePrefix = "tenant_" + SlugPrefix
)

// maintenanceDB is where the run's lock lives and where databases are created
// and dropped: the same database for every run, whatever URL it was given.
const maintenanceDB = "postgres"

// lockClass is the first key of every run's advisory lock ("pdld").
const lockClass = 0x70646c64

var (
	dbRunPattern   = regexp.MustCompile(`^` + DBPrefix + `([0-9a-f]{8})_`)
	roleRunPattern = regexp.MustCompile(`^` + RolePrefix + `([0-9a-f]{8})_`)
)

// Server is the admin side of one PostgreSQL server during one run.
type Server struct {
	// RunID names this run's databases and roles.
	RunID string
	// AppUser is the application role whose backends serve the workload.
	AppUser  string
	adminURL string
	admin    *pgxpool.Pool // pd_admin on the maintenance database
	lock     *pgx.Conn     // holds the run's advisory lock
}

// Open connects as the admin role (adminURL: any database; the maintenance
// database is used), makes a run id and takes the run's lock.
func Open(ctx context.Context, adminURL, appUser string) (*Server, error) {
	u, err := WithDatabase(adminURL, maintenanceDB)
	if err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s := &Server{RunID: hex.EncodeToString(b[:]), AppUser: appUser, adminURL: u}
	if s.lock, err = pgx.Connect(ctx, u); err != nil {
		return nil, fmt.Errorf("scratch: admin connection: %w", err)
	}
	if _, err := s.lock.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, lockClass, s.RunID); err != nil {
		s.lock.Close(ctx)
		return nil, fmt.Errorf("scratch: run lock: %w", err)
	}
	pcfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		s.lock.Close(ctx)
		return nil, err
	}
	// Kept open all run long: a mode that fills the server's connection slots
	// must not lock the harness out of its own measurements.
	pcfg.MaxConns, pcfg.MinConns = 4, 2
	if s.admin, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		s.lock.Close(ctx)
		return nil, err
	}
	return s, nil
}

// Close releases the run's lock and connections.
func (s *Server) Close(ctx context.Context) {
	s.admin.Close()
	_ = s.lock.Close(ctx)
}

// ServerVersion is the server's version string.
func (s *Server) ServerVersion(ctx context.Context) (string, error) {
	var v string
	err := s.admin.QueryRow(ctx, `SELECT current_setting('server_version')`).Scan(&v)
	return v, err
}

// MaxConnections is the server's max_connections.
func (s *Server) MaxConnections(ctx context.Context) (int, error) {
	var n int
	err := s.admin.QueryRow(ctx, `SELECT current_setting('max_connections')::int`).Scan(&n)
	return n, err
}

// DropLeftovers drops the databases and roles of runs that are over (their
// lock is free: the process ended, normally or not). It returns what it dropped.
func (s *Server) DropLeftovers(ctx context.Context) ([]string, error) {
	dbs, err := names(ctx, s.admin, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, DBPrefix)
	if err != nil {
		return nil, err
	}
	roles, err := names(ctx, s.admin, `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, RolePrefix)
	if err != nil {
		return nil, err
	}
	byRun := map[string][]string{}
	for _, d := range dbs {
		if m := dbRunPattern.FindStringSubmatch(d); m != nil {
			byRun[m[1]] = append(byRun[m[1]], d)
		}
	}
	roleRuns := map[string][]string{}
	for _, r := range roles {
		if m := roleRunPattern.FindStringSubmatch(r); m != nil {
			roleRuns[m[1]] = append(roleRuns[m[1]], r)
			if _, ok := byRun[m[1]]; !ok {
				byRun[m[1]] = nil
			}
		}
	}
	var dropped []string
	for run, runDBs := range byRun {
		if run == s.RunID {
			continue
		}
		var free bool
		if err := s.lock.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClass, run).Scan(&free); err != nil {
			return dropped, err
		}
		if !free {
			continue // a live run
		}
		err := s.dropAll(ctx, runDBs, roleRuns[run])
		_, uerr := s.lock.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockClass, run)
		if err = errors.Join(err, uerr); err != nil {
			return dropped, err
		}
		dropped = append(append(dropped, runDBs...), roleRuns[run]...)
	}
	sort.Strings(dropped)
	return dropped, nil
}

// dropAll drops databases, then roles (which may hold grants in them).
func (s *Server) dropAll(ctx context.Context, dbs, roles []string) error {
	err := parallel(len(dbs), func(i int) error {
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{dbs[i]}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("scratch: drop database %s: %w", dbs[i], err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range roles {
		if _, err := s.admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			return fmt.Errorf("scratch: drop role %s: %w", r, err)
		}
	}
	return nil
}

func names(ctx context.Context, q *pgxpool.Pool, sql string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// WithDatabase returns raw with its database name replaced.
func WithDatabase(raw, db string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("scratch: a database URL does not parse") // its text may hold a password
	}
	u.Path = "/" + db
	return u.String(), nil
}

// workers bounds the admin connections used at once for bulk work that is
// not measured (seeding, counting and dropping many databases).
const workers = 4

// parallel runs fn(0..n-1) on up to workers goroutines and returns the
// first error; after an error no new item starts.
func parallel(n int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := i >= n || first != nil
				mu.Unlock()
				if stop {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return first
}
