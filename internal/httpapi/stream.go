package httpapi

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Request bodies are streamed by the server (fasthttp's StreamRequestBody),
// so that a tenant archive can be imported without holding it in memory.
// Every other route gets its body as before — read whole before the
// handler, at most Deps.BodyLimit bytes, else 413 — from bodyLimit.

// streamIdle is how long a streamed body or answer may make no progress.
const streamIdle = 30 * time.Second

// streamedRoute reports whether the request's route reads its body as a
// stream (the tenant import).
func streamedRoute(c *fiber.Ctx) bool {
	return c.Method() == fiber.MethodPost && c.Path() == importPath
}

// transferRoute reports whether the request streams a tenant archive: the
// import's body or the export's answer.
func transferRoute(c *fiber.Ctx) bool {
	return streamedRoute(c) ||
		c.Method() == fiber.MethodGet && strings.HasPrefix(c.Path(), platformPrefix+"tenants/") && strings.HasSuffix(c.Path(), "/export")
}

// bodyLimit reads the body of every request of a route that does not
// stream it, refusing one larger than limit with 413 (without reading it).
// A streamed route's connection is closed after the answer, as the body
// may not have been read to its end.
func bodyLimit(limit int) fiber.Handler {
	return func(c *fiber.Ctx) error {
		req := c.Request()
		if streamedRoute(c) {
			c.Context().SetConnectionClose()
			return c.Next()
		}
		if !req.IsBodyStream() {
			return c.Next()
		}
		if n := req.Header.ContentLength(); n > limit {
			c.Context().SetConnectionClose() // the body stays unread
			return fiber.ErrRequestEntityTooLarge
		}
		body, err := io.ReadAll(io.LimitReader(c.Context().RequestBodyStream(), int64(limit)+1))
		if err != nil {
			c.Context().SetConnectionClose()
			return fiber.NewError(fiber.StatusBadRequest, "the request body could not be read")
		}
		if len(body) > limit {
			c.Context().SetConnectionClose()
			return fiber.ErrRequestEntityTooLarge
		}
		req.SetBody(body)
		return c.Next()
	}
}

// requestBody is the body of a streamed route, each read extending the
// connection's read deadline by streamIdle (the server's ReadTimeout would
// otherwise bound the whole upload).
func requestBody(c *fiber.Ctx) io.Reader {
	if s := c.Context().RequestBodyStream(); s != nil {
		return &idleReader{r: s, conn: c.Context().Conn()}
	}
	return &idleReader{r: bytes.NewReader(c.Body()), conn: c.Context().Conn()}
}

type idleReader struct {
	r    io.Reader
	conn net.Conn
}

func (r *idleReader) Read(p []byte) (int, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(streamIdle))
	return r.r.Read(p)
}

// idleWriter is a streamed answer, each write extending the connection's
// write deadline by streamIdle.
type idleWriter struct {
	w    *bufio.Writer
	conn net.Conn
}

func (w *idleWriter) Write(p []byte) (int, error) {
	_ = w.conn.SetWriteDeadline(time.Now().Add(streamIdle))
	return w.w.Write(p)
}
