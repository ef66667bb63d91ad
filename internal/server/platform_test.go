package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/config"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The wired server fills its warm pool in the background, provisions through
// the API by claiming a spare, and reports it in /metrics.
func TestServerProvisionsFromItsWarmPool(t *testing.T) {
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Tenant.WarmPool = 1
	// Drains the spares of the server's default prefix after the server stopped.
	apptest.Open(t, apptest.Options{Options: app.Options{SparePrefix: provision.DefaultSparePrefix},
		Configure: func(c *config.Config) { c.Tenant.WarmPool = 1 }})

	srv := start(t, cfg)
	base := srv.base
	secret, tok, err := srv.app.Tokens.Create(context.Background(), access.CreateRequest{Name: "server test", Kind: access.KindPlatform})
	require.NoError(t, err)
	dbtest.DeleteTokenAtCleanup(t, tok.ID)

	create := func(slug string) (int, string) {
		t.Helper()
		dbtest.RemoveAtCleanup(t, tenant.MustSlug(slug))
		body, _ := json.Marshal(map[string]string{"slug": slug, "name": "Server " + slug})
		req, _ := http.NewRequest("POST", base+"/api/v1/platform/tenants", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Provision-Path")
	}

	// Wait for the background refill, then provision from the pool.
	require.Eventually(t, func() bool {
		st, err := srv.app.Provisioner.WarmPoolStats(context.Background())
		return err == nil && st.Ready >= 1
	}, 30*time.Second, 50*time.Millisecond, "the server fills its warm pool")
	code, path := create(dbtest.Name("srvw"))
	require.Equal(t, 201, code)
	assert.Equal(t, "warm", path)

	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.True(t, strings.Contains(string(b), `publicdigit_tenant_provision_duration_seconds_count{path="warm",result="ok"} 1`))
	assert.True(t, strings.Contains(string(b), `publicdigit_warm_pool_ready_spares`))

	// /metrics is unauthenticated: a scrape runs no query. With the admin
	// connection closed the warm-pool gauge still reads its last count.
	gauge := func() string {
		resp, err := http.Get(base + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "publicdigit_warm_pool_ready_spares "); ok {
				return v
			}
		}
		return ""
	}
	require.Eventually(t, func() bool { return gauge() == "1" }, 30*time.Second, 50*time.Millisecond, "refilled and counted")
	require.NoError(t, srv.app.Admin.Close())
	for range 3 {
		assert.Equal(t, "1", gauge())
	}
}
