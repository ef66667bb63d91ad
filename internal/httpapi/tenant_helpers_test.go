package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/httpapi"
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
	header    bool
	writeWait time.Duration
	bodyLimit int
	// api holds further options of the server.
	api apiOptions
}

func newTenantAPI(t *testing.T, o tenantAPIOptions) *tenantAPI {
	t.Helper()
	ao := o.api
	ao.tenantAPI, ao.header, ao.writeWait, ao.bodyLimit = true, o.header, o.writeWait, o.bodyLimit
	a := newAPI(t, ao)
	return &tenantAPI{api: a, router: a.app.Router}
}

// testTenant is a provisioned test tenant with a token of its own.
type testTenant struct {
	dbtest.TestTenant
	token string
}

// tenant makes a tenant with the default modules and mods.
func (ta *tenantAPI) tenant(t *testing.T, prefix string, mods ...string) testTenant {
	t.Helper()
	return ta.withToken(t, dbtest.Tenant(t, prefix, mods...))
}

// bareTenant makes a tenant with only the modules mods (no default ones).
func (ta *tenantAPI) bareTenant(t *testing.T, prefix string, mods ...string) testTenant {
	t.Helper()
	return ta.withToken(t, dbtest.BareTenant(t, prefix, mods...))
}

func (ta *tenantAPI) withToken(t *testing.T, tt dbtest.TestTenant) testTenant {
	t.Helper()
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

// counts returns the rows of each tenant table, read directly (those of
// the modules the tenant has).
func counts(t *testing.T, tt testTenant) map[string]int {
	t.Helper()
	db := dbtest.AdminDB(t)
	out := map[string]int{}
	rows, err := db.QueryContext(context.Background(), `SELECT tablename FROM pg_tables WHERE schemaname = $1`, tt.Schema)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var table string
		require.NoError(t, rows.Scan(&table))
		tables = append(tables, table)
	}
	require.NoError(t, rows.Close())
	for _, table := range tables {
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

// secondServer starts another server process's worth of the tenant API on
// the same test database — its own App, router and cache — that hears
// tenant changes only through LISTEN (landlord.listen_url), as another
// server of a deployment does; it returns its base URL.
func (ta *tenantAPI) secondServer(t *testing.T) string {
	t.Helper()
	cfg := dbtest.Config(t)
	require.NotEmpty(t, cfg.Landlord.ListenURL)
	a := apptest.Open(t, apptest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Router.Listen(ctx, cfg.Landlord.ListenURL, ready)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the second server's listener did not start")
	}
	cursors, err := httpapi.NewCursors([]byte("a test secret of at least 32 bytes, fixed"))
	require.NoError(t, err)
	fa := httpapi.New(httpapi.Deps{Log: zerolog.Nop(), App: a, BodyLimit: cfg.HTTP.BodyLimit, Cursors: cursors})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = fa.Listener(ln) }()
	t.Cleanup(func() { _ = fa.ShutdownWithTimeout(5 * time.Second) })
	return "http://" + ln.Addr().String()
}
