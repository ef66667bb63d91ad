package httpapi_test

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"

	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The whole life of a card over HTTP: issue, validate, activate, revoke,
// illegal transitions (409), the activity log written with every change.
func TestTenantAPICardLifecycle(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	a := ta.tenant(t, "tlife")

	r := ta.call(t, "POST", a.path("/members"), a.token, map[string]any{"full_name": "Grace Hopper", "email": "grace@example.org"})
	m := r.ok(t, 201)
	memberID := m["id"].(string)
	assert.Equal(t, a.pathf("/members/%s", memberID), r.header.Get("Location"))
	assert.Equal(t, "active", m["status"])
	assert.Equal(t, a.ID.String(), m["tenant_id"])

	r = ta.call(t, "POST", a.path("/cards"), a.token, map[string]any{"member_id": memberID})
	card := r.ok(t, 201)
	cardID := card["id"].(string)
	qr := card["qr_code"].(string)
	assert.Equal(t, a.pathf("/cards/%s", cardID), r.header.Get("Location"))
	assert.Equal(t, "issued", card["status"])
	assert.Regexp(t, `^PD1-[A-Z2-7]{32}$`, qr)
	assert.Equal(t, memberID, card["member_id"])

	validate := func(code string) map[string]any {
		t.Helper()
		return ta.call(t, "POST", a.path("/cards/validate"), a.token, map[string]any{"qr_code": code}).ok(t, 200)
	}
	assert.Equal(t, "inactive", validate(qr)["result"])

	got := ta.call(t, "POST", a.pathf("/cards/%s/activate", cardID), a.token, nil).ok(t, 200)
	assert.Equal(t, "active", got["status"])
	assert.NotNil(t, got["activated_at"])
	ta.call(t, "POST", a.pathf("/cards/%s/activate", cardID), a.token, nil).problem(t, 409, "illegal_transition")
	assert.Equal(t, "valid", validate(qr)["result"])
	assert.Equal(t, "active", ta.call(t, "GET", a.pathf("/cards/%s", cardID), a.token, nil).ok(t, 200)["status"])

	got = ta.call(t, "POST", a.pathf("/cards/%s/revoke", cardID), a.token, "{}").ok(t, 200)
	assert.Equal(t, "revoked", got["status"])
	assert.NotNil(t, got["revoked_at"])
	for _, action := range []string{"activate", "revoke", "expire"} {
		p := ta.call(t, "POST", a.pathf("/cards/%s/%s", cardID, action), a.token, nil).problem(t, 409, "illegal_transition")
		assert.Equal(t, "cannot "+action+" a card that is revoked", p["detail"])
	}
	res := validate(qr)
	assert.Equal(t, "revoked", res["result"])
	assert.Equal(t, cardID, res["card_id"])
	assert.Equal(t, "unknown", validate("PD1-NOSUCHCODE")["result"])

	// The log: every change and every scan, oldest first, paged with signed cursors.
	var actions []string
	var details []any
	next := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		path := a.pathf("/cards/%s/activities?limit=2", cardID)
		if next != "" {
			path += "&after=" + next
		}
		page := ta.call(t, "GET", path, a.token, nil).ok(t, 200)
		for _, it := range page["items"].([]any) {
			act := it.(map[string]any)
			actions = append(actions, act["action"].(string))
			details = append(details, act["detail"])
			assert.Equal(t, "tenant:", act["actor"].(string)[:7], "the tenant token acted")
		}
		if page["next"] == nil {
			break
		}
		next = page["next"].(string)
	}
	assert.Equal(t, []string{"issued", "validated", "activated", "validated", "revoked", "validated"}, actions)
	assert.Equal(t, map[string]any{"from": "issued", "to": "active"}, details[2])
	assert.Equal(t, map[string]any{"result": "revoked"}, details[5])

	// A second card expires; an expired card cannot come back.
	c2 := ta.card(t, a, memberID)["id"].(string)
	assert.Equal(t, "expired", ta.call(t, "POST", a.pathf("/cards/%s/expire", c2), a.token, nil).ok(t, 200)["status"])
	ta.call(t, "POST", a.pathf("/cards/%s/activate", c2), a.token, nil).problem(t, 409, "illegal_transition")

	// Listing by member and status.
	page := ta.call(t, "GET", a.pathf("/cards?member_id=%s", memberID), a.token, nil).ok(t, 200)
	assert.Len(t, page["items"], 2)
	assert.Nil(t, page["next"])
	page = ta.call(t, "GET", a.path("/cards?status=expired"), a.token, nil).ok(t, 200)
	require.Len(t, page["items"], 1)
	assert.Equal(t, c2, page["items"].([]any)[0].(map[string]any)["id"])

	// Members: get, patch (null clears, absent stays), and no delete while cards exist.
	got = ta.call(t, "PATCH", a.pathf("/members/%s", memberID), a.token, `{"email": null, "phone": "+977 1 5550100"}`).ok(t, 200)
	assert.Nil(t, got["email"])
	assert.Equal(t, "+977 1 5550100", got["phone"])
	assert.Equal(t, "Grace Hopper", got["full_name"])
	ta.call(t, "DELETE", a.pathf("/members/%s", memberID), a.token, nil).problem(t, 409, "member_has_cards")

	// Issuing needs an active member of the same tenant.
	idle := ta.member(t, a, map[string]any{"full_name": "Idle", "status": "inactive"})
	ta.call(t, "POST", a.path("/cards"), a.token, map[string]any{"member_id": idle}).problem(t, 409, "member_not_active")
	ta.call(t, "POST", a.path("/cards"), a.token, map[string]any{"member_id": "0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f"}).
		problem(t, 404, "member_not_found")
	assert.Equal(t, 204, ta.call(t, "DELETE", a.pathf("/members/%s", idle), a.token, nil).status)
	ta.call(t, "GET", a.pathf("/members/%s", idle), a.token, nil).problem(t, 404, "member_not_found")
	ta.call(t, "DELETE", a.pathf("/members/%s", idle), a.token, nil).problem(t, 404, "member_not_found")
	ta.call(t, "GET", a.path("/cards/0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f"), a.token, nil).problem(t, 404, "card_not_found")
	ta.call(t, "GET", a.path("/cards/0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f/activities"), a.token, nil).problem(t, 404, "card_not_found")
	ta.call(t, "POST", a.path("/cards/0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f/revoke"), a.token, nil).problem(t, 404, "card_not_found")

	// Email uniqueness within the tenant.
	ta.member(t, a, map[string]any{"full_name": "Ada", "email": "ada@example.org"})
	ta.call(t, "POST", a.path("/members"), a.token, map[string]any{"full_name": "Ada 2", "email": "ada@example.org"}).
		problem(t, 409, "email_taken")

	// The platform token acts on the tenant too; its activities name it.
	got = ta.call(t, "POST", a.path("/cards"), ta.platform, map[string]any{"member_id": memberID}).ok(t, 201)
	acts := ta.call(t, "GET", a.pathf("/cards/%s/activities", got["id"]), ta.platform, nil).ok(t, 200)
	assert.True(t, strings.HasPrefix(acts["items"].([]any)[0].(map[string]any)["actor"].(string), "platform:"))
}

