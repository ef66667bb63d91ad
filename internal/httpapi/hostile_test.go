package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/httpapi"
)

// A request whose URI is too long gets a complete problem+json answer with
// a stable code, alone or among many concurrent ones, with a body or
// without: 414 uri_too_long when the request still fits in the read buffer,
// 431 header_too_large beyond. No answer echoes the URI, none is lost to a
// connection reset.
func TestLongRequestsGetCompleteAnswers(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	tt := ta.tenant(t, "long")

	for _, tc := range []struct {
		name   string
		path   string
		header string // a long extra header instead
		status int
		code   string
	}{
		{"4,000-letter slug", "/" + strings.Repeat("a", 4000) + "/api/v1/members", "", 414, "uri_too_long"},
		{"4,000-letter platform slug", "/api/v1/platform/tenants/" + strings.Repeat("b", 4000), "", 414, "uri_too_long"},
		{"long query", tt.path("/members?after=" + strings.Repeat("c", 3000)), "", 414, "uri_too_long"},
		{"just fits", tt.path("/members?x=" + strings.Repeat("d", httpapi.MaxURI-len(tt.path("/members?x=")))), "", 200, ""},
		{"30,000-letter slug", "/" + strings.Repeat("e", 30_000) + "/api/v1/members", "", 431, "header_too_large"},
		{"20 KiB header", tt.path("/members"), strings.Repeat("f", 20<<10), 431, "header_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "POST"} {
				var body io.Reader
				if method == "POST" {
					body = strings.NewReader(`{"full_name":"Long Path","email":"long@example.test"}`)
				}
				req, err := http.NewRequest(method, ta.base+tc.path, body)
				require.NoError(t, err)
				req.Header.Set("Authorization", "Bearer "+tt.token)
				req.Header.Set("Content-Type", "application/json")
				if tc.header != "" {
					req.Header.Set("X-Long", tc.header)
				}
				hr, err := ta.client.Do(req)
				require.NoError(t, err, "an answer, not a connection error")
				raw, err := io.ReadAll(hr.Body)
				hr.Body.Close()
				require.NoError(t, err)
				r := resp{status: hr.StatusCode, header: hr.Header, body: raw}
				if tc.status == 200 {
					if method == "GET" {
						require.Equal(t, 200, r.status, "%s", raw)
					}
					continue
				}
				m := r.problem(t, tc.status, tc.code)
				assert.NotContains(t, m, "instance", "the URI is not echoed")
				assert.Less(t, len(raw), 600, "the answer does not quote the request")
			}
		})
	}

	// Many clients at once, each on a fresh connection, a body following
	// the refused headers: every one gets its answer.
	paths := []string{
		"/" + strings.Repeat("a", 4000) + "/api/v1/members",
		"/" + strings.Repeat("g", 20_000) + "/api/v1/members",
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 16; i++ {
				path := paths[i%len(paths)]
				body := bytes.Repeat([]byte(" "), 60<<10) // whitespace around the JSON value
				copy(body, `{"full_name":"x"}`)
				req, _ := http.NewRequest("POST", ta.base+path, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tt.token)
				key := ""
				hr, err := client.Do(req)
				if err != nil {
					msg := err.Error()
					key = "error: " + msg[strings.LastIndex(msg, ": ")+2:] // not the URL
				} else {
					var p map[string]any
					derr := json.NewDecoder(hr.Body).Decode(&p)
					hr.Body.Close()
					key = fmt.Sprintf("%d %v (decode: %v)", hr.StatusCode, p["code"], derr)
				}
				mu.Lock()
				statuses[key]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, map[string]int{"414 uri_too_long (decode: <nil>)": 128, "431 header_too_large (decode: <nil>)": 128}, statuses)
}

