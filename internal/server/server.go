// Package server wires the HTTP server: pools, the tenant router (with
// placement invalidation over LISTEN/NOTIFY), the platform services, the
// platform and tenant APIs, and graceful shutdown. cmd/publicdigit only parses flags, builds the
// logger and calls Run.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/registry"
	"github.com/publicdigit/publicdigit/internal/tenancy"
	"github.com/publicdigit/publicdigit/internal/tenancy/move"
	"github.com/publicdigit/publicdigit/internal/tenancy/provision"
)

// AuthCacheTTL is how long the server trusts a successful token lookup. A
// token revoked through this server's API stops at once; one revoked
// elsewhere (tenantctl, another server process) within AuthCacheTTL.
const AuthCacheTTL = 5 * time.Second

// warmPoolInterval is how often the warm pool is topped up and reaped
// besides the refill that follows every claim.
const warmPoolInterval = time.Minute

// Run serves the API until ctx is cancelled, then shuts down gracefully.
// onListen, when set, receives the bound address (useful with port 0).
func Run(ctx context.Context, cfg config.Config, base zerolog.Logger, onListen func(addr string)) error {
	log := logging.Component(base, "server")

	// The landlord pool goes through PgBouncer like everything else; it does
	// not need to reach the database at start, /readyz reports that.
	landlord, err := pgroute.NewLandlordPool(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer landlord.Close()

	// The direct admin connection (never PgBouncer): provisioning, module
	// installs, purge and the warm pool. database/sql connects lazily.
	admin, err := tenancy.OpenAdmin(cfg.Admin.URL, cfg.Pool)
	if err != nil {
		return err
	}
	defer admin.Close()

	metrics := httpapi.NewMetrics()
	metrics.AddPool("landlord", landlord)

	// The tenant router: one shared pool per cluster (through PgBouncer),
	// placements cached from the catalog (read on the landlord pool above), the
	// tenant bound per transaction.
	router, err := pgroute.New(ctx, cfg, logging.Component(base, "pgroute"),
		pgroute.Options{Resolver: pgroute.CatalogResolver{Pool: landlord}})
	if err != nil {
		return err
	}
	defer router.Close()
	addRouterPools(metrics, router)

	tenants, err := tenancy.New(tenancy.Options{
		Config:   cfg,
		Landlord: landlord,
		Admin:    admin,
		Log:      logging.Component(base, "tenancy"),
		// Changes made through this process reach its router at once; other
		// processes hear them on landlord.listen_url (router.Listen below).
		OnChange: router.Invalidate,
	})
	if err != nil {
		return err
	}
	defer tenants.Close()
	prov, err := provision.New(provision.Options{
		Tenants:  tenants,
		Log:      logging.Component(base, "provision"),
		WarmPool: cfg.Tenant.WarmPool,
		OnProvision: func(path provision.Path, d time.Duration, err error) {
			metrics.ObserveProvision(string(path), d, err)
		},
	})
	if err != nil {
		return err
	}
	metrics.AddGauge("publicdigit_warm_pool_ready_spares", "Spare tenant schemas ready in the warm pool.", func() float64 {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := prov.WarmPoolStats(c)
		if err != nil {
			return -1
		}
		return float64(st.Ready)
	})

	cursors, err := newCursors(cfg, log)
	if err != nil {
		return err
	}
	geo := geography.New(landlord)
	tenantAPI := httpapi.TenantAPI(httpapi.TenantOptions{
		Router: router,
		// Known geography units are remembered for a minute: a member write
		// naming one is then a single round trip to its tenant.
		Members: membership.NewService(router, membership.CachedGeo(geo, time.Minute, 10_000)),
		Cards:   cards.NewService(router),
		Cursors: cursors,
		Header:  cfg.HTTP.TenantHeader,
		Log:     logging.Component(base, "tenant-api"),
	})

	mover, err := move.New(move.Options{Tenants: tenants, Log: logging.Component(base, "move")})
	if err != nil {
		return err
	}
	app := httpapi.New(httpapi.Deps{
		Log:       logging.Component(base, "http"),
		BodyLimit: cfg.HTTP.BodyLimit,
		Ready: func(ctx context.Context) error {
			var one int
			return landlord.QueryRow(ctx, "SELECT 1").Scan(&one)
		},
		Tenants:     tenants,
		Provisioner: prov,
		Registry:    registry.New(landlord, tenants, prov, logging.Component(base, "registry")),
		Geography:   geo,
		Tokens:      access.New(landlord, access.Options{CacheTTL: AuthCacheTTL}),
		Metrics:     metrics,
		Mover:       mover,
		Extensions:  []httpapi.Extension{tenantAPI},
	})

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTP.Addr, err)
	}
	addr := ln.Addr().String()
	log.Info().Str("addr", addr).Msgf("listening on http://%s", addr)
	if onListen != nil {
		onListen(addr)
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		prov.RunWarmPool(bg, warmPoolInterval)
	}()
	if cfg.Landlord.ListenURL != "" {
		// Tenant changes made by other processes (tenantctl, other servers,
		// moves) drop this router's cached placements at once.
		wg.Add(1)
		go func() {
			defer wg.Done()
			router.Listen(bg, cfg.Landlord.ListenURL, nil)
		}()
	}
	defer func() {
		stopBG()
		wg.Wait()
	}()

	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down")
	if err := app.ShutdownWithTimeout(cfg.HTTP.ShutdownTimeout); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	select {
	case <-served:
	case <-time.After(time.Second):
	}
	log.Info().Msg("stopped")
	return nil
}

// newCursors returns the signer of the tenant API's pagination cursors, with
// http.cursor_secret or, when it is empty, a random secret (and a warning:
// cursors then break on restart and between server processes).
func newCursors(cfg config.Config, log zerolog.Logger) (*httpapi.Cursors, error) {
	if cfg.HTTP.CursorSecret == "" {
		log.Warn().Msg("http.cursor_secret is empty: pagination cursors use a random per-process secret " +
			"and break on restart or across server processes; set it (32+ bytes) in production")
	}
	return httpapi.NewCursors([]byte(cfg.HTTP.CursorSecret))
}

// addRouterPools exports the tenant pools' statistics, summed over the
// router's open pools (shared and dedicated), as pool "tenants".
func addRouterPools(m *httpapi.Metrics, r *pgroute.Router) {
	sum := func(f func(*pgxpool.Stat) float64) func() float64 {
		return func() float64 {
			var n float64
			for _, p := range r.PoolStats() {
				n += f(p.Stat)
			}
			return n
		}
	}
	m.AddGauge("publicdigit_tenant_pools_open", "Open tenant pools (shared per cluster, plus dedicated databases).",
		func() float64 { return float64(len(r.PoolStats())) })
	m.AddGauge("publicdigit_tenant_pool_acquired_connections", "Connections in use across the tenant pools.",
		sum(func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }))
	m.AddGauge("publicdigit_tenant_pool_idle_connections", "Idle connections across the tenant pools.",
		sum(func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }))
	m.AddGauge("publicdigit_tenant_pool_max_connections", "Maximum connections across the tenant pools.",
		sum(func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }))
}
