// Package app is publicdigit's one wiring: Open builds, from the
// configuration, the pools, the tenant router and every service, in
// dependency order; Close releases them in reverse. The server, tenantctl
// and the benchmarks all use it, so an end-to-end test can reach any service
// of a running program.
//
//	landlord pool (app role, PgBouncer) ─┬─ catalog ── router (tenant pools)
//	admin connection (direct) ───────────┤      └── membership, cards, elections
//	clusters (direct, per server) ───────┴─ provision ── modules, move, transfer
package app

import (
	"context"
	"database/sql"

	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/elections"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/limits"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
	"github.com/publicdigit/publicdigit/internal/transfer"
)

// Options adjust what Open builds; the zero value suits tenantctl.
type Options struct {
	// TokenCacheTTL keeps successful token lookups this long (0: none). A
	// token revoked through this process stops at once; one revoked
	// elsewhere within TokenCacheTTL.
	TokenCacheTTL time.Duration
	// GeoCacheTTL remembers known geography units this long for member
	// writes (0: none), so such a write is one round trip to its tenant.
	GeoCacheTTL time.Duration
	// OnProvision observes every provisioning attempt (metrics).
	OnProvision func(path provision.Path, d time.Duration, err error)
	// ProvisionHook, MoveHook and TransferHook are called at each step
	// (fault injection in tests).
	ProvisionHook func(provision.Step)
	MoveHook      func(move.Step)
	TransferHook  func(transfer.Step)
	// ConfigureRouterPool may adjust each tenant pool's config (tests).
	ConfigureRouterPool func(*pgxpool.Config)
	// OnTenantChange is called after a tenant's status or placement changed
	// through this process (after the router forgot it).
	OnTenantChange func(tenant.Slug)
	// SparePrefix names the warm pool's spares (default provision's);
	// tests and benchmarks use their own so that they never claim each other's.
	SparePrefix string
}

// App is a running publicdigit: everything Open built. Fields are set once
// and safe for concurrent use.
type App struct {
	Config config.Config
	Log    zerolog.Logger

	// Landlord is the landlord pool (application role, through PgBouncer).
	Landlord *pgxpool.Pool
	// Admin is the direct admin connection to the landlord database.
	Admin *sql.DB
	// Locks is a separate pool of direct admin connections to the landlord
	// database that holds only tenant operation locks (catalog.Options.Locks).
	Locks *sql.DB

	Clusters    *clusters.Clusters
	Catalog     *catalog.Catalog
	Router      *pgroute.Router
	Provisioner *provision.Provisioner
	Modules     *modules.Service
	Mover       *move.Mover
	Transfer    *transfer.Service
	Geography   *geography.Store
	Tokens      *access.Service
	// Audit is the audit trail: failed actions, listing (successful actions
	// record themselves in their own transactions).
	Audit *audit.Log
	// Limits admits each tenant's API requests up to its concurrency limit.
	Limits    *limits.Limiter
	Members   *membership.Service
	Cards     *cards.Service
	Elections *elections.Service

	closers []func()
}

// Open builds the App. Nothing needs the database to be up yet: pools
// connect lazily (/readyz reports the landlord's reachability).
func Open(ctx context.Context, cfg config.Config, log zerolog.Logger, o Options) (_ *App, err error) {
	a := &App{Config: cfg, Log: log}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	// The landlord pool goes through PgBouncer like everything else, with
	// the exec mode that suits the PgBouncer in front of the default cluster.
	a.Landlord, err = pgroute.NewPool(ctx, cfg.Landlord.URL, PoolConfig(cfg.Pool),
		pgroute.LandlordExecMode(cfg.Clusters[cfg.DefaultCluster].PgBouncer), nil)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.Landlord.Close)
	// The direct admin connection (never PgBouncer): DDL, provisioning,
	// module installs, moves, purge and the warm pool. It connects lazily.
	if a.Admin, err = clusters.OpenAdmin(cfg.Admin.URL, cfg.Pool); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = a.Admin.Close() })
	if a.Locks, err = clusters.OpenAdmin(cfg.Admin.URL, cfg.Pool); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = a.Locks.Close() })
	a.Clusters = clusters.New(cfg, a.Admin)
	a.closers = append(a.closers, a.Clusters.Close)
	a.Audit = audit.New(a.Landlord, logging.Component(log, "audit"))
	a.Limits = limits.New(limits.Options{
		MaxConcurrent: cfg.Tenant.MaxConcurrentRequests, StatementTimeout: cfg.Tenant.StatementTimeout,
		QueueWait: cfg.Tenant.QueueWait, MaxQueued: cfg.Tenant.MaxQueuedRequests,
	})

	if err := a.openTenancy(ctx, o); err != nil {
		return nil, err
	}
	a.Geography = geography.New(a.Landlord)
	a.Tokens = access.New(a.Landlord, a.Catalog, access.Options{CacheTTL: o.TokenCacheTTL, Audit: a.Audit})
	var geo membership.GeoUnits = a.Geography
	if o.GeoCacheTTL > 0 {
		geo = membership.CachedGeo(a.Geography, o.GeoCacheTTL, 10_000)
	}
	a.Members = membership.NewService(a.Router, geo)
	a.Cards = cards.NewService(a.Router)
	a.Elections = elections.NewService(a.Router, a.Geography)
	return a, nil
}

