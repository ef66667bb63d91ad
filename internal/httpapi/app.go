// Package httpapi is the Fiber HTTP API: middleware (request id, access log,
// metrics, bearer-token auth), the platform routes (tenants, modules,
// tokens), geography, /metrics, /openapi.json, and one error handler that
// maps every error to application/problem+json.
//
// Other route sets (the tenant API, /{tenant}/api/v1/…) plug in as
// Extensions: they get the app with its middleware and error handler in
// place, the Auth middleware, their own error mappings and OpenAPI paths.
package httpapi

import (
	"context"
	"errors"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/registry"
	"github.com/publicdigit/publicdigit/internal/tenancy"
	"github.com/publicdigit/publicdigit/internal/tenancy/move"
	"github.com/publicdigit/publicdigit/internal/tenancy/provision"
)

// Deps are what the API needs from the rest of the program.
type Deps struct {
	Log zerolog.Logger
	// Ready reports whether the landlord catalog is reachable through the
	// configured pool; /readyz answers 503 while it returns an error.
	Ready func(ctx context.Context) error
	// BodyLimit caps request bodies in bytes.
	BodyLimit int

	// The platform services. A nil service leaves its routes out (the
	// skeleton serves health checks only).
	Tenants     *tenancy.Service
	Provisioner *provision.Provisioner
	Registry    *registry.Service
	Geography   *geography.Store
	Tokens      *access.Service
	// Mover moves tenants (PATCH with a placement); nil refuses moves.
	Mover *move.Mover

	// Metrics is served on /metrics; nil makes a fresh one.
	Metrics *Metrics
	// Extensions add route sets (e.g. the tenant API), in order.
	Extensions []Extension
}

// Extension is a set of routes that plugs into the app.
type Extension struct {
	// Routes registers the extension's routes. The app already has the
	// request id, metrics and access-log middleware and the error handler;
	// auth gives the token middleware (nil Tokens: every request is 401).
	Routes func(app *fiber.App, auth Auth)
	// Errors maps the extension's sentinel errors to HTTP answers, checked
	// before the platform's own mappings.
	Errors []ErrorMapping
	// OpenAPI adds the extension's paths and schemas to /openapi.json.
	OpenAPI func(doc *openapi3.T)
}

// New builds the Fiber app with every route.
func New(d Deps) *fiber.App {
	if d.Metrics == nil {
		d.Metrics = NewMetrics()
	}
	mappings := platformErrors
	for i := len(d.Extensions) - 1; i >= 0; i-- {
		mappings = append(append([]ErrorMapping(nil), d.Extensions[i].Errors...), mappings...)
	}
	app := fiber.New(fiber.Config{
		AppName:               "publicdigit",
		DisableStartupMessage: true,
		BodyLimit:             d.BodyLimit,
		ErrorHandler:          errorHandler(d.Log, mappings),
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
	})
	app.Use(requestID(), d.Metrics.middleware(), accessLog(d.Log))

	app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	app.Get("/readyz", func(c *fiber.Ctx) error {
		ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
		defer cancel()
		if d.Ready == nil {
			return problem(fiber.StatusServiceUnavailable, "not ready", "no readiness check configured")
		}
		if err := d.Ready(ctx); err != nil {
			d.Log.Warn().Err(err).Msg("readiness check failed")
			return problem(fiber.StatusServiceUnavailable, "not ready", "the landlord catalog is not reachable")
		}
		return c.JSON(fiber.Map{"status": "ready"})
	})
	app.Get("/metrics", d.Metrics.handler())

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
	app.Get("/openapi.json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(docJSON)
	})

	auth := Auth{tokens: d.Tokens}
	h := &handlers{d: d, log: d.Log}
	if d.Tenants != nil && d.Provisioner != nil && d.Registry != nil && d.Tokens != nil {
		h.platformRoutes(app.Group("/api/v1/platform", auth.Platform()))
	}
	if d.Geography != nil {
		h.geographyRoutes(app.Group("/api/v1/geography", auth.Required()))
	}
	for _, x := range d.Extensions {
		if x.Routes != nil {
			x.Routes(app, auth)
		}
	}
	return app
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
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func problem(status int, title, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: title, Status: status, Detail: detail}
}

// BadRequest is a 400 problem with the given detail (safe to show a client).
func BadRequest(detail string) *Problem {
	p := problem(fiber.StatusBadRequest, "bad request", detail)
	p.Code = "bad_request"
	return p
}

// ErrorMapping turns errors matching Err (errors.Is) into a problem with
// Status, Title and Code; the detail is the error's text, so wrap sentinels
// only with text that is safe to show a client (no SQL, no internal names).
type ErrorMapping struct {
	Err    error
	Status int
	Title  string
	Code   string
}

// errorHandler is the only place errors become HTTP answers. Unknown errors
// are logged with their cause and answered 500 without internal text.
func errorHandler(log zerolog.Logger, mappings []ErrorMapping) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		if requestIDOf(c) == "" {
			// Errors raised before the middleware ran (e.g. body too large).
			setRequestID(c, newRequestID())
		}
		var p *Problem
		var fe *fiber.Error
		switch {
		case errors.As(err, &p):
			cp := *p
			p = &cp
		case errors.As(err, &fe):
			p = problem(fe.Code, statusTitle(fe.Code), fe.Message)
			switch fe.Code {
			case fiber.StatusRequestEntityTooLarge:
				p.Detail, p.Code = "request body too large", "body_too_large"
			case fiber.StatusNotFound:
				p.Detail, p.Code = "no such route", "route_not_found"
			case fiber.StatusMethodNotAllowed:
				p.Code = "method_not_allowed"
			}
		default:
			for _, m := range mappings {
				if errors.Is(err, m.Err) {
					p = &Problem{Type: "about:blank", Title: m.Title, Status: m.Status, Code: m.Code, Detail: err.Error()}
					break
				}
			}
			if p == nil {
				log.Error().Err(err).Str("request_id", requestIDOf(c)).Str("path", c.Path()).Msg("unhandled error")
				p = problem(fiber.StatusInternalServerError, "internal error", "an unexpected error occurred; quote the request id when reporting it")
				p.Code = "internal"
			}
		}
		p.Instance = c.Path()
		p.RequestID = requestIDOf(c)
		if p.Status == fiber.StatusUnauthorized {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="publicdigit"`)
		}
		c.Status(p.Status)
		return c.JSON(p, "application/problem+json")
	}
}

func statusTitle(code int) string {
	if t := fiberStatusMessage(code); t != "" {
		return t
	}
	return "error"
}
