// Package cards is the DigitalCard context of a tenant: cards issued to
// members with a server-generated QR code, a state machine (issued → active →
// revoked | expired), and the append-only card_activities log written in the
// same transaction as every change. Reads and single-shot writes are one
// round trip; a state change is one transaction of two round trips.
package cards

import (
	"github.com/publicdigit/publicdigit/internal/apperr"

	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Errors of this context; the HTTP layer maps them to statuses.
var (
	ErrNotFound          = apperr.New("card_not_found", "card not found")
	ErrMemberNotFound    = apperr.New("member_not_found", "member not found")
	ErrMemberNotActive   = apperr.New("member_not_active", "member is not active")
	ErrIllegalTransition = apperr.New("illegal_transition", "illegal card transition")
	ErrInvalidData       = apperr.New("invalid_card", "invalid card data")
)

// Card statuses.
const (
	StatusIssued  = "issued"
	StatusActive  = "active"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Statuses lists them all.
var Statuses = []string{StatusIssued, StatusActive, StatusRevoked, StatusExpired}

// Action is a requested state change.
type Action string

// The actions of the state machine.
const (
	Activate Action = "activate"
	Revoke   Action = "revoke"
	Expire   Action = "expire"
)

// TransitionError says why an action is not allowed.
type TransitionError struct {
	From   string
	Action Action
	Reason string
}

func (e *TransitionError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("cannot %s a card that is %s: %s", e.Action, e.From, e.Reason)
	}
	return fmt.Sprintf("cannot %s a card that is %s", e.Action, e.From)
}

// Unwrap makes every TransitionError an ErrIllegalTransition.
func (e *TransitionError) Unwrap() error { return ErrIllegalTransition }

// Next is the state machine: the status that action leads to from a card in
// status from, expiring at expires, at time now.
func Next(from string, action Action, expires, now time.Time) (string, error) {
	switch action {
	case Activate:
		if from != StatusIssued {
			return "", &TransitionError{From: from, Action: action}
		}
		if !expires.After(now) {
			return "", &TransitionError{From: from, Action: action, Reason: "its validity has ended"}
		}
		return StatusActive, nil
	case Revoke:
		if from != StatusIssued && from != StatusActive {
			return "", &TransitionError{From: from, Action: action}
		}
		return StatusRevoked, nil
	case Expire:
		if from != StatusIssued && from != StatusActive {
			return "", &TransitionError{From: from, Action: action}
		}
		return StatusExpired, nil
	}
	return "", fmt.Errorf("%w: unknown action %q", ErrInvalidData, action)
}

// activityOf names the log entry of each action.
var activityOf = map[Action]string{Activate: "activated", Revoke: "revoked", Expire: "expired"}

// Card is one digital card.
type Card struct {
	ID          uuid.UUID  `json:"id"`
	TenantID    uuid.UUID  `json:"tenant_id"`
	MemberID    uuid.UUID  `json:"member_id"`
	QRCode      string     `json:"qr_code"`
	Status      string     `json:"status"`
	IssuedAt    time.Time  `json:"issued_at"`
	ActivatedAt *time.Time `json:"activated_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Activity is one entry of a card's log.
type Activity struct {
	ID        uuid.UUID       `json:"id"`
	CardID    uuid.UUID       `json:"card_id"`
	Action    string          `json:"action"`
	Actor     *string         `json:"actor"`
	Detail    json.RawMessage `json:"detail"`
	CreatedAt time.Time       `json:"created_at"`
}

const columns = `id, tenant_id, member_id, qr_code, status, issued_at, activated_at, revoked_at, expires_at, created_at, updated_at`

// scan reads one card and enforces the golden rule: a card of another tenant
// is refused (it reads as absent).
func scan(row pgx.Row, tenantID uuid.UUID, c *Card) error {
	if err := row.Scan(&c.ID, &c.TenantID, &c.MemberID, &c.QRCode, &c.Status, &c.IssuedAt,
		&c.ActivatedAt, &c.RevokedAt, &c.ExpiresAt, &c.CreatedAt, &c.UpdatedAt); err != nil {
		return err
	}
	if c.TenantID != tenantID {
		return fmt.Errorf("%w (card of another tenant refused)", ErrNotFound)
	}
	return nil
}

// Service serves the cards of every tenant through the router.
type Service struct {
	router *pgroute.Router
	now    func() time.Time
}

// NewService returns the card service.
func NewService(r *pgroute.Router) *Service { return &Service{router: r, now: time.Now} }

// DefaultValidity is how long a card is valid when the issuer does not say.
const DefaultValidity = 365 * 24 * time.Hour

// MaxValidity caps a card's validity.
const MaxValidity = 10 * 365 * 24 * time.Hour

// Issue is the body of a card issue.
type Issue struct {
	MemberID  uuid.UUID  `json:"member_id"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// qrAlphabet is Crockford-like base32 without padding: upper case, no
// ambiguous padding, compact in a QR code's alphanumeric mode.
var qrEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewQRCode returns a fresh QR payload: "PD1-" and 160 random bits.
func NewQRCode() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "PD1-" + qrEncoding.EncodeToString(b[:]), nil
}

// Issue creates a card for an active member of the same tenant, with its
// "issued" activity, in one statement (one round trip, atomic).
func (s *Service) Issue(ctx context.Context, slug tenant.Slug, in Issue, actor string) (Card, error) {
	now := s.now()
	expires := now.Add(DefaultValidity)
	if in.ExpiresAt != nil {
		expires = *in.ExpiresAt
	}
	if in.MemberID == uuid.Nil {
		return Card{}, fmt.Errorf("%w: member_id is required", ErrInvalidData)
	}
	if !expires.After(now) || expires.After(now.Add(MaxValidity)) {
		return Card{}, fmt.Errorf("%w: expires_at must be in the future and within 10 years", ErrInvalidData)
	}
	// 160 random bits make a collision practically impossible; the unique
	// index is the guarantee, and a (never seen) collision is retried.
	for attempt := 0; ; attempt++ {
		c, err := s.issueOnce(ctx, slug, in.MemberID, expires, actor)
		var pe *pgroute.Error
		if attempt < 3 && errors.As(err, &pe) && pe.Constraint == "digital_cards_qr_code_key" {
			continue
		}
		return c, err
	}
}

func (s *Service) issueOnce(ctx context.Context, slug tenant.Slug, memberID uuid.UUID, expires time.Time, actor string) (Card, error) {
	qr, err := NewQRCode()
	if err != nil {
		return Card{}, err
	}
	cardID, err := uuid.NewV7()
	if err != nil {
		return Card{}, err
	}
	actID, err := uuid.NewV7()
	if err != nil {
		return Card{}, err
	}
	var c Card
	found := false
	err = s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		found = false
		b.Queue(`WITH m AS (
				SELECT id, status FROM members WHERE tenant_id = $1 AND id = $2
			), card AS (
				INSERT INTO digital_cards (id, tenant_id, member_id, qr_code, status, expires_at)
				SELECT $3, $1, m.id, $4, 'issued', $5 FROM m WHERE m.status = 'active'
				RETURNING `+columns+`
			), act AS (
				INSERT INTO card_activities (id, tenant_id, card_id, action, actor)
				SELECT $6, $1, card.id, 'issued', $7 FROM card
			)
			SELECT m.status, card.* FROM m LEFT JOIN card ON true`,
			tid, memberID, cardID, qr, expires, actID, actorOrNil(actor)).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					found = true
					// The card's columns are NULL when the member is not
					// active: nullable value types, read without allocating.
					var memberStatus, qrCode, status pgtype.Text
					var id, tenantID, member pgtype.UUID
					var issued, expiresAt, created, updated pgtype.Timestamptz
					var activated, revoked *time.Time
					if err := rows.Scan(&memberStatus, &id, &tenantID, &member, &qrCode, &status, &issued,
						&activated, &revoked, &expiresAt, &created, &updated); err != nil {
						return err
					}
					if !id.Valid {
						continue // member exists but is not active: no card
					}
					if uuid.UUID(tenantID.Bytes) != tid {
						return fmt.Errorf("%w (card of another tenant refused)", ErrNotFound)
					}
					c = Card{ID: id.Bytes, TenantID: tenantID.Bytes, MemberID: member.Bytes, QRCode: qrCode.String,
						Status: status.String, IssuedAt: issued.Time, ActivatedAt: activated, RevokedAt: revoked,
						ExpiresAt: expiresAt.Time, CreatedAt: created.Time, UpdatedAt: updated.Time}
				}
				return rows.Err()
			})
		return nil
	})
	switch {
	case err != nil:
		return Card{}, err
	case !found:
		return Card{}, ErrMemberNotFound
	case c.ID == uuid.Nil:
		return Card{}, ErrMemberNotActive
	}
	return c, nil
}

