package httpapi_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/publicdigit/publicdigit/internal/apptest"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/httpapi"
)

// An extension gets the middleware, the auth, the error handler and its
// OpenAPI paths.
func TestExtensions(t *testing.T) {
	t.Parallel()
	a := apptest.Open(t, apptest.Options{})
	secret, tok, err := a.Tokens.Create(context.Background(), access.CreateRequest{Name: "ext", Kind: access.KindPlatform})
	require.NoError(t, err)
	dbtest.DeleteTokenAtCleanup(t, tok.ID)

	app := httpapi.New(httpapi.Deps{
		Log:       zerolog.Nop(),
		BodyLimit: 4096,
		App:       a,
		Extensions: []httpapi.Extension{{
			Routes: func(app *fiber.App, auth httpapi.Auth) {
				g := app.Group("/:tenant/api/v1", auth.Required())
				g.Get("/widgets", func(c *fiber.Ctx) error {
					p, ok := httpapi.PrincipalOf(c)
					if !ok || !p.IsPlatform() {
						return httpapi.Forbidden("platform only")
					}
					return c.JSON(fiber.Map{"tenant": c.Params("tenant"), "request_id": httpapi.RequestID(c)})
				})
				g.Post("/widgets", func(c *fiber.Ctx) error {
					var body struct {
						Name string `json:"name"`
					}
					if err := httpapi.DecodeJSON(c, &body); err != nil {
						return err
					}
					return &httpapi.Problem{Type: "about:blank", Status: 410, Title: "gone", Code: "widget_gone", Detail: "widget gone"}
				})
			},
			OpenAPI: func(doc *openapi3.T) {
				doc.Paths.Set("/{tenant}/api/v1/widgets", &openapi3.PathItem{})
			},
		}},
	})

	do := func(method, path, body string, auth bool) (int, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		resp, err := app.Test(req, 10_000)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := do("GET", "/acme/api/v1/widgets", "", true)
	assert.Equal(t, 200, code, body)
	assert.Contains(t, body, `"tenant":"acme"`)
	code, _ = do("GET", "/acme/api/v1/widgets", "", false)
	assert.Equal(t, 401, code)
	code, body = do("POST", "/acme/api/v1/widgets", `{"name":"x"}`, true)
	assert.Equal(t, 410, code)
	assert.Contains(t, body, `"code":"widget_gone"`)
	code, body = do("POST", "/acme/api/v1/widgets", `{"nom":"x"}`, true)
	assert.Equal(t, 400, code)
	assert.Contains(t, body, `unknown field \"nom\"`)
	code, body = do("GET", "/openapi.json", "", false)
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `/{tenant}/api/v1/widgets`)
	code, _ = do("GET", "/api/v1/platform/tenants", "", true)
	assert.Equal(t, 200, code, "platform routes are mounted with the App")
	bare := httpapi.New(httpapi.Deps{Log: zerolog.Nop()})
	resp, err := bare.Test(httptest.NewRequest("GET", "/api/v1/platform/tenants", nil), 10_000)
	require.NoError(t, err)
	assert.Equal(t, 404, resp.StatusCode, "platform routes are mounted only with the App")
}
