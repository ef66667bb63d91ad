package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// FuzzTenantAPIBodies sends arbitrary bodies to every tenant API route that
// takes one, through the whole stack — the server, the router through
// PgBouncer, the tenant's own tables: every answer is a success or a 4xx
// problem+json with a code, never a 5xx, never SQL or Go internals. The
// seed corpus (testdata/fuzz/FuzzTenantAPIBodies) runs in make test.
func FuzzTenantAPIBodies(f *testing.F) {
	a := apptest.Open(f, apptest.Options{})
	cursors, err := httpapi.NewCursors([]byte("a test secret of at least 32 bytes, fixed"))
	if err != nil {
		f.Fatal(err)
	}
	fa := httpapi.New(httpapi.Deps{Log: zerolog.Nop(), App: a, BodyLimit: 64 << 10, Cursors: cursors})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = httpapi.Serve(fa, ln) }()
	f.Cleanup(func() { _ = fa.ShutdownWithTimeout(5 * time.Second) })
	base := "http://" + ln.Addr().String()

	tt := dbtest.Tenant(f, "fuzz")
	secret, tok, err := a.Tokens.Create(context.Background(), access.CreateRequest{Name: "fuzz", Kind: access.KindTenant, Tenant: tenant.MustSlug(tt.Slug)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = a.Tokens.Delete(context.Background(), tok.ID) })
	client := &http.Client{Timeout: 30 * time.Second}
	send := func(t testing.TB, method, path string, body []byte) (int, http.Header, []byte) {
		req, err := http.NewRequest(method, base+"/"+tt.Slug+"/api/v1"+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, out
	}
	var member, card struct {
		ID string `json:"id"`
	}
	if st, _, out := send(f, "POST", "/members", []byte(`{"full_name":"Fuzz"}`)); st != 201 || json.Unmarshal(out, &member) != nil {
		f.Fatalf("member: %d %s", st, out)
	}
	if st, _, out := send(f, "POST", "/cards", []byte(`{"member_id":"`+member.ID+`"}`)); st != 201 || json.Unmarshal(out, &card) != nil {
		f.Fatalf("card: %d %s", st, out)
	}
	routes := []struct{ method, path string }{
		{"POST", "/members"},
		{"PATCH", "/members/" + member.ID},
		{"POST", "/cards"},
		{"POST", "/cards/validate"},
		{"POST", "/cards/" + card.ID + "/activate"},
		{"POST", "/cards/" + card.ID + "/revoke"},
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		st, h, out := send(t, r.method, r.path, body)
		if st >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, st, out)
		}
		if st < 400 {
			return
		}
		var p struct {
			Code      string `json:"code"`
			Detail    string `json:"detail"`
			RequestID string `json:"request_id"`
		}
		if h.Get("Content-Type") != "application/problem+json" || json.Unmarshal(out, &p) != nil || p.Code == "" || p.RequestID == "" {
			t.Fatalf("%s %s %q: %d, not a complete problem: %s", r.method, r.path, body, st, out)
		}
		for _, leak := range []string{"SQLSTATE", "SELECT", "INSERT", "UPDATE ", "pgx", "goroutine", ".go:", "json:"} {
			if strings.Contains(p.Detail, leak) {
				t.Fatalf("%s %s %q: the answer shows %q: %s", r.method, r.path, body, leak, out)
			}
		}
	})
}
