package httpapi

import (
	"context"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// HeaderProvisionPath tells how a tenant's schema was built: cold or warm.
const HeaderProvisionPath = "X-Provision-Path"

type handlers struct {
	a   *app.App
	log zerolog.Logger
}

func (h *handlers) platformRoutes(r fiber.Router) {
	r.Post("/tenants", h.createTenant)
	r.Post("/tenants/import", h.importTenant)
	r.Get("/tenants", h.listTenants)
	r.Get("/tenants/:slug", h.getTenant)
	r.Patch("/tenants/:slug", h.patchTenant)
	r.Delete("/tenants/:slug", h.deleteTenant)
	r.Get("/tenants/:slug/export", h.exportTenant)
	r.Get("/tenants/:slug/modules", h.listInstalled)
	r.Post("/tenants/:slug/modules", h.installModule)
	r.Delete("/tenants/:slug/modules/:name", h.uninstallModule)
	r.Get("/tenants/:slug/limits", h.getLimits)
	r.Put("/tenants/:slug/limits", h.putLimits)

	r.Get("/modules", h.listModules)
	r.Post("/modules", h.createModule)
	r.Get("/modules/:name", h.getModule)

	r.Post("/tokens", h.createToken)
	r.Get("/tokens", h.listTokens)
	r.Delete("/tokens/:id", h.revokeToken)

	r.Get("/audit", h.listAudit)
}

// slugParam validates the :slug path parameter (ParseSlug copies it: Fiber reuses its buffers).
func slugParam(c *fiber.Ctx) (tenant.Slug, error) {
	return tenant.ParseSlug(c.Params("slug"))
}

// items wraps a list as {"items": [...]}.
type items[T any] struct {
	Items []T `json:"items"`
}

type tenantPage struct {
	Items []tenantView `json:"items"`
	// Next is the "after" of the next page; null on the last page.
	Next *string `json:"next"`
}

// tenantCreate is the body of POST /api/v1/platform/tenants.
type tenantCreate struct {
	Slug string `json:"slug"`
	Name string `json:"name"`
}

func (b tenantCreate) request() (provision.Request, error) {
	slug, err := tenant.ParseSlug(b.Slug)
	if err != nil {
		return provision.Request{}, err
	}
	return provision.Request{Slug: slug, Name: b.Name}, nil
}

func (h *handlers) createTenant(c *fiber.Ctx) error {
	var body tenantCreate
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	req, err := body.request()
	if err != nil {
		return err
	}
	res, err := h.a.Provisioner.Provision(c.UserContext(), req)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderLocation, "/api/v1/platform/tenants/"+req.Slug.String())
	c.Set(HeaderProvisionPath, string(res.Path))
	return c.Status(fiber.StatusCreated).JSON(res.Tenant)
}

func (h *handlers) listTenants(c *fiber.Ctx) error {
	limit, err := QueryInt(c, "limit", catalog.DefaultPage, 1, catalog.MaxPage)
	if err != nil {
		return err
	}
	o := catalog.ListOptions{Limit: limit}
	if a := c.Query("after"); a != "" {
		if o.After, err = tenant.ParseSlug(a); err != nil {
			return BadRequest("query parameter after must be a tenant slug (the next of the previous page)")
		}
	}
	if st := c.Query("status"); st != "" {
		if o.Status, err = tenant.ParseStatus(st); err != nil {
			return err
		}
	}
	page, err := h.a.Catalog.List(c.UserContext(), o)
	if err != nil {
		return err
	}
	out := tenantPage{Items: h.withUsage(c, page.Tenants)}
	if !page.Next.IsZero() {
		n := page.Next.String()
		out.Next = &n
	}
	return c.JSON(out)
}

// tenantView is a tenant with its size, so that a DBA can pick the tenants
// to move; size and rows are absent when its database could not be reached.
type tenantView struct {
	tenant.Tenant
	*clusters.Usage
}

func (h *handlers) withUsage(c *fiber.Ctx, ts []tenant.Tenant) []tenantView {
	usage, err := h.a.Clusters.Usages(c.UserContext(), ts)
	if err != nil {
		h.log.Warn().Err(err).Str("request_id", RequestID(c)).Msg("tenant sizes unknown")
	}
	out := make([]tenantView, len(ts))
	for i, t := range ts {
		out[i] = tenantView{Tenant: t}
		if u, ok := usage[t.Slug.String()]; ok {
			out[i].Usage = &u
		}
	}
	return out
}

