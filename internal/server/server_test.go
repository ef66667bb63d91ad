package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/app"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/server"
)

// running is a server started by start.
type running struct {
	base string   // http://127.0.0.1:<port>
	app  *app.App // its services
	// stop shuts it down and returns Run's result.
	stop func() error
}

// start runs server.Run with cfg on a free port; the test's cleanup stops
// it, checking that the shutdown was clean.
func start(t *testing.T, cfg config.Config) running {
	t.Helper()
	cfg.HTTP.Addr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	addrCh := make(chan string, 1)
	appCh := make(chan *app.App, 1)
	done := make(chan error, 1)
	go func() {
		// Warnings and errors (the causes of 5xx answers) go to the test log.
		log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
		done <- server.Run(ctx, cfg, log, server.Options{
			OnListen: func(a string) { addrCh <- a },
			OnOpen:   func(a *app.App) { appCh <- a },
		})
	}()
	var base string
	select {
	case a := <-addrCh:
		base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	}
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("server did not stop")
		}
	})
	t.Cleanup(func() { assert.NoError(t, stop(), "graceful shutdown") })
	return running{base: base, app: <-appCh, stop: stop}
}

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// /readyz follows the landlord connection: 503 while the database is
// unreachable, 200 again once it is back. The test cuts a relay in front of
// PgBouncer rather than stopping the servers other tests share.
func TestReadyzFollowsTheDatabase(t *testing.T) {
	cfg := dbtest.Config(t)
	proxy := dbtest.NewProxy(t, "127.0.0.1:16432")
	cfg.Landlord.URL = dbtest.WithPort(t, cfg.Landlord.URL, proxy.Port())
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Tenant.WarmPool = 0 // no spares built in the background

	srv := start(t, cfg)
	base, stop := srv.base, srv.stop

	code, body := get(t, base+"/healthz")
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok", body["status"])

	code, _ = get(t, base+"/readyz")
	assert.Equal(t, 200, code)

	proxy.Stop()
	code, body = get(t, base+"/readyz")
	assert.Equal(t, 503, code)
	assert.Equal(t, "not ready", body["title"])
	assert.Equal(t, "not_ready", body["code"])
	assert.NotContains(t, body["detail"], "dial", "no internal error text reaches the client")
	code, _ = get(t, base+"/healthz")
	assert.Equal(t, 200, code, "the process is still up")

	proxy.Start()
	require.Eventually(t, func() bool {
		code, _ := get(t, base+"/readyz")
		return code == 200
	}, 10*time.Second, 100*time.Millisecond)

	require.NoError(t, stop(), "graceful shutdown")
}

func TestListenErrorIsReported(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	cfg := dbtest.Config(t)
	cfg.HTTP.Addr = taken.Addr().String()
	cfg.Tenant.WarmPool = 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = server.Run(ctx, cfg, zerolog.Nop(), server.Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "listen on "+cfg.HTTP.Addr)
}