// endpoint is one tenant route with a body that would succeed.
type endpoint struct {
	method, path string
	body         any
	// admin marks the routes of the tenant's admins (platform tokens).
	admin bool
}

// fixture is the ids of one tenant's data that the endpoints name.
type fixture struct {
	member, card, qr              string
	election, position, candidate string
}

// tenantEndpoints lists every tenant route, with ids of t's own data.
func tenantEndpoints(tt testTenant, f fixture) []endpoint {
	e := "/elections/" + f.election
	return []endpoint{
		{"POST", tt.path("/members"), map[string]any{"full_name": "Intruder"}, false},
		{"GET", tt.path("/members"), nil, false},
		{"GET", tt.path("/members?status=active&limit=5"), nil, false},
		{"GET", tt.pathf("/members/%s", f.member), nil, false},
		{"PATCH", tt.pathf("/members/%s", f.member), map[string]any{"full_name": "Renamed"}, false},
		{"DELETE", tt.pathf("/members/%s", f.member), nil, false},
		{"POST", tt.path("/cards"), map[string]any{"member_id": f.member}, false},
		{"GET", tt.path("/cards"), nil, false},
		{"GET", tt.pathf("/cards?member_id=%s", f.member), nil, false},
		{"GET", tt.pathf("/cards/%s", f.card), nil, false},
		{"POST", tt.pathf("/cards/%s/activate", f.card), nil, false},
		{"POST", tt.pathf("/cards/%s/revoke", f.card), nil, false},
		{"POST", tt.pathf("/cards/%s/expire", f.card), nil, false},
		{"GET", tt.pathf("/cards/%s/activities", f.card), nil, false},
		{"POST", tt.path("/cards/validate"), map[string]any{"qr_code": f.qr}, false},
		{"POST", tt.path("/elections"), map[string]any{"title": "Intrusion", "opens_at": "2030-01-01T00:00:00Z", "closes_at": "2030-01-02T00:00:00Z"}, true},
		{"GET", tt.path("/elections"), nil, false},
		{"GET", tt.path("/elections?status=draft&limit=5"), nil, false},
		{"GET", tt.path(e), nil, false},
		{"PATCH", tt.path(e), map[string]any{"title": "Renamed"}, true},
		{"POST", tt.path(e + "/positions"), map[string]any{"title": "Intruder", "seats": 1}, true},
		{"DELETE", tt.path(e + "/positions/" + f.position), nil, true},
		{"POST", tt.path(e + "/positions/" + f.position + "/candidates"), map[string]any{"member_id": f.member}, true},
		{"DELETE", tt.path(e + "/positions/" + f.position + "/candidates/" + f.candidate), nil, true},
		{"POST", tt.path(e + "/open"), nil, true},
		{"POST", tt.path(e + "/close"), nil, true},
		{"POST", tt.path(e + "/publish"), nil, true},
		{"POST", tt.path(e + "/ballots"), map[string]any{"member_id": f.member,
			"choices": []any{map[string]any{"position_id": f.position, "candidate_ids": []string{f.candidate}}}}, false},
		{"GET", tt.path(e + "/results"), nil, false},
		{"GET", tt.path(e + "/activities"), nil, true},
	}
}

