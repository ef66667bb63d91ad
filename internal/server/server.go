// Package server wires the HTTP server: pools, the platform services, the
// API and graceful shutdown. cmd/publicdigit only parses flags, builds the
// logger and calls Run.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/registry"
	"github.com/publicdigit/publicdigit/internal/tenancy"
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
	landlord, err := pgroute.NewPool(ctx, cfg.Landlord.URL, cfg.Pool, nil)
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

	tenants, err := tenancy.New(tenancy.Options{
		Config:   cfg,
		Landlord: landlord,
		Admin:    admin,
		Log:      logging.Component(base, "tenancy"),
		// OnChange: the tenant router's Invalidate, once the server routes tenant requests.
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
		Geography:   geography.New(landlord),
		Tokens:      access.New(landlord, access.Options{CacheTTL: AuthCacheTTL}),
		Metrics:     metrics,
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
