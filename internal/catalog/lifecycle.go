package catalog

import (
	"context"
	"fmt"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// transition moves a tenant from one of the from statuses to to, bumping
// version and updated_at, in one statement. A tenant already in to is
// returned unchanged (idempotent); any other status is a *tenant.StatusError.
func (c *Catalog) transition(ctx context.Context, slug tenant.Slug, op string, to tenant.Status, from ...tenant.Status) (tenant.Tenant, error) {
	fromS := make([]string, len(from))
	for i, f := range from {
		fromS[i] = string(f)
	}
	t, err := scanRow(c.pool.QueryRow(ctx, `
		WITH upd AS (
			UPDATE landlord.tenants t
			   SET status = $2, version = t.version + 1, updated_at = now(),
			       deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE NULL END
			 WHERE t.slug = $1 AND t.status = ANY($3::text[])
			RETURNING t.*)
		SELECT `+columns+`, `+notifyColumn+` FROM upd t`, slug.String(), string(to), fromS), new(string))
	if err == nil {
		c.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("status", string(to)).Msg("tenant " + op)
		c.Notify(slug)
		return t, nil
	}
	if !isNoRows(err) {
		return tenant.Tenant{}, fmt.Errorf("%s tenant %s: %w", op, slug, err)
	}
	cur, err := c.Get(ctx, slug)
	if err != nil {
		return tenant.Tenant{}, err
	}
	if cur.Status == to {
		return cur, nil
	}
	return tenant.Tenant{}, &tenant.StatusError{Slug: slug, Status: cur.Status, Op: op}
}

// Suspend stops an active tenant from being served (its endpoints answer 403).
func (c *Catalog) Suspend(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error) {
	return c.transition(ctx, slug, "suspend", tenant.StatusSuspended, tenant.StatusActive)
}

// Resume serves a suspended tenant again.
func (c *Catalog) Resume(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error) {
	return c.transition(ctx, slug, "resume", tenant.StatusActive, tenant.StatusSuspended)
}

// Delete soft-deletes a tenant: status deleted, data kept until purged. A
// tenant whose provisioning failed may be deleted too.
func (c *Catalog) Delete(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error) {
	return c.transition(ctx, slug, "delete", tenant.StatusDeleted,
		tenant.StatusActive, tenant.StatusSuspended, tenant.StatusProvisioning)
}

// Rename changes a tenant's display name.
func (c *Catalog) Rename(ctx context.Context, slug tenant.Slug, name string) (tenant.Tenant, error) {
	return c.Update(ctx, slug, Patch{Name: &name})
}

// Patch is a partial update of a tenant (PATCH /api/v1/platform/tenants/{slug}).
type Patch struct {
	Name   *string
	Status *tenant.Status // active (resume) or suspended (suspend)
}

// Update applies a Patch in one statement: all of it or, when the status
// does not allow it, nothing.
func (c *Catalog) Update(ctx context.Context, slug tenant.Slug, p Patch) (tenant.Tenant, error) {
	if p.Name == nil && p.Status == nil {
		return tenant.Tenant{}, fmt.Errorf("%w: nothing to change (name, status)", tenant.ErrInvalid)
	}
	var name, status *string
	allowed := []string{string(tenant.StatusProvisioning), string(tenant.StatusActive),
		string(tenant.StatusSuspended), string(tenant.StatusMoving)}
	op := "rename"
	if p.Name != nil {
		if err := tenant.ValidateName(*p.Name); err != nil {
			return tenant.Tenant{}, err
		}
		name = p.Name
	}
	if p.Status != nil {
		switch *p.Status {
		case tenant.StatusActive:
			op, allowed = "resume", []string{string(tenant.StatusSuspended), string(tenant.StatusActive)}
		case tenant.StatusSuspended:
			op, allowed = "suspend", []string{string(tenant.StatusActive), string(tenant.StatusSuspended)}
		default:
			return tenant.Tenant{}, fmt.Errorf("%w: status can be changed to active or suspended only (got %q)", tenant.ErrInvalid, *p.Status)
		}
		st := string(*p.Status)
		status = &st
	}
	var old string
	var notified *string
	t, err := scanRowAfter(c.pool.QueryRow(ctx, `
		WITH cur AS (SELECT id, status FROM landlord.tenants WHERE slug = $1 FOR UPDATE),
		upd AS (
			UPDATE landlord.tenants t
			   SET name = coalesce($2, t.name),
			       status = coalesce($3, t.status),
			       version = t.version + CASE WHEN coalesce($3, t.status) <> t.status THEN 1 ELSE 0 END,
			       updated_at = now()
			  FROM cur
			 WHERE t.id = cur.id AND cur.status = ANY($4::text[])
			RETURNING cur.status AS old_status, t.*)
		SELECT t.old_status, `+columns+`,
		       CASE WHEN t.old_status <> t.status THEN `+notifyColumn+` END
		  FROM upd t`, slug.String(), name, status, allowed), []any{&old}, &notified)
	if isNoRows(err) {
		cur, gerr := c.Get(ctx, slug)
		if gerr != nil {
			return tenant.Tenant{}, gerr
		}
		return tenant.Tenant{}, &tenant.StatusError{Slug: slug, Status: cur.Status, Op: op}
	}
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("update tenant %s: %w", slug, err)
	}
	if old != string(t.Status) {
		c.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("status", string(t.Status)).Msg("tenant " + op)
		c.Notify(slug)
	}
	return t, nil
}

// scanRowAfter scans the columns preceded by before and followed by extra.
func scanRowAfter(row interface{ Scan(...any) error }, before []any, extra ...any) (tenant.Tenant, error) {
	var s scanner
	if err := row.Scan(append(append(before, s.dest()...), extra...)...); err != nil {
		return tenant.Tenant{}, err
	}
	return s.tenant()
}
