package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

const auditPath = "/api/v1/platform/audit"

// auditEntries reads a tenant's whole trail through the API, in keyset
// pages of three, oldest first.
func auditEntries(t *testing.T, a *api, token, slug string) []map[string]any {
	t.Helper()
	var out []map[string]any
	after := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 50)
		q := auditPath + "?limit=3&tenant=" + slug
		if after != "" {
			q += "&after=" + after
		}
		page := a.call(t, "GET", q, token, nil).ok(t, 200)
		for _, e := range page["items"].([]any) {
			out = append(out, e.(map[string]any))
		}
		next, _ := page["next"].(string)
		if next == "" {
			break
		}
		after = next
	}
	slices.Reverse(out)
	return out
}

// Every platform action is in the trail — who (the token), what, when, the
// request id, the outcome — failures included; the trail reads in keyset
// pages through the API and no route changes it. Everything runs through
// PgBouncer (the landlord pool of the test database, a server pool of 2).
func TestAuditTrailOfEveryPlatformAction(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{})
	ctx := context.Background()
	module := dbtest.Module(t, "aud", "modules/events.hcl")
	slug := a.slug(t, "audt")
	t.Cleanup(func() {
		_ = a.app.Clusters.DropDatabase(context.Background(), "main", tenant.MustSlug(slug).DatabaseName())
	})
	t.Cleanup(func() { deleteAudit(t, slug) })
	secret, tok, err := a.tokens.Create(ctx, access.CreateRequest{Name: "auditor", Kind: access.KindPlatform})
	require.NoError(t, err)
	dbtest.DeleteTokenAtCleanup(t, tok.ID)

	type step struct {
		action, outcome, code string
		requestID             string
	}
	var steps []step
	act := func(action, outcome, code string, status int, method, path string, body any) resp {
		t.Helper()
		r := a.call(t, method, path, secret, body)
		require.Equal(t, status, r.status, "%s %s: %s", method, path, r.body)
		steps = append(steps, step{action, outcome, code, r.header.Get("X-Request-Id")})
		return r
	}
	ten := tenantsPath + "/" + slug
	act("tenant.create", "ok", "", 201, "POST", tenantsPath, map[string]any{"slug": slug, "name": "Audited"})
	act("tenant.create", "error", "tenant_exists", 409, "POST", tenantsPath, map[string]any{"slug": slug, "name": "Again"})
	act("tenant.suspend", "ok", "", 200, "PATCH", ten, map[string]any{"status": "suspended"})
	act("tenant.resume", "ok", "", 200, "PATCH", ten, map[string]any{"status": "active"})
	act("tenant.rename", "ok", "", 200, "PATCH", ten, map[string]any{"name": "Audited Association"})
	act("module.install", "ok", "", 201, "POST", ten+"/modules", map[string]any{"module": module})
	act("module.install", "error", "module_not_found", 404, "POST", ten+"/modules", map[string]any{"module": dbtest.Name("nomod")})
	act("module.uninstall", "ok", "", 204, "DELETE", ten+"/modules/"+module, nil)
	act("tenant.limits", "ok", "", 200, "PUT", ten+"/limits", map[string]any{"max_concurrent_requests": 3})
	created := act("token.create", "ok", "", 201, "POST", "/api/v1/platform/tokens",
		map[string]any{"name": "acme app", "kind": "tenant", "tenant": slug}).json(t)
	act("token.revoke", "ok", "", 200, "DELETE", "/api/v1/platform/tokens/"+created["id"].(string), nil)
	act("tenant.move", "ok", "", 200, "PATCH", ten, map[string]any{"placement": "database"})
	act("tenant.delete", "ok", "", 200, "DELETE", ten, nil)
	act("tenant.suspend", "error", "wrong_tenant_status", 409, "PATCH", ten, map[string]any{"status": "suspended"})
	act("tenant.purge", "ok", "", 204, "DELETE", ten+"?purge=true", nil)

	entries := auditEntries(t, a, a.platform, slug)
	require.Len(t, entries, len(steps), "one entry per action: %v", entries)
	for i, s := range steps {
		e := entries[i]
		what := fmt.Sprintf("step %d %s", i+1, s.action)
		assert.Equal(t, s.action, e["action"], what)
		assert.Equal(t, s.outcome, e["outcome"], what)
		if s.code == "" {
			assert.Nil(t, e["error_code"], what)
		} else {
			assert.Equal(t, s.code, e["error_code"], what)
		}
		assert.Equal(t, "token:"+tok.ID, e["actor"], what)
		assert.Equal(t, tok.ID, e["token_id"], what)
		assert.Equal(t, s.requestID, e["request_id"], what)
		assert.Equal(t, slug, e["tenant"], what)
		assert.NotEmpty(t, e["at"], what)
	}
	byAction := func(action, outcome string) map[string]any {
		for _, e := range entries {
			if e["action"] == action && e["outcome"] == outcome {
				return e
			}
		}
		t.Fatalf("no %s %s", action, outcome)
		return nil
	}
	assert.Equal(t, module, byAction("module.install", "ok")["target"])
	assert.Equal(t, created["id"], byAction("token.create", "ok")["target"])
	assert.Equal(t, created["id"], byAction("token.revoke", "ok")["target"])
	assert.Equal(t, float64(3), byAction("tenant.limits", "ok")["detail"].(map[string]any)["max_concurrent_requests"])
	move := byAction("tenant.move", "ok")["detail"].(map[string]any)
	assert.Equal(t, "schema", move["from_placement"])
	assert.Equal(t, "database", move["to_placement"])
	assert.Equal(t, byAction("tenant.create", "ok")["tenant_id"], byAction("tenant.purge", "ok")["tenant_id"], "kept past the purge")

	// Filters and bad queries.
	page := a.call(t, "GET", auditPath+"?tenant="+slug+"&action=tenant.suspend", a.platform, nil).ok(t, 200)
	assert.Len(t, page["items"], 2)
	a.call(t, "GET", auditPath+"?action=tenant.explode", a.platform, nil).problem(t, 400, "bad_request")
	a.call(t, "GET", auditPath+"?after=abc", a.platform, nil).problem(t, 400, "bad_request")
	a.call(t, "GET", auditPath+"?tenant=Bad", a.platform, nil).problem(t, 400, "invalid_slug")
	a.call(t, "GET", auditPath+"?limit=501", a.platform, nil).problem(t, 400, "")
	a.call(t, "GET", auditPath, "", nil).problem(t, 401, "unauthorized")

	// No route changes the trail.
	id := fmt.Sprint(entries[0]["id"])
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		for _, p := range []string{auditPath, auditPath + "/" + id} {
			r := a.call(t, m, p, a.platform, map[string]any{"outcome": "ok"})
			assert.Contains(t, []int{404, 405}, r.status, "%s %s", m, p)
		}
	}
	assert.Equal(t, entries, auditEntries(t, a, a.platform, slug), "unchanged")
}