// Tenant A's token on every tenant-B endpoint gets exactly the answer of an
// unknown tenant (and of an invalid slug): B's existence, data and state
// stay hidden, and nothing of B changes. The platform token works on both.
func TestTenantAPIAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	a := ta.tenant(t, "tauthza", modules.Elections)
	b := ta.tenant(t, "tauthzb", modules.Elections)
	suspended := ta.tenant(t, "tauthzs", modules.Elections)

	bMember := ta.member(t, b, map[string]any{"full_name": "B member", "email": "b@example.org"})
	bCard := ta.card(t, b, bMember)
	bEl := ta.draftElection(t, b, bMember)
	aMember := ta.member(t, a, map[string]any{"full_name": "A member"})
	_, err := ta.tenants.Update(context.Background(), tenant.MustSlug(suspended.Slug), catalog.Patch{Status: ptr(tenant.Status("suspended"))})
	require.NoError(t, err)

	before := counts(t, b)
	ghost := testTenant{TestTenant: dbtest.TestTenant{Slug: dbtest.Name("ghost")}}
	invalid := testTenant{TestTenant: dbtest.TestTenant{Slug: "Not-A-Slug"}}
	bFix := fixture{member: bMember, card: bCard["id"].(string), qr: bCard["qr_code"].(string),
		election: bEl.election, position: bEl.position, candidate: bEl.candidate}
	assertCoversEveryTenantRoute(t, tenantEndpoints(b, bFix))
	for _, e := range tenantEndpoints(b, bFix) {
		rest := strings.TrimPrefix(e.path, "/"+b.Slug)
		want := ta.call(t, e.method, "/"+ghost.Slug+rest, a.token, e.body)
		want.problem(t, 404, "tenant_not_found")
		assert.Equal(t, "no such tenant", want.json(t)["detail"])
		for name, r := range map[string]resp{
			"A on B":                 ta.call(t, e.method, e.path, a.token, e.body),
			"A on B, malformed body": ta.call(t, e.method, e.path, a.token, `{"full_name": `),
			"A on suspended":         ta.call(t, e.method, "/"+suspended.Slug+rest, a.token, e.body),
			"A on invalid slug":      ta.call(t, e.method, "/"+invalid.Slug+rest, a.token, e.body),
			"platform on ghost":      ta.call(t, e.method, "/"+ghost.Slug+rest, ta.platform, e.body),
		} {
			assert.Equal(t, want.comparable(t), r.comparable(t), "%s: %s %s", name, e.method, e.path)
		}
		ta.call(t, e.method, e.path, "", e.body).problem(t, 401, "unauthorized")
		ta.call(t, e.method, "/"+suspended.Slug+rest, suspended.token, e.body).problem(t, 403, "tenant_suspended")
		ta.call(t, e.method, "/"+suspended.Slug+rest, ta.platform, e.body).problem(t, 403, "tenant_suspended")
		if e.admin {
			// B's own application token is not B's admin.
			p := ta.call(t, e.method, e.path, b.token, e.body).problem(t, 403, "forbidden")
			assert.Contains(t, p["detail"], "admins")
		}
	}
	assert.Equal(t, before, counts(t, b), "nothing of B changed")
	bm := ta.call(t, "GET", b.pathf("/members/%s", bMember), b.token, nil).ok(t, 200)
	assert.Equal(t, "B member", bm["full_name"])
	assert.Equal(t, "issued", ta.call(t, "GET", b.pathf("/cards/%s", bCard["id"]), b.token, nil).ok(t, 200)["status"])

	// On its own tenant, A cannot reach B's rows by id either.
	ta.call(t, "GET", a.pathf("/members/%s", bMember), a.token, nil).problem(t, 404, "member_not_found")
	ta.call(t, "PATCH", a.pathf("/members/%s", bMember), a.token, map[string]any{"full_name": "x"}).problem(t, 404, "member_not_found")
	ta.call(t, "DELETE", a.pathf("/members/%s", bMember), a.token, nil).problem(t, 404, "member_not_found")
	ta.call(t, "POST", a.path("/cards"), a.token, map[string]any{"member_id": bMember}).problem(t, 404, "member_not_found")
	ta.call(t, "GET", a.pathf("/cards/%s", bCard["id"]), a.token, nil).problem(t, 404, "card_not_found")
	ta.call(t, "POST", a.pathf("/cards/%s/revoke", bCard["id"]), a.token, nil).problem(t, 404, "card_not_found")
	ta.call(t, "GET", a.pathf("/cards/%s/activities", bCard["id"]), a.token, nil).problem(t, 404, "card_not_found")
	assert.Equal(t, "unknown", ta.call(t, "POST", a.path("/cards/validate"), a.token,
		map[string]any{"qr_code": bCard["qr_code"]}).ok(t, 200)["result"])
	page := ta.call(t, "GET", a.pathf("/cards?member_id=%s", bMember), a.token, nil).ok(t, 200)
	assert.Empty(t, page["items"])
	// … nor B's election, not even with the platform token on A's path.
	for _, tok := range []string{a.token, ta.platform} {
		ta.call(t, "GET", a.path("/elections/"+bEl.election), tok, nil).problem(t, 404, "election_not_found")
		ta.call(t, "GET", a.path("/elections/"+bEl.election+"/results"), tok, nil).problem(t, 404, "election_not_found")
		ta.call(t, "POST", a.path("/elections/"+bEl.election+"/ballots"), tok, map[string]any{"member_id": bMember}).
			problem(t, 404, "election_not_found")
	}
	ta.call(t, "GET", a.path("/elections/"+bEl.election+"/activities"), ta.platform, nil).problem(t, 404, "election_not_found")
	ta.call(t, "POST", a.path("/elections/"+bEl.election+"/open"), ta.platform, nil).problem(t, 404, "election_not_found")
	ta.call(t, "PATCH", a.path("/elections/"+bEl.election), ta.platform, map[string]any{"title": "x"}).problem(t, 404, "election_not_found")
	ta.call(t, "POST", a.path("/elections/"+bEl.election+"/positions"), ta.platform, map[string]any{"title": "x", "seats": 1}).
		problem(t, 404, "election_not_found")
	assert.Equal(t, before, counts(t, b), "nothing of B changed")

	// The platform token acts on both tenants; each tenant token on its own.
	ta.call(t, "GET", a.pathf("/members/%s", aMember), ta.platform, nil).ok(t, 200)
	ta.call(t, "GET", b.pathf("/members/%s", bMember), ta.platform, nil).ok(t, 200)
	ta.call(t, "GET", b.path("/members"), b.token, nil).ok(t, 200)
	ta.call(t, "GET", a.path("/members"), b.token, nil).problem(t, 404, "tenant_not_found")

	// Resumed: served again at once (the tenancy change invalidated the router's cache).
	_, err = ta.tenants.Update(context.Background(), tenant.MustSlug(suspended.Slug), catalog.Patch{Status: ptr(tenant.Status("active"))})
	require.NoError(t, err)
	ta.call(t, "GET", suspended.path("/members"), suspended.token, nil).ok(t, 200)
}

