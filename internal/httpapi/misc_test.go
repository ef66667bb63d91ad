package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func provisionReq(slug string) provision.Request {
	return provision.Request{Slug: tenant.MustSlug(slug), Name: "Tenant " + slug}
}

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{})
	r := a.call(t, "GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.status)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(r.body, &doc))
	assert.Equal(t, "3.0.3", doc["openapi"])
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/api/v1/platform/tenants", "/api/v1/platform/tenants/{slug}", "/api/v1/platform/modules",
		"/api/v1/platform/tenants/{slug}/modules/{name}", "/api/v1/geography/units/{id}", "/api/v1/platform/tokens"} {
		assert.Contains(t, paths, p)
	}
	require.NoError(t, httpapi.ValidateOpenAPI(context.Background(), httpapi.OpenAPI()))
}

// The response check is not vacuous: answers that differ from the document fail it.
func TestOpenAPICheckCatchesMismatches(t *testing.T) {
	t.Parallel()
	router, err := gorillamux.NewRouter(httpapi.OpenAPI())
	require.NoError(t, err)
	req, err := http.NewRequest("GET", "http://x/api/v1/platform/tenants/acme", nil)
	require.NoError(t, err)
	h := http.Header{"Content-Type": {"application/json"}}
	good := `{"id":"7d4c1a80-61a5-4c4b-9a63-8b0f4f1e2a10","slug":"acme","name":"A","status":"active","placement":"schema",
		"cluster":"main","database_name":"d","schema_name":"tenant_acme","version":2,"created_at":"2026-01-01T00:00:00Z",
		"updated_at":"2026-01-01T00:00:00Z","deleted_at":null}`
	assert.NoError(t, validateResponse(router, req, resp{status: 200, header: h, body: []byte(good)}))
	for name, r := range map[string]resp{
		"missing field": {status: 200, header: h, body: []byte(`{"slug":"acme"}`)},
		"extra field":   {status: 200, header: h, body: []byte(strings.Replace(good, `"name"`, `"secret":"x","name"`, 1))},
		"bad enum":      {status: 200, header: h, body: []byte(strings.Replace(good, `"active"`, `"asleep"`, 1))},
		"undocumented":  {status: 418, header: h, body: []byte(`{}`)},
		"wrong ct":      {status: 404, header: h, body: []byte(`{"type":"about:blank","title":"x","status":404}`)},
	} {
		assert.Error(t, validateResponse(router, req, r), name)
	}
}

func TestRequestIDsBodyLimitAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{bodyLimit: 2048})

	r := a.call(t, "GET", "/healthz", "", nil)
	require.Equal(t, 200, r.status)
	id := r.header.Get("X-Request-Id")
	assert.Len(t, id, 24)

	// A sane client id is echoed, an insane one replaced.
	req := func(h string) string {
		t.Helper()
		hr, err := a.client.Do(mustReq(t, a.base+"/healthz", h))
		require.NoError(t, err)
		hr.Body.Close()
		return hr.Header.Get("X-Request-Id")
	}
	assert.Equal(t, "client-chosen-id-1", req("client-chosen-id-1"))
	assert.NotEqual(t, "bad id\x01", req("bad id"))

	big := `{"slug": "big", "name": "` + strings.Repeat("x", 4096) + `"}`
	a.call(t, "POST", tenantsPath, a.platform, big).problem(t, 413, "body_too_large")

	a.call(t, "GET", "/nope", "", nil).problem(t, 404, "route_not_found")
	a.call(t, "GET", "/api/v1/platform/nope", a.platform, nil).problem(t, 404, "route_not_found")
	a.call(t, "GET", "/readyz", "", nil)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{})
	slug := a.slug(t, "met")
	require.Equal(t, 201, a.call(t, "POST", tenantsPath, a.platform, map[string]any{"slug": slug, "name": "M"}).status)
	require.Equal(t, 200, a.call(t, "GET", tenantsPath+"/"+slug, a.platform, nil).status)
	a.call(t, "GET", tenantsPath+"/"+dbtest.Name("ghost"), a.platform, nil)

	r := a.call(t, "GET", "/metrics", "", nil)
	require.Equal(t, 200, r.status)
	body := string(r.body)
	for _, want := range []string{
		`publicdigit_http_requests_total{method="GET",route="/api/v1/platform/tenants/:slug",status="200"} 1`,
		`publicdigit_http_requests_total{method="GET",route="/api/v1/platform/tenants/:slug",status="404"} 1`,
		`publicdigit_http_requests_total{method="POST",route="/api/v1/platform/tenants",status="201"} 1`,
		`publicdigit_http_request_duration_seconds_bucket{method="POST",route="/api/v1/platform/tenants",status="201",le="+Inf"} 1`,
		`publicdigit_tenant_provision_duration_seconds_count{path="cold",result="ok"} 1`,
		`publicdigit_pool_connections{pool="landlord",state="idle"}`,
		`publicdigit_pool_max_connections{pool="landlord"} 16`,
		`go_goroutines`,
	} {
		assert.True(t, strings.Contains(body, want), "/metrics lacks %s", want)
	}
	assert.False(t, strings.Contains(body, slug), "no per-tenant labels")
	assert.False(t, strings.Contains(body, "GETT") || strings.Contains(body, `method="POSTT`), "labels are not borrowed buffers")
}

