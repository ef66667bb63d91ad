package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/gofiber/fiber/v2"
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

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

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
			Str("path", c.Path()).
			Int("status", status).
			Dur("duration", time.Since(start)).
			Msg("request")
		return nil
	}
}

func fiberStatusMessage(code int) string { return utils.StatusMessage(code) }
