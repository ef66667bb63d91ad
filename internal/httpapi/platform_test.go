package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

const tenantsPath = "/api/v1/platform/tenants"

func TestTenantEndpoints(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{})
	slug := a.slug(t, "http")
	other := a.slug(t, "httpo")
	tenantTok := func() string {
		_, err := a.prov.Provision(context.Background(), provisionReq(other))
		require.NoError(t, err)
		return a.token(t, access.CreateRequest{Name: "tenant", Kind: access.KindTenant, Tenant: tenant.MustSlug(other)})
	}()

	// Create: 201, then 409 for the same slug.
	r := a.call(t, "POST", tenantsPath, a.platform, map[string]any{"slug": slug, "name": "HTTP Co"})
	require.Equal(t, 201, r.status, "%s", r.body)
	assert.Equal(t, tenantsPath+"/"+slug, r.header.Get("Location"))
	assert.Equal(t, "cold", r.header.Get("X-Provision-Path"))
	m := r.json(t)
	assert.Equal(t, slug, m["slug"])
	assert.Equal(t, "active", m["status"])
	assert.Equal(t, "schema", m["placement"])
	assert.Equal(t, "tenant_"+slug, m["schema_name"])
	a.call(t, "POST", tenantsPath, a.platform, map[string]any{"slug": slug, "name": "Again"}).problem(t, 409, "tenant_exists")

	// 400s: bad slugs and bodies; nothing is created.
	for _, bad := range []string{"", "Acme", "a-b", "x'; DROP SCHEMA landlord; --", "tenant_é", "api", strings.Repeat("a", 57)} {
		a.call(t, "POST", tenantsPath, a.platform, map[string]any{"slug": bad, "name": "x"}).problem(t, 400, "invalid_slug")
	}
	a.call(t, "POST", tenantsPath, a.platform, map[string]any{"slug": a.slug(t, "nm"), "name": ""}).problem(t, 400, "invalid_tenant")
	a.call(t, "POST", tenantsPath, a.platform, `{"slug": "ok_slug", "name": "x", "colour": "red"}`).problem(t, 400, "bad_request")
	a.call(t, "POST", tenantsPath, a.platform, `{"slug": "ok_slug", "name": "x"} {"slug": "b"}`).problem(t, 400, "bad_request")
	a.call(t, "POST", tenantsPath, a.platform, `{"slug": "ok_slug", "name": `).problem(t, 400, "bad_request")
	a.call(t, "POST", tenantsPath, a.platform, `["ok_slug"]`).problem(t, 400, "bad_request")
	a.call(t, "POST", tenantsPath, a.platform, `{"slug": 7, "name": "x"}`).problem(t, 400, "bad_request")
	a.call(t, "POST", tenantsPath, a.platform, nil).problem(t, 400, "bad_request")
	a.callCT(t, "POST", tenantsPath, a.platform, "text/plain", `{"slug":"ok_slug","name":"x"}`).problem(t, 415, "unsupported_media_type")
	_, err := a.tenants.Get(context.Background(), tenant.MustSlug("ok_slug"))
	assert.ErrorIs(t, err, tenant.ErrNotFound)

	// 401 and 403 on every platform route.
	for _, rt := range []struct{ method, path string }{
		{"POST", tenantsPath}, {"GET", tenantsPath}, {"GET", tenantsPath + "/" + slug},
		{"PATCH", tenantsPath + "/" + slug}, {"DELETE", tenantsPath + "/" + slug},
		{"GET", tenantsPath + "/" + slug + "/modules"}, {"POST", tenantsPath + "/" + slug + "/modules"},
		{"DELETE", tenantsPath + "/" + slug + "/modules/events"},
		{"GET", "/api/v1/platform/modules"}, {"POST", "/api/v1/platform/modules"}, {"GET", "/api/v1/platform/modules/events"},
		{"GET", "/api/v1/platform/tokens"}, {"POST", "/api/v1/platform/tokens"},
		{"DELETE", "/api/v1/platform/tokens/00000000-0000-0000-0000-000000000000"},
	} {
		r := a.call(t, rt.method, rt.path, "", nil)
		r.problem(t, 401, "unauthorized")
		assert.Equal(t, `Bearer realm="publicdigit"`, r.header.Get("WWW-Authenticate"))
		a.call(t, rt.method, rt.path, "pdt_"+strings.Repeat("A", 43), nil).problem(t, 401, "unauthorized")
		a.callCT(t, rt.method, rt.path, "", "", nil) // no body: still 401 (checked above)
		a.call(t, rt.method, rt.path, tenantTok, nil).problem(t, 403, "forbidden")
	}

	// Get, list.
	r = a.call(t, "GET", tenantsPath+"/"+slug, a.platform, nil)
	require.Equal(t, 200, r.status)
	assert.Equal(t, "HTTP Co", r.json(t)["name"])
	a.call(t, "GET", tenantsPath+"/"+dbtest.Name("ghost"), a.platform, nil).problem(t, 404, "tenant_not_found")
	a.call(t, "GET", tenantsPath+"/Bad-Slug", a.platform, nil).problem(t, 400, "invalid_slug")

	r = a.call(t, "GET", tenantsPath+"?limit=1", a.platform, nil)
	require.Equal(t, 200, r.status)
	page := r.json(t)
	assert.Len(t, page["items"], 1)
	require.NotNil(t, page["next"])
	r = a.call(t, "GET", tenantsPath+"?limit=500&status=active&after="+page["next"].(string), a.platform, nil)
	require.Equal(t, 200, r.status)
	a.call(t, "GET", tenantsPath+"?limit=0", a.platform, nil).problem(t, 400, "bad_request")
	a.call(t, "GET", tenantsPath+"?limit=abc", a.platform, nil).problem(t, 400, "bad_request")
	a.call(t, "GET", tenantsPath+"?status=gone", a.platform, nil).problem(t, 400, "invalid_tenant")
	a.call(t, "GET", tenantsPath+"?after=NOT_A_SLUG", a.platform, nil).problem(t, 400, "bad_request")

	// Patch: rename, suspend, resume; bad bodies.
	r = a.call(t, "PATCH", tenantsPath+"/"+slug, a.platform, map[string]any{"name": "Renamed", "status": "suspended"})
	require.Equal(t, 200, r.status, "%s", r.body)
	assert.Equal(t, "suspended", r.json(t)["status"])
	assert.Equal(t, "Renamed", r.json(t)["name"])
	r = a.call(t, "PATCH", tenantsPath+"/"+slug, a.platform, map[string]any{"status": "active"})
	require.Equal(t, 200, r.status)
	a.call(t, "PATCH", tenantsPath+"/"+slug, a.platform, map[string]any{"status": "deleted"}).problem(t, 400, "invalid_tenant")
	a.call(t, "PATCH", tenantsPath+"/"+slug, a.platform, map[string]any{}).problem(t, 400, "invalid_tenant")
	a.call(t, "PATCH", tenantsPath+"/"+slug, a.platform, map[string]any{"placement": "nowhere"}).problem(t, 400, "bad_request")
	a.call(t, "PATCH", tenantsPath+"/"+dbtest.Name("ghost"), a.platform, map[string]any{"name": "x"}).problem(t, 404, "tenant_not_found")

	// Delete (soft), then purge; purge needs a deleted tenant.
	a.call(t, "DELETE", tenantsPath+"/"+slug+"?purge=true", a.platform, nil).problem(t, 409, "wrong_tenant_status")
	r = a.call(t, "DELETE", tenantsPath+"/"+slug, a.platform, nil)
	require.Equal(t, 200, r.status)
	assert.Equal(t, "deleted", r.json(t)["status"])
	assert.NotNil(t, r.json(t)["deleted_at"])
	a.call(t, "PATCH", tenantsPath+"/"+slug, a.platform, map[string]any{"status": "active"}).problem(t, 409, "wrong_tenant_status")
	a.call(t, "POST", tenantsPath, a.platform, map[string]any{"slug": slug, "name": "x"}).problem(t, 409, "tenant_exists")
	a.call(t, "DELETE", tenantsPath+"/"+slug+"?purge=maybe", a.platform, nil).problem(t, 400, "bad_request")
	r = a.call(t, "DELETE", tenantsPath+"/"+slug+"?purge=true", a.platform, nil)
	require.Equal(t, 204, r.status, "%s", r.body)
	a.call(t, "GET", tenantsPath+"/"+slug, a.platform, nil).problem(t, 404, "tenant_not_found")
	a.call(t, "DELETE", tenantsPath+"/"+slug, a.platform, nil).problem(t, 404, "tenant_not_found")
	var left bool
	require.NoError(t, dbtest.AdminDB(t).QueryRowContext(context.Background(),
		`SELECT to_regnamespace($1) IS NOT NULL OR EXISTS (SELECT FROM pg_roles WHERE rolname = $1)`, "tenant_"+slug).Scan(&left))
	assert.False(t, left, "purge drops schema and role")
}

