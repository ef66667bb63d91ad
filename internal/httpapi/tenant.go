package httpapi

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenancy"
)

// HeaderTenant names the tenant of a request to /api/v1/… when
// TenantOptions.Header (config http.tenant_header) is on.
const HeaderTenant = "X-Tenant"

// TenantOptions configure the tenant API.
type TenantOptions struct {
	// Router resolves tenants and runs their work; required.
	Router *pgroute.Router
	// Members and Cards are the tenant contexts; required.
	Members *membership.Service
	Cards   *cards.Service
	// Cursors signs the pagination cursors; required (NewCursors).
	Cursors *Cursors
	// Header also serves every route as /api/v1/… with the tenant named in
	// the X-Tenant header.
	Header bool
	// Log receives the causes of 5xx answers (the client sees none).
	Log zerolog.Logger
}

// TenantAPI is the tenant API as an Extension: members, digital cards and
// their activity log under /{tenant}/api/v1/…. Every route needs a token
// that may act on the tenant: a tenant token acts on its own tenant only
// (any other tenant, existing or not, is the same 404), a platform token on
// any. Each handler is one unit of work through the router. Its paths are
// part of openapi.yaml, so the document and its response checks cover them.
func TenantAPI(o TenantOptions) Extension {
	if o.Router == nil || o.Members == nil || o.Cards == nil || o.Cursors == nil {
		panic("httpapi: TenantAPI needs Router, Members, Cards and Cursors") // a wiring bug
	}
	t := &tenantAPI{o: o, log: o.Log}
	return Extension{
		Routes: t.routes,
		Errors: tenantErrors(),
	}
}

type tenantAPI struct {
	o   TenantOptions
	log zerolog.Logger

	slugs     sync.Map // raw slug → tenancy.Slug, valid ones only
	slugCount atomic.Int64
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
		app.Add(r.method, "/:tenant/api/v1"+r.path, auth.Required(), t.guard, t.fromPath, r.handler)
		if t.o.Header {
			app.Add(r.method, "/api/v1"+r.path, auth.Required(), t.guard, t.fromHeader, r.handler)
		}
	}
}

const (
	localTenant     = "tenant"
	localTenantPath = "tenant_path" // true when the tenant came from the path
)

// errNoSuchTenant answers an invalid slug, an unknown or deleted tenant, and
// a tenant the token may not act on, all alike (guard gives them one text).
var errNoSuchTenant = fmt.Errorf("%w: no such tenant", pgroute.ErrTenantNotFound)

// fromPath resolves the tenant named by the path: /{tenant}/api/v1/….
func (t *tenantAPI) fromPath(c *fiber.Ctx) error {
	return t.resolve(c, c.Params("tenant"), true)
}

// fromHeader resolves the tenant named by the X-Tenant header.
func (t *tenantAPI) fromHeader(c *fiber.Ctx) error {
	raw := c.Get(HeaderTenant)
	if raw == "" {
		return BadRequest("the X-Tenant header must name the tenant (or use /{tenant}/api/v1/…)")
	}
	return t.resolve(c, raw, false)
}

// resolve checks that the principal may act on the tenant and that the
// tenant may be served (router.Placement: cached, refuses unknown, deleted,
// suspended and provisioning tenants). A token that may not act on the
// tenant gets exactly the answer of an unknown tenant, before any lookup.
func (t *tenantAPI) resolve(c *fiber.Ctx, raw string, fromPath bool) error {
	p, ok := PrincipalOf(c)
	if !ok {
		return unauthorized("missing bearer token (Authorization: Bearer <token>)")
	}
	slug, err := t.parseSlug(raw)
	if err != nil || !p.CanActOn(slug) {
		return errNoSuchTenant
	}
	if _, err := t.o.Router.Placement(c.UserContext(), slug); err != nil {
		return err
	}
	c.Locals(localTenant, slug)
	c.Locals(localTenantPath, fromPath)
	return c.Next()
}

// maxSlugCache bounds the cache of parsed slugs.
const maxSlugCache = 10_000

// parseSlug is tenancy.ParseSlug with a bounded cache of valid slugs: the
// hot path skips the pattern match and the copy. raw may be borrowed from
// Fiber's buffers: it is only compared, and copied before it is stored (the
// slug outlives the request as a placement cache key).
func (t *tenantAPI) parseSlug(raw string) (tenancy.Slug, error) {
	if s, ok := t.slugs.Load(raw); ok {
		return s.(tenancy.Slug), nil
	}
	slug, err := tenancy.ParseSlug(strings.Clone(raw))
	if err != nil {
		return tenancy.Slug{}, err
	}
	if t.slugCount.Add(1) <= maxSlugCache {
		t.slugs.Store(slug.String(), slug)
	}
	return slug, nil
}

// tenantOf returns the resolved tenant of the request.
func tenantOf(c *fiber.Ctx) tenancy.Slug {
	s, _ := c.Locals(localTenant).(tenancy.Slug)
	return s
}

// location is the URL path of a tenant resource, in the form the request used.
func location(c *fiber.Ctx, rest string) string {
	if fromPath, _ := c.Locals(localTenantPath).(bool); fromPath {
		return "/" + tenantOf(c).String() + "/api/v1" + rest
	}
	return "/api/v1" + rest
}

