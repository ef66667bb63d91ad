package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/server"
	"github.com/publicdigit/publicdigit/internal/servertest"
)

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// With http.metrics_addr, /metrics is served there and only there: the API
// address answers 404 for it, the metrics address serves nothing else, and
// the API's requests are counted in it.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	t.Parallel()
	cfg := servertest.Config(t)
	cfg.HTTP.MetricsAddr = "127.0.0.1:9090" // servertest binds 127.0.0.1:0
	srv := servertest.Start(t, cfg)
	require.NotEmpty(t, srv.Metrics)
	require.NotEqual(t, srv.Base, srv.Metrics)

	code, _ := fetch(t, srv.Base+"/healthz")
	require.Equal(t, 200, code)
	code, body := fetch(t, srv.Base+"/metrics")
	assert.Equal(t, 404, code, "not next to the API")
	assert.Contains(t, body, "route_not_found")

	code, body = fetch(t, srv.Metrics+"/metrics")
	require.Equal(t, 200, code)
	for _, want := range []string{`publicdigit_http_requests_total{method="GET",route="/healthz",status="200"} 1`,
		`publicdigit_pool_max_connections{pool="landlord"}`} {
		assert.True(t, strings.Contains(body, want), "the metrics address exports %s", want)
	}
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json", "/api/v1/platform/tenants", "/"} {
		code, _ = fetch(t, srv.Metrics+path)
		assert.Equal(t, 404, code, "the metrics address serves /metrics only (%s)", path)
	}
}

// Without it, /metrics stays on the API address (servertest's default).
func TestMetricsNextToTheAPIByDefault(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, servertest.Config(t))
	assert.Empty(t, srv.Metrics)
	code, _ := fetch(t, srv.Base+"/healthz")
	require.Equal(t, 200, code)
	code, body := fetch(t, srv.Base+"/metrics")
	require.Equal(t, 200, code)
	assert.True(t, strings.Contains(body, `publicdigit_http_requests_total{method="GET",route="/healthz",status="200"} 1`))
}

// A metrics address that cannot be bound stops the server at start.
func TestMetricsAddressInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cfg := servertest.Config(t)
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.MetricsAddr = ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = server.Run(ctx, cfg, zerolog.Nop(), server.Options{})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "http.metrics_addr"), err.Error())
}