// A successful action and its audit record commit together: when the
// record cannot be written, the action is rolled back with it. (A trigger
// refuses the test tenants' records.)
func TestAuditRecordIsInTheActionsTransaction(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{})
	ctx := context.Background()
	module := dbtest.Module(t, "audtx", "modules/events.hcl")
	live, fresh := a.slug(t, "audtx"), a.slug(t, "audtx")
	_, err := a.prov.Provision(ctx, provisionReq(live))
	require.NoError(t, err)
	refuseAudit(t, live, fresh)
	ten := tenantsPath + "/" + live
	admin := dbtest.AdminDB(t)
	status := func() string {
		cur, err := a.tenants.Get(ctx, tenant.MustSlug(live))
		require.NoError(t, err)
		return string(cur.Status)
	}

	a.faulty(t, "PATCH", ten, map[string]any{"status": "suspended"})
	assert.Equal(t, "active", status(), "suspend rolled back")
	a.faulty(t, "PUT", ten+"/limits", map[string]any{"max_concurrent_requests": 3})
	cur, err := a.tenants.Get(ctx, tenant.MustSlug(live))
	require.NoError(t, err)
	assert.Zero(t, cur.MaxConcurrentRequests, "limits rolled back")
	a.faulty(t, "POST", ten+"/modules", map[string]any{"module": module})
	var tables, tokens int
	require.NoError(t, admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'events'`,
		"tenant_"+live).Scan(&tables))
	assert.Zero(t, tables, "install rolled back: no table")
	for _, x := range a.call(t, "GET", ten+"/modules", a.platform, nil).ok(t, 200)["items"].([]any) {
		assert.NotEqual(t, module, x.(map[string]any)["module"], "nor install record")
	}
	a.faulty(t, "POST", "/api/v1/platform/tokens", map[string]any{"name": "x", "kind": "tenant", "tenant": live})
	require.NoError(t, admin.QueryRowContext(ctx, `SELECT count(*) FROM landlord.api_tokens WHERE tenant_id = $1`, cur.ID).Scan(&tokens))
	assert.Zero(t, tokens, "token create rolled back")
	a.faulty(t, "DELETE", ten, nil)
	assert.Equal(t, "active", status(), "delete rolled back")

	a.faulty(t, "POST", tenantsPath, map[string]any{"slug": fresh, "name": "Fresh"})
	got, err := a.tenants.Get(ctx, tenant.MustSlug(fresh))
	require.NoError(t, err)
	assert.Equal(t, tenant.StatusProvisioning, got.Status, "not activated")
	var schema bool
	require.NoError(t, admin.QueryRowContext(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, "tenant_"+fresh).Scan(&schema))
	assert.False(t, schema, "its schema rolled back with the activation")

	// Purge: the drop of the schema commits with its record, or not at all.
	_, err = a.tenants.Delete(context.Background(), tenant.MustSlug(live)) // refused too: recorded in its transaction
	require.Error(t, err)
	allowAudit(t, live)
	_, err = a.tenants.Delete(ctx, tenant.MustSlug(live))
	require.NoError(t, err)
	refuseAudit(t, live)
	a.faulty(t, "DELETE", ten+"?purge=true", nil)
	require.NoError(t, admin.QueryRowContext(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, "tenant_"+live).Scan(&schema))
	assert.True(t, schema, "purge rolled back: the schema is still there")
	assert.Equal(t, "deleted", status())
}

// faulty sends a platform request that fails for the injected fault: a
// 500 (undocumented: a fault of the server), with no internals in it.
func (a *api) faulty(t *testing.T, method, path string, body any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.platform)
	hr, err := a.client.Do(req)
	require.NoError(t, err)
	defer hr.Body.Close()
	out, err := io.ReadAll(hr.Body)
	require.NoError(t, err)
	resp{status: hr.StatusCode, header: hr.Header, body: out}.problem(t, 500, "internal")
	assert.NotContains(t, string(out), "audit refused", "no internals reach the client")
}

// refuseAudit makes every audit record of the tenants of these slugs fail
// (a trigger, dropped at cleanup or by allowAudit).
func refuseAudit(t *testing.T, slugs ...string) {
	t.Helper()
	for _, s := range slugs {
		tenant.MustSlug(s) // a slug: safe as a literal
	}
	ctx := context.Background()
	admin := dbtest.AdminDB(t)
	for _, s := range slugs {
		fn := pgx.Identifier{"landlord", "pd_test_refuse_" + s}.Sanitize()
		_, err := admin.ExecContext(ctx, `CREATE OR REPLACE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN IF NEW.tenant = '`+s+`' THEN RAISE EXCEPTION 'audit refused by a test'; END IF; RETURN NEW; END $$`)
		require.NoError(t, err)
		_, err = admin.ExecContext(ctx, `CREATE OR REPLACE TRIGGER `+pgx.Identifier{"pd_test_refuse_" + s}.Sanitize()+
			` BEFORE INSERT ON landlord.audit_events FOR EACH ROW EXECUTE FUNCTION `+fn+`()`)
		require.NoError(t, err)
		t.Cleanup(func() { allowAudit(t, s) })
	}
}

func allowAudit(t *testing.T, slug string) {
	t.Helper()
	ctx := context.Background()
	admin := dbtest.AdminDB(t)
	_, err := admin.ExecContext(ctx, `DROP TRIGGER IF EXISTS `+pgx.Identifier{"pd_test_refuse_" + slug}.Sanitize()+` ON landlord.audit_events`)
	assert.NoError(t, err)
	_, err = admin.ExecContext(ctx, `DROP FUNCTION IF EXISTS `+pgx.Identifier{"landlord", "pd_test_refuse_" + slug}.Sanitize()+`()`)
	assert.NoError(t, err)
}

// deleteAudit removes a test tenant's audit records (as the admin role).
func deleteAudit(t *testing.T, slug string) {
	t.Helper()
	_, err := dbtest.AdminDB(t).ExecContext(context.Background(), `DELETE FROM landlord.audit_events WHERE tenant = $1`, slug)
	assert.NoError(t, err)
}
