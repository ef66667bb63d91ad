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

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenancy"
	"github.com/publicdigit/publicdigit/internal/tenancy/provision"
)

// The wired server fills its warm pool in the background, provisions through
// the API by claiming a spare, and reports it in /metrics.
func TestServerProvisionsFromItsWarmPool(t *testing.T) {
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Tenant.WarmPool = 1
	admin := dbtest.AdminDB(t)
	landlord := dbtest.AppPool(t, dbtest.Bouncer, 2)
	tenants, err := tenancy.New(tenancy.Options{Config: cfg, Landlord: landlord, Admin: admin, Log: zerolog.Nop()})
	require.NoError(t, err)
	pool, err := provision.New(provision.Options{Tenants: tenants, WarmPool: 1}) // the server's default prefix
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := pool.DrainWarmPool(context.Background())
		assert.NoError(t, err)
	})
	tokens := access.New(landlord, access.Options{})
	secret, tok, err := tokens.Create(context.Background(), access.CreateRequest{Name: "server test", Kind: access.KindPlatform})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tokens.Delete(context.Background(), tok.ID) })

	base, _ := start(t, cfg)

	create := func(slug string) (int, string) {
		t.Helper()
		s := tenancy.MustSlug(slug)
		t.Cleanup(func() {
			_, _ = admin.ExecContext(context.Background(), `DELETE FROM landlord.tenants WHERE slug = $1`, slug)
			dbtest.DropSchema(t, admin, s.SchemaName())
			_, _ = admin.ExecContext(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{s.RoleName()}.Sanitize())
		})
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
		st, err := pool.WarmPoolStats(context.Background())
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
}
