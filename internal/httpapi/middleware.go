package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/requestid"
)

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-Id"

const localRequestID = "request_id"

// requestID takes a sane client-supplied id or makes one, and echoes it.
func requestID() fiber.Handler {
	return func(c *fiber.Ctx) error {
		id := c.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		} else {
			id = utils.CopyString(id)
		}
		setRequestID(c, id)
		return c.Next()
	}
}

// newRequestID returns an id unique to this process run and unlikely to
// repeat across processes: a random prefix drawn at start and a counter
// (24 hex digits, as before). Request ids name log lines; they are not
// secrets, so a request costs no call for randomness.
func newRequestID() string {
	var b [24]byte
	hex.Encode(b[:12], requestIDPrefix[:])
	n := requestIDCounter.Add(1)
	const digits = "0123456789abcdef"
	for i := 23; i >= 12; i-- {
		b[i] = digits[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

var (
	requestIDPrefix  = func() (p [6]byte) { _, _ = rand.Read(p[:]); return p }()
	requestIDCounter atomic.Uint64
)

func setRequestID(c *fiber.Ctx, id string) {
	c.Locals(localRequestID, id)
	c.Set(HeaderRequestID, id)
	// Services log it too (requestid.Hook), from c.UserContext().
	c.SetUserContext(requestid.With(c.UserContext(), id))
}

// RequestID returns the request's id (the X-Request-Id echoed to the client).
func RequestID(c *fiber.Ctx) string { return requestIDOf(c) }

func validRequestID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func requestIDOf(c *fiber.Ctx) string {
	id, _ := c.Locals(localRequestID).(string)
	return id
}

// ReadBufferSize bounds a request's line and headers together, in bytes.
const ReadBufferSize = 16 << 10

// MaxURI is the longest request URI (path and query) served; the longest
// of the API's own is about 150 bytes.
const MaxURI = 2048

// uriLimit answers 414 uri_too_long for a URI longer than MaxURI, before
// anything else reads it.
func uriLimit() fiber.Handler {
	return func(c *fiber.Ctx) error {
		if len(c.Request().Header.RequestURI()) > MaxURI {
			p := problem(fiber.StatusRequestURITooLong, "URI too long",
				fmt.Sprintf("the request URI must be at most %d bytes", MaxURI))
			p.Code = "uri_too_long"
			p.noInstance = true
			return p
		}
		return c.Next()
	}
}

// platformPrefix starts the platform routes.
const platformPrefix = "/api/v1/platform/"

// deadline gives each request a context with a deadline: every pool
// acquisition, token lookup and statement of the request ends by then, so
// that a stalled database is a 503 (timeout, Retry-After), never a hang.
// Changes through the platform routes (provisioning, module installs) get
// platform; moves run to their end regardless (see moveTenant).
func deadline(request, platform time.Duration) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if transferRoute(c) {
			// A tenant's archive streams for as long as it is big; its
			// reads and writes have idle deadlines instead (stream.go).
			return c.Next()
		}
		d := request
		if c.Method() != fiber.MethodGet && strings.HasPrefix(c.Path(), platformPrefix) {
			d = platform
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), d)
		defer cancel()
		c.SetUserContext(ctx)
		return c.Next()
	}
}

// recoverPanics turns a handler's panic into an error (a logged 500, see
// errorHandler) instead of the end of the process; the stack goes to the
// log with the request id, never to the client.
func recoverPanics(log zerolog.Logger) fiber.Handler {
	return recover.New(recover.Config{
		EnableStackTrace: true,
		StackTraceHandler: func(c *fiber.Ctx, e any) {
			log.Error().Str("request_id", requestIDOf(c)).Str("path", truncatePath(c.Path())).
				Str("panic", fmt.Sprint(e)).Bytes("stack", debug.Stack()).Msg("handler panicked")
		},
	})
}

// truncatePath keeps a hostile path from filling the log.
func truncatePath(p string) string {
	if len(p) > MaxURI {
		return p[:MaxURI] + "…"
	}
	return p
}

// accessLog writes one line per request, after the error handler has run.
func accessLog(log zerolog.Logger) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		if err != nil {
			if herr := c.App().ErrorHandler(c, err); herr != nil {
				_ = c.SendStatus(fiber.StatusInternalServerError)
			}
		}
		status := c.Response().StatusCode()
		ev := log.Info()
		if status >= 500 {
			ev = log.Error()
		}
		ev.Str("request_id", requestIDOf(c)).
			Str("method", c.Method()).
			Str("path", truncatePath(c.Path())).
			Int("status", status).
			Dur("duration", time.Since(start)).
			Msg("request")
		return nil
	}
}

func fiberStatusMessage(code int) string { return utils.StatusMessage(code) }
