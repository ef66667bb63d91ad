package httpapi_test

import (
	"context"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// injections are hostile values for every parameter: SQL, quoting tricks,
// encodings, paths, templates, numbers out of range, odd Unicode, long.
var injections = []string{
	`' OR '1'='1`,
	`'; DROP TABLE members; --`,
	`" OR ""="`,
	`1; SELECT pg_sleep(5)`,
	`1) OR (1=1`,
	`$1`,
	`$$; SET ROLE postgres; $$`,
	`tenant_x; SET ROLE postgres`,
	`set_config('role','postgres',false)`,
	`pg_catalog.pg_roles`,
	`landlord.api_tokens`,
	"a\x00b",
	"a\r\nX-Injected: 1",
	`../../../../etc/passwd`,
	`%27%20OR%201%3D1`,
	`%00`,
	`{"$ne": null}`,
	`<script>alert(1)</script>`,
	`${jndi:ldap://127.0.0.1/x}`,
	`*`,
	`%`,
	`_`,
	`\`,
	`-1`,
	`1e999`,
	`99999999999999999999999`,
	`0x7fffffff`,
	`NaN`,
	`😀`,
	"\u202eevil",
	`TENANT_ACME`,
	`0190F5A4-7C1E-7D3B-9A2E-4F6B8C0D1E2F`,
	`00000000-0000-0000-0000-000000000000' OR '1'='1`,
	strings.Repeat("A", 1000),
}

// saneRequestID is a client's request id that the server echoes.
var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

// leaks are what a database or Go error would show.
var leaks = []string{"SQLSTATE", "ERROR:", "syntax error", "pgx", "pgconn", "relation \"", "column \"", "landlord.",
	"tenant_acme", "goroutine", ".go:", "panic", "runtime error"}

// Every path parameter, query parameter and header of the API (platform,
// geography, members, cards, elections), given each injection: no 5xx, every refusal a complete problem with a code, no SQL
// or internal text in any answer, and nothing changed — the tenant, its
// data, modules and tokens are as before, and no tenant was created.
func TestInjectionAttempts(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{header: true})
	tt := ta.tenant(t, "inject", modules.Elections)
	memberID := ta.member(t, tt, map[string]any{"full_name": "Injection Target", "email": "target@example.org"})
	cardID := ta.card(t, tt, memberID)["id"].(string)
	opens, closes := time.Now().Add(time.Hour).UTC(), time.Now().Add(2*time.Hour).UTC()
	electionID := ta.call(t, "POST", tt.path("/elections"), ta.platform,
		map[string]any{"title": "Injection", "opens_at": opens, "closes_at": closes}).ok(t, 201)["id"].(string)
	positionID := ta.call(t, "POST", tt.path("/elections/"+electionID+"/positions"), ta.platform,
		map[string]any{"title": "Chair", "seats": 1}).ok(t, 201)["id"].(string)
	nosuch := ta.slug(t, "nosuch") // valid, never created

	ctx := context.Background()
	slug := tenant.MustSlug(tt.Slug)
	snapshot := func() map[string]any {
		ten, err := ta.tenants.Get(ctx, slug)
		require.NoError(t, err)
		installed, err := ta.app.Modules.Installed(ctx, slug)
		require.NoError(t, err)
		election := ta.call(t, "GET", tt.path("/elections/"+electionID), ta.platform, nil).ok(t, 200)
		tokens, err := ta.app.Tokens.List(ctx, accessFilter(slug))
		require.NoError(t, err)
		for i := range tokens {
			tokens[i].LastUsedAt = nil // authentication's bookkeeping (once a minute), not a change
		}
		return map[string]any{"tenant": ten, "modules": installed, "tokens": tokens, "rows": counts(t, tt), "election": election}
	}
	before := snapshot()

	type attempt struct {
		method, path, token string
		headers             map[string]string
		body                any
		x                   string // the injection, which an answer may quote
	}
	var attempts []attempt
	p := func(x string) string { return url.PathEscape(x) }
	q := func(x string) string { return url.QueryEscape(x) }
	for _, x := range injections {
		platform := func(method, path string, body any) {
			attempts = append(attempts, attempt{method: method, path: path, token: ta.platform, body: body, x: x})
		}
		own := func(method, path string, body any) {
			attempts = append(attempts, attempt{method: method, path: path, token: tt.token, body: body, x: x})
		}
		// Path parameters.
		own("GET", "/"+p(x)+"/api/v1/members", nil)
		platform("GET", "/"+p(x)+"/api/v1/cards", nil)
		platform("GET", "/api/v1/platform/tenants/"+p(x), nil)
		platform("PATCH", "/api/v1/platform/tenants/"+p(x), map[string]any{"status": "suspended"})
		platform("DELETE", "/api/v1/platform/tenants/"+p(x), nil)
		platform("DELETE", "/api/v1/platform/tenants/"+p(x)+"?purge=true", nil)
		platform("GET", "/api/v1/platform/tenants/"+p(x)+"/modules", nil)
		platform("POST", "/api/v1/platform/tenants/"+p(x)+"/modules", map[string]any{"module": "events"})
		platform("DELETE", "/api/v1/platform/tenants/"+tt.Slug+"/modules/"+p(x), nil)
		platform("GET", "/api/v1/platform/modules/"+p(x), nil)
		platform("DELETE", "/api/v1/platform/tokens/"+p(x), nil)
		own("GET", "/api/v1/geography/units/"+p(x), nil)
		own("GET", tt.path("/members/"+p(x)), nil)
		own("PATCH", tt.path("/members/"+p(x)), map[string]any{"full_name": "Changed"})
		own("DELETE", tt.path("/members/"+p(x)), nil)
		own("GET", tt.path("/cards/"+p(x)), nil)
		own("POST", tt.path("/cards/"+p(x)+"/revoke"), nil)
		own("GET", tt.path("/cards/"+p(x)+"/activities"), nil)
		el := "/elections/" + electionID
		platform("GET", tt.path("/elections/"+p(x)), nil)
		platform("PATCH", tt.path("/elections/"+p(x)), map[string]any{"title": "Changed"})
		platform("POST", tt.path("/elections/"+p(x)+"/positions"), map[string]any{"title": "Injected", "seats": 1})
		platform("DELETE", tt.path(el+"/positions/"+p(x)), nil)
		platform("POST", tt.path(el+"/positions/"+p(x)+"/candidates"), map[string]any{"member_id": memberID})
		platform("DELETE", tt.path(el+"/positions/"+positionID+"/candidates/"+p(x)), nil)
		platform("POST", tt.path("/elections/"+p(x)+"/open"), nil)
		own("POST", tt.path("/elections/"+p(x)+"/ballots"), map[string]any{"member_id": memberID, "choices": []any{}})
		own("GET", tt.path("/elections/"+p(x)+"/results"), nil)
		platform("GET", tt.path("/elections/"+p(x)+"/activities"), nil)
		// Query parameters.
		for _, param := range []string{"limit", "after", "status"} {
			platform("GET", "/api/v1/platform/tenants?"+param+"="+q(x), nil)
		}
		platform("DELETE", "/api/v1/platform/tenants/"+nosuch+"?purge="+q(x), nil)
		platform("DELETE", "/api/v1/platform/tenants/"+nosuch+"/modules/events?force="+q(x), nil)
		platform("GET", "/api/v1/platform/tokens?tenant="+q(x), nil)
		platform("GET", "/api/v1/platform/tokens?include_revoked="+q(x), nil)
		for _, param := range []string{"parent", "code", "after", "limit"} {
			own("GET", "/api/v1/geography/units?"+param+"="+q(x), nil)
		}
		own("GET", "/api/v1/geography/units/1?descendants_limit="+q(x), nil)
		for _, param := range []string{"limit", "after", "status", "geo_unit_id"} {
			own("GET", tt.path("/members?"+param+"="+q(x)), nil)
		}
		for _, param := range []string{"limit", "after", "status", "member_id"} {
			own("GET", tt.path("/cards?"+param+"="+q(x)), nil)
		}
		for _, param := range []string{"limit", "after"} {
			own("GET", tt.path("/cards/"+cardID+"/activities?"+param+"="+q(x)), nil)
			platform("GET", tt.path(el+"/activities?"+param+"="+q(x)), nil)
		}
		for _, param := range []string{"limit", "after", "status"} {
			platform("GET", tt.path("/elections?"+param+"="+q(x)), nil)
		}
		// Headers (values a client can send: no control characters).
		if strings.IndexFunc(x, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
			for _, a := range []attempt{
				{method: "GET", path: tt.path("/members"), token: x},
				{method: "GET", path: tt.path("/members"), token: tt.token + x},
				{method: "GET", path: "/api/v1/members", token: ta.platform, headers: map[string]string{"X-Tenant": x}},
				{method: "GET", path: tt.path("/members"), token: tt.token, headers: map[string]string{"X-Request-Id": x}},
				{method: "POST", path: tt.path("/members"), token: tt.token, headers: map[string]string{"Content-Type": x},
					body: map[string]any{"full_name": "Through a content type"}},
				{method: "GET", path: tt.path("/members"), token: tt.token, headers: map[string]string{"Authorization": x}},
			} {
				a.x = x
				attempts = append(attempts, a)
			}
		}
	}

	// Eight clients at once, each with a share of the attempts.
	var mu sync.Mutex
	statuses := map[int]int{}
	t.Run("attempts", func(t *testing.T) {
		for w := 0; w < 8; w++ {
			t.Run(strconv.Itoa(w), func(t *testing.T) {
				t.Parallel()
				for i := w; i < len(attempts); i += 8 {
					a := attempts[i]
					r := ta.callWith(t, a.method, a.path, a.token, a.headers, a.body)
					mu.Lock()
					statuses[r.status]++
					mu.Unlock()
					what := a.method + " " + a.path
					require.Less(t, r.status, 500, "%s: %s", what, r.body)
					// What the server says, without the injection it quotes.
					said := strings.ReplaceAll(string(r.body), jsonString(a.x)[1:len(jsonString(a.x))-1], "")
					if r.status >= 400 {
						m := r.json(t)
						assert.Equal(t, "application/problem+json", r.header.Get("Content-Type"), what)
						assert.NotEmpty(t, m["code"], "%s: %s", what, r.body)
						assert.NotEmpty(t, m["request_id"], what)
						delete(m, "instance")
						said = strings.ReplaceAll(jsonString(m), jsonString(a.x)[1:len(jsonString(a.x))-1], "")
					}
					for _, leak := range leaks {
						assert.NotContains(t, said, leak, what)
					}
					if id := a.headers["X-Request-Id"]; id != "" && !saneRequestID.MatchString(id) {
						assert.NotEqual(t, id, r.header.Get("X-Request-Id"), "an injected request id is not echoed: %s", what)
					}
				}
			})
		}
	})
	t.Logf("%d attempts; statuses %v", len(attempts), statuses)

	assert.Equal(t, before, snapshot(), "nothing changed")
	for _, x := range injections {
		if s, err := tenant.ParseSlug(x); err == nil {
			_, err := ta.tenants.Get(ctx, s)
			assert.ErrorIs(t, err, tenant.ErrNotFound, "no tenant %q was made", x)
		}
	}
	ta.call(t, "GET", tt.path("/members/"+memberID), tt.token, nil).ok(t, 200)
}

func accessFilter(slug tenant.Slug) access.ListFilter {
	return access.ListFilter{Tenant: slug, IncludeRevoked: true}
}
