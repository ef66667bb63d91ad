package modes

// This file is the load test's one adapter to the product's own packages
// (internal/config, internal/pgroute, internal/tenancy): when their API
// changes, only this file changes.

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenancy"
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
	return cfg.Admin.URL, cl.URL, nil
}

const loadCluster = "load"

// openRouter serves set through the product's router (pgroute.Router):
// placements from a resolver that knows the scratch tenants, one shared pool,
// the tenant bound per transaction; roles turns on tenant.roles.
func openRouter(ctx context.Context, set *scratch.Set, t Target, roles bool) (Binder, error) {
	dbURL, err := scratch.WithDatabase(t.URL, set.Databases[0])
	if err != nil {
		return nil, err
	}
	cfg := config.Defaults()
	pgb := "none"
	if t.Bouncer {
		pgb = config.DefaultPgBouncer
	}
	cfg.DefaultCluster = loadCluster
	cfg.Clusters = map[string]config.Cluster{loadCluster: {URL: dbURL, AdminURL: dbURL, PgBouncer: pgb}}
	cfg.Pool.MaxConns, cfg.Pool.MinConns = t.Conns, 0
	cfg.Tenant.Roles = roles
	cfg.Tenant.StatementTimeout = t.StatementTimeout
	cfg.Tenant.SlowStatement = 0
	cfg.Tenant.CacheTTL = time.Hour

	res := resolver{}
	slugs := make([]tenancy.Slug, len(set.Tenants))
	for i, tn := range set.Tenants {
		slug, err := tenancy.ParseSlug(tn.Slug)
		if err != nil {
			return nil, err
		}
		if roles && slug.RoleName() != tn.Role {
			return nil, fmt.Errorf("modes: the router would assume role %s, the scratch tenant has %s", slug.RoleName(), tn.Role)
		}
		slugs[i] = slug
		res[tn.Slug] = pgroute.Placement{TenantID: tn.ID, Slug: slug, Status: "active", Kind: "schema",
			Cluster: loadCluster, Database: tn.Database, Schema: tn.Schema, Version: 1}
	}
	r, err := pgroute.New(ctx, cfg, zerolog.Nop(), pgroute.Options{Resolver: res})
	if err != nil {
		return nil, err
	}
	return &router{r: r, slugs: slugs}, nil
}

// resolver places the scratch tenants.
type resolver map[string]pgroute.Placement

func (r resolver) Resolve(_ context.Context, slug tenancy.Slug) (pgroute.Placement, error) {
	p, ok := r[slug.String()]
	if !ok {
		return pgroute.Placement{}, fmt.Errorf("%w: %s", pgroute.ErrTenantNotFound, slug)
	}
	return p, nil
}

// router is a Binder on the product's router.
type router struct {
	r     *pgroute.Router
	slugs []tenancy.Slug // by tenant index
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