func ptr[T any](v T) *T { return &v }

// assertCoversEveryTenantRoute checks that the endpoints name every
// operation of every tenant path of the OpenAPI document.
func assertCoversEveryTenantRoute(t *testing.T, es []endpoint) {
	t.Helper()
	doc := httpapi.OpenAPI()
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	covered := map[string]bool{}
	for _, e := range es {
		req, err := http.NewRequest(e.method, "http://x"+e.path, nil)
		require.NoError(t, err)
		route, _, err := router.FindRoute(req)
		require.NoError(t, err, "%s %s is not in the document", e.method, e.path)
		covered[e.method+" "+route.Path] = true
	}
	n := 0
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/{tenant}/") {
			continue
		}
		for method := range item.Operations() {
			n++
			assert.True(t, covered[method+" "+path], "the matrix misses %s %s", method, path)
		}
	}
	assert.Equal(t, n, len(covered))
}

// Keyset pages stay exact while other clients insert: every member present
// before the walk is seen exactly once, in id order, and no page repeats one.
func TestTenantAPIPaginationUnderConcurrentInserts(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	a := ta.tenant(t, "tpage")
	db := dbtest.AdminDB(t)
	_, err := db.ExecContext(context.Background(), `INSERT INTO `+pgx.Identifier{a.Schema, "members"}.Sanitize()+
		` (tenant_id, full_name, status) SELECT $1, 'Seed ' || g, CASE WHEN g % 3 = 0 THEN 'inactive' ELSE 'active' END
		  FROM generate_series(1, 150) g`, a.ID)
	require.NoError(t, err)
	walk := func(query string) []string {
		t.Helper()
		var ids []string
		next := ""
		for pages := 0; pages < 1000; pages++ {
			path := a.path("/members?limit=7" + query)
			if next != "" {
				path += "&after=" + next
			}
			page := ta.call(t, "GET", path, a.token, nil).ok(t, 200)
			for _, it := range page["items"].([]any) {
				ids = append(ids, it.(map[string]any)["id"].(string))
			}
			if page["next"] == nil {
				return ids
			}
			next = page["next"].(string)
		}
		t.Fatal("pagination did not end")
		return nil
	}
	seed := walk("")
	require.Len(t, seed, 150)
	seedActive := walk("&status=active")
	require.Len(t, seedActive, 100)

	// Writers insert while the walks go on: through the API (ids from
	// uuid.NewV7: at the end of the keyset) and directly with random ids
	// (anywhere in it), a bounded number each so that walks can end.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var inserted atomic.Int64
	writer := func(insert func() bool) {
		defer wg.Done()
		for i := 0; i < 60; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			if !insert() {
				return
			}
			inserted.Add(1)
		}
	}
	viaAPI := func() bool {
		r := ta.call(t, "POST", a.path("/members"), a.token, map[string]any{"full_name": "Concurrent"})
		return assert.Equal(t, 201, r.status, "%s", r.body)
	}
	direct := func() bool {
		_, err := db.ExecContext(context.Background(), `INSERT INTO `+pgx.Identifier{a.Schema, "members"}.Sanitize()+
			` (tenant_id, full_name) VALUES ($1, 'Random id')`, a.ID)
		return assert.NoError(t, err)
	}
	for _, w := range []func() bool{viaAPI, viaAPI, direct, direct} {
		wg.Add(1)
		go writer(w)
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for round := 0; round < 3; round++ {
		for q, want := range map[string][]string{"": seed, "&status=active": seedActive} {
			got := walk(q)
			assert.True(t, sort.StringsAreSorted(got), "keyset order")
			seen := map[string]int{}
			for _, id := range got {
				seen[id]++
			}
			for id, n := range seen {
				assert.Equal(t, 1, n, "member %s seen %d times", id, n)
			}
			for _, id := range want {
				assert.Equal(t, 1, seen[id], "member %s present before the walk must be seen once", id)
			}
		}
	}
	assert.Greater(t, inserted.Load(), int64(0), "inserts ran during the walks")
	wg.Wait()
	n := int(inserted.Load())
	assert.Len(t, walk(""), 150+n, "a quiet walk sees everything")
}

