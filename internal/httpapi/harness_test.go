package httpapi_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// api is a real server on 127.0.0.1:0 over the test database, with the
// services the production server wires (internal/app; warm pool off unless
// asked, its own spare prefix).
type api struct {
	base     string
	app      *app.App
	tenants  *catalog.Catalog
	prov     *provision.Provisioner
	tokens   *access.Service
	geoAdmin *geography.Store
	platform string // a platform token
	router   routers.Router
	client   *http.Client
}

type apiOptions struct {
	bodyLimit int
	warm      int
	log       io.Writer // service and HTTP logs (default: none)
	// tenant API
	tenantAPI bool
	header    bool
	writeWait time.Duration
	// configure may change the configuration (e.g. the database URLs).
	configure func(*config.Config)
	// tokenCache keeps token lookups this long (default: none).
	tokenCache time.Duration
	// requestTimeout is each request's deadline (default a minute: the
	// tests check answers, not speed, and share a crowded machine).
	requestTimeout time.Duration
	// authFailures limits failed authentications per address and minute (0: none).
	authFailures int
}

func newAPI(t *testing.T, o apiOptions) *api {
	t.Helper()
	log := zerolog.Nop()
	if o.log != nil {
		log = zerolog.New(o.log)
	}
	metrics := httpapi.NewMetrics()
	var cfg config.Config
	a := apptest.Open(t, apptest.Options{
		Options: app.Options{OnProvision: func(p provision.Path, d time.Duration, err error) {
			metrics.ObserveProvision(string(p), d, err)
		}, TokenCacheTTL: o.tokenCache},
		Configure: func(c *config.Config) {
			c.Tenant.WarmPool = o.warm
			// Room for the tests' concurrent clients on a loaded machine;
			// the limits' own tests set theirs.
			c.Tenant.MaxConcurrentRequests = 64
			c.Tenant.QueueWait = 5 * time.Second
			if o.writeWait > 0 {
				c.HTTP.WriteWait = o.writeWait
			}
			if o.configure != nil {
				o.configure(c)
			}
			cfg = *c
		},
		Log: &log,
	})
	metrics.AddPool("landlord", a.Landlord)
	metrics.AddLimits(a.Limits)
	x := &api{
		app:      a,
		tenants:  a.Catalog,
		prov:     a.Provisioner,
		tokens:   a.Tokens,
		geoAdmin: geography.New(dbtest.AdminPool(t)),
		client:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	limit := o.bodyLimit
	if limit == 0 {
		limit = cfg.HTTP.BodyLimit
	}
	d := httpapi.Deps{Log: log, App: a, BodyLimit: limit, Metrics: metrics, TenantHeader: o.header,
		AuthFailuresPerMinute: o.authFailures, RequestTimeout: cmp.Or(o.requestTimeout, time.Minute)}
	if o.tenantAPI {
		cursors, err := httpapi.NewCursors([]byte("a test secret of at least 32 bytes, fixed"))
		require.NoError(t, err)
		d.Cursors = cursors
	}
	fa := httpapi.New(d)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = httpapi.Serve(fa, ln) }()
	// Cleanups run last-registered first: the server stops, then the
	// client's kept-alive connections are closed so their goroutines end.
	t.Cleanup(x.client.CloseIdleConnections)
	t.Cleanup(func() { _ = fa.ShutdownWithTimeout(5 * time.Second) })
	x.base = "http://" + ln.Addr().String()

	doc := httpapi.OpenAPI()
	require.NoError(t, httpapi.ValidateOpenAPI(context.Background(), doc))
	x.router, err = gorillamux.NewRouter(doc)
	require.NoError(t, err)

	x.platform = x.token(t, access.CreateRequest{Name: "test platform", Kind: access.KindPlatform})
	return x
}

// token creates a token deleted at cleanup and returns its secret.
func (a *api) token(t *testing.T, r access.CreateRequest) string {
	t.Helper()
	secret, tok, err := a.tokens.Create(context.Background(), r)
	require.NoError(t, err)
	dbtest.DeleteTokenAtCleanup(t, tok.ID)
	return secret
}

// slug returns a random slug whose tenant (row, schema, role) is removed at cleanup.
func (a *api) slug(t *testing.T, prefix string) string {
	t.Helper()
	s := tenant.MustSlug(dbtest.Name(prefix))
	dbtest.RemoveAtCleanup(t, s)
	return s.String()
}

// resp is one answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// problem checks a problem+json answer with the status and code.
func (r resp) problem(t *testing.T, status int, code string) map[string]any {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	assert.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	m := r.json(t)
	assert.Equal(t, float64(status), m["status"])
	if code != "" {
		assert.Equal(t, code, m["code"], "body: %s", r.body)
	}
	assert.NotEmpty(t, m["request_id"])
	assert.Equal(t, r.header.Get("X-Request-Id"), m["request_id"])
	for _, leak := range []string{"SELECT", "INSERT", "UPDATE landlord", "pgx", "SQLSTATE", "goroutine", ".go:"} {
		assert.NotContains(t, string(r.body), leak, "no internals reach the client")
	}
	return m
}

// call sends a request with a bearer token (none when token is "") and a
// body (a string is sent as is, anything else as JSON), then checks the
// answer against the OpenAPI document when the route is documented.
func (a *api) call(t *testing.T, method, path, token string, body any) resp {
	t.Helper()
	return a.callCT(t, method, path, token, "application/json", body)
}

func (a *api) callCT(t *testing.T, method, path, token, contentType string, body any) resp {
	t.Helper()
	var rd io.Reader
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		raw, err = json.Marshal(b)
		require.NoError(t, err)
	}
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	require.NoError(t, err)
	if raw != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hr, err := a.client.Do(req)
	require.NoError(t, err)
	defer hr.Body.Close()
	out, err := io.ReadAll(hr.Body)
	require.NoError(t, err)
	r := resp{status: hr.StatusCode, header: hr.Header, body: out}
	assert.NotEmpty(t, hr.Header.Get("X-Request-Id"), "every answer has a request id")
	a.checkOpenAPI(t, req, raw, r)
	return r
}

// checkOpenAPI validates a real answer against the document: status
// documented, content type and body schema.
func (a *api) checkOpenAPI(t *testing.T, req *http.Request, _ []byte, r resp) {
	t.Helper()
	err := validateResponse(a.router, req, r)
	assert.NoError(t, err, "%s %s → %d does not match the OpenAPI document: %s", req.Method, req.URL.Path, r.status, r.body)
}

// validateResponse checks one answer against the document; routes the
// document does not describe (404 tests) are not checked.
func validateResponse(router routers.Router, req *http.Request, r resp) error {
	route, params, err := router.FindRoute(req)
	if err != nil {
		return nil
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{ExcludeRequestBody: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 r.status,
		Header:                 r.header,
		Body:                   io.NopCloser(bytes.NewReader(r.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return strings.TrimSpace(string(b))
}

func mustReq(t *testing.T, url, requestID string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	req.Header.Set("X-Request-Id", requestID)
	return req
}
