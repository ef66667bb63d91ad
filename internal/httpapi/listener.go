package httpapi

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Serve serves fa on ln until fa shuts down, closing connections the way
// HTTP servers must when a client may still be sending: after a refusal
// that fasthttp answers by closing the connection (431, 413, a malformed
// request), the unread rest of the request would make the kernel reset the
// connection, and the client would lose the answer with it. Serve closes
// the sending side first, then reads and discards what the client still
// sends (at most lingerBytes, for at most lingerTime) before closing.
func Serve(fa *fiber.App, ln net.Listener) error {
	return fa.Listener(lingeringListener{ln})
}

const (
	lingerTime  = 2 * time.Second
	lingerBytes = 1 << 20
)

type lingeringListener struct{ net.Listener }

func (l lingeringListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	return &lingeringConn{TCPConn: tc}, nil
}

// lingeringConn is a TCP connection whose Close half-closes it and drains
// it in the background.
type lingeringConn struct {
	*net.TCPConn
	once sync.Once
}

func (c *lingeringConn) Close() error {
	c.once.Do(func() {
		if err := c.CloseWrite(); err != nil {
			_ = c.TCPConn.Close()
			return
		}
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(lingerTime))
			_, _ = io.CopyN(io.Discard, c.TCPConn, lingerBytes)
			_ = c.TCPConn.Close()
		}()
	})
	return nil
}