func (h *handlers) getTenant(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	t, err := h.a.Catalog.Get(c.UserContext(), slug)
	if err != nil {
		return err
	}
	return c.JSON(h.withUsage(c, []tenant.Tenant{t})[0])
}

// HeaderMoveWritePause and HeaderMoveRows report a move done by PATCH.
const (
	HeaderMoveWritePause = "X-Move-Write-Pause-Ms"
	HeaderMoveRows       = "X-Move-Rows"
)

// tenantPatch is the body of PATCH /api/v1/platform/tenants/{slug}: a
// rename and/or status change, or a move (placement and/or cluster alone).
type tenantPatch struct {
	Name      *string `json:"name"`
	Status    *string `json:"status"`
	Placement *string `json:"placement"`
	Cluster   *string `json:"cluster"`
	Mode      *string `json:"mode"`
}

// isMove reports whether the patch is a move; it refuses a move mixed with other changes.
func (b tenantPatch) isMove() (bool, error) {
	if b.Placement == nil && b.Cluster == nil && b.Mode == nil {
		return false, nil
	}
	if b.Name != nil || b.Status != nil {
		return false, BadRequest("a placement change is a move: send placement (and cluster, mode) alone")
	}
	return true, nil
}

// patch is the catalog change of a patch that is not a move.
func (b tenantPatch) patch() (catalog.Patch, error) {
	p := catalog.Patch{Name: b.Name}
	if b.Status != nil {
		st, err := tenant.ParseStatus(*b.Status)
		if err != nil {
			return catalog.Patch{}, err
		}
		p.Status = &st
	}
	return p, nil
}

// move is the move request of a patch that is one, for a tenant now on
// placement kind cur.
func (b tenantPatch) move(slug tenant.Slug, cur tenant.PlacementKind) (move.Request, error) {
	req := move.Request{Slug: slug, To: cur}
	if b.Placement != nil {
		req.To = tenant.PlacementKind(*b.Placement)
		if req.To != tenant.PlacementSchema && req.To != tenant.PlacementDatabase {
			return move.Request{}, BadRequest("placement must be schema or database")
		}
	}
	if b.Cluster != nil {
		if *b.Cluster == "" {
			return move.Request{}, BadRequest("cluster must name a configured cluster")
		}
		req.Cluster = *b.Cluster
	}
	if b.Mode != nil {
		m, err := move.ParseMode(*b.Mode)
		if err != nil || *b.Mode == "" {
			return move.Request{}, BadRequest("mode must be logical or lock")
		}
		req.Mode = m
	}
	return req, nil
}

func (h *handlers) patchTenant(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	var body tenantPatch
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	if mv, err := body.isMove(); err != nil || mv {
		if err != nil {
			return err
		}
		return h.moveTenant(c, slug, body)
	}
	p, err := body.patch()
	if err != nil {
		return err
	}
	t, err := h.a.Catalog.Update(c.UserContext(), slug, p)
	if err != nil {
		return err
	}
	return c.JSON(t)
}

// moveTenant moves a tenant online (PATCH with placement and/or cluster) and
// answers with the tenant on its new placement once the move is done.
func (h *handlers) moveTenant(c *fiber.Ctx, slug tenant.Slug, body tenantPatch) error {
	ctx := c.UserContext()
	cur, err := h.a.Catalog.Get(ctx, slug)
	if err != nil {
		return err
	}
	req, err := body.move(slug, cur.Kind)
	if err != nil {
		return err
	}
	// The move runs to its end even if the client goes away: it holds locks
	// and is safe to finish, not to abandon halfway (a rerun would finish it).
	res, err := h.a.Mover.Move(context.WithoutCancel(ctx), req)
	if err != nil {
		return err
	}
	c.Set(HeaderMoveWritePause, strconv.FormatInt(res.WritePause.Milliseconds(), 10))
	c.Set(HeaderMoveRows, strconv.FormatInt(res.Rows, 10))
	return c.JSON(h.withUsage(c, []tenant.Tenant{res.Tenant})[0])
}

