package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func init() {
	// The OpenAPI checks read an archive as the opaque bytes it is documented as.
	openapi3filter.RegisterBodyDecoder(httpapi.MIMEArchive, openapi3filter.FileBodyDecoder)
}

const importPath = tenantsPath + "/import"

// TestExportImportEndpoints: a tenant exported and imported under another
// slug through the API, with a body limit far below the archive's size
// (the import streams its body), the export streamed (chunked).
func TestExportImportEndpoints(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{bodyLimit: 4096})
	ctx := context.Background()
	src := tenant.MustSlug(a.slug(t, "hxs"))
	_, err := a.prov.Provision(ctx, provisionReq(src.String()))
	require.NoError(t, err)
	st, err := a.tenants.Get(ctx, src)
	require.NoError(t, err)
	admin := dbtest.AdminDB(t)
	_, err = admin.Exec(`INSERT INTO `+pgx.Identifier{st.Schema}.Sanitize()+`.members (tenant_id, full_name, email)
		SELECT $1, 'member ' || g, 'm' || g || '@example.test' FROM generate_series(1, 3000) g`, st.ID)
	require.NoError(t, err)

	r := a.call(t, "GET", tenantsPath+"/"+src.String()+"/export", a.platform, nil)
	require.Equal(t, 200, r.status, "%s", r.body)
	assert.Equal(t, httpapi.MIMEArchive, r.header.Get("Content-Type"))
	assert.Equal(t, `attachment; filename="`+src.String()+`.tar.gz"`, r.header.Get("Content-Disposition"))
	assert.Equal(t, "3000", r.header.Get(httpapi.HeaderExportRows))
	assert.Empty(t, r.header.Get("Content-Length"), "streamed: no length known ahead")
	archive := r.body
	require.Greater(t, len(archive), 4096*4, "the archive is bigger than the body limit")

	as := a.slug(t, "hxi")
	t.Cleanup(func() { deleteAudit(t, as) })
	r = a.callCT(t, "POST", importPath+"?as="+as+"&name=Imported", a.platform, httpapi.MIMEArchive, archive)
	require.Equal(t, 201, r.status, "%s", r.body)
	importID := r.header.Get("X-Request-Id")
	assert.Equal(t, tenantsPath+"/"+as, r.header.Get("Location"))
	assert.Equal(t, "3000", r.header.Get(httpapi.HeaderImportRows))
	m := r.json(t)
	assert.Equal(t, as, m["slug"])
	assert.Equal(t, "Imported", m["name"])
	assert.Equal(t, "active", m["status"])
	var n int
	require.NoError(t, admin.QueryRow(`SELECT count(*) FROM `+pgx.Identifier{"tenant_" + as}.Sanitize()+`.members WHERE tenant_id = $1`,
		m["id"]).Scan(&n))
	assert.Equal(t, 3000, n)

	// Refusals, each changing nothing.
	a.callCT(t, "POST", importPath+"?as="+as, a.platform, httpapi.MIMEArchive, archive).problem(t, 409, "tenant_exists")

	// The audit trail: the import is the new tenant's create, in its
	// transaction, with the request id; the refused one after it.
	trail := auditEntries(t, a, a.platform, as)
	require.Len(t, trail, 2, "%v", trail)
	assert.Equal(t, "tenant.create", trail[0]["action"])
	assert.Equal(t, "ok", trail[0]["outcome"])
	assert.Equal(t, m["id"], trail[0]["tenant_id"])
	assert.Equal(t, importID, trail[0]["request_id"])
	assert.Equal(t, "import", trail[0]["detail"].(map[string]any)["path"])
	assert.Equal(t, "error", trail[1]["outcome"])
	assert.Equal(t, "tenant_exists", trail[1]["error_code"])
	bad := a.slug(t, "hxb")
	a.callCT(t, "POST", importPath+"?as="+bad, a.platform, httpapi.MIMEArchive, archive[:len(archive)/2]).problem(t, 400, "invalid_archive")
	flipped := bytes.Clone(archive)
	flipped[len(flipped)*2/3] ^= 0xff
	a.callCT(t, "POST", importPath+"?as="+bad, a.platform, httpapi.MIMEArchive, flipped).problem(t, 400, "invalid_archive")
	a.callCT(t, "POST", importPath+"?as="+bad, a.platform, "application/json", `{"slug": "x"}`).problem(t, 415, "unsupported_media_type")
	a.callCT(t, "POST", importPath+"?as=Not-A-Slug", a.platform, httpapi.MIMEArchive, archive).problem(t, 400, "invalid_slug")
	assert.False(t, catalogtest.Exists(t, admin, tenant.MustSlug(bad)))
	a.call(t, "GET", tenantsPath+"/"+dbtest.Name("ghost")+"/export", a.platform, nil).problem(t, 404, "tenant_not_found")
	catalogtest.SetStatus(t, admin, src, tenant.StatusMoving)
	a.call(t, "GET", tenantsPath+"/"+src.String()+"/export", a.platform, nil).problem(t, 409, "wrong_tenant_status")
	catalogtest.SetStatus(t, admin, src, tenant.StatusActive)

	// Platform tokens only.
	tok := a.token(t, access.CreateRequest{Name: "tenant", Kind: access.KindTenant, Tenant: src})
	a.call(t, "GET", tenantsPath+"/"+src.String()+"/export", tok, nil).problem(t, 403, "forbidden")
	a.callCT(t, "POST", importPath+"?as="+bad, tok, httpapi.MIMEArchive, archive).problem(t, 403, "forbidden")
	a.callCT(t, "POST", importPath+"?as="+bad, "", httpapi.MIMEArchive, archive).problem(t, 401, "unauthorized")
	assert.False(t, catalogtest.Exists(t, admin, tenant.MustSlug(bad)))
}