// 32 clients issuing cards at once get 32×k distinct QR codes, through a
// PgBouncer server pool of 2.
func TestTenantAPIConcurrentIssuersGetUniqueQRCodes(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	a := ta.tenant(t, "tqr")
	members := make([]string, 8)
	for i := range members {
		members[i] = ta.member(t, a, map[string]any{"full_name": "Holder"})
	}
	const issuers, each = 32, 5
	var mu sync.Mutex
	qrs := map[string]string{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := 0; w < issuers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			<-start
			for i := 0; i < each; i++ {
				r := ta.call(t, "POST", a.path("/cards"), a.token, map[string]any{"member_id": members[(w+i)%len(members)]})
				if !assert.Equal(t, 201, r.status, "%s", r.body) {
					return
				}
				c := r.json(t)
				mu.Lock()
				qrs[c["qr_code"].(string)] = c["id"].(string)
				mu.Unlock()
			}
		}(w)
	}
	close(start)
	wg.Wait()
	assert.Len(t, qrs, issuers*each, "every card has its own QR code")
	var n, distinct, issuedActs int
	db := dbtest.AdminDB(t)
	require.NoError(t, db.QueryRowContext(context.Background(), `SELECT count(*), count(DISTINCT qr_code) FROM `+
		pgx.Identifier{a.Schema, "digital_cards"}.Sanitize()).Scan(&n, &distinct))
	require.NoError(t, db.QueryRowContext(context.Background(), `SELECT count(*) FROM `+
		pgx.Identifier{a.Schema, "card_activities"}.Sanitize()+` WHERE action = 'issued'`).Scan(&issuedActs))
	assert.Equal(t, issuers*each, n)
	assert.Equal(t, n, distinct)
	assert.Equal(t, n, issuedActs, "each issue wrote its activity in the same statement")
}