func TestModuleEndpoints(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{})
	ctx := context.Background()
	name := dbtest.Name("mod")
	t.Cleanup(func() {
		_, _ = dbtest.AdminDB(t).ExecContext(context.Background(), `DELETE FROM landlord.modules WHERE name = $1`, name)
	})
	slug := a.slug(t, "hmod")
	_, err := a.prov.Provision(ctx, provisionReq(slug))
	require.NoError(t, err)
	mods := "/api/v1/platform/modules"
	inst := tenantsPath + "/" + slug + "/modules"

	r := a.call(t, "POST", mods, a.platform, map[string]any{
		"name": name, "display_name": "Events", "version": "1.0.0", "description": "Events and registrations",
		"schema_files": []string{"modules/events.hcl"},
	})
	require.Equal(t, 201, r.status, "%s", r.body)
	assert.Equal(t, mods+"/"+name, r.header.Get("Location"))
	a.call(t, "POST", mods, a.platform, map[string]any{"name": name, "display_name": "E", "version": "1"}).problem(t, 409, "module_exists")
	a.call(t, "POST", mods, a.platform, map[string]any{"name": "Bad", "display_name": "E", "version": "1"}).problem(t, 400, "invalid_module")
	a.call(t, "POST", mods, a.platform, map[string]any{"name": dbtest.Name("m"), "display_name": "E", "version": "1",
		"schema_files": []string{"../../etc/passwd"}}).problem(t, 400, "invalid_module")
	a.call(t, "POST", mods, a.platform, `{"name": "x", "display_name": "E", "version": "1", "tables": []}`).problem(t, 400, "bad_request")

	r = a.call(t, "GET", mods, a.platform, nil)
	require.Equal(t, 200, r.status)
	assert.Contains(t, string(r.body), `"`+name+`"`)
	r = a.call(t, "GET", mods+"/"+name, a.platform, nil)
	require.Equal(t, 200, r.status)
	assert.Equal(t, "Events", r.json(t)["display_name"])
	a.call(t, "GET", mods+"/"+dbtest.Name("nomod"), a.platform, nil).problem(t, 404, "module_not_found")

	// Install: 201, again 409; unknown module 404; unknown tenant 404; bad body 400.
	r = a.call(t, "POST", inst, a.platform, map[string]any{"module": name})
	require.Equal(t, 201, r.status, "%s", r.body)
	assert.Equal(t, "installed", r.json(t)["status"])
	a.call(t, "POST", inst, a.platform, map[string]any{"module": name}).problem(t, 409, "module_installed")
	a.call(t, "POST", inst, a.platform, map[string]any{"module": dbtest.Name("nomod")}).problem(t, 404, "module_not_found")
	a.call(t, "POST", inst, a.platform, map[string]any{"module": "Bad Name"}).problem(t, 400, "invalid_module")
	a.call(t, "POST", inst, a.platform, map[string]any{"modules": name}).problem(t, 400, "bad_request")
	a.call(t, "POST", tenantsPath+"/"+dbtest.Name("ghost")+"/modules", a.platform, map[string]any{"module": name}).problem(t, 404, "tenant_not_found")
	r = a.call(t, "GET", inst, a.platform, nil)
	require.Equal(t, 200, r.status)
	assert.Len(t, r.json(t)["items"], 2, "the default module (digital_cards) and this one")
	// The built-in modules: elections needs digital_cards.
	el := a.call(t, "GET", mods+"/elections", a.platform, nil).ok(t, 200)
	assert.Equal(t, []any{"digital_cards"}, el["requires"])
	assert.Equal(t, true, el["builtin"])
	a.call(t, "DELETE", inst+"/elections", a.platform, nil).problem(t, 404, "module_not_installed")
	a.call(t, "POST", inst, a.platform, map[string]any{"module": "elections"}).ok(t, 201)
	a.call(t, "DELETE", inst+"/digital_cards", a.platform, nil).problem(t, 409, "module_in_use")
	assert.Equal(t, 204, a.call(t, "DELETE", inst+"/elections", a.platform, nil).status)

	// Uninstall refuses while the tables hold rows (409), unless purged (204).
	ten, err := a.tenants.Get(ctx, tenant.MustSlug(slug))
	require.NoError(t, err)
	_, err = dbtest.AdminDB(t).ExecContext(ctx, `INSERT INTO `+pgx.Identifier{ten.Schema, "events"}.Sanitize()+
		` (tenant_id, title, starts_at) VALUES ($1, 'Gala', now())`, ten.ID)
	require.NoError(t, err)
	m := a.call(t, "DELETE", inst+"/"+name, a.platform, nil).problem(t, 409, "module_has_data")
	assert.Contains(t, m["detail"], "events")
	a.call(t, "DELETE", inst+"/"+name+"?purge=yes", a.platform, nil).problem(t, 400, "bad_request")
	r = a.call(t, "DELETE", inst+"/"+name+"?purge=true", a.platform, nil)
	require.Equal(t, 204, r.status, "%s", r.body)
	a.call(t, "DELETE", inst+"/"+name, a.platform, nil).problem(t, 404, "module_not_installed")
	a.call(t, "DELETE", inst+"/"+dbtest.Name("nomod"), a.platform, nil).problem(t, 404, "module_not_found")

	// A module can't be installed on a deleted tenant.
	_, err = a.tenants.Delete(ctx, tenant.MustSlug(slug))
	require.NoError(t, err)
	a.call(t, "POST", inst, a.platform, map[string]any{"module": name}).problem(t, 409, "wrong_tenant_status")
	_ = modules.ErrModuleHasData
}

