package schemaapply

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/publicdigit/publicdigit/internal/config"
)

// ResolveFunc returns a direct admin connection to one database of one
// cluster, where tenant schemas live. The fleet runner calls it for tenants
// outside the catalog's own database.
type ResolveFunc func(cluster, database string) (*sql.DB, error)

// Resolver opens, caches and closes direct admin connections to the
// databases of the configured clusters: the cluster's admin_url with the
// database name swapped. Its DB method is a ResolveFunc.
type Resolver struct {
	cfg config.Config
	mu  sync.Mutex
	dbs map[[2]string]*sql.DB
}

// NewResolver returns a Resolver over cfg.Clusters. Close it when done.
func NewResolver(cfg config.Config) *Resolver {
	return &Resolver{cfg: cfg, dbs: map[[2]string]*sql.DB{}}
}

// ErrUnknownCluster is returned for a cluster that is not configured.
var ErrUnknownCluster = errors.New("unknown cluster")

// DB returns the (shared, cached) admin connection to database on cluster.
func (r *Resolver) DB(cluster, database string) (*sql.DB, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := [2]string{cluster, database}
	if db, ok := r.dbs[key]; ok {
		return db, nil
	}
	cl, ok := r.cfg.Clusters[cluster]
	if !ok {
		return nil, fmt.Errorf("%w %q (configure clusters.%s.admin_url)", ErrUnknownCluster, cluster, cluster)
	}
	if database == "" {
		return nil, fmt.Errorf("cluster %s: empty database name", cluster)
	}
	u, err := url.Parse(cl.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: admin_url: %w", cluster, err)
	}
	u.Path = "/" + database
	pc, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("cluster %s: admin_url: %w", cluster, err)
	}
	db := stdlib.OpenDB(*pc)
	r.dbs[key] = db
	return db, nil
}

// Close closes every connection the resolver opened.
func (r *Resolver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for k, db := range r.dbs {
		errs = append(errs, db.Close())
		delete(r.dbs, k)
	}
	return errors.Join(errs...)
}
