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
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// FuzzTenantAPIBodies sends arbitrary bodies to every tenant API route that
// takes one (members, cards, elections), through the whole stack — the server, the router through
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

	tt := dbtest.Tenant(f, "fuzz", modules.Elections)
	secret, tok, err := a.Tokens.Create(context.Background(), access.CreateRequest{Name: "fuzz", Kind: access.KindTenant, Tenant: tenant.MustSlug(tt.Slug)})
	if err != nil {
		f.Fatal(err)
	}
	dbtest.DeleteTokenAtCleanup(f, tok.ID)
	// The tenant's admins (a platform token) run its elections.
	admin, atok, err := a.Tokens.Create(context.Background(), access.CreateRequest{Name: "fuzz admin", Kind: access.KindPlatform})
	if err != nil {
		f.Fatal(err)
	}
	dbtest.DeleteTokenAtCleanup(f, atok.ID)
	client := &http.Client{Timeout: 30 * time.Second}
	sendAs := func(t testing.TB, token, method, path string, body []byte) (int, http.Header, []byte) {
		req, err := http.NewRequest(method, base+"/"+tt.Slug+"/api/v1"+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
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
	send := func(t testing.TB, method, path string, body []byte) (int, http.Header, []byte) {
		return sendAs(t, secret, method, path, body)
	}
	var member, card, election, position struct {
		ID string `json:"id"`
	}
	made := func(what string, v any) func(int, http.Header, []byte) {
		return func(st int, _ http.Header, out []byte) {
			if st != 201 || json.Unmarshal(out, v) != nil {
				f.Fatalf("%s: %d %s", what, st, out)
			}
		}
	}
	made("member", &member)(send(f, "POST", "/members", []byte(`{"full_name":"Fuzz"}`)))
	made("card", &card)(send(f, "POST", "/cards", []byte(`{"member_id":"`+member.ID+`"}`)))
	opens := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	closes := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	made("election", &election)(sendAs(f, admin, "POST", "/elections",
		[]byte(`{"title":"Fuzz","opens_at":"`+opens+`","closes_at":"`+closes+`"}`)))
	made("position", &position)(sendAs(f, admin, "POST", "/elections/"+election.ID+"/positions", []byte(`{"title":"Chair","seats":1}`)))
	routes := []struct{ token, method, path string }{
		{secret, "POST", "/members"},
		{secret, "PATCH", "/members/" + member.ID},
		{secret, "POST", "/cards"},
		{secret, "POST", "/cards/validate"},
		{secret, "POST", "/cards/" + card.ID + "/activate"},
		{secret, "POST", "/cards/" + card.ID + "/revoke"},
		{admin, "POST", "/elections"},
		{admin, "PATCH", "/elections/" + election.ID},
		{admin, "POST", "/elections/" + election.ID + "/positions"},
		{admin, "POST", "/elections/" + election.ID + "/positions/" + position.ID + "/candidates"},
		{secret, "POST", "/elections/" + election.ID + "/ballots"},
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		st, h, out := sendAs(t, r.token, r.method, r.path, body)
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
