package httpapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/elections"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// HeaderTenant names the tenant of a request to /api/v1/… when
// Deps.TenantHeader (config http.tenant_header) is on.
const HeaderTenant = "X-Tenant"

// tenantAPI serves the tenant routes under /{tenant}/api/v1/…: members
// (the core), and the routes of the modules — digital cards and their
// activity log (digital_cards), elections (elections). Every route needs a
// token that may act on the tenant: a tenant token acts on its own tenant
// only (any other tenant, existing or not, is the same 404), a platform
// token on any. The middleware resolves the tenant once (the router's cache)
// and hands it on in the request's context; a module's route then answers
// 404 module_not_installed for a tenant without the module, from the
// installed modules that came with the resolved tenant; each handler is one
// unit of work through the router. A tenant's admin is a platform token:
// tenant tokens are the tenant's applications (they manage members and
// cards, and cast ballots), and the routes that change elections or show
// drafts, tallies and their log are the admins' (403 for a tenant token).
// Its paths are part of openapi.yaml, so the document and its response
// checks cover them.
type tenantAPI struct {
	a       *app.App
	cursors *Cursors
	header  bool
}

// tenantRoute is one route, served under /{tenant}/api/v1 (and /api/v1 with
// X-Tenant): module names the module whose route it is ("" for the core),
// admin that only the tenant's admins may call it.
type tenantRoute struct {
	module       string
	admin        bool
	method, path string
	handler      fiber.Handler
}

func (t *tenantAPI) routes(app *fiber.App, auth Auth) {
	const cardsModule, electionsModule = modules.DigitalCards, modules.Elections
	routes := []tenantRoute{
		{"", false, fiber.MethodPost, "/members", t.createMember},
		{"", false, fiber.MethodGet, "/members", t.listMembers},
		{"", false, fiber.MethodGet, "/members/:id", t.getMember},
		{"", false, fiber.MethodPatch, "/members/:id", t.patchMember},
		{"", false, fiber.MethodDelete, "/members/:id", t.deleteMember},
		{cardsModule, false, fiber.MethodPost, "/cards", t.issueCard},
		{cardsModule, false, fiber.MethodGet, "/cards", t.listCards},
		{cardsModule, false, fiber.MethodPost, "/cards/validate", t.validateCard},
		{cardsModule, false, fiber.MethodGet, "/cards/:id", t.getCard},
		{cardsModule, false, fiber.MethodPost, "/cards/:id/activate", t.transition(cards.Activate)},
		{cardsModule, false, fiber.MethodPost, "/cards/:id/revoke", t.transition(cards.Revoke)},
		{cardsModule, false, fiber.MethodPost, "/cards/:id/expire", t.transition(cards.Expire)},
		{cardsModule, false, fiber.MethodGet, "/cards/:id/activities", t.listActivities},
		{electionsModule, true, fiber.MethodPost, "/elections", t.createElection},
		{electionsModule, false, fiber.MethodGet, "/elections", t.listElections},
		{electionsModule, false, fiber.MethodGet, "/elections/:id", t.getElection},
		{electionsModule, true, fiber.MethodPatch, "/elections/:id", t.patchElection},
		{electionsModule, true, fiber.MethodPost, "/elections/:id/positions", t.addPosition},
		{electionsModule, true, fiber.MethodDelete, "/elections/:id/positions/:position", t.removePosition},
		{electionsModule, true, fiber.MethodPost, "/elections/:id/positions/:position/candidates", t.addCandidate},
		{electionsModule, true, fiber.MethodDelete, "/elections/:id/positions/:position/candidates/:candidate", t.removeCandidate},
		{electionsModule, true, fiber.MethodPost, "/elections/:id/open", t.electionTransition(elections.Open)},
		{electionsModule, true, fiber.MethodPost, "/elections/:id/close", t.electionTransition(elections.Close)},
		{electionsModule, true, fiber.MethodPost, "/elections/:id/publish", t.electionTransition(elections.Publish)},
		{electionsModule, false, fiber.MethodPost, "/elections/:id/ballots", t.castBallot},
		{electionsModule, false, fiber.MethodGet, "/elections/:id/results", t.electionResults},
		{electionsModule, true, fiber.MethodGet, "/elections/:id/activities", t.electionActivities},
	}
	// Routes are registered one by one (no group middleware), so the tenant
	// chain never runs for the platform routes that share /api/v1.
	for _, r := range routes {
		chain := []fiber.Handler{r.handler}
		if r.admin {
			chain = append([]fiber.Handler{adminOnly}, chain...)
		}
		if r.module != "" {
			chain = append([]fiber.Handler{t.needs(r.module)}, chain...)
		}
		app.Add(r.method, "/:tenant/api/v1"+r.path, append([]fiber.Handler{auth.Required(), t.fromPath}, chain...)...)
		if t.header {
			app.Add(r.method, "/api/v1"+r.path, append([]fiber.Handler{auth.Required(), t.fromHeader}, chain...)...)
		}
	}
}

// localBase keeps the request's context as it was before the tenant was
// resolved: needs resolves again from it, not from the tenant it carries.
const localBase = "tenant_base_ctx"

// needs serves a module's route only to a tenant that installed the module:
// the installed modules travel with the resolved tenant (the router's cache,
// dropped by the same notice as placements), so the refusal — 404
// module_not_installed — costs no round trip and comes before any query of
// the tenant's schema. A request that passed just before an uninstall and
// found the module's tables gone is answered the same once the catalog
// confirms it (the router re-read the tenant when the tables were missing).
func (t *tenantAPI) needs(module string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ten, _ := pgroute.TenantFromContext(c.UserContext())
		if !ten.HasModule(module) {
			return notInstalled(module)
		}
		err := c.Next()
		if err == nil || !errors.Is(err, pgroute.ErrTenantNotProvisioned) {
			return err
		}
		base, ok := c.Locals(localBase).(context.Context)
		if !ok {
			return err
		}
		if _, now, rerr := t.a.Router.Resolve(base, ten.Slug); rerr == nil && !now.HasModule(module) {
			return notInstalled(module)
		}
		return err
	}
}

func notInstalled(module string) error {
	return detailed(modules.ErrNotInstalled, "the tenant has not installed the module %s", module)
}

// isAdmin reports whether the request acts as the tenant's admin: a
// platform token.
func isAdmin(c *fiber.Ctx) bool {
	p, _ := PrincipalOf(c)
	return p.IsPlatform()
}

// adminOnly refuses a route of the tenant's admins to anyone else (403).
func adminOnly(c *fiber.Ctx) error {
	if !isAdmin(c) {
		return forbidden("this route is for the tenant's admins: it needs a platform token")
	}
	return c.Next()
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
	c.Locals(localBase, c.UserContext())
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

// uuidParam parses a canonical UUID from the path.
func uuidParam(c *fiber.Ctx, name string) (uuid.UUID, error) {
	return parseUUID(name, c.Params(name))
}

// parseUUID accepts a UUID in its canonical form only: 36 characters, lower
// case hexadecimal digits and four dashes, exactly as the API writes ids.
// Anything else (upper case, braces, no dashes, a urn: prefix) is 400
// invalid_id, so that one id has one spelling in URLs, logs and cursors.
func parseUUID(name, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 || id.String() != s {
		p := problem(fiber.StatusBadRequest, "bad request",
			name+" must be a UUID in its canonical form (lower case, with dashes), e.g. 0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f")
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
	maxPage     = 100 // membership.MaxLimit, cards.MaxLimit, elections.MaxLimit
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
