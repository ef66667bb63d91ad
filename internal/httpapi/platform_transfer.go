package httpapi

import (
	"bufio"
	"context"
	"mime"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/publicdigit/publicdigit/internal/tenant"
	"github.com/publicdigit/publicdigit/internal/transfer"
)

// The tenant archive routes (internal/transfer), for platform tokens.
const (
	importPath = "/api/v1/platform/tenants/import"
	// MIMEArchive is the media type of a tenant archive (a tar.gz).
	MIMEArchive = "application/gzip"
	// HeaderExportRows and HeaderImportRows count the rows of an archive.
	HeaderExportRows = "X-Export-Rows"
	HeaderImportRows = "X-Import-Rows"
)

// exportTenant answers with the tenant's archive, streamed: the snapshot
// is opened (and every refusal answered as a problem) before the first
// byte; the rows then go from COPY through gzip to the client, chunk by
// chunk. A failure after that cuts the connection, so the client sees a
// broken transfer (and an import would refuse the truncated archive).
func (h *handlers) exportTenant(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	x, err := h.a.Transfer.Export(c.UserContext(), slug)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, MIMEArchive)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+slug.String()+`.tar.gz"`)
	c.Set(HeaderExportRows, strconv.FormatInt(x.Manifest.Rows(), 10))
	conn, log, id := c.Context().Conn(), h.log, RequestID(c)
	// The writer runs after this handler returns, on its own goroutine.
	ctx := context.WithoutCancel(c.UserContext())
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer x.Close()
		if _, err := x.WriteTo(ctx, &idleWriter{w: w, conn: conn}); err != nil {
			log.Warn().Err(err).Str("request_id", id).Str("tenant", slug.String()).Msg("export cut short")
			_ = conn.Close()
			return
		}
		_ = w.Flush()
	})
	return nil
}

// importTenant creates a tenant from an archive in the request body, read
// as a stream (never whole in memory), all or nothing.
func (h *handlers) importTenant(c *fiber.Ctx) error {
	if ct := c.Get(fiber.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != MIMEArchive && mt != fiber.MIMEOctetStream) {
			p := problem(fiber.StatusUnsupportedMediaType, "unsupported media type", "send the archive as "+MIMEArchive)
			p.Code = "unsupported_media_type"
			return p
		}
	}
	var req transfer.ImportRequest
	if as := c.Query("as"); as != "" {
		s, err := tenant.ParseSlug(as)
		if err != nil {
			return err
		}
		req.As = s
	}
	if name := c.Query("name"); name != "" {
		if err := tenant.ValidateName(name); err != nil {
			return err
		}
		req.Name = name
	}
	res, err := h.a.Transfer.Import(c.UserContext(), bufio.NewReaderSize(requestBody(c), 1<<20), req)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderLocation, "/api/v1/platform/tenants/"+res.Tenant.Slug.String())
	c.Set(HeaderImportRows, strconv.FormatInt(res.Rows, 10))
	return c.Status(fiber.StatusCreated).JSON(res.Tenant)
}