func actorOrNil(a string) *string {
	if a == "" {
		return nil
	}
	return &a
}

// Get returns one card.
func (s *Service) Get(ctx context.Context, slug tenant.Slug, id uuid.UUID) (Card, error) {
	var c Card
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`SELECT `+columns+` FROM digital_cards WHERE tenant_id = $1 AND id = $2`, tid, id).
			QueryRow(func(row pgx.Row) error { return scan(row, tid, &c) })
		return nil
	})
	return c, mapErr(err)
}

// ListQuery filters and pages a card listing (keyset on id).
type ListQuery struct {
	After    *uuid.UUID
	Limit    int
	MemberID *uuid.UUID
	Status   string
}

// MaxLimit caps a page.
const MaxLimit = 100

// List returns up to q.Limit cards after q.After, ordered by id, and whether more follow.
func (s *Service) List(ctx context.Context, slug tenant.Slug, q ListQuery) ([]Card, bool, error) {
	if q.Limit <= 0 || q.Limit > MaxLimit {
		return nil, false, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalidData, MaxLimit)
	}
	var status *string
	if q.Status != "" {
		if !validStatus(q.Status) {
			return nil, false, fmt.Errorf("%w: status must be one of issued, active, revoked, expired", ErrInvalidData)
		}
		status = &q.Status
	}
	var out []Card
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`SELECT `+columns+` FROM digital_cards
			WHERE tenant_id = $1 AND ($2::uuid IS NULL OR member_id = $2) AND ($3::text IS NULL OR status = $3)
			  AND ($4::uuid IS NULL OR id > $4)
			ORDER BY id LIMIT $5`, tid, q.MemberID, status, q.After, q.Limit+1).
			Query(func(rows pgx.Rows) (err error) {
				out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Card, error) {
					var c Card
					err := scan(r, tid, &c)
					return c, err
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

// Transition applies an action in one transaction: the card is read and
// locked (round trip 1), the state machine decides, and the update and its
// activity row travel with the COMMIT (round trip 2).
func (s *Service) Transition(ctx context.Context, slug tenant.Slug, id uuid.UUID, action Action, actor string) (Card, error) {
	if _, ok := activityOf[action]; !ok {
		return Card{}, fmt.Errorf("%w: unknown action %q", ErrInvalidData, action)
	}
	var c Card
	err := s.router.Tx(ctx, slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
		tid := tx.Tenant().ID
		var cur Card
		tx.Queue(`SELECT `+columns+`, now() FROM digital_cards WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, tid, id).
			QueryRow(func(row pgx.Row) error {
				var now time.Time
				if err := row.Scan(&cur.ID, &cur.TenantID, &cur.MemberID, &cur.QRCode, &cur.Status, &cur.IssuedAt,
					&cur.ActivatedAt, &cur.RevokedAt, &cur.ExpiresAt, &cur.CreatedAt, &cur.UpdatedAt, &now); err != nil {
					return err
				}
				if cur.TenantID != tid {
					return fmt.Errorf("%w (card of another tenant refused)", ErrNotFound)
				}
				cur.UpdatedAt = now // the transaction's clock, for the state machine
				return nil
			})
		if err := tx.Flush(ctx); err != nil {
			return err
		}
		next, err := Next(cur.Status, action, cur.ExpiresAt, cur.UpdatedAt)
		if err != nil {
			return err
		}
		actID, err := uuid.NewV7()
		if err != nil {
			return err
		}
		tx.Queue(`UPDATE digital_cards SET status = $3,
				activated_at = CASE WHEN $3 = 'active' THEN now() ELSE activated_at END,
				revoked_at   = CASE WHEN $3 = 'revoked' THEN now() ELSE revoked_at END,
				updated_at   = now()
			WHERE tenant_id = $1 AND id = $2 RETURNING `+columns, tid, id, next).
			QueryRow(func(row pgx.Row) error { return scan(row, tid, &c) })
		tx.Queue(`INSERT INTO card_activities (id, tenant_id, card_id, action, actor, detail)
			VALUES ($1, $2, $3, $4, $5, $6)`, actID, tid, id, activityOf[action], actorOrNil(actor),
			fmt.Sprintf(`{"from": %q, "to": %q}`, cur.Status, next))
		return nil
	})
	return c, mapErr(err)
}

// Activities returns a card's log, oldest first (up to limit entries after
// the entry with id after, if set).
func (s *Service) Activities(ctx context.Context, slug tenant.Slug, cardID uuid.UUID, after *uuid.UUID, limit int) ([]Activity, bool, error) {
	if limit <= 0 || limit > MaxLimit {
		return nil, false, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalidData, MaxLimit)
	}
	exists := false
	var out []Activity
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`SELECT EXISTS (SELECT FROM digital_cards WHERE tenant_id = $1 AND id = $2)`, tid, cardID).
			QueryRow(func(row pgx.Row) error { return row.Scan(&exists) })
		b.Queue(`SELECT id, card_id, action, actor, detail, created_at, tenant_id FROM card_activities
			WHERE tenant_id = $1 AND card_id = $2 AND ($3::uuid IS NULL OR id > $3)
			ORDER BY id LIMIT $4`, tid, cardID, after, limit+1).
			Query(func(rows pgx.Rows) (err error) {
				out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Activity, error) {
					var a Activity
					var owner uuid.UUID
					var detail []byte
					if err := r.Scan(&a.ID, &a.CardID, &a.Action, &a.Actor, &detail, &a.CreatedAt, &owner); err != nil {
						return a, err
					}
					if owner != tid {
						return a, fmt.Errorf("%w (activity of another tenant refused)", ErrNotFound)
					}
					a.Detail = json.RawMessage(detail)
					return a, nil
				})
				return err
			})
		return nil
	})
	if err != nil {
		return nil, false, mapErr(err)
	}
	if !exists {
		return nil, false, ErrNotFound
	}
	out, more := pgroute.Page(out, limit)
	return out, more, nil
}

// Validation results of a QR scan.
const (
	Valid    = "valid"
	Revoked  = "revoked"
	Expired  = "expired"
	Inactive = "inactive" // issued but not yet activated
	Unknown  = "unknown"
)

// ValidationResult answers a QR scan.
type ValidationResult struct {
	Result    string     `json:"result"`
	CardID    *uuid.UUID `json:"card_id,omitempty"`
	MemberID  *uuid.UUID `json:"member_id,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Validate answers a QR scan and logs it as a "validated" activity of the
// card, in one statement (one round trip).
func (s *Service) Validate(ctx context.Context, slug tenant.Slug, qr, actor string) (ValidationResult, error) {
	if len(qr) == 0 || len(qr) > 128 || strings.IndexByte(qr, 0) >= 0 {
		return ValidationResult{}, fmt.Errorf("%w: qr_code must be 1 to 128 characters, without NUL", ErrInvalidData)
	}
	actID, err := uuid.NewV7()
	if err != nil {
		return ValidationResult{}, err
	}
	res := ValidationResult{Result: Unknown}
	err = s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		res = ValidationResult{Result: Unknown}
		b.Queue(`WITH c AS (
				SELECT id, tenant_id, member_id, status, expires_at,
				       CASE WHEN status = 'revoked' THEN 'revoked'
				            WHEN status = 'expired' OR expires_at <= now() THEN 'expired'
				            WHEN status = 'issued' THEN 'inactive'
				            ELSE 'valid' END AS result
				  FROM digital_cards WHERE tenant_id = $1 AND qr_code = $2
			), act AS (
				INSERT INTO card_activities (id, tenant_id, card_id, action, actor, detail)
				SELECT $3, $1, c.id, 'validated', $4, jsonb_build_object('result', c.result) FROM c
			)
			SELECT id, tenant_id, member_id, expires_at, result FROM c`, tid, qr, actID, actorOrNil(actor)).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var id, owner, member uuid.UUID
					var expires time.Time
					var result string
					if err := rows.Scan(&id, &owner, &member, &expires, &result); err != nil {
						return err
					}
					if owner != tid {
						continue // never report another tenant's card
					}
					res = ValidationResult{Result: result, CardID: &id, MemberID: &member, ExpiresAt: &expires}
				}
				return rows.Err()
			})
		return nil
	})
	return res, mapErr(err)
}

func validStatus(s string) bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	}
	return err
}