// While a tenant moves, reads go on and writes wait http.write_wait for the
// mover's locks, then answer 503 with Retry-After; nothing is written.
func TestTenantAPIMovingTenantWritesAnswer503(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{writeWait: 300 * time.Millisecond})
	a := ta.tenant(t, "tmove")
	memberID := ta.member(t, a, map[string]any{"full_name": "Mover"})
	cardID := ta.card(t, a, memberID)["id"].(string)

	db := dbtest.AdminDB(t)
	ctx := context.Background()
	slug := tenant.MustSlug(a.Slug)
	catalogtest.SetStatusQuietly(t, db, slug, tenant.StatusMoving)
	ta.router.Invalidate(slug)
	t.Cleanup(func() { catalogtest.SetStatusQuietly(t, db, slug, tenant.StatusActive) })
	// What a mover does: block writes with a lock that lets reads through.
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer tx.Rollback() //nolint:errcheck
	for _, table := range []string{"members", "digital_cards", "card_activities"} {
		_, err = tx.ExecContext(ctx, `LOCK TABLE `+pgx.Identifier{a.Schema, table}.Sanitize()+` IN EXCLUSIVE MODE`)
		require.NoError(t, err)
	}
	before := counts(t, a)

	ta.call(t, "GET", a.pathf("/cards/%s", cardID), a.token, nil).ok(t, 200)
	ta.call(t, "GET", a.path("/members"), a.token, nil).ok(t, 200)
	for _, e := range []endpoint{
		{"POST", a.path("/members"), map[string]any{"full_name": "Late"}, false},
		{"PATCH", a.pathf("/members/%s", memberID), map[string]any{"full_name": "Late"}, false},
		{"POST", a.path("/cards"), map[string]any{"member_id": memberID}, false},
		{"POST", a.pathf("/cards/%s/activate", cardID), nil, false},
	} {
		start := time.Now()
		r := ta.call(t, e.method, e.path, a.token, e.body)
		r.problem(t, 503, "retry")
		assert.Equal(t, "1", r.header.Get("Retry-After"))
		assert.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "the write waited for the locks")
		assert.Less(t, time.Since(start), 10*time.Second, "… a bounded time (PgBouncer queueing aside, about http.write_wait)")
	}
	require.NoError(t, tx.Rollback())
	assert.Equal(t, before, counts(t, a), "no refused write landed")

	catalogtest.SetStatusQuietly(t, db, slug, tenant.StatusActive)
	ta.router.Invalidate(slug)
	ta.call(t, "POST", a.pathf("/cards/%s/activate", cardID), a.token, nil).ok(t, 200)
}

