package app

import (
	"context"
	"database/sql"
	"sync"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// PoolConfig is the pgroute pool setting of the configuration.
func PoolConfig(p config.Pool) pgroute.PoolConfig {
	return pgroute.PoolConfig{
		MaxConns: p.MaxConns, MinConns: p.MinConns,
		MaxConnLifetime: p.MaxConnLifetime, MaxConnIdleTime: p.MaxConnIdleTime,
		HealthCheckPeriod: p.HealthCheckPeriod, ApplicationName: p.ApplicationName,
	}
}

// RouterOptions are the router's options from the configuration, resolving
// tenants through r (the catalog).
func RouterOptions(cfg config.Config, r pgroute.Resolver, log zerolog.Logger) pgroute.Options {
	urls := make(map[string]string, len(cfg.Clusters))
	lanes := map[string][]string{}
	for name, cl := range cfg.Clusters {
		urls[name] = cl.URL
		// A config that passed Validate has parseable URLs.
		if l, err := cl.LaneURLs(); err == nil && len(l) > 1 {
			lanes[name] = l
		}
	}
	return pgroute.Options{
		Resolver: r,
		Clusters: urls,
		Lanes:    lanes,
		Pool:     PoolConfig(cfg.Pool),
		Dedicated: pgroute.DedicatedConfig{
			MaxPools: cfg.Pool.DedicatedMaxPools, MaxConns: cfg.Pool.DedicatedMaxConns, IdleClose: cfg.Pool.DedicatedIdleClose,
		},
		StatementTimeout:  cfg.Tenant.StatementTimeout,
		Roles:             cfg.Tenant.Roles,
		MovingLockTimeout: cfg.HTTP.WriteWait,
		CacheTTL:          cfg.Tenant.CacheTTL,
		ListenCacheTTL:    cfg.Tenant.ListenCacheTTL,
		SlowStatement:     cfg.Tenant.SlowStatement,
		Log:               log,
	}
}

// Fleet is the fleet runner over this App's catalog and clusters. It also
// installs the default modules (modules.DefaultNames) on every tenant that
// never had them: their files join the tenant's desired schema and their
// install records commit with the apply's record.
func (a *App) Fleet() *schemaapply.Fleet {
	return &schemaapply.Fleet{
		Catalog:  &fleetCatalog{admin: a.Admin, modules: a.Modules, pending: map[uuid.UUID]pendingDefaults{}},
		Landlord: a.Admin,
		TenantDB: a.Clusters.TenantDB,
		AppRole:  a.Config.Tenant.AppRole,
		Log:      logging.Component(a.Log, "fleet"),
	}
}

// fleetCatalog joins the tenant catalog and the module registry for the
// fleet runner.
type fleetCatalog struct {
	admin   *sql.DB
	modules *modules.Service

	mu      sync.Mutex
	pending map[uuid.UUID]pendingDefaults // default modules to record with each tenant's apply
}

type pendingDefaults struct {
	t     tenant.Tenant
	names []string
}

func (f *fleetCatalog) FleetTenants(ctx context.Context, sel schemaapply.Selection) ([]schemaapply.FleetTenant, error) {
	ts, err := catalog.Select(ctx, f.admin, catalog.Selection{Slugs: sel.Slugs, Prefix: sel.SlugPrefix})
	if err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	mods, err := f.modules.FilesOfMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]schemaapply.FleetTenant, len(ts))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, t := range ts {
		m := mods[t.ID]
		out[i] = schemaapply.FleetTenant{Tenant: t, Modules: m.Files}
		if len(m.Pending) > 0 {
			f.pending[t.ID] = pendingDefaults{t: t, names: m.Pending}
		}
	}
	return out, nil
}

func (f *fleetCatalog) RecordApplied(ctx context.Context, tx *sql.Tx, id uuid.UUID, hash, fingerprint, stamp string) error {
	f.mu.Lock()
	p := f.pending[id]
	f.mu.Unlock()
	var db catalog.DBTX = f.admin
	if tx != nil {
		db = tx
	}
	if err := modules.RecordInstalled(ctx, db, p.t, p.names); err != nil {
		return err
	}
	return catalog.RecordAppliedStamped(ctx, db, id, hash, fingerprint, stamp)
}

func (f *fleetCatalog) RecordStamps(ctx context.Context, stamps []schemaapply.Stamp) error {
	out := make([]catalog.Stamp, len(stamps))
	for i, s := range stamps {
		out[i] = catalog.Stamp{ID: s.ID, Fingerprint: s.Fingerprint, Stamp: s.Stamp}
	}
	return catalog.RecordStamps(ctx, f.admin, out)
}

func (f *fleetCatalog) RecordFailed(ctx context.Context, id uuid.UUID, cause error) error {
	return catalog.RecordFailed(ctx, f.admin, id, cause)
}
