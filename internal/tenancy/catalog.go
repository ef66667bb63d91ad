package tenancy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// tenantCols are the catalog columns every read returns, in scanTenant's order.
// Queries alias landlord.tenants as t.
const tenantCols = `t.id::text, t.slug, t.name, t.status, t.placement, t.cluster, t.database_name, t.schema_name,
	coalesce(t.schema_hash, ''), coalesce(t.statement_timeout_ms, 0), t.version, t.created_at, t.updated_at, t.deleted_at`

// notifyCol announces the change of the row aliased t on NotifyChannel, as a
// text column (pg_notify returns void).
const notifyCol = `pg_notify('` + NotifyChannel + `', t.slug)::text`

// NotifyColumn is notifyCol for statements written outside this package.
const NotifyColumn = notifyCol

// TenantColumns is the column list (table alias t) that ScanDest scans, for
// statements written outside this package (e.g. RETURNING of a claim).
const TenantColumns = tenantCols

// ScanDest returns the scan destinations of TenantColumns into t; call
// FinishScan after Scan.
func ScanDest(t *Tenant) []any { return tenantDest(t) }

// FinishScan completes a Tenant scanned with ScanDest.
func FinishScan(t *Tenant) error { return t.finish() }

// scanned holds the raw catalog values that finish turns into typed fields.
type scanned struct {
	slug, status, placement string
	timeoutMS               int64
}

// tenantDest returns scan destinations for tenantCols; call t.finish after Scan.
func tenantDest(t *Tenant) []any {
	t.raw = &scanned{}
	return []any{&t.ID, &t.raw.slug, &t.Name, &t.raw.status, &t.raw.placement, &t.Cluster, &t.Database,
		&t.Schema, &t.SchemaHash, &t.raw.timeoutMS, &t.Version, &t.CreatedAt, &t.UpdatedAt, &t.DeletedAt}
}

func (t *Tenant) finish() error {
	r := t.raw
	t.raw = nil
	var err error
	if t.Slug, err = ParseSlug(r.slug); err != nil {
		return fmt.Errorf("catalog row %s: %w", t.ID, err)
	}
	t.Status = Status(r.status)
	t.Kind = PlacementKind(r.placement)
	t.StatementTimeout = time.Duration(r.timeoutMS) * time.Millisecond
	return nil
}