func TestGeographyEndpoints(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{})
	ctx := context.Background()
	p := dbtest.Name("H") + "-"
	t.Cleanup(func() {
		_, _ = dbtest.AdminDB(t).ExecContext(context.Background(),
			`DELETE FROM landlord.geo_administrative_units WHERE starts_with(code, $1)`, p)
	})
	_, err := a.geoAdmin.Import(ctx, strings.NewReader("code,name,level,parent_code\n"+
		p+"NP,Nepal,country,\n"+p+"P3,Bagmati,province,"+p+"NP\n"+p+"D1,Kathmandu,district,"+p+"P3\n"+
		p+"P4,Gandaki,province,"+p+"NP\n"))
	require.NoError(t, err)
	var npID, bagID int64
	require.NoError(t, dbtest.AdminDB(t).QueryRowContext(ctx, `SELECT
		(SELECT id FROM landlord.geo_administrative_units WHERE code = $1),
		(SELECT id FROM landlord.geo_administrative_units WHERE code = $2)`, p+"NP", p+"P3").Scan(&npID, &bagID))
	slug := a.slug(t, "hgeo")
	_, err = a.prov.Provision(ctx, provisionReq(slug))
	require.NoError(t, err)
	tenantTok := a.token(t, access.CreateRequest{Name: "t", Kind: access.KindTenant, Tenant: tenant.MustSlug(slug)})
	units := "/api/v1/geography/units"
	np := strconv.FormatInt(npID, 10)

	r := a.call(t, "GET", units+"?parent="+np+"&limit=1", tenantTok, nil)
	require.Equal(t, 200, r.status, "%s", r.body)
	page := r.json(t)
	require.Len(t, page["items"], 1)
	assert.Equal(t, p+"P3", page["items"].([]any)[0].(map[string]any)["code"])
	require.NotNil(t, page["next"])
	r = a.call(t, "GET", units+"?parent="+np+"&limit=1&after="+strconv.FormatInt(int64(page["next"].(float64)), 10), tenantTok, nil)
	require.Equal(t, 200, r.status, "%s", r.body)
	page = r.json(t)
	require.Len(t, page["items"], 1)
	assert.Equal(t, p+"P4", page["items"].([]any)[0].(map[string]any)["code"])
	assert.Nil(t, page["next"])

	r = a.call(t, "GET", units, a.platform, nil)
	require.Equal(t, 200, r.status, "roots")
	r = a.call(t, "GET", units+"?code="+p+"P4", a.platform, nil)
	require.Equal(t, 200, r.status)
	require.Len(t, r.json(t)["items"], 1)
	r = a.call(t, "GET", units+"?code="+p+"NOPE", a.platform, nil)
	require.Equal(t, 200, r.status)
	assert.Empty(t, r.json(t)["items"])

	r = a.call(t, "GET", units+"/"+strconv.FormatInt(bagID, 10), tenantTok, nil)
	require.Equal(t, 200, r.status, "%s", r.body)
	d := r.json(t)
	assert.Len(t, d["ancestors"], 1)
	assert.Len(t, d["descendants"], 1)
	assert.Equal(t, float64(2), d["depth"])
	r = a.call(t, "GET", units+"/"+np+"?descendants_limit=1", a.platform, nil)
	require.Equal(t, 200, r.status)
	assert.Equal(t, true, r.json(t)["descendants_truncated"])

	a.call(t, "GET", units+"/999999999999", a.platform, nil).problem(t, 404, "unit_not_found")
	a.call(t, "GET", units+"?parent=999999999999", a.platform, nil).problem(t, 404, "unit_not_found")
	for _, bad := range []string{units + "/abc", units + "/-1", units + "/0", units + "?parent=x", units + "?after=-5",
		units + "?limit=100000", units + "/" + np + "?descendants_limit=0", units + "?code=a%20b", units + "?code=X&parent=" + np} {
		r := a.call(t, "GET", bad, a.platform, nil)
		assert.Equal(t, 400, r.status, "%s: %s", bad, r.body)
	}
	a.call(t, "GET", units, "", nil).problem(t, 401, "unauthorized")
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The request id reaches the services' log lines, not only the access log.
func TestRequestIDInServiceLogs(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	a := newAPI(t, apiOptions{log: &logs})
	slug := a.slug(t, "rid")
	body, _ := json.Marshal(map[string]string{"slug": slug, "name": "R"})
	req, err := http.NewRequest("POST", a.base+tenantsPath, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.platform)
	req.Header.Set("X-Request-Id", "trace-me-1234567")
	resp, err := a.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 201, resp.StatusCode)
	var provisioned, access bool
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"message":"tenant provisioned"`) {
			provisioned = strings.Contains(line, `"request_id":"trace-me-1234567"`)
		}
		if strings.Contains(line, `"message":"request"`) && strings.Contains(line, `"status":201`) {
			access = strings.Contains(line, `"request_id":"trace-me-1234567"`)
		}
	}
	assert.True(t, provisioned, "the provisioning log line has the request id")
	assert.True(t, access, "the access log line has the request id")
}