// actor names who acted, for the card activity log: the token's kind and id.
func actor(c *fiber.Ctx) string {
	p, _ := PrincipalOf(c)
	return string(p.Kind) + ":" + p.TokenID
}

// routerError is a router error whose text is safe to show a client.
type routerError struct {
	sentinel    error
	status      int
	title, code string
	detail      string
	retry       bool // answer with Retry-After
}

// routerErrors are the pgroute sentinels the tenant API answers, with a
// fixed detail: their own text carries SQL and server internals. The others
// (ErrPermission, ErrSessionStatement: bugs) stay 500s, logged.
var routerErrors = []routerError{
	{pgroute.ErrTenantNotFound, fiber.StatusNotFound, "tenant not found", "tenant_not_found",
		"no such tenant", false},
	{pgroute.ErrTenantSuspended, fiber.StatusForbidden, "tenant suspended", "tenant_suspended",
		"the tenant is suspended", false},
	{pgroute.ErrTenantNotReady, fiber.StatusServiceUnavailable, "tenant not ready", "tenant_not_ready",
		"the tenant is still being provisioned; retry shortly", true},
	{pgroute.ErrTenantNotProvisioned, fiber.StatusServiceUnavailable, "tenant unavailable", "tenant_unavailable",
		"the tenant's data is not reachable right now; retry shortly", true},
	{pgroute.ErrRetryable, fiber.StatusServiceUnavailable, "try again", "retry",
		"the tenant's data is busy (it may be moving); retry shortly", true},
	{pgroute.ErrTimeout, fiber.StatusServiceUnavailable, "timeout", "timeout",
		"the request ran out of time (the tenant may be moving); retry shortly", true},
	{pgroute.ErrUnavailable, fiber.StatusServiceUnavailable, "database unavailable", "unavailable",
		"the database is not reachable right now; retry shortly", true},
	{pgroute.ErrConflict, fiber.StatusConflict, "conflict", "conflict",
		"the change conflicts with existing data", false},
	{pgroute.ErrReferenced, fiber.StatusConflict, "conflict", "referenced",
		"the change would break a reference between records", false},
	{pgroute.ErrInvalidData, fiber.StatusBadRequest, "invalid data", "invalid_data",
		"a value was refused: out of range, or holding a NUL character", false},
}

// retryAfterSeconds is the Retry-After of every 503 of the tenant API: a
// move's write pause and a provisioning both last about a second.
const retryAfterSeconds = "1"

// safeError carries a router sentinel with a text safe to show a client.
type safeError struct {
	sentinel error
	detail   string
}

func (e *safeError) Error() string { return e.detail }
func (e *safeError) Unwrap() error { return e.sentinel }

// tenantErrors maps the tenant API's errors to answers; the error handler
// checks them before the platform's. Domain errors come first: their texts
// are written for clients.
func tenantErrors() []ErrorMapping {
	m := []ErrorMapping{
		{ErrInvalidCursor, fiber.StatusBadRequest, "invalid cursor", "invalid_cursor"},
		{membership.ErrNotFound, fiber.StatusNotFound, "member not found", "member_not_found"},
		{membership.ErrHasCards, fiber.StatusConflict, "member has cards", "member_has_cards"},
		{membership.ErrEmailTaken, fiber.StatusConflict, "email already used", "email_taken"},
		{membership.ErrUnknownGeo, fiber.StatusBadRequest, "unknown geography unit", "unknown_geo_unit"},
		{membership.ErrInvalidData, fiber.StatusBadRequest, "invalid member", "invalid_member"},
		{cards.ErrNotFound, fiber.StatusNotFound, "card not found", "card_not_found"},
		{cards.ErrMemberNotFound, fiber.StatusNotFound, "member not found", "member_not_found"},
		{cards.ErrMemberNotActive, fiber.StatusConflict, "member not active", "member_not_active"},
		{cards.ErrIllegalTransition, fiber.StatusConflict, "illegal card transition", "illegal_transition"},
		{cards.ErrInvalidData, fiber.StatusBadRequest, "invalid card", "invalid_card"},
	}
	for _, r := range routerErrors {
		m = append(m, ErrorMapping{Err: r.sentinel, Status: r.status, Title: r.title, Code: r.code})
	}
	return m
}

// guard replaces the text of router errors by a fixed, safe one (logging the
// cause of 5xx answers) and adds Retry-After to the retryable ones. Their
// status is mapped by the error handler like every other error.
func (t *tenantAPI) guard(c *fiber.Ctx) error {
	err := c.Next()
	if err == nil {
		return nil
	}
	var p *Problem
	if errors.As(err, &p) {
		return err
	}
	// A refused transition says why, without the router's "tenant x:" prefix.
	var te *cards.TransitionError
	if errors.As(err, &te) {
		return te
	}
	for _, r := range routerErrors {
		if !errors.Is(err, r.sentinel) {
			continue
		}
		if r.retry {
			c.Set(fiber.HeaderRetryAfter, retryAfterSeconds)
		}
		if r.status >= fiber.StatusInternalServerError {
			t.log.Warn().Err(err).Str("request_id", RequestID(c)).Str("tenant", tenantOf(c).String()).
				Str("code", r.code).Msg("tenant request refused")
		}
		return &safeError{sentinel: r.sentinel, detail: r.detail}
	}
	return err
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
	id, err := t.o.Cursors.Open(scope, raw)
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