// Ids are UUIDs in their canonical form, lower case, as the README, the
// OpenAPI document and the invalid_id message say: an upper-case spelling
// of an existing id is refused (400 invalid_id) wherever an id is read —
// path, body, query — and changes nothing.
func TestUpperCaseUUIDsAreRefused(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	tt := ta.tenant(t, "upper")
	memberID := ta.member(t, tt, map[string]any{"full_name": "Upper Case"})
	cardID := ta.card(t, tt, memberID)["id"].(string)
	secret, tok, err := ta.tokens.Create(context.Background(), access.CreateRequest{Name: "upper", Kind: access.KindPlatform})
	require.NoError(t, err)
	dbtest.DeleteTokenAtCleanup(t, tok.ID)
	up := strings.ToUpper
	require.NotEqual(t, memberID, up(memberID))
	before := counts(t, tt)

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", tt.path("/members/" + up(memberID)), nil},
		{"PATCH", tt.path("/members/" + up(memberID)), `{"full_name": "Changed"}`},
		{"DELETE", tt.path("/members/" + up(memberID)), nil},
		{"GET", tt.path("/cards/" + up(cardID)), nil},
		{"POST", tt.path("/cards/" + up(cardID) + "/revoke"), nil},
		{"GET", tt.path("/cards/" + up(cardID) + "/activities"), nil},
		{"GET", tt.path("/cards?member_id=" + up(memberID)), nil},
		{"POST", tt.path("/cards"), `{"member_id": "` + up(memberID) + `"}`},
		{"GET", tt.path("/members/" + memberID[:9] + up(memberID[9:])), nil}, // mixed case
		{"DELETE", "/api/v1/platform/tokens/" + up(tok.ID), nil},
	} {
		p := ta.call(t, c.method, c.path, ta.platform, c.body).problem(t, 400, "invalid_id")
		assert.Contains(t, p["detail"], "lower case", "%s %s", c.method, c.path)
	}
	assert.Equal(t, before, counts(t, tt), "nothing changed")
	ta.call(t, "GET", "/api/v1/platform/tokens", secret, nil).ok(t, 200) // not revoked

	// The canonical spellings work.
	ta.call(t, "GET", tt.path("/members/"+memberID), tt.token, nil).ok(t, 200)
	ta.call(t, "GET", tt.path("/cards/"+cardID), tt.token, nil).ok(t, 200)
	ta.call(t, "GET", tt.path("/cards?member_id="+memberID), tt.token, nil).ok(t, 200)
	ta.call(t, "DELETE", "/api/v1/platform/tokens/"+tok.ID, ta.platform, nil).ok(t, 200)
}

// A handler that panics is a 500 whose cause and stack reach the log with
// the request id, never the client; the server goes on serving.
func TestPanicIsA500(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	fa := httpapi.New(httpapi.Deps{
		Log: zerolog.New(&logs),
		Extensions: []httpapi.Extension{{Routes: func(app *fiber.App, _ httpapi.Auth) {
			app.Get("/boom", func(*fiber.Ctx) error {
				var m map[string]int
				m["x"]++ // a bug: assignment to a nil map
				return nil
			})
		}}},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = httpapi.Serve(fa, ln) }()
	t.Cleanup(func() { _ = fa.ShutdownWithTimeout(5 * time.Second) })
	base := "http://" + ln.Addr().String()

	for i := 0; i < 2; i++ {
		resp, err := http.Get(base + "/boom")
		require.NoError(t, err, "an answer, not a dead server")
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		r := resp2(resp, raw)
		p := r.problem(t, 500, "internal")
		assert.NotContains(t, string(raw), "nil map", "no panic text reaches the client")
		assert.Contains(t, logs.String(), `"request_id":"`+p["request_id"].(string)+`"`)
	}
	assert.Contains(t, logs.String(), "assignment to entry in nil map")
	assert.Contains(t, logs.String(), `"stack"`)
	resp, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func resp2(hr *http.Response, body []byte) resp {
	return resp{status: hr.StatusCode, header: hr.Header, body: body}
}
