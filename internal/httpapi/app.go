// Package httpapi is the Fiber HTTP API: middleware (request id, logging,
// auth, tenant resolution), the platform and tenant routes, and one error
// handler that maps every error to application/problem+json.
package httpapi

import (
	"context"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"
)

// Deps are what the API needs from the rest of the program.
type Deps struct {
	Log zerolog.Logger
	// Ready reports whether the landlord catalog is reachable through the
	// configured pool; /readyz answers 503 while it returns an error.
	Ready func(ctx context.Context) error
	// BodyLimit caps request bodies in bytes.
	BodyLimit int
}

// New builds the Fiber app with every route.
func New(d Deps) *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "publicdigit",
		DisableStartupMessage: true,
		BodyLimit:             d.BodyLimit,
		ErrorHandler:          errorHandler(d.Log),
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
	})
	app.Use(requestID(), accessLog(d.Log))

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
	return app
}

// Problem is an RFC 9457 problem detail; it is also an error that handlers
// return to answer with that status.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// RequestID ties the answer to the server's log lines.
	RequestID string `json:"request_id,omitempty"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func problem(status int, title, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: title, Status: status, Detail: detail}
}

// errorHandler is the only place errors become HTTP answers. Unknown errors
// are logged with their cause and answered 500 without internal text.
func errorHandler(log zerolog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		var p *Problem
		var fe *fiber.Error
		switch {
		case errors.As(err, &p):
			cp := *p
			p = &cp
		case errors.As(err, &fe):
			p = problem(fe.Code, statusTitle(fe.Code), fe.Message)
			if fe.Code == fiber.StatusRequestEntityTooLarge {
				p.Detail = "request body too large"
			}
		default:
			log.Error().Err(err).Str("request_id", requestIDOf(c)).Str("path", c.Path()).Msg("unhandled error")
			p = problem(fiber.StatusInternalServerError, "internal error", "an unexpected error occurred; quote the request id when reporting it")
		}
		p.Instance = c.Path()
		p.RequestID = requestIDOf(c)
		c.Status(p.Status)
		c.Set(fiber.HeaderContentType, "application/problem+json")
		return c.JSON(p, "application/problem+json")
	}
}

func statusTitle(code int) string {
	if t := fiberStatusMessage(code); t != "" {
		return t
	}
	return "error"
}
