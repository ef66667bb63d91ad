package httpapi

import (
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/publicdigit/publicdigit/internal/elections"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// fuzzBody is one endpoint's JSON body, read as its handler reads it:
// decoded, then taken through the handler's own checks up to the service
// call.
type fuzzBody struct {
	route string
	read  func(c *fiber.Ctx) error
}

var fuzzBodies = []fuzzBody{
	{"POST /api/v1/platform/tenants", func(c *fiber.Ctx) error {
		var b tenantCreate
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		_, err := b.request()
		return err
	}},
	{"PATCH /api/v1/platform/tenants/{slug}", func(c *fiber.Ctx) error {
		var b tenantPatch
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		mv, err := b.isMove()
		if err != nil {
			return err
		}
		if mv {
			_, err = b.move(tenant.MustSlug("fuzz"), tenant.PlacementSchema)
			return err
		}
		_, err = b.patch()
		return err
	}},
	{"POST /api/v1/platform/tenants/{slug}/modules", func(c *fiber.Ctx) error {
		var b moduleInstall
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		return b.validate()
	}},
	{"POST /api/v1/platform/modules", func(c *fiber.Ctx) error {
		var b moduleCreate
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		return b.module().Validate()
	}},
	{"POST /api/v1/platform/tokens", func(c *fiber.Ctx) error {
		var b tokenCreate
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		_, err := b.request()
		return err
	}},
	{"POST /{tenant}/api/v1/members", func(c *fiber.Ctx) error {
		var b membership.New
		return DecodeJSON(c, &b)
	}},
	{"PATCH /{tenant}/api/v1/members/{id}", func(c *fiber.Ctx) error {
		var b memberPatch
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		_, err := b.patch()
		return err
	}},
	{"POST /{tenant}/api/v1/cards", func(c *fiber.Ctx) error {
		var b cardIssue
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		in, err := b.issue()
		if err == nil && in.MemberID == uuid.Nil && b.MemberID != uuid.Nil.String() {
			panic("a member id parsed to nil")
		}
		return err
	}},
	{"POST /{tenant}/api/v1/cards/validate", func(c *fiber.Ctx) error {
		var b cardValidate
		return DecodeJSON(c, &b)
	}},
	{"POST /{tenant}/api/v1/cards/{id}/activate", emptyBody},
	{"POST /{tenant}/api/v1/elections", func(c *fiber.Ctx) error {
		var b elections.New
		return DecodeJSON(c, &b)
	}},
	{"PATCH /{tenant}/api/v1/elections/{id}", func(c *fiber.Ctx) error {
		var b electionPatch
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		_, err := b.patch()
		return err
	}},
	{"POST /{tenant}/api/v1/elections/{id}/positions", func(c *fiber.Ctx) error {
		var b elections.NewPosition
		return DecodeJSON(c, &b)
	}},
	{"POST /{tenant}/api/v1/elections/{id}/positions/{position}/candidates", func(c *fiber.Ctx) error {
		var b candidateAdd
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		_, err := parseUUID("member_id", b.MemberID)
		return err
	}},
	{"POST /{tenant}/api/v1/elections/{id}/ballots", func(c *fiber.Ctx) error {
		var b ballotBody
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		_, err := b.ballot()
		return err
	}},
	{"PUT /api/v1/platform/tenants/{slug}/limits", func(c *fiber.Ctx) error {
		var b limitsPut
		if err := DecodeJSON(c, &b); err != nil {
			return err
		}
		_, err := b.limits()
		return err
	}},
}

// internals are words of Go's and the decoder's own messages that must
// never reach a client.
var internals = []string{"json:", "httpapi", "membership.", "struct", "reflect", "interface", "unmarshal", "Unmarshal",
	"[]uint8", "map[", "*time", "Go value", "uuid.", "tenant.", "elections.", "goroutine", "panic"}

// FuzzDecodeJSON sends arbitrary bodies (and content types) to every
// endpoint's body reader: it accepts exactly one JSON object or answers a
// 4xx problem whose text is written for clients — never a 5xx, never Go's
// or the decoder's own words, never a panic. The seed corpus is in
// testdata/fuzz/FuzzDecodeJSON (run by make test); make fuzz explores.
func FuzzDecodeJSON(f *testing.F) {
	for i := range fuzzBodies {
		f.Add(uint8(i), "application/json", []byte(`{}`))
	}
	app := fiber.New()
	f.Fuzz(func(t *testing.T, route uint8, contentType string, body []byte) {
		fb := fuzzBodies[int(route)%len(fuzzBodies)]
		fctx := &fasthttp.RequestCtx{}
		fctx.Request.Header.SetMethod(fiber.MethodPost)
		if contentType != "" {
			fctx.Request.Header.SetContentType(contentType)
		}
		fctx.Request.SetBody(body)
		c := app.AcquireCtx(fctx)
		defer app.ReleaseCtx(c)

		err := fb.read(c)
		if err == nil {
			if trimmed := strings.TrimSpace(string(body)); !strings.HasSuffix(fb.route, "/activate") || trimmed != "" {
				if !strings.HasPrefix(trimmed, "{") {
					t.Fatalf("%s: accepted a body that is not a JSON object: %q", fb.route, body)
				}
			}
			return
		}
		p, logged := problemOf(err)
		if logged || p.Status < 400 || p.Status >= 500 {
			t.Fatalf("%s: %q answered %d (logged: %v): %v", fb.route, body, p.Status, logged, err)
		}
		if p.Code == "" || p.Detail == "" {
			t.Fatalf("%s: %q: a problem without code or detail: %+v", fb.route, body, p)
		}
		for _, word := range internals {
			if strings.Contains(p.Detail, word) {
				t.Fatalf("%s: %q: the answer shows %q: %s", fb.route, body, word, p.Detail)
			}
		}
	})
}
