// Package server wires the HTTP server: pools, the API and graceful shutdown.
// cmd/publicdigit only parses flags, builds the logger and calls Run.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/pgroute"
)

// Run serves the API until ctx is cancelled, then shuts down gracefully.
// onListen, when set, receives the bound address (useful with port 0).
func Run(ctx context.Context, cfg config.Config, log zerolog.Logger, onListen func(addr string)) error {
	log = logging.Component(log, "server")

	// The landlord pool goes through PgBouncer like everything else; it does
	// not need to reach the database at start, /readyz reports that.
	landlord, err := pgroute.NewPool(ctx, cfg.Landlord.URL, cfg.Pool, nil)
	if err != nil {
		return err
	}
	defer landlord.Close()

	app := httpapi.New(httpapi.Deps{
		Log:       logging.Component(log, "http"),
		BodyLimit: cfg.HTTP.BodyLimit,
		Ready: func(ctx context.Context) error {
			var one int
			return landlord.QueryRow(ctx, "SELECT 1").Scan(&one)
		},
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