// rawExchange sends requests on one connection and returns the status
// lines of the answers it could read.
func rawExchange(t *testing.T, base string, requests ...string) []string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(conn)
	var statuses []string
	for _, req := range requests {
		if _, err := io.WriteString(conn, req); err != nil {
			break
		}
		hr, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, hr.Body)
		hr.Body.Close()
		statuses = append(statuses, hr.Status)
		if hr.Close {
			break
		}
	}
	return statuses
}

// TestBodyLimitWithStreamedBodies: the server streams request bodies (for
// the import), and every other route still gets its body whole and at
// most http.body_limit bytes — with a length given or chunked — and a
// connection whose body was not read is closed, never reused with the
// rest of that body taken for the next request.
func TestBodyLimitWithStreamedBodies(t *testing.T) {
	t.Parallel()
	a := newAPI(t, apiOptions{bodyLimit: 2048})
	host := strings.TrimPrefix(a.base, "http://")
	big := `{"slug": "x", "name": "` + strings.Repeat("y", 20000) + `"}`
	chunked := func(body string) string {
		var b strings.Builder
		for len(body) > 0 {
			n := min(len(body), 1000)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		b.WriteString("0\r\n\r\n")
		return b.String()
	}
	auth := "Authorization: Bearer " + a.platform + "\r\n"
	healthz := "GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n"

	// Too large, with Content-Length: 413 and the connection closed.
	got := rawExchange(t, a.base, "POST "+tenantsPath+" HTTP/1.1\r\nHost: "+host+"\r\n"+auth+
		"Content-Type: application/json\r\nContent-Length: "+fmt.Sprint(len(big))+"\r\n\r\n"+big, healthz)
	assert.Equal(t, []string{"413 Request Entity Too Large"}, got)
	// Too large, chunked: the same.
	got = rawExchange(t, a.base, "POST "+tenantsPath+" HTTP/1.1\r\nHost: "+host+"\r\n"+auth+
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(big), healthz)
	assert.Equal(t, []string{"413 Request Entity Too Large"}, got)
	// Small and chunked: read whole (a bad slug is 400), and the connection serves the next request.
	small := `{"slug": "Bad-Slug", "name": "x"}`
	got = rawExchange(t, a.base, "POST "+tenantsPath+" HTTP/1.1\r\nHost: "+host+"\r\n"+auth+
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(small), healthz)
	assert.Equal(t, []string{"400 Bad Request", "200 OK"}, got)
	// A body within the limit but larger than the server reads ahead (8 KiB),
	// to a route that ignores bodies: the next request on the connection is
	// still understood.
	wide := newAPI(t, apiOptions{bodyLimit: 64 << 10})
	whost := strings.TrimPrefix(wide.base, "http://")
	filler := strings.Repeat("z", 30000)
	got = rawExchange(t, wide.base, "GET /healthz HTTP/1.1\r\nHost: "+whost+"\r\nContent-Length: 30000\r\n\r\n"+filler,
		"GET /healthz HTTP/1.1\r\nHost: "+whost+"\r\n\r\n")
	assert.Equal(t, []string{"200 OK", "200 OK"}, got)
	// An import refused before its body is read (no token): the connection is closed.
	got = rawExchange(t, a.base, "POST "+importPath+" HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/gzip\r\n"+
		"Content-Length: 100000\r\n\r\n"+strings.Repeat("\x00", 100000), healthz)
	assert.Equal(t, []string{"401 Unauthorized"}, got)
}
