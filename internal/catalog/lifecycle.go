package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// actions are the audit actions of the lifecycle operations.
var actions = map[string]audit.Action{
	"suspend": audit.TenantSuspend, "resume": audit.TenantResume, "delete": audit.TenantDelete,
	"rename": audit.TenantRename, "limits": audit.TenantLimits,
}

// inTx runs fn in a transaction on the landlord pool; the audit record of a
// change goes in the same transaction.
func (c *Catalog) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, c.pool, fn)
}

// transition moves a tenant from one of the from statuses to to, bumping
// version and updated_at, in one statement, recorded in the audit trail in
// the same transaction. A tenant already in to is returned unchanged
// (idempotent); any other status is a *tenant.StatusError.
func (c *Catalog) transition(ctx context.Context, slug tenant.Slug, op string, to tenant.Status, from ...tenant.Status) (tenant.Tenant, error) {
	fromS := make([]string, len(from))
	for i, f := range from {
		fromS[i] = string(f)
	}
	ev := audit.Event{Action: actions[op], Tenant: slug.String(), Detail: map[string]any{"status": string(to)}}
	var t tenant.Tenant
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		t, err = scanRow(tx.QueryRow(ctx, `
			WITH upd AS (
				UPDATE landlord.tenants t
				   SET status = $2, version = t.version + 1, updated_at = now(),
				       deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE NULL END
				 WHERE t.slug = $1 AND t.status = ANY($3::text[])
				RETURNING t.*)
			SELECT `+columns+`, `+notifyColumn+` FROM upd t`, slug.String(), string(to), fromS), new(string))
		if err != nil {
			return err
		}
		ev.TenantID = t.ID
		return audit.RecordTx(ctx, tx, ev)
	})
	if err == nil {
		c.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("status", string(to)).Msg("tenant " + op)
		c.Notify(slug)
		return t, nil
	}
	if !isNoRows(err) {
		err = fmt.Errorf("%s tenant %s: %w", op, slug, err)
		c.audit.Failed(ctx, ev, err)
		return tenant.Tenant{}, err
	}
	cur, err := c.Get(ctx, slug)
	if err != nil {
		c.audit.Failed(ctx, ev, err)
		return tenant.Tenant{}, err
	}
	ev.TenantID = cur.ID
	if cur.Status == to {
		ev.Detail["changed"] = false
		c.audit.Record(ctx, ev, nil)
		return cur, nil
	}
	err = &tenant.StatusError{Slug: slug, Status: cur.Status, Op: op}
	c.audit.Failed(ctx, ev, err)
	return tenant.Tenant{}, err
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
// does not allow it, nothing. It is recorded in the audit trail in the same
// transaction (as a resume or suspend when the status is given, else a
// rename).
func (c *Catalog) Update(ctx context.Context, slug tenant.Slug, p Patch) (tenant.Tenant, error) {
	op := "rename"
	if p.Status != nil && *p.Status == tenant.StatusActive {
		op = "resume"
	} else if p.Status != nil {
		op = "suspend"
	}
	ev := audit.Event{Action: actions[op], Tenant: slug.String(), Detail: map[string]any{}}
	t, err := c.update(ctx, slug, p, op, &ev)
	if err != nil {
		c.audit.Failed(ctx, ev, err)
	}
	return t, err
}