// With http.tenant_header on, /api/v1/… takes the tenant from X-Tenant, under
// the same rules; the platform routes are untouched.
func TestTenantAPIHeaderMode(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{header: true})
	a := ta.tenant(t, "thdra")
	b := ta.tenant(t, "thdrb")
	do := func(method, path, token, tenant string, body any) resp {
		t.Helper()
		h := map[string]string{}
		if tenant != "" {
			h["X-Tenant"] = tenant
		}
		return ta.callWith(t, method, path, token, h, body)
	}
	r := do("POST", "/api/v1/members", a.token, a.Slug, `{"full_name":"Header"}`)
	m := r.ok(t, 201)
	assert.Equal(t, "/api/v1/members/"+m["id"].(string), r.header.Get("Location"))
	assert.Equal(t, m["id"], do("GET", "/api/v1/members/"+m["id"].(string), a.token, a.Slug, nil).ok(t, 200)["id"])
	// The path form serves the same member.
	ta.call(t, "GET", a.pathf("/members/%s", m["id"]), a.token, nil).ok(t, 200)

	want := do("GET", "/api/v1/members", a.token, dbtest.Name("ghost"), nil)
	want.problem(t, 404, "tenant_not_found")
	assert.Equal(t, want.comparable(t), do("GET", "/api/v1/members", a.token, b.Slug, nil).comparable(t))
	assert.Equal(t, want.comparable(t), do("GET", "/api/v1/members", a.token, "Bad Slug", nil).comparable(t))
	do("GET", "/api/v1/members", a.token, "", nil).problem(t, 400, "bad_request")
	do("GET", "/api/v1/members", ta.platform, b.Slug, nil).ok(t, 200)
	// Platform routes under /api/v1 are not tenant routes.
	do("GET", "/api/v1/platform/tenants", ta.platform, "", nil).ok(t, 200)
	do("GET", "/api/v1/platform/tenants", a.token, a.Slug, nil).problem(t, 403, "forbidden")
}

// One tenant request looks its tenant up once (the middleware; handlers and
// services reuse it from the request's context), reads the catalog only on
// a cache miss, and a token that may not act on the tenant costs no lookup.
func TestTenantAPIResolvesOncePerRequest(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	a := ta.tenant(t, "tres")
	b := ta.tenant(t, "tresb")
	stats := ta.router.CacheStats

	before := stats()
	memberID := ta.member(t, a, map[string]any{"full_name": "Once"})
	after := stats()
	assert.Equal(t, int64(1), after.Lookups-before.Lookups, "the first request: one lookup")
	assert.Equal(t, int64(1), after.Misses-before.Misses, "… that reads the catalog")

	requests := []func(){
		func() { ta.call(t, "GET", a.pathf("/members/%s", memberID), a.token, nil).ok(t, 200) },
		func() { ta.call(t, "GET", a.path("/members?limit=5"), a.token, nil).ok(t, 200) },
		func() {
			card := ta.card(t, a, memberID)
			ta.call(t, "POST", a.pathf("/cards/%s/activate", card["id"]), a.token, nil).ok(t, 200) // a transaction
		},
		func() { ta.call(t, "GET", a.path("/cards?limit=5"), a.token, nil).ok(t, 200) },
		func() {
			ta.call(t, "POST", a.path("/cards/validate"), a.token, map[string]any{"qr_code": "PD1-NOPE"}).ok(t, 200)
		},
	}
	perRequest := []int64{1, 1, 2, 1, 1} // issue + activate are two requests
	for i, req := range requests {
		before := stats()
		req()
		after := stats()
		assert.Equal(t, perRequest[i], after.Lookups-before.Lookups, "request %d: one lookup per request", i)
		assert.Zero(t, after.Misses-before.Misses, "request %d: served from the cache", i)
	}

	before = stats()
	ta.call(t, "GET", a.path("/members"), b.token, nil).problem(t, 404, "tenant_not_found")
	ta.call(t, "GET", "/"+dbtest.Name("ghost")+"/api/v1/members", a.token, nil).problem(t, 404, "tenant_not_found")
	assert.Equal(t, before, stats(), "another tenant's token and an unknown slug cost no lookup")

	ta.router.Invalidate(tenant.MustSlug(a.Slug))
	before = stats()
	ta.call(t, "GET", a.path("/members"), a.token, nil).ok(t, 200)
	after = stats()
	assert.Equal(t, CacheDelta{1, 1}, CacheDelta{after.Lookups - before.Lookups, after.Misses - before.Misses}, "after an invalidation: one miss")
}

// CacheDelta is a change of the router's lookup counters.
type CacheDelta struct{ Lookups, Misses int64 }