// scanTenant scans tenantCols, then any extra columns into extra.
func scanTenant(row pgx.Row, extra ...any) (Tenant, error) {
	var t Tenant
	if err := row.Scan(append(tenantDest(&t), extra...)...); err != nil {
		return Tenant{}, err
	}
	if err := t.finish(); err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// Get returns a tenant from the catalog.
func (s *Service) Get(ctx context.Context, slug Slug) (Tenant, error) {
	if slug.IsZero() {
		return Tenant{}, fmt.Errorf("%w: empty slug", ErrInvalidSlug)
	}
	t, err := scanTenant(s.o.Landlord.QueryRow(ctx,
		`SELECT `+tenantCols+` FROM landlord.tenants t WHERE t.slug = $1`, slug.String()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %s: %w", slug, ErrTenantNotFound)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("get tenant %s: %w", slug, err)
	}
	return t, nil
}

// ListOptions page through the catalog in slug order.
type ListOptions struct {
	// After is the last slug of the previous page (zero: from the start).
	After Slug
	// Limit is the page size, 1 to MaxPage (0: DefaultPage).
	Limit int
	// Status, when set, lists tenants in that status only.
	Status Status
}

// Page sizes for List.
const (
	DefaultPage = 50
	MaxPage     = 500
)

// Page is one page of tenants; Next is the After of the next page, zero at the end.
type Page struct {
	Tenants []Tenant
	Next    Slug
}

// List returns one page of tenants ordered by slug (keyset pagination).
func (s *Service) List(ctx context.Context, o ListOptions) (Page, error) {
	if o.Limit == 0 {
		o.Limit = DefaultPage
	}
	if o.Limit < 1 || o.Limit > MaxPage {
		return Page{}, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalidTenant, MaxPage)
	}
	if o.Status != "" {
		if _, err := ParseStatus(string(o.Status)); err != nil {
			return Page{}, err
		}
	}
	rows, err := s.o.Landlord.Query(ctx, `SELECT `+tenantCols+` FROM landlord.tenants t
		WHERE t.slug > $1 AND ($2 = '' OR t.status = $2) ORDER BY t.slug LIMIT $3`,
		o.After.String(), string(o.Status), o.Limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("list tenants: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tenant, error) { return scanTenant(r) })
	if err != nil {
		return Page{}, fmt.Errorf("list tenants: %w", err)
	}
	p := Page{Tenants: ts}
	if len(ts) > o.Limit {
		p.Tenants = ts[:o.Limit]
		p.Next = p.Tenants[o.Limit-1].Slug
	}
	return p, nil
}

// transition moves a tenant from one of the from statuses to to, bumping
// version and updated_at, in one statement. A tenant already in to is
// returned unchanged (idempotent); any other status is a *StatusError.
func (s *Service) transition(ctx context.Context, slug Slug, op string, to Status, from ...Status) (Tenant, error) {
	fromS := make([]string, len(from))
	for i, f := range from {
		fromS[i] = string(f)
	}
	// The change is announced (NOTIFY) in its own transaction: servers drop
	// their cached placement when, and only if, it commits.
	t, err := scanTenant(s.o.Landlord.QueryRow(ctx, `
		WITH upd AS (
			UPDATE landlord.tenants t
			   SET status = $2, version = t.version + 1, updated_at = now(),
			       deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE NULL END
			 WHERE t.slug = $1 AND t.status = ANY($3::text[])
			RETURNING t.*)
		SELECT `+tenantCols+`, `+notifyCol+` FROM upd t`, slug.String(), string(to), fromS), new(string))
	if err == nil {
		s.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("status", string(to)).Msg("tenant " + op)
		s.Notify(slug)
		return t, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("%s tenant %s: %w", op, slug, err)
	}
	cur, err := s.Get(ctx, slug)
	if err != nil {
		return Tenant{}, err
	}
	if cur.Status == to {
		return cur, nil
	}
	return Tenant{}, &StatusError{Slug: slug, Status: cur.Status, Op: op}
}

// Suspend stops an active tenant from being served (its endpoints answer 403).
func (s *Service) Suspend(ctx context.Context, slug Slug) (Tenant, error) {
	return s.transition(ctx, slug, "suspend", StatusSuspended, StatusActive)
}

// Resume serves a suspended tenant again.
func (s *Service) Resume(ctx context.Context, slug Slug) (Tenant, error) {
	return s.transition(ctx, slug, "resume", StatusActive, StatusSuspended)
}

// Delete soft-deletes a tenant: status deleted, data kept until Purge. A
// tenant whose provisioning failed may be deleted too.
func (s *Service) Delete(ctx context.Context, slug Slug) (Tenant, error) {
	return s.transition(ctx, slug, "delete", StatusDeleted, StatusActive, StatusSuspended, StatusProvisioning)
}

// Rename changes a tenant's display name.
func (s *Service) Rename(ctx context.Context, slug Slug, name string) (Tenant, error) {
	return s.Update(ctx, slug, Patch{Name: &name})
}

// Patch is a partial update of a tenant (PATCH /api/v1/platform/tenants/{slug}).
type Patch struct {
	Name   *string
	Status *Status // active (resume) or suspended (suspend)
}

// Update applies a Patch in one statement: all of it or, when the status
// does not allow it, nothing.
func (s *Service) Update(ctx context.Context, slug Slug, p Patch) (Tenant, error) {
	if p.Name == nil && p.Status == nil {
		return Tenant{}, fmt.Errorf("%w: nothing to change (name, status)", ErrInvalidTenant)
	}
	var name, status *string
	allowed := []string{string(StatusProvisioning), string(StatusActive), string(StatusSuspended), string(StatusMoving)}
	op := "rename"
	if p.Name != nil {
		if err := ValidateName(*p.Name); err != nil {
			return Tenant{}, err
		}
		name = p.Name
	}
	if p.Status != nil {
		switch *p.Status {
		case StatusActive:
			op, allowed = "resume", []string{string(StatusSuspended), string(StatusActive)}
		case StatusSuspended:
			op, allowed = "suspend", []string{string(StatusActive), string(StatusSuspended)}
		default:
			return Tenant{}, fmt.Errorf("%w: status can be changed to active or suspended only (got %q)", ErrInvalidTenant, *p.Status)
		}
		st := string(*p.Status)
		status = &st
	}
	var old string
	var t Tenant
	var notified *string
	row := s.o.Landlord.QueryRow(ctx, `
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
		SELECT t.old_status, `+tenantCols+`,
		       CASE WHEN t.old_status <> t.status THEN `+notifyCol+` END
		  FROM upd t`, slug.String(), name, status, allowed)
	err := row.Scan(append(append([]any{&old}, tenantDest(&t)...), &notified)...)
	if errors.Is(err, pgx.ErrNoRows) {
		cur, gerr := s.Get(ctx, slug)
		if gerr != nil {
			return Tenant{}, gerr
		}
		return Tenant{}, &StatusError{Slug: slug, Status: cur.Status, Op: op}
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("update tenant %s: %w", slug, err)
	}
	if err := t.finish(); err != nil {
		return Tenant{}, err
	}
	if old != string(t.Status) {
		s.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("status", string(t.Status)).Msg("tenant " + op)
		s.Notify(slug)
	}
	return t, nil
}
