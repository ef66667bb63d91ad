// Package httpapi is the Fiber HTTP API: middleware (request id, access log,
// metrics, bearer-token auth), the platform routes (tenants, modules,
// tokens), geography, the tenant API (/{tenant}/api/v1/…: members, cards),
// /metrics, /openapi.json, and one error handler that answers every error
// as application/problem+json from one table of error codes (errors.go).
//
// More route sets plug in as Extensions: they get the app with its
// middleware and error handler in place, the Auth middleware, and their
// OpenAPI paths.
package httpapi

import (
	"context"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
)

// Deps are what the API needs from the rest of the program.
type Deps struct {
	Log zerolog.Logger
	// App holds the services; nil serves the health checks (and extensions)
	// only, with every authenticated route answering 401.
	App *app.App
	// BodyLimit caps request bodies in bytes.
	BodyLimit int
	// RequestTimeout is the deadline of each request and of every token
	// lookup (default 10s), PlatformTimeout that of changes through the
	// platform routes (default 2m): pool acquisition, token lookups and
	// statements end by then, answered 503 timeout with Retry-After.
	RequestTimeout  time.Duration
	PlatformTimeout time.Duration
	// Cursors signs the tenant API's pagination cursors; nil leaves the
	// tenant API out.
	Cursors *Cursors
	// TenantHeader also serves every tenant route as /api/v1/… with the
	// tenant named in the X-Tenant header.
	TenantHeader bool
	// Metrics is served on /metrics; nil makes a fresh one.
	Metrics *Metrics
	// MetricsElsewhere leaves /metrics out of this app: the server serves
	// Metrics.Handler on its own address (http.metrics_addr).
	MetricsElsewhere bool
	// Extensions add route sets, in order.
	Extensions []Extension
	// AuthFailuresPerMinute limits failed token authentications per client
	// address (config http.auth_failures_per_minute); past it the address
	// gets 429 without a catalog lookup until its minute ends. 0: no limit.
	AuthFailuresPerMinute int
}

// Extension is a set of routes that plugs into the app.
type Extension struct {
	// Routes registers the extension's routes. The app already has the
	// request id, metrics and access-log middleware and the error handler;
	// auth gives the token middleware.
	Routes func(app *fiber.App, auth Auth)
	// OpenAPI adds the extension's paths and schemas to /openapi.json.
	OpenAPI func(doc *openapi3.T)
}

// New builds the Fiber app with every route.
func New(d Deps) *fiber.App {
	if d.Metrics == nil {
		d.Metrics = NewMetrics()
	}
	if d.RequestTimeout <= 0 {
		d.RequestTimeout = 10 * time.Second
	}
	if d.PlatformTimeout <= 0 {
		d.PlatformTimeout = 2 * time.Minute
	}
	fa := fiber.New(fiber.Config{
		AppName:               "publicdigit",
		DisableStartupMessage: true,
		BodyLimit:             d.BodyLimit,
		ErrorHandler:          errorHandler(d.Log),
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		// The request line and headers must fit in the read buffer; a
		// longer one is refused by fasthttp before any handler (431
		// header_too_large). A URI that fits but is longer than MaxURI is
		// refused by uriLimit (414 uri_too_long).
		ReadBufferSize: ReadBufferSize,
		// Bodies reach the handlers as streams: the tenant import reads an
		// archive of any size; bodyLimit gives every other route its body
		// whole, at most BodyLimit bytes (see stream.go).
		StreamRequestBody: true,
	})
	fa.Use(requestID(), deadline(d.RequestTimeout, d.PlatformTimeout), d.Metrics.middleware(), accessLog(d.Log),
		recoverPanics(d.Log), uriLimit(), bodyLimit(d.BodyLimit))

	fa.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	fa.Get("/readyz", func(c *fiber.Ctx) error {
		ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
		defer cancel()
		if d.App == nil {
			return notReady("no readiness check configured")
		}
		if err := d.App.Ready(ctx); err != nil {
			d.Log.Warn().Err(err).Str("request_id", RequestID(c)).Msg("readiness check failed")
			return notReady("the landlord catalog is not reachable")
		}
		return c.JSON(fiber.Map{"status": "ready"})
	})
	if !d.MetricsElsewhere {
		fa.Get("/metrics", d.Metrics.handler())
	}

	doc := OpenAPI()
	for _, x := range d.Extensions {
		if x.OpenAPI != nil {
			x.OpenAPI(doc)
		}
	}
	docJSON, err := doc.MarshalJSON()
	if err != nil {
		panic("httpapi: openapi document: " + err.Error()) // embedded and checked by tests
	}
	fa.Get("/openapi.json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(docJSON)
	})

	auth := Auth{failures: newFailureLimiter(d.AuthFailuresPerMinute, time.Minute), timeout: d.RequestTimeout}
	if d.App != nil {
		auth.tokens = d.App.Tokens
		h := &handlers{a: d.App, log: d.Log}
		h.platformRoutes(fa.Group("/api/v1/platform", auth.Platform()))
		h.geographyRoutes(fa.Group("/api/v1/geography", auth.Required()))
		if d.Cursors != nil {
			t := &tenantAPI{a: d.App, cursors: d.Cursors, header: d.TenantHeader}
			t.routes(fa, auth)
		}
	}
	for _, x := range d.Extensions {
		if x.Routes != nil {
			x.Routes(fa, auth)
		}
	}
	return fa
}

// Problem is an RFC 9457 problem detail; it is also an error that handlers
// return to answer with that status.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	// Code is a stable, machine-readable name of the problem (e.g. tenant_exists).
	Code     string `json:"code,omitempty"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// RequestID ties the answer to the server's log lines.
	RequestID string `json:"request_id,omitempty"`

	retry      bool // answer with Retry-After
	retryAfter int  // its seconds when more than the default
	noInstance bool // the request's URI is unknown or too long to echo
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func problem(status int, title, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: title, Status: status, Detail: detail}
}

// notReady is /readyz's 503.
func notReady(detail string) *Problem {
	p := problem(fiber.StatusServiceUnavailable, "not ready", detail)
	p.Code, p.retry = "not_ready", true
	return p
}

// BadRequest is a 400 problem with the given detail (safe to show a client).
func BadRequest(detail string) *Problem {
	p := problem(fiber.StatusBadRequest, "bad request", detail)
	p.Code = "bad_request"
	return p
}

func statusTitle(code int) string {
	if t := fiberStatusMessage(code); t != "" {
		return t
	}
	return "error"
}