// openTenancy builds the router, the catalog and the services that change
// tenants' storage.
func (a *App) openTenancy(ctx context.Context, o Options) error {
	cfg := a.Config
	var invalidate func(slug tenant.Slug)
	var err error
	a.Catalog, err = catalog.New(catalog.Options{
		Pool: a.Landlord, Admin: a.Admin, Locks: a.Locks, LockWait: cfg.Tenant.LockWait, Audit: a.Audit,
		Log: logging.Component(a.Log, "catalog"),
		// Changes made through this process reach its router at once; other
		// processes hear them on landlord.listen_url (Listen).
		OnChange: func(s tenant.Slug) {
			invalidate(s)
			if a.Tokens != nil { // the tenant's tokens see its new status at once
				a.Tokens.ForgetTenant(s)
			}
			if o.OnTenantChange != nil {
				o.OnTenantChange(s)
			}
		},
	})
	if err != nil {
		return err
	}
	ro := RouterOptions(cfg, a.Catalog, logging.Component(a.Log, "pgroute"))
	ro.ConfigurePool = o.ConfigureRouterPool
	// Changes made by other processes reach the token cache too.
	ro.OnNotify = func(s tenant.Slug) {
		if a.Tokens != nil {
			a.Tokens.ForgetTenant(s)
		}
	}
	if a.Router, err = pgroute.New(ctx, ro); err != nil {
		return err
	}
	a.closers = append(a.closers, a.Router.Close)
	invalidate = a.Router.Invalidate

	a.Provisioner, err = provision.New(provision.Options{
		Catalog: a.Catalog, Clusters: a.Clusters, AppRole: cfg.Tenant.AppRole,
		WarmPool: cfg.Tenant.WarmPool, SparePrefix: o.SparePrefix, OnProvision: o.OnProvision, Hook: o.ProvisionHook,
		Defaults: modules.ForNewTenants(), Log: logging.Component(a.Log, "provision"),
	})
	if err != nil {
		return err
	}
	a.Modules = modules.New(a.Landlord, a.Catalog, a.Clusters, a.Provisioner, logging.Component(a.Log, "modules"))
	a.Mover, err = move.New(move.Options{
		Catalog: a.Catalog, Clusters: a.Clusters, Modules: a.Modules, AppRole: cfg.Tenant.AppRole,
		Hook: o.MoveHook, Log: logging.Component(a.Log, "move"),
	})
	if err != nil {
		return err
	}
	a.Transfer, err = transfer.New(transfer.Options{
		Catalog: a.Catalog, Clusters: a.Clusters, Provisioner: a.Provisioner, Modules: a.Modules,
		Hook: o.TransferHook, Log: logging.Component(a.Log, "transfer"),
	})
	return err
}

// Close releases everything Open built, in reverse order. Safe to call twice.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Ready reports whether the landlord catalog is reachable through its pool.
func (a *App) Ready(ctx context.Context) error {
	var one int
	return a.Landlord.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// RunBackground runs the background work of a server until ctx ends: the
// warm pool (topped up every interval and after each claim) and, when
// landlord.listen_url is set, the listener that drops the router's cached
// tenants as soon as another process changes them.
func (a *App) RunBackground(ctx context.Context, warmPoolInterval time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Provisioner.RunWarmPool(ctx, warmPoolInterval)
	}()
	if a.Config.Landlord.ListenURL != "" {
		a.Router.Listen(ctx, a.Config.Landlord.ListenURL, nil)
	}
	<-done
}