func TestTokenEndpoints(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{})
	ctx := context.Background()
	slug := a.slug(t, "htok")
	_, err := a.prov.Provision(ctx, provisionReq(slug))
	require.NoError(t, err)
	toks := "/api/v1/platform/tokens"

	r := a.call(t, "POST", toks, a.platform, map[string]any{"name": "ci", "kind": "platform"})
	require.Equal(t, 201, r.status, "%s", r.body)
	assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
	created := r.json(t)
	secret := created["token"].(string)
	id := created["id"].(string)
	dbtest.DeleteTokenAtCleanup(t, id)
	assert.True(t, strings.HasPrefix(secret, "pdt_"))
	require.Equal(t, 200, a.call(t, "GET", tenantsPath, secret, nil).status, "the new token works")

	r = a.call(t, "POST", toks, a.platform, map[string]any{"name": "app", "kind": "tenant", "tenant": slug,
		"expires_at": "2099-01-01T00:00:00Z"})
	require.Equal(t, 201, r.status, "%s", r.body)
	tenTok := r.json(t)
	dbtest.DeleteTokenAtCleanup(t, tenTok["id"].(string))
	assert.Equal(t, slug, tenTok["tenant"])
	a.call(t, "GET", toks, tenTok["token"].(string), nil).problem(t, 403, "forbidden")

	a.call(t, "POST", toks, a.platform, map[string]any{"name": "x", "kind": "root"}).problem(t, 400, "invalid_token")
	a.call(t, "POST", toks, a.platform, map[string]any{"name": "x", "kind": "tenant"}).problem(t, 400, "invalid_token")
	a.call(t, "POST", toks, a.platform, map[string]any{"name": "x", "kind": "tenant", "tenant": "Bad"}).problem(t, 400, "invalid_slug")
	a.call(t, "POST", toks, a.platform, map[string]any{"name": "x", "kind": "tenant", "tenant": dbtest.Name("ghost")}).problem(t, 404, "tenant_not_found")
	a.call(t, "POST", toks, a.platform, map[string]any{"name": "x", "kind": "platform", "expires_at": "tomorrow"}).problem(t, 400, "bad_request")
	a.call(t, "POST", toks, a.platform, map[string]any{"name": "x", "kind": "platform", "expires_at": "2001-01-01T00:00:00Z"}).problem(t, 400, "invalid_token")

	r = a.call(t, "GET", toks+"?tenant="+slug, a.platform, nil)
	require.Equal(t, 200, r.status)
	assert.Len(t, r.json(t)["items"], 1)
	assert.NotContains(t, string(r.body), tenTok["token"].(string), "listings never show secrets")
	a.call(t, "GET", toks+"?tenant=Bad", a.platform, nil).problem(t, 400, "invalid_slug")
	a.call(t, "GET", toks+"?include_revoked=perhaps", a.platform, nil).problem(t, 400, "bad_request")

	r = a.call(t, "DELETE", toks+"/"+id, a.platform, nil)
	require.Equal(t, 200, r.status, "%s", r.body)
	assert.NotNil(t, r.json(t)["revoked_at"])
	a.call(t, "GET", tenantsPath, secret, nil).problem(t, 401, "unauthorized")
	a.call(t, "DELETE", toks+"/not-a-uuid", a.platform, nil).problem(t, 400, "invalid_id")
	a.call(t, "DELETE", toks+"/00000000-0000-0000-0000-000000000000", a.platform, nil).problem(t, 404, "token_not_found")
}
