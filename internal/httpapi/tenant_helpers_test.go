package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// tenantAPI is a real server on 127.0.0.1:0 with the tenant API wired as the
// production server wires it: the router on the test database through
// PgBouncer, catalog changes invalidating its cached tenants.
type tenantAPI struct {
	*api
	router *pgroute.Router
}

type tenantAPIOptions struct {
	header        bool
	writeWait     time.Duration
	bodyLimit     int
	tokenCacheTTL time.Duration
	configure     func(*config.Config)
}

func newTenantAPI(t *testing.T, o tenantAPIOptions) *tenantAPI {
	t.Helper()
	a := newAPI(t, apiOptions{tenantAPI: true, header: o.header, writeWait: o.writeWait, bodyLimit: o.bodyLimit,
		tokenCacheTTL: o.tokenCacheTTL, configure: o.configure})
	return &tenantAPI{api: a, router: a.app.Router}
}

// testTenant is a provisioned test tenant with a token of its own.
type testTenant struct {
	dbtest.TestTenant
	token string
}

func (ta *tenantAPI) tenant(t *testing.T, prefix string) testTenant {
	t.Helper()
	tt := dbtest.Tenant(t, prefix)
	tok := ta.token(t, access.CreateRequest{Name: "tenant " + tt.Slug, Kind: access.KindTenant, Tenant: tenant.MustSlug(tt.Slug)})
	return testTenant{TestTenant: tt, token: tok}
}

// path is /{tenant}/api/v1 + rest.
func (tt testTenant) path(rest string) string {
	return "/" + tt.Slug + "/api/v1" + rest
}

// pathf is path with a formatted rest.
func (tt testTenant) pathf(format string, args ...any) string {
	return tt.path(fmt.Sprintf(format, args...))
}

// ok requires a 2xx answer with the given status and decodes its body.
func (r resp) ok(t *testing.T, status int) map[string]any {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	if len(r.body) == 0 {
		return nil
	}
	return r.json(t)
}

// member creates a member and returns its id.
func (ta *tenantAPI) member(t *testing.T, tt testTenant, body map[string]any) string {
	t.Helper()
	m := ta.call(t, "POST", tt.path("/members"), tt.token, body).ok(t, 201)
	return m["id"].(string)
}

// card issues a card and returns it.
func (ta *tenantAPI) card(t *testing.T, tt testTenant, memberID string) map[string]any {
	t.Helper()
	return ta.call(t, "POST", tt.path("/cards"), tt.token, map[string]any{"member_id": memberID}).ok(t, 201)
}

// comparable is a problem body without what differs between any two
// requests (request id, path).
func (r resp) comparable(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	delete(m, "request_id")
	delete(m, "instance")
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return fmt.Sprintf("%d %s %s", r.status, r.header.Get("Content-Type"), b)
}

// counts returns the rows of each tenant table, read directly.
func counts(t *testing.T, tt testTenant) map[string]int {
	t.Helper()
	db := dbtest.AdminDB(t)
	out := map[string]int{}
	for _, table := range []string{"members", "digital_cards", "card_activities"} {
		var n int
		require.NoError(t, db.QueryRowContext(context.Background(),
			`SELECT count(*) FROM `+pgx.Identifier{tt.Schema, table}.Sanitize()).Scan(&n))
		out[table] = n
	}
	return out
}

func assertNo500(t *testing.T, r resp, what string) {
	t.Helper()
	assert.Less(t, r.status, 500, "%s: %s", what, r.body)
}

// callWith is call with extra request headers; the answer is checked against
// the OpenAPI document when its route is documented.
func (ta *tenantAPI) callWith(t *testing.T, method, path, token string, headers map[string]string, body any) resp {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		var err error
		raw, err = json.Marshal(b)
		require.NoError(t, err)
	}
	req, err := http.NewRequest(method, ta.base+path, bytes.NewReader(raw))
	require.NoError(t, err)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	hr, err := ta.client.Do(req)
	require.NoError(t, err)
	defer hr.Body.Close()
	out, err := io.ReadAll(hr.Body)
	require.NoError(t, err)
	r := resp{status: hr.StatusCode, header: hr.Header, body: out}
	ta.checkOpenAPI(t, req, raw, r)
	return r
}
