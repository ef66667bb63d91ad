package httpapi_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// randomToken is a well-formed token that no catalog knows.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return access.SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Random well-formed tokens cost a catalog lookup each only until their
// address used up its failures: then 429 with Retry-After, and no lookup.
// A token already authenticated (cached) still works from that address.
func TestFailedAuthenticationsAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{authFailures: 5, tokenCache: time.Minute})
	const route = "/api/v1/platform/modules"
	require.Equal(t, 200, a.call(t, "GET", route, a.platform, nil).status, "the platform token, cached")
	for range 5 {
		a.call(t, "GET", route, randomToken(), nil).problem(t, 401, "unauthorized")
	}
	lookups := a.app.Landlord.Stat().AcquireCount()
	for range 20 {
		r := a.call(t, "GET", route, randomToken(), nil)
		r.problem(t, 429, "too_many_auth_failures")
		secs, err := strconv.Atoi(r.header.Get("Retry-After"))
		require.NoError(t, err)
		assert.True(t, secs >= 1 && secs <= 60, "Retry-After %d", secs)
	}
	assert.Equal(t, lookups, a.app.Landlord.Stat().AcquireCount(), "refused without a catalog lookup")
	assert.Equal(t, 200, a.call(t, "GET", route, a.platform, nil).status, "a cached token still passes")
	a.call(t, "GET", route, "", nil).problem(t, 401, "unauthorized")
}

// A refused token is remembered for the cache's lifetime: repeating it costs
// no lookup. A token revoked through the API stops at once.
func TestRefusedTokensAreRemembered(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{tokenCache: time.Minute})
	const route = "/api/v1/platform/modules"
	bad := randomToken()
	a.call(t, "GET", route, bad, nil).problem(t, 401, "unauthorized")
	lookups := a.app.Landlord.Stat().AcquireCount()
	for range 10 {
		a.call(t, "GET", route, bad, nil).problem(t, 401, "unauthorized")
	}
	assert.Equal(t, lookups, a.app.Landlord.Stat().AcquireCount(), "no lookup for a token refused before")

	secret, tok, err := a.tokens.Create(context.Background(), access.CreateRequest{Name: "short-lived", Kind: access.KindPlatform})
	require.NoError(t, err)
	require.Equal(t, 200, a.call(t, "GET", route, secret, nil).status)
	require.Equal(t, 200, a.call(t, "DELETE", "/api/v1/platform/tokens/"+tok.ID, a.platform, nil).status)
	a.call(t, "GET", route, secret, nil).problem(t, 401, "unauthorized")
}

// A tenant token works while its tenant is active: a suspended tenant's
// token gets 403 tenant_suspended everywhere (geography too), a deleted
// tenant's token no longer authenticates — at once, cache or not.
func TestTokensOfSuspendedAndDeletedTenants(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{api: apiOptions{tokenCache: time.Minute}})
	tt := ta.tenant(t, "tokst")
	const geo = "/api/v1/geography/units"
	tenantPath := "/api/v1/platform/tenants/" + tt.Slug
	require.Equal(t, 200, ta.call(t, "GET", geo, tt.token, nil).status)
	require.Equal(t, 200, ta.call(t, "GET", tt.path("/members"), tt.token, nil).status)

	require.Equal(t, 200, ta.call(t, "PATCH", tenantPath, ta.platform, map[string]any{"status": "suspended"}).status)
	ta.call(t, "GET", geo, tt.token, nil).problem(t, 403, "tenant_suspended")
	ta.call(t, "GET", tt.path("/members"), tt.token, nil).problem(t, 403, "tenant_suspended")

	require.Equal(t, 200, ta.call(t, "PATCH", tenantPath, ta.platform, map[string]any{"status": "active"}).status)
	require.Equal(t, 200, ta.call(t, "GET", geo, tt.token, nil).status)

	require.Equal(t, 200, ta.call(t, "DELETE", tenantPath, ta.platform, nil).status)
	ta.call(t, "GET", geo, tt.token, nil).problem(t, 401, "unauthorized")
	ta.call(t, "GET", tt.path("/members"), tt.token, nil).problem(t, 401, "unauthorized")
}

// A tenant token names its tenant by id: when another process purges the
// tenant and provisions a new one under the same slug, the old token — still
// in this server's authentication cache — acts on nothing.
func TestATokenOfAPurgedTenantNeverActsOnItsSuccessor(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{api: apiOptions{tokenCache: time.Minute}})
	old := ta.tenant(t, "succ")
	require.Equal(t, 200, ta.call(t, "GET", old.path("/members"), old.token, nil).status)

	other := apptest.Open(t, apptest.Options{}) // another server process
	ctx := context.Background()
	slug := tenant.MustSlug(old.Slug)
	_, err := other.Catalog.Delete(ctx, slug)
	require.NoError(t, err)
	require.NoError(t, other.Provisioner.Purge(ctx, slug))
	res, err := other.Provisioner.Provision(ctx, provision.Request{Slug: slug, Name: "Successor"})
	require.NoError(t, err)
	require.NotEqual(t, old.ID, res.Tenant.ID)
	ta.router.Invalidate(slug) // the change notice the router hears (LISTEN)

	ta.call(t, "GET", old.path("/members"), old.token, nil).problem(t, 404, "tenant_not_found")
	ta.call(t, "POST", old.path("/members"), old.token, map[string]any{"full_name": "Intruder"}).problem(t, 404, "tenant_not_found")
	var n int
	require.NoError(t, ta.app.Admin.QueryRowContext(ctx, `SELECT count(*) FROM `+slug.SchemaName()+`.members`).Scan(&n))
	assert.Zero(t, n, "nothing written to the successor")
}
