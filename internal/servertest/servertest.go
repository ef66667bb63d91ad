// Package servertest starts the real publicdigit server for end-to-end tests
// of other packages (the generated API client, the deploy checks): the same
// server.Run the binary calls, on a free port, against the test database
// through PgBouncer. It is the one place those tests depend on how the
// server is wired.
package servertest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/server"
)

// Config is the test database's configuration (dbtest.Config) with the
// landlord catalog in place and no warm pool, so that nothing is built in
// the background and every provisioning takes the cold path.
func Config(t testing.TB) config.Config {
	t.Helper()
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	cfg.Tenant.WarmPool = 0
	return cfg
}

// Server is a running server.
type Server struct {
	// Base is its URL, http://127.0.0.1:<port>.
	Base string
	// Metrics is the URL of its /metrics address when cfg.HTTP.MetricsAddr
	// was set (any value: the server binds 127.0.0.1:0), else "".
	Metrics string
	// App holds its services.
	App *app.App
}

// Start runs server.Run with cfg on 127.0.0.1:0 (and, when
// cfg.HTTP.MetricsAddr is set, /metrics on another 127.0.0.1:0). At cleanup it cancels the
// server and fails the test unless Run returns nil within 20 s (a clean,
// graceful shutdown). Warnings and errors of the server go to the test log.
func Start(t testing.TB, cfg config.Config) Server {
	t.Helper()
	cfg.HTTP.Addr = "127.0.0.1:0"
	if cfg.HTTP.MetricsAddr != "" {
		cfg.HTTP.MetricsAddr = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrCh, metricsCh := make(chan string, 1), make(chan string, 1)
	appCh := make(chan *app.App, 1)
	done := make(chan error, 1)
	go func() {
		log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
		done <- server.Run(ctx, cfg, log, server.Options{
			OnListen:        func(a string) { addrCh <- a },
			OnOpen:          func(a *app.App) { appCh <- a },
			OnMetricsListen: func(a string) { metricsCh <- a },
		})
	}()
	var s Server
	select {
	case a := <-addrCh:
		s.Base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("servertest: server did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("servertest: server did not listen within 30 s")
	}
	s.App = <-appCh
	if cfg.HTTP.MetricsAddr != "" {
		s.Metrics = "http://" + <-metricsCh
	}
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("server did not stop within 20 s")
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("servertest: graceful shutdown: %v", err)
		}
	})
	return s
}

// PlatformToken creates a platform API token with the server's own token
// service and returns its secret; the token is deleted at cleanup.
func (s Server) PlatformToken(t testing.TB) string {
	t.Helper()
	secret, tok, err := s.App.Tokens.Create(context.Background(), access.CreateRequest{Name: t.Name(), Kind: access.KindPlatform})
	if err != nil {
		t.Fatalf("servertest: platform token: %v", err)
	}
	dbtest.DeleteTokenAtCleanup(t, tok.ID)
	return secret
}
