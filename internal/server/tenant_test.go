package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The wired server serves the tenant API through its router, and drops a
// tenant's cached placement as soon as another process announces a change
// (LISTEN on landlord.listen_url): a suspension made elsewhere answers 403
// long before the placement cache would expire.
func TestServerServesTheTenantAPI(t *testing.T) {
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Tenant.WarmPool = 0
	cfg.Tenant.CacheTTL = time.Hour // only the notice can refresh a placement
	cfg.HTTP.CursorSecret = "a server test secret of 32+ bytes!"
	require.NotEmpty(t, cfg.Landlord.ListenURL)
	tt := dbtest.Tenant(t, "srvt")
	srv := start(t, cfg)
	secret, tok, err := srv.app.Tokens.Create(context.Background(), access.CreateRequest{Name: "server tenant test",
		Kind: access.KindTenant, Tenant: tenant.MustSlug(tt.Slug)})
	require.NoError(t, err)
	dbtest.DeleteTokenAtCleanup(t, tok.ID)
	base := srv.base + "/" + tt.Slug + "/api/v1"

	call := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			require.NoError(t, err)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, base+path, rd)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+secret)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	code, m := call("POST", "/members", map[string]any{"full_name": "Served"})
	require.Equal(t, 201, code, "%v", m)
	code, c := call("POST", "/cards", map[string]any{"member_id": m["id"]})
	require.Equal(t, 201, code, "%v", c)
	code, got := call("POST", "/cards/"+c["id"].(string)+"/activate", nil)
	require.Equal(t, 200, code, "%v", got)
	assert.Equal(t, "active", got["status"])
	code, page := call("GET", "/cards?limit=1", nil)
	require.Equal(t, 200, code)
	assert.Len(t, page["items"], 1)

	// Another process suspends the tenant and announces it: this test's own
	// catalog, whose changes reach the server only by the notice.
	other := dbtest.Catalog(t)
	setStatus := func(status string) {
		t.Helper()
		var err error
		if status == "suspended" {
			_, err = other.Suspend(context.Background(), tenant.MustSlug(tt.Slug))
		} else {
			_, err = other.Resume(context.Background(), tenant.MustSlug(tt.Slug))
		}
		require.NoError(t, err)
	}
	setStatus("suspended")
	require.Eventually(t, func() bool {
		code, _ := call("GET", "/cards/"+c["id"].(string), nil)
		return code == 403
	}, 5*time.Second, 20*time.Millisecond, "the notice reached the router")
	setStatus("active")
	require.Eventually(t, func() bool {
		code, _ := call("GET", "/cards/"+c["id"].(string), nil)
		return code == 200
	}, 5*time.Second, 20*time.Millisecond)
}