func (c *Catalog) update(ctx context.Context, slug tenant.Slug, p Patch, op string, ev *audit.Event) (tenant.Tenant, error) {
	if p.Name == nil && p.Status == nil {
		return tenant.Tenant{}, fmt.Errorf("%w: nothing to change (name, status)", tenant.ErrInvalid)
	}
	var name, status *string
	allowed := []string{string(tenant.StatusProvisioning), string(tenant.StatusActive),
		string(tenant.StatusSuspended), string(tenant.StatusMoving)}
	if p.Name != nil {
		if err := tenant.ValidateName(*p.Name); err != nil {
			return tenant.Tenant{}, err
		}
		name = p.Name
		ev.Detail["name"] = *p.Name
	}
	if p.Status != nil {
		switch *p.Status {
		case tenant.StatusActive:
			allowed = []string{string(tenant.StatusSuspended), string(tenant.StatusActive)}
		case tenant.StatusSuspended:
			allowed = []string{string(tenant.StatusActive), string(tenant.StatusSuspended)}
		default:
			return tenant.Tenant{}, fmt.Errorf("%w: status can be changed to active or suspended only (got %q)", tenant.ErrInvalid, *p.Status)
		}
		st := string(*p.Status)
		status = &st
		ev.Detail["status"] = st
	}
	var old string
	var notified *string
	var t tenant.Tenant
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		t, err = scanRowAfter(tx.QueryRow(ctx, `
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
		if err != nil {
			return err
		}
		ev.TenantID = t.ID
		ev.Detail["from_status"] = old
		return audit.RecordTx(ctx, tx, *ev)
	})
	if isNoRows(err) {
		cur, gerr := c.Get(ctx, slug)
		if gerr != nil {
			return tenant.Tenant{}, gerr
		}
		ev.TenantID = cur.ID
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

// SetLimits replaces a tenant's own limits (zero fields: the configured
// defaults) and announces the change, so that every server's router and
// limiter use them from the next request on; recorded in the audit trail in
// the same transaction. A deleted tenant's limits cannot change.
func (c *Catalog) SetLimits(ctx context.Context, slug tenant.Slug, l tenant.Limits) (tenant.Tenant, error) {
	ev := audit.Event{Action: audit.TenantLimits, Tenant: slug.String(), Detail: limitsDetail(l)}
	t, err := c.setLimits(ctx, slug, l, &ev)
	if err != nil {
		c.audit.Failed(ctx, ev, err)
		return tenant.Tenant{}, err
	}
	c.log.Info().Ctx(ctx).Str("tenant", slug.String()).Int("max_concurrent_requests", l.MaxConcurrentRequests).
		Dur("statement_timeout", l.StatementTimeout).Msg("tenant limits")
	c.Notify(slug)
	return t, nil
}

func (c *Catalog) setLimits(ctx context.Context, slug tenant.Slug, l tenant.Limits, ev *audit.Event) (tenant.Tenant, error) {
	if err := l.Validate(); err != nil {
		return tenant.Tenant{}, err
	}
	var t tenant.Tenant
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		t, err = scanRow(tx.QueryRow(ctx, `
			WITH upd AS (
				UPDATE landlord.tenants t
				   SET statement_timeout_ms = nullif($2, 0), max_concurrent_requests = nullif($3, 0), updated_at = now()
				 WHERE t.slug = $1 AND t.status <> 'deleted'
				RETURNING t.*)
			SELECT `+columns+`, `+notifyColumn+` FROM upd t`,
			slug.String(), l.StatementTimeout.Milliseconds(), l.MaxConcurrentRequests), new(string))
		if err != nil {
			return err
		}
		ev.TenantID = t.ID
		return audit.RecordTx(ctx, tx, *ev)
	})
	if isNoRows(err) {
		cur, gerr := c.Get(ctx, slug)
		if gerr != nil {
			return tenant.Tenant{}, gerr
		}
		ev.TenantID = cur.ID
		return tenant.Tenant{}, &tenant.StatusError{Slug: slug, Status: cur.Status, Op: "change limits"}
	}
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("limits of tenant %s: %w", slug, err)
	}
	return t, nil
}

// limitsDetail is how the trail shows limits (null: the default).
func limitsDetail(l tenant.Limits) map[string]any {
	d := map[string]any{"max_concurrent_requests": nil, "statement_timeout_ms": nil}
	if l.MaxConcurrentRequests != 0 {
		d["max_concurrent_requests"] = l.MaxConcurrentRequests
	}
	if l.StatementTimeout != 0 {
		d["statement_timeout_ms"] = l.StatementTimeout / time.Millisecond
	}
	return d
}

// scanRowAfter scans the columns preceded by before and followed by extra.
func scanRowAfter(row interface{ Scan(...any) error }, before []any, extra ...any) (tenant.Tenant, error) {
	var s scanner
	if err := row.Scan(append(append(before, s.dest()...), extra...)...); err != nil {
		return tenant.Tenant{}, err
	}
	return s.tenant()
}
