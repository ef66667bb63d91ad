package modes

// This file is the load test's one adapter to the product's own packages
// (internal/config, internal/pgroute, internal/tenant): when their API
// changes, only this file changes.

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
	"github.com/publicdigit/publicdigit/internal/pgpass"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// LocalURLs returns the admin URL (direct) and the application role's URL
// (through the project's PgBouncer) of the product's configuration: its
// defaults, changed by PD_ environment variables (see deploy/local).
func LocalURLs() (admin, app string, err error) {
	cfg, err := config.Load(nil)
	if err != nil {
		return "", "", err
	}
	cl, err := cfg.Cluster(cfg.DefaultCluster)
	if err != nil {
		return "", "", err
	}
	return withPassfile(cfg.Admin.URL), withPassfile(cl.URL), nil
}

// withPassfile puts into raw the password that the password file
// (PGPASSFILE, else ~/.pgpass) has for it, if raw has none: the product's
// configuration carries no password, and a private PgBouncer needs the
// application role's to log in on its behalf.
func withPassfile(raw string) string { return pgpass.FillFromEnv(raw) }

const loadCluster = "load"

// openRouter serves set through the product's router (pgroute.Router):
// tenants from a resolver that knows the scratch tenants, one shared pool
// with the product's pool settings, the tenant bound per transaction; roles
// turns on the tenant role.
func openRouter(ctx context.Context, set *scratch.Set, t Target, roles bool) (Binder, error) {
	dbURL, err := scratch.WithDatabase(t.URL, set.Databases[0])
	if err != nil {
		return nil, err
	}
	pool := config.Defaults().Pool
	res := resolver{}
	slugs := make([]tenant.Slug, len(set.Tenants))
	for i, tn := range set.Tenants {
		slug, err := tenant.ParseSlug(tn.Slug)
		if err != nil {
			return nil, err
		}
		if roles && slug.RoleName() != tn.Role {
			return nil, fmt.Errorf("modes: the router would assume role %s, the scratch tenant has %s", slug.RoleName(), tn.Role)
		}
		slugs[i] = slug
		res[tn.Slug] = tenant.Tenant{ID: tn.ID, Slug: slug, Name: tn.Slug, Status: tenant.StatusActive, Version: 1,
			Placement: tenant.Placement{Kind: tenant.PlacementSchema, Cluster: loadCluster, Database: tn.Database, Schema: tn.Schema}}
	}
	r, err := pgroute.New(ctx, pgroute.Options{
		Resolver: res,
		Clusters: map[string]string{loadCluster: dbURL},
		Pool: pgroute.PoolConfig{MaxConns: t.Conns, MaxConnLifetime: pool.MaxConnLifetime, MaxConnIdleTime: pool.MaxConnIdleTime,
			HealthCheckPeriod: pool.HealthCheckPeriod, ApplicationName: t.AppName},
		StatementTimeout: t.StatementTimeout,
		Roles:            roles,
		CacheTTL:         time.Hour,
		Log:              zerolog.Nop(),
	})
	if err != nil {
		return nil, err
	}
	return &router{r: r, slugs: slugs}, nil
}

// resolver knows the scratch tenants.
type resolver map[string]tenant.Tenant

func (r resolver) Resolve(_ context.Context, slug tenant.Slug) (tenant.Tenant, error) {
	t, ok := r[slug.String()]
	if !ok {
		return tenant.Tenant{}, fmt.Errorf("%w: %s", tenant.ErrNotFound, slug)
	}
	return t, nil
}

// router is a Binder on the product's router.
type router struct {
	r     *pgroute.Router
	slugs []tenant.Slug // by tenant index
}

func (x *router) Do(ctx context.Context, t *scratch.Tenant, fn func(Queue)) error {
	return x.r.Do(ctx, x.slugs[t.Index], func(b *pgroute.Batch) error {
		fn(b)
		return nil
	})
}

func (x *router) Tx(ctx context.Context, t *scratch.Tenant, fn func(context.Context, Tx) error) error {
	return x.r.Tx(ctx, x.slugs[t.Index], pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
		return fn(ctx, tx)
	})
}

func (x *router) Close() { x.r.Close() }
