// Package server runs the HTTP server: it opens the App (internal/app), builds
// the API on it (internal/httpapi), serves until its context ends and shuts
// down gracefully. cmd/publicdigit only parses flags, builds the logger and
// calls Run.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/provision"
)

// AuthCacheTTL is how long the server trusts a successful token lookup. A
// token revoked through this server's API stops at once; one revoked
// elsewhere (tenantctl, another server process) within AuthCacheTTL.
const AuthCacheTTL = 5 * time.Second

// warmPoolInterval is how often the warm pool is topped up and reaped
// besides the refill that follows every claim.
const warmPoolInterval = time.Minute

// Options adjust Run; the zero value is the production setting.
type Options struct {
	// OnListen receives the bound address (useful with port 0).
	OnListen func(addr string)
	// OnOpen receives the App once it is open (end-to-end tests reach its
	// services through it).
	OnOpen func(*app.App)
	// OnMetricsListen receives the bound address of /metrics when
	// http.metrics_addr is set.
	OnMetricsListen func(addr string)
}

// Run serves the API until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, cfg config.Config, base zerolog.Logger, o Options) error {
	log := logging.Component(base, "server")
	metrics := httpapi.NewMetrics()
	a, err := app.Open(ctx, cfg, base, app.Options{
		TokenCacheTTL: AuthCacheTTL,
		// Known geography units are remembered for a minute: a member write
		// naming one is then a single round trip to its tenant.
		GeoCacheTTL: time.Minute,
		OnProvision: func(path provision.Path, d time.Duration, err error) {
			metrics.ObserveProvision(string(path), d, err)
		},
	})
	if err != nil {
		return err
	}
	defer a.Close()
	addMetrics(metrics, a)
	if o.OnOpen != nil {
		o.OnOpen(a)
	}
	cursors, err := newCursors(cfg, log)
	if err != nil {
		return err
	}
	api := httpapi.New(httpapi.Deps{
		Log: logging.Component(base, "http"), App: a, BodyLimit: cfg.HTTP.BodyLimit,
		Cursors: cursors, TenantHeader: cfg.HTTP.TenantHeader, Metrics: metrics,
		AuthFailuresPerMinute: cfg.HTTP.AuthFailuresPerMinute, MetricsElsewhere: cfg.HTTP.MetricsAddr != "",
		RequestTimeout: cfg.HTTP.RequestTimeout, PlatformTimeout: cfg.HTTP.PlatformTimeout,
	})
	if cfg.HTTP.MetricsAddr != "" {
		stop, err := serveMetrics(cfg.HTTP.MetricsAddr, metrics, log, o.OnMetricsListen)
		if err != nil {
			return err
		}
		defer stop()
	}

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTP.Addr, err)
	}
	addr := ln.Addr().String()
	log.Info().Str("addr", addr).Msgf("listening on http://%s", addr)
	if o.OnListen != nil {
		o.OnListen(addr)
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.RunBackground(bg, warmPoolInterval)
	}()
	defer func() {
		stopBG()
		wg.Wait()
	}()

	served := make(chan error, 1)
	go func() { served <- httpapi.Serve(api, ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down")
	if err := api.ShutdownWithTimeout(cfg.HTTP.ShutdownTimeout); err != nil && !errors.Is(err, context.DeadlineExceeded) {
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

// addMetrics exports the pools, the warm pool and the moves in progress of a.
func addMetrics(m *httpapi.Metrics, a *app.App) {
	m.AddPool("landlord", a.Landlord)
	m.AddLimits(a.Limits)
	addRouterPools(m, a.Router)
	// Counted by the warm pool's own loop: /metrics is unauthenticated, and a
	// scrape must not cost a query.
	m.AddGauge("publicdigit_warm_pool_ready_spares",
		"Spare tenant schemas ready in the warm pool, as last counted by its refill loop (-1: not counted yet).",
		func() float64 { return float64(a.Provisioner.ReadySpares()) })
	m.Registry.MustRegister(&moveCollector{mover: a.Mover})
}

var (
	movesInProgress = prometheus.NewDesc("publicdigit_moves_in_progress",
		"Tenant moves not finished (running, or interrupted until rerun), by mode.", []string{"mode"}, nil)
	moveLagBytes = prometheus.NewDesc("publicdigit_move_lag_bytes",
		"Source WAL a logical move's slot has not confirmed yet, per move in progress.", []string{"tenant", "state"}, nil)
	moveLagSeconds = prometheus.NewDesc("publicdigit_move_lag_seconds",
		"Age of the newest change a logical move applied while more waited, as last recorded.", []string{"tenant", "state"}, nil)
)

// moveReadEvery bounds how often a scrape reads the moves in progress:
// /metrics is unauthenticated, and scrapes must not drive queries.
const moveReadEvery = 10 * time.Second

// moveCollector exports the moves in progress (a handful at most: one label
// set per move), read at most every moveReadEvery; a failed read keeps the
// last values and never fails the scrape.
type moveCollector struct {
	mover *move.Mover

	mu    sync.Mutex
	read  time.Time
	moves []move.Progress
}

func (c *moveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- movesInProgress
	ch <- moveLagBytes
	ch <- moveLagSeconds
}

func (c *moveCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.read) >= moveReadEvery {
		c.read = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if moves, err := c.mover.InProgress(ctx); err == nil {
			c.moves = moves
		}
		cancel()
	}
	moves := c.moves
	c.mu.Unlock()
	byMode := map[move.Mode]int{move.ModeLogical: 0, move.ModeLock: 0}
	for _, p := range moves {
		byMode[p.Mode]++
		if p.LagBytes != nil {
			ch <- prometheus.MustNewConstMetric(moveLagBytes, prometheus.GaugeValue, float64(*p.LagBytes), p.Slug, p.State)
		}
		if p.Lag != nil {
			ch <- prometheus.MustNewConstMetric(moveLagSeconds, prometheus.GaugeValue, p.Lag.Seconds(), p.Slug, p.State)
		}
	}
	for mode, n := range byMode {
		ch <- prometheus.MustNewConstMetric(movesInProgress, prometheus.GaugeValue, float64(n), string(mode))
	}
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
	m.AddCounter("publicdigit_tenant_cache_lookups_total", "Tenant lookups by the router (one per tenant request).",
		func() float64 { return float64(r.CacheStats().Lookups) })
	m.AddCounter("publicdigit_tenant_cache_misses_total", "Tenant lookups that read the catalog (cache misses).",
		func() float64 { return float64(r.CacheStats().Misses) })
	m.AddGauge("publicdigit_tenant_pools_open", "Open tenant pools (shared per cluster, plus dedicated databases).",
		func() float64 { return float64(len(r.PoolStats())) })
	m.AddGauge("publicdigit_tenant_pool_acquired_connections", "Connections in use across the tenant pools.",
		sum(func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }))
	m.AddGauge("publicdigit_tenant_pool_idle_connections", "Idle connections across the tenant pools.",
		sum(func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }))
	m.AddGauge("publicdigit_tenant_pool_max_connections", "Maximum connections across the tenant pools.",
		sum(func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }))
}

// serveMetrics serves /metrics, and nothing else, on its own address
// (http.metrics_addr), so that it need not be public next to the API. The
// returned function shuts it down.
func serveMetrics(addr string, m *httpapi.Metrics, log zerolog.Logger, onListen func(string)) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (http.metrics_addr): %w", addr, err)
	}
	bound := ln.Addr().String()
	log.Info().Str("addr", bound).Msgf("metrics on http://%s/metrics", bound)
	if onListen != nil {
		onListen(bound)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics server stopped")
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