func (h *handlers) deleteTenant(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	purge, err := QueryBool(c, "purge")
	if err != nil {
		return err
	}
	if purge {
		if err := h.a.Provisioner.Purge(c.UserContext(), slug); err != nil {
			return err
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
	t, err := h.a.Catalog.Delete(c.UserContext(), slug)
	if err != nil {
		return err
	}
	return c.JSON(t)
}

func (h *handlers) listInstalled(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	in, err := h.a.Modules.Installed(c.UserContext(), slug)
	if err != nil {
		return err
	}
	if in == nil {
		in = []modules.Install{}
	}
	return c.JSON(items[modules.Install]{Items: in})
}

// moduleInstall is the body of POST /api/v1/platform/tenants/{slug}/modules.
type moduleInstall struct {
	Module string `json:"module"`
}

func (b moduleInstall) validate() error { return modules.ValidName(b.Module) }

func (h *handlers) installModule(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	var body moduleInstall
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	if err := body.validate(); err != nil {
		return err
	}
	in, err := h.a.Modules.Install(c.UserContext(), slug, body.Module)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderLocation, "/api/v1/platform/tenants/"+slug.String()+"/modules/"+in.Module)
	return c.Status(fiber.StatusCreated).JSON(in)
}

func (h *handlers) uninstallModule(c *fiber.Ctx) error {
	slug, err := slugParam(c)
	if err != nil {
		return err
	}
	name := c.Params("name")
	if err := modules.ValidName(name); err != nil {
		return err
	}
	purge, err := QueryBool(c, "purge")
	if err != nil {
		return err
	}
	force, err := QueryBool(c, "force") // the former name of purge
	if err != nil {
		return err
	}
	if err := h.a.Modules.Uninstall(c.UserContext(), slug, name, purge || force); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *handlers) listModules(c *fiber.Ctx) error {
	ms, err := h.a.Modules.List(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(items[modules.Module]{Items: ms})
}

// moduleCreate is the body of POST /api/v1/platform/modules.
type moduleCreate struct {
	Name        string   `json:"name"`
	DisplayName string   `json:"display_name"`
	Version     string   `json:"version"`
	Description string   `json:"description"`
	SchemaFiles []string `json:"schema_files"`
}

func (b moduleCreate) module() modules.Module {
	return modules.Module{Name: b.Name, DisplayName: b.DisplayName, Version: b.Version,
		Description: b.Description, SchemaFiles: b.SchemaFiles}
}

func (h *handlers) createModule(c *fiber.Ctx) error {
	var body moduleCreate
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	m, err := h.a.Modules.Create(c.UserContext(), body.module())
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderLocation, "/api/v1/platform/modules/"+m.Name)
	return c.Status(fiber.StatusCreated).JSON(m)
}

func (h *handlers) getModule(c *fiber.Ctx) error {
	m, err := h.a.Modules.Get(c.UserContext(), c.Params("name"))
	if err != nil {
		return err
	}
	return c.JSON(m)
}

// createdToken is a token with its secret, answered once at creation.
type createdToken struct {
	access.Token
	// Secret is the bearer token; it is never shown again.
	Secret string `json:"token"`
}

// tokenCreate is the body of POST /api/v1/platform/tokens.
type tokenCreate struct {
	Name      string     `json:"name"`
	Kind      string     `json:"kind"`
	Tenant    string     `json:"tenant"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (b tokenCreate) request() (access.CreateRequest, error) {
	r := access.CreateRequest{Name: b.Name, Kind: access.Kind(b.Kind), ExpiresAt: b.ExpiresAt}
	if b.Tenant != "" {
		slug, err := tenant.ParseSlug(b.Tenant)
		if err != nil {
			return access.CreateRequest{}, err
		}
		r.Tenant = slug
	}
	return r, nil
}

func (h *handlers) createToken(c *fiber.Ctx) error {
	var body tokenCreate
	if err := DecodeJSON(c, &body); err != nil {
		return err
	}
	r, err := body.request()
	if err != nil {
		return err
	}
	secret, tok, err := h.a.Tokens.Create(c.UserContext(), r)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(fiber.StatusCreated).JSON(createdToken{Token: tok, Secret: secret})
}

func (h *handlers) listTokens(c *fiber.Ctx) error {
	var f access.ListFilter
	if t := c.Query("tenant"); t != "" {
		slug, err := tenant.ParseSlug(t)
		if err != nil {
			return err
		}
		f.Tenant = slug
	}
	var err error
	if f.IncludeRevoked, err = QueryBool(c, "include_revoked"); err != nil {
		return err
	}
	ts, err := h.a.Tokens.List(c.UserContext(), f)
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []access.Token{}
	}
	return c.JSON(items[access.Token]{Items: ts})
}

func (h *handlers) revokeToken(c *fiber.Ctx) error {
	id, err := uuidParam(c, "id")
	if err != nil {
		return err
	}
	tok, err := h.a.Tokens.Revoke(c.UserContext(), id.String())
	if err != nil {
		return err
	}
	return c.JSON(tok)
}
