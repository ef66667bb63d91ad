package httpapi

import (
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// HeaderTenant names the tenant of a request to /api/v1/… when
// Deps.TenantHeader (config http.tenant_header) is on.
const HeaderTenant = "X-Tenant"

// tenantAPI serves the tenant routes: members, digital cards and their
// activity log under /{tenant}/api/v1/…. Every route needs a token that may
// act on the tenant: a tenant token acts on its own tenant only (any other
// tenant, existing or not, is the same 404), a platform token on any. The
// middleware resolves the tenant once (the router's cache) and hands it on
// in the request's context; each handler is one unit of work through the
// router. Its paths are part of openapi.yaml, so the document and its
// response checks cover them.
type tenantAPI struct {
	a       *app.App
	cursors *Cursors
	header  bool
}

// tenantRoute is one route, served under /{tenant}/api/v1 (and /api/v1 with X-Tenant).
type tenantRoute struct {
	method, path string
	handler      fiber.Handler
}

func (t *tenantAPI) routes(app *fiber.App, auth Auth) {
	routes := []tenantRoute{
		{fiber.MethodPost, "/members", t.createMember},
		{fiber.MethodGet, "/members", t.listMembers},
		{fiber.MethodGet, "/members/:id", t.getMember},
		{fiber.MethodPatch, "/members/:id", t.patchMember},
		{fiber.MethodDelete, "/members/:id", t.deleteMember},
		{fiber.MethodPost, "/cards", t.issueCard},
		{fiber.MethodGet, "/cards", t.listCards},
		{fiber.MethodPost, "/cards/validate", t.validateCard},
		{fiber.MethodGet, "/cards/:id", t.getCard},
		{fiber.MethodPost, "/cards/:id/activate", t.transition(cards.Activate)},
		{fiber.MethodPost, "/cards/:id/revoke", t.transition(cards.Revoke)},
		{fiber.MethodPost, "/cards/:id/expire", t.transition(cards.Expire)},
		{fiber.MethodGet, "/cards/:id/activities", t.listActivities},
	}
	// Routes are registered one by one (no group middleware), so the tenant
	// chain never runs for the platform routes that share /api/v1.
	for _, r := range routes {
		app.Add(r.method, "/:tenant/api/v1"+r.path, auth.Required(), t.fromPath, r.handler)
		if t.header {
			app.Add(r.method, "/api/v1"+r.path, auth.Required(), t.fromHeader, r.handler)
		}
	}
}

// errNoSuchTenant answers an invalid slug, an unknown or deleted tenant, and
// a tenant the token may not act on, all alike.
var errNoSuchTenant = detailed(tenant.ErrNotFound, "no such tenant")

// fromPath resolves the tenant named by the path: /{tenant}/api/v1/….
func (t *tenantAPI) fromPath(c *fiber.Ctx) error {
	return t.resolve(c, c.Params("tenant"))
}

// fromHeader resolves the tenant named by the X-Tenant header.
func (t *tenantAPI) fromHeader(c *fiber.Ctx) error {
	raw := c.Get(HeaderTenant)
	if raw == "" {
		return BadRequest("the X-Tenant header must name the tenant (or use /{tenant}/api/v1/…)")
	}
	return t.resolve(c, raw)
}

// resolve checks that the principal may act on the tenant and that the
// tenant may be served (the router's Resolve: cached, refuses unknown,
// deleted, suspended and provisioning tenants), and hands the resolved
// tenant on in the request's context. A token that may not act on the
// tenant gets exactly the answer of an unknown tenant, before any lookup.
func (t *tenantAPI) resolve(c *fiber.Ctx, raw string) error {
	p, ok := PrincipalOf(c)
	if !ok {
		return unauthorized("missing bearer token (Authorization: Bearer <token>)")
	}
	slug, err := tenant.ParseSlug(raw)
	if err != nil || !p.CanActOn(slug) {
		return errNoSuchTenant
	}
	ctx, ten, err := t.a.Router.Resolve(c.UserContext(), slug)
	if errors.Is(err, tenant.ErrNotFound) {
		return errNoSuchTenant
	}
	if err != nil {
		return err
	}
	// A tenant token names its tenant by id: a token of a purged tenant
	// whose slug was taken again acts on nothing.
	if !p.IsPlatform() && p.TenantID != ten.ID.String() {
		return errNoSuchTenant
	}
	// Noisy neighbours: at most the tenant's limit of requests in flight
	// (more wait briefly, then 429), so none takes the others' connections.
	release, err := t.a.Limits.Acquire(ctx, ten)
	if err != nil {
		return err
	}
	defer release()
	c.SetUserContext(ctx)
	return c.Next()
}

// tenantOf returns the resolved tenant of the request.
func tenantOf(c *fiber.Ctx) tenant.Slug {
	t, _ := pgroute.TenantFromContext(c.UserContext())
	return t.Slug
}

// location is the URL path of a tenant resource, in the form the request used.
func location(c *fiber.Ctx, rest string) string {
	if c.Params("tenant") != "" {
		return "/" + tenantOf(c).String() + "/api/v1" + rest
	}
	return "/api/v1" + rest
}

// actor names who acted, for the card activity log: the token's kind and id.
func actor(c *fiber.Ctx) string {
	p, _ := PrincipalOf(c)
	return string(p.Kind) + ":" + p.TokenID
}

// uuidParam parses a canonical UUID (36 characters) from the path.
func uuidParam(c *fiber.Ctx, name string) (uuid.UUID, error) {
	return parseUUID(name, c.Params(name))
}

func parseUUID(name, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		p := problem(fiber.StatusBadRequest, "bad request",
			name+" must be a UUID in its canonical form, e.g. 0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f")
		p.Code = "invalid_id"
		return uuid.Nil, p
	}
	return id, nil
}

// pageLimit is the limit query parameter of every tenant listing.
func pageLimit(c *fiber.Ctx) (int, error) {
	return QueryInt(c, "limit", defaultPage, 1, maxPage)
}

const (
	defaultPage = 50
	maxPage     = 100 // membership.MaxLimit, cards.MaxLimit
)

// page is a keyset page: pass next as after for the following page.
type page[T any] struct {
	Items []T `json:"items"`
	// Next is the cursor of the next page; null on the last page.
	Next *string `json:"next"`
}

// after opens the after cursor of a listing, if any.
func (t *tenantAPI) after(c *fiber.Ctx, scope string) (*uuid.UUID, error) {
	raw := c.Query("after")
	if raw == "" {
		return nil, nil
	}
	id, err := t.cursors.Open(scope, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: after must be the next of a previous page of the same listing", err)
	}
	return &id, nil
}

// newPage builds a page; when more follow, next continues after the last item.
func newPage[T any](cs *Cursors, scope string, items []T, more bool, idOf func(T) uuid.UUID) page[T] {
	if items == nil {
		items = []T{}
	}
	p := page[T]{Items: items}
	if more && len(items) > 0 {
		n := cs.Sign(scope, idOf(items[len(items)-1]))
		p.Next = &n
	}
	return p
}

// emptyBody accepts no body, or an empty JSON object.
func emptyBody(c *fiber.Ctx) error {
	if len(c.Body()) == 0 {
		return nil
	}
	var none struct{}
	return DecodeJSON(c, &none)
}
