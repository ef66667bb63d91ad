// Package membership is the Membership context of a tenant: its members,
// stored in the tenant's own schema and reached only through the scoped
// router. Every method is one unit of work: one round trip.
package membership

import (
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/publicdigit/publicdigit/internal/apperr"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Errors of this context; the HTTP layer maps them to statuses.
var (
	ErrNotFound    = apperr.New("member_not_found", "member not found")
	ErrHasCards    = apperr.New("member_has_cards", "member still has digital cards")
	ErrInUse       = apperr.New("member_in_use", "member is a candidate or on a voters' roll")
	ErrEmailTaken  = apperr.New("email_taken", "email already used by another member")
	ErrUnknownGeo  = apperr.New("unknown_geo_unit", "unknown geography unit")
	ErrInvalidData = apperr.New("invalid_member", "invalid member data")
)

// ValidationError names the field that is wrong.
type ValidationError struct {
	Field   string
	Problem string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap makes every validation error an ErrInvalidData.
func (e *ValidationError) Unwrap() error { return ErrInvalidData }

// Statuses a member can have.
var Statuses = []string{"active", "inactive", "suspended"}

// Member is one member of a tenant.
type Member struct {
	ID        uuid.UUID `json:"id"`
	TenantID  uuid.UUID `json:"tenant_id"`
	FullName  string    `json:"full_name"`
	Email     *string   `json:"email"`
	Phone     *string   `json:"phone"`
	Status    string    `json:"status"`
	GeoUnitID *int64    `json:"geo_unit_id"`
	JoinedAt  time.Time `json:"joined_at"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// New is the body of a member creation.
type New struct {
	FullName  string     `json:"full_name"`
	Email     *string    `json:"email"`
	Phone     *string    `json:"phone"`
	Status    string     `json:"status"`
	GeoUnitID *int64     `json:"geo_unit_id"`
	JoinedAt  *time.Time `json:"joined_at"`
}

// Patch changes some fields; absent fields stay, null clears a nullable one.
type Patch struct {
	FullName  *string          `json:"full_name"`
	Email     Nullable[string] `json:"email"`
	Phone     Nullable[string] `json:"phone"`
	Status    *string          `json:"status"`
	GeoUnitID Nullable[int64]  `json:"geo_unit_id"`
}

// Nullable tells an absent JSON field (Set false) from null (Set, not Valid).
type Nullable[T any] struct {
	Set   bool
	Valid bool
	V     T
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *Nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set = true
	if string(b) == "null" {
		n.Valid = false
		return nil
	}
	n.Valid = true
	return json.Unmarshal(b, &n.V)
}

func (n Nullable[T]) ptr() *T {
	if !n.Valid {
		return nil
	}
	v := n.V
	return &v
}

// GeoUnits checks landlord geography ids (geography.Store implements it).
type GeoUnits interface {
	Exists(ctx context.Context, id int64) (bool, error)
}

// CachedGeo wraps a GeoUnits check with a bounded cache of the units found
// to exist, remembered for ttl: a member write or listing that names a
// known unit then costs no catalog round trip, only its tenant's one.
// Unknown units are not remembered (an import may add them at any time); a
// unit deleted from the catalog is still accepted until its entry expires,
// which a reference without a foreign key tolerates.
func CachedGeo(inner GeoUnits, ttl time.Duration, maxEntries int) GeoUnits {
	seen, err := lru.New[int64, time.Time](max(maxEntries, 1))
	if err != nil {
		panic(err) // the size is positive
	}
	return &geoCache{inner: inner, ttl: ttl, seen: seen, now: time.Now}
}

type geoCache struct {
	inner GeoUnits
	ttl   time.Duration
	now   func() time.Time
	seen  *lru.Cache[int64, time.Time] // unit id → until when it is known to exist
}

// Exists implements GeoUnits.
func (g *geoCache) Exists(ctx context.Context, id int64) (bool, error) {
	now := g.now()
	if until, ok := g.seen.Get(id); ok && now.Before(until) {
		return true, nil
	}
	exists, err := g.inner.Exists(ctx, id)
	if err != nil || !exists {
		return exists, err
	}
	g.seen.Add(id, now.Add(g.ttl))
	return true, nil
}

// Service serves members of every tenant through the router.
type Service struct {
	router *pgroute.Router
	geo    GeoUnits
}

// NewService returns the membership service; geo may be nil (no check).
func NewService(r *pgroute.Router, geo GeoUnits) *Service {
	return &Service{router: r, geo: geo}
}

const columns = `id, tenant_id, full_name, email, phone, status, geo_unit_id, joined_at, created_at, updated_at`

// scan reads one member and enforces the golden rule: a row of another
// tenant is never returned (it would be a bug elsewhere; it reads as absent).
func scan(row pgx.Row, tenantID uuid.UUID, m *Member) error {
	if err := row.Scan(&m.ID, &m.TenantID, &m.FullName, &m.Email, &m.Phone, &m.Status,
		&m.GeoUnitID, &m.JoinedAt, &m.CreatedAt, &m.UpdatedAt); err != nil {
		return err
	}
	if m.TenantID != tenantID {
		return fmt.Errorf("%w (row of another tenant refused)", ErrNotFound)
	}
	return nil
}

// Create adds a member.
func (s *Service) Create(ctx context.Context, slug tenant.Slug, in New) (Member, error) {
	in.FullName = strings.TrimSpace(in.FullName)
	if in.Status == "" {
		in.Status = "active"
	}
	if err := validate(&in.FullName, in.Email, in.Phone, &in.Status); err != nil {
		return Member{}, err
	}
	if err := s.checkGeo(ctx, in.GeoUnitID); err != nil {
		return Member{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Member{}, err
	}
	var m Member
	err = s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`INSERT INTO members (id, tenant_id, full_name, email, phone, status, geo_unit_id, joined_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now())) RETURNING `+columns,
			id, tid, in.FullName, in.Email, in.Phone, in.Status, in.GeoUnitID, in.JoinedAt).
			QueryRow(func(row pgx.Row) error { return scan(row, tid, &m) })
		return nil
	})
	return m, mapErr(err)
}

// Get returns one member.
func (s *Service) Get(ctx context.Context, slug tenant.Slug, id uuid.UUID) (Member, error) {
	var m Member
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`SELECT `+columns+` FROM members WHERE tenant_id = $1 AND id = $2`, tid, id).
			QueryRow(func(row pgx.Row) error { return scan(row, tid, &m) })
		return nil
	})
	return m, mapErr(err)
}

// ListQuery filters and pages a member listing (keyset on id).
type ListQuery struct {
	After     *uuid.UUID
	Limit     int
	Status    string
	GeoUnitID *int64
}

// MaxLimit caps a page.
const MaxLimit = 100

// List returns up to q.Limit members after q.After, ordered by id, and
// whether more follow.
func (s *Service) List(ctx context.Context, slug tenant.Slug, q ListQuery) ([]Member, bool, error) {
	if q.Limit <= 0 || q.Limit > MaxLimit {
		return nil, false, &ValidationError{"limit", fmt.Sprintf("must be between 1 and %d", MaxLimit)}
	}
	if q.Status != "" && !validStatus(q.Status) {
		return nil, false, &ValidationError{"status", "must be one of " + strings.Join(Statuses, ", ")}
	}
	if err := s.checkGeo(ctx, q.GeoUnitID); err != nil {
		return nil, false, err
	}
	var status *string
	if q.Status != "" {
		status = &q.Status
	}
	var out []Member
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`SELECT `+columns+` FROM members
			WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::bigint IS NULL OR geo_unit_id = $3)
			  AND ($4::uuid IS NULL OR id > $4)
			ORDER BY id LIMIT $5`, tid, status, q.GeoUnitID, q.After, q.Limit+1).
			Query(func(rows pgx.Rows) (err error) {
				out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Member, error) {
					var m Member
					err := scan(r, tid, &m)
					return m, err
				})
				return err
			})
		return nil
	})
	if err != nil {
		return nil, false, mapErr(err)
	}
	out, more := pgroute.Page(out, q.Limit)
	return out, more, nil
}

// Update applies a patch and returns the member as it now is.
func (s *Service) Update(ctx context.Context, slug tenant.Slug, id uuid.UUID, p Patch) (Member, error) {
	if p.FullName != nil {
		v := strings.TrimSpace(*p.FullName)
		p.FullName = &v
	}
	if err := validate(p.FullName, p.Email.ptr(), p.Phone.ptr(), p.Status); err != nil {
		return Member{}, err
	}
	if p.GeoUnitID.Valid {
		if err := s.checkGeo(ctx, p.GeoUnitID.ptr()); err != nil {
			return Member{}, err
		}
	}
	var m Member
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`UPDATE members SET
				full_name   = coalesce($3, full_name),
				email       = CASE WHEN $4 THEN $5 ELSE email END,
				phone       = CASE WHEN $6 THEN $7 ELSE phone END,
				status      = coalesce($8, status),
				geo_unit_id = CASE WHEN $9 THEN $10::bigint ELSE geo_unit_id END,
				updated_at  = now()
			WHERE tenant_id = $1 AND id = $2 RETURNING `+columns,
			tid, id, p.FullName, p.Email.Set, p.Email.ptr(), p.Phone.Set, p.Phone.ptr(), p.Status,
			p.GeoUnitID.Set, p.GeoUnitID.ptr()).
			QueryRow(func(row pgx.Row) error { return scan(row, tid, &m) })
		return nil
	})
	return m, mapErr(err)
}

// Delete removes a member without cards, who never stood or voted in an
// election.
func (s *Service) Delete(ctx context.Context, slug tenant.Slug, id uuid.UUID) error {
	var n int64
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		b.Queue(`DELETE FROM members WHERE tenant_id = $1 AND id = $2`, b.Tenant().ID, id).
			Exec(func(ct pgconn.CommandTag) error { n = ct.RowsAffected(); return nil })
		return nil
	})
	if err != nil {
		return mapErr(err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *Service) checkGeo(ctx context.Context, id *int64) error {
	if id == nil || s.geo == nil {
		return nil
	}
	ok, err := s.geo.Exists(ctx, *id)
	if err != nil {
		// Classified, so that an unreachable catalog reads as unavailable.
		return fmt.Errorf("check geography unit: %w", pgroute.Classify(err))
	}
	if !ok {
		return fmt.Errorf("%w: %d", ErrUnknownGeo, *id)
	}
	return nil
}

func validate(fullName, email, phone, status *string) error {
	if fullName != nil {
		n := utf8.RuneCountInString(*fullName)
		if n == 0 || n > 200 || !utf8.ValidString(*fullName) {
			return &ValidationError{"full_name", "must be 1 to 200 characters"}
		}
		if strings.IndexFunc(*fullName, unicode.IsControl) >= 0 {
			return &ValidationError{"full_name", "must not contain control characters"}
		}
	}
	if email != nil {
		a, err := mail.ParseAddress(*email)
		if err != nil || a.Address != *email || len(*email) > 254 {
			return &ValidationError{"email", "must be a plain e-mail address"}
		}
	}
	if phone != nil {
		if len(*phone) < 3 || len(*phone) > 32 || strings.Trim(*phone, "+0123456789 -()") != "" {
			return &ValidationError{"phone", "must be 3 to 32 characters of digits, spaces, + - ( )"}
		}
	}
	if status != nil && !validStatus(*status) {
		return &ValidationError{"status", "must be one of " + strings.Join(Statuses, ", ")}
	}
	return nil
}

func validStatus(s string) bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// mapErr turns router errors into this context's errors where they have a
// domain meaning; the rest pass through for the HTTP layer.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case errors.Is(err, pgroute.ErrReferenced):
		var e *pgroute.Error
		if errors.As(err, &e) && strings.HasPrefix(e.Constraint, "digital_cards_") {
			return ErrHasCards
		}
		return ErrInUse
	case errors.Is(err, pgroute.ErrConflict):
		var e *pgroute.Error
		if errors.As(err, &e) && e.Constraint == "members_tenant_email_key" {
			return ErrEmailTaken
		}
		return err
	}
	return err
}
