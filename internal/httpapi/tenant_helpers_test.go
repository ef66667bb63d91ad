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

	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/registry"
	"github.com/publicdigit/publicdigit/internal/tenancy"
	"github.com/publicdigit/publicdigit/internal/tenancy/provision"
)

// tenantAPI is a real server on 127.0.0.1:0 with the tenant API wired as the
// production server wires it: the router on the test database through
// PgBouncer, tenancy changes invalidating its placements.
type tenantAPI struct {
	*api
	router *pgroute.Router
	cfg    config.Config
}

type tenantAPIOptions struct {
	header    bool
	writeWait time.Duration
	bodyLimit int
}

func newTenantAPI(t *testing.T, o tenantAPIOptions) *tenantAPI {
	t.Helper()
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	if o.writeWait > 0 {
		cfg.HTTP.WriteWait = o.writeWait
	}
	log := zerolog.Nop()
	ctx := context.Background()
	router, err := pgroute.New(ctx, cfg, log, pgroute.Options{})
	require.NoError(t, err)
	t.Cleanup(router.Close)
	landlord := dbtest.AppPool(t, dbtest.Bouncer, 4)
	tenants, err := tenancy.New(tenancy.Options{Config: cfg, Landlord: landlord, Admin: dbtest.AdminDB(t), Log: log,
		OnChange: router.Invalidate})
	require.NoError(t, err)
	t.Cleanup(tenants.Close)
	prov, err := provision.New(provision.Options{Tenants: tenants, Log: log, WarmPool: 0,
		SparePrefix: dbtest.Name("pd_tspare") + "_"})
	require.NoError(t, err)
	geo := geography.New(landlord)
	cursors, err := httpapi.NewCursors([]byte("a test secret of at least 32 bytes, fixed"))
	require.NoError(t, err)
	a := &api{
		tenants:  tenants,
		prov:     prov,
		tokens:   access.New(landlord, access.Options{}),
		geoAdmin: geography.New(dbtest.AdminPool(t)),
		client:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	a.reg = registry.New(landlord, tenants, prov, log)
	limit := o.bodyLimit
	if limit == 0 {
		limit = cfg.HTTP.BodyLimit
	}
	app := httpapi.New(httpapi.Deps{
		Log: log, BodyLimit: limit,
		Ready:   func(ctx context.Context) error { return landlord.Ping(ctx) },
		Tenants: tenants, Provisioner: prov, Registry: a.reg, Geography: geo, Tokens: a.tokens,
		Extensions: []httpapi.Extension{httpapi.TenantAPI(httpapi.TenantOptions{
			Router:  router,
			Members: membership.NewService(router, geo),
			Cards:   cards.NewService(router),
			Cursors: cursors,
			Header:  o.header,
			Log:     log,
		})},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	a.base = "http://" + ln.Addr().String()
	a.router, err = gorillamux.NewRouter(httpapi.OpenAPI())
	require.NoError(t, err)
	a.platform = a.token(t, access.CreateRequest{Name: "test platform", Kind: access.KindPlatform})
	return &tenantAPI{api: a, router: router, cfg: cfg}
}

// testTenant is a provisioned test tenant with a token of its own.
type testTenant struct {
	dbtest.TestTenant
	token string
}

func (ta *tenantAPI) tenant(t *testing.T, prefix string) testTenant {
	t.Helper()
	tt := dbtest.Tenant(t, prefix)
	tok := ta.token(t, access.CreateRequest{Name: "tenant " + tt.Slug, Kind: access.KindTenant, Tenant: tenancy.MustSlug(tt.Slug)})
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
