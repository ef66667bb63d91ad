// Package elections is the Elections context of a tenant (the module
// "elections"): elections with a state machine (draft → open → closed →
// published), positions with a number of seats, candidates who are members
// of the tenant, a secret ballot that counts once, results after closing,
// and the append-only election_activities log written in the same
// transaction as every change.
//
// A ballot is one statement (one round trip): eligibility (an active member
// holding an active digital card, inside the election's geography scope),
// the voting window, the choices (candidates of that position of that
// election, at most its seats) and the roll are all decided by the
// database. The roll's primary key (election, member) makes a ballot count
// once; the anonymous ballot and its choices are written by the same
// statement and share nothing with the roll (see Service.Vote).
//
// Who may do what is the caller's business (the HTTP layer: a tenant's
// admins change elections); methods that show drafts or tallies take a
// Viewer saying whether the caller is an admin.
package elections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/apperr"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Errors of this context; the HTTP layer maps their codes to statuses.
var (
	ErrNotFound          = apperr.New("election_not_found", "election not found")
	ErrPositionNotFound  = apperr.New("position_not_found", "position not found")
	ErrCandidateNotFound = apperr.New("candidate_not_found", "candidate not found")
	ErrMemberNotFound    = apperr.New("member_not_found", "member not found")
	ErrMemberNotActive   = apperr.New("member_not_active", "member is not active")
	ErrUnknownGeo        = apperr.New("unknown_geo_unit", "unknown geography unit")
	ErrInvalid           = apperr.New("invalid_election", "invalid election data")
	ErrInvalidBallot     = apperr.New("invalid_ballot", "invalid ballot")
	ErrLocked            = apperr.New("election_locked", "an election can change only while it is a draft")
	ErrIllegalTransition = apperr.New("illegal_election_transition", "illegal election transition")
	ErrNotOpen           = apperr.New("election_not_open", "the election is not open")
	ErrOutsideWindow     = apperr.New("outside_voting_window", "outside the election's voting window")
	ErrNotEligible       = apperr.New("not_eligible", "the member may not vote in this election")
	ErrAlreadyVoted      = apperr.New("already_voted", "the member has voted in this election already")
	ErrCandidateExists   = apperr.New("candidate_exists", "the member stands for this position already")
	ErrNoResults         = apperr.New("results_not_available", "results are available once the election is closed")
	ErrNotPublished      = apperr.New("results_not_published", "the results are not published yet")
)

// Election statuses.
const (
	StatusDraft     = "draft"
	StatusOpen      = "open"
	StatusClosed    = "closed"
	StatusPublished = "published"
)

// Statuses lists them in their order.
var Statuses = []string{StatusDraft, StatusOpen, StatusClosed, StatusPublished}

// Action is a requested state change.
type Action string

// The actions of the state machine.
const (
	Open    Action = "open"
	Close   Action = "close"
	Publish Action = "publish"
)

// TransitionError says why an action is not allowed.
type TransitionError struct {
	From   string
	Action Action
	Reason string
}

func (e *TransitionError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("cannot %s an election that is %s: %s", e.Action, e.From, e.Reason)
	}
	return fmt.Sprintf("cannot %s an election that is %s", e.Action, e.From)
}

// Unwrap makes every TransitionError an ErrIllegalTransition.
func (e *TransitionError) Unwrap() error { return ErrIllegalTransition }

// State is what the state machine looks at.
type State struct {
	Status   string
	ClosesAt time.Time
	Now      time.Time
	// Positions counts the election's positions; Empty those without a candidate.
	Positions, Empty int
}

// Next is the state machine: the status that action leads to from s.
// Opening needs a position, a candidate for each, and a window that has not
// ended; closing and publishing need the previous status only.
func Next(s State, action Action) (string, error) {
	fail := func(reason string) (string, error) {
		return "", &TransitionError{From: s.Status, Action: action, Reason: reason}
	}
	switch action {
	case Open:
		switch {
		case s.Status != StatusDraft:
			return fail("")
		case s.Positions == 0:
			return fail("it has no position")
		case s.Empty > 0:
			return fail(fmt.Sprintf("%d of its positions have no candidate", s.Empty))
		case !s.ClosesAt.After(s.Now):
			return fail("its voting window has ended (change closes_at first)")
		}
		return StatusOpen, nil
	case Close:
		if s.Status != StatusOpen {
			return fail("")
		}
		return StatusClosed, nil
	case Publish:
		if s.Status != StatusClosed {
			return fail("")
		}
		return StatusPublished, nil
	}
	return "", fmt.Errorf("%w: unknown action %q", ErrInvalid, action)
}

// activityOf names the log entry of each action.
var activityOf = map[Action]string{Open: "opened", Close: "closed", Publish: "published"}

// Viewer is who reads: a tenant's admin sees drafts and tallies.
type Viewer struct {
	Admin bool
}

// Election is one election.
type Election struct {
	ID          uuid.UUID `json:"id"`
	TenantID    uuid.UUID `json:"tenant_id"`
	Title       string    `json:"title"`
	Description string    `json:"description"`
	Status      string    `json:"status"`
	OpensAt     time.Time `json:"opens_at"`
	ClosesAt    time.Time `json:"closes_at"`
	// ScopeUnitID, when set, limits the voters to members whose geography
	// unit lies in its subtree.
	ScopeUnitID *int64 `json:"scope_unit_id"`
	// Ballots is the number of ballots cast, once closed.
	Ballots     *int       `json:"ballots"`
	OpenedAt    *time.Time `json:"opened_at"`
	ClosedAt    *time.Time `json:"closed_at"`
	PublishedAt *time.Time `json:"published_at"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Detail is an election with its positions and their candidates.
type Detail struct {
	Election
	Positions []Position `json:"positions"`
}

// Position is one office to fill, with a number of seats.
type Position struct {
	ID         uuid.UUID   `json:"id"`
	ElectionID uuid.UUID   `json:"election_id"`
	Title      string      `json:"title"`
	Seats      int         `json:"seats"`
	CreatedAt  time.Time   `json:"created_at"`
	Candidates []Candidate `json:"candidates"`
}

// Candidate is a member standing for a position.
type Candidate struct {
	ID         uuid.UUID `json:"id"`
	PositionID uuid.UUID `json:"position_id"`
	MemberID   uuid.UUID `json:"member_id"`
	FullName   string    `json:"full_name"`
	CreatedAt  time.Time `json:"created_at"`
}

// Activity is one entry of an election's log.
type Activity struct {
	ID         uuid.UUID       `json:"id"`
	ElectionID uuid.UUID       `json:"election_id"`
	Action     string          `json:"action"`
	Actor      *string         `json:"actor"`
	Detail     json.RawMessage `json:"detail"`
	CreatedAt  time.Time       `json:"created_at"`
}

// GeoUnits is what elections need of the landlord geography
// (geography.Store implements it).
type GeoUnits interface {
	Exists(ctx context.Context, id int64) (bool, error)
	// Subtree returns the ids of a unit and of every unit below it.
	Subtree(ctx context.Context, id int64) ([]int64, error)
}

// Service serves the elections of every tenant through the router.
type Service struct {
	router    *pgroute.Router
	geo       GeoUnits
	sealChunk int // ballots per sealing statement (SealChunk; tests use fewer)
}

// NewService returns the elections service.
func NewService(r *pgroute.Router, geo GeoUnits) *Service {
	return &Service{router: r, geo: geo, sealChunk: SealChunk}
}

// Limits of the fields.
const (
	MaxTitle       = 200
	MaxDescription = 2000
	MaxSeats       = 1000
	// MaxLimit caps a page.
	MaxLimit = 100
)

// Times must lie in [minTime, maxTime): a guard against values PostgreSQL
// or a client would choke on.
var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

func invalid(field, problem string) error {
	return fmt.Errorf("%w: %s %s", ErrInvalid, field, problem)
}

func checkText(field, s string, min, max int, newlines bool) error {
	if n := utf8.RuneCountInString(s); n < min || n > max || !utf8.ValidString(s) {
		return invalid(field, fmt.Sprintf("must be %d to %d characters", min, max))
	}
	if strings.TrimSpace(s) != s {
		return invalid(field, "must not start or end with spaces")
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(newlines && r == '\n') {
			return invalid(field, "must not contain control characters")
		}
	}
	return nil
}

func checkTime(field string, t time.Time) error {
	if t.Before(minTime) || !t.Before(maxTime) {
		return invalid(field, "must be a time between 2000 and 2200")
	}
	return nil
}

func (s *Service) checkScope(ctx context.Context, id *int64) error {
	if id == nil {
		return nil
	}
	if *id < 1 {
		return invalid("scope_unit_id", "must be a geography unit id (a positive integer)")
	}
	ok, err := s.geo.Exists(ctx, *id)
	if err != nil {
		return fmt.Errorf("check geography unit: %w", pgroute.Classify(err))
	}
	if !ok {
		return fmt.Errorf("%w: scope_unit_id %d", ErrUnknownGeo, *id)
	}
	return nil
}

// New is the body of an election's creation.
type New struct {
	Title       string    `json:"title"`
	Description string    `json:"description"`
	OpensAt     time.Time `json:"opens_at"`
	ClosesAt    time.Time `json:"closes_at"`
	ScopeUnitID *int64    `json:"scope_unit_id"`
}

func (n New) validate() error {
	if err := checkText("title", n.Title, 1, MaxTitle, false); err != nil {
		return err
	}
	if err := checkText("description", n.Description, 0, MaxDescription, true); err != nil {
		return err
	}
	if n.OpensAt.IsZero() || n.ClosesAt.IsZero() {
		return invalid("opens_at and closes_at", "are required")
	}
	if err := checkTime("opens_at", n.OpensAt); err != nil {
		return err
	}
	if err := checkTime("closes_at", n.ClosesAt); err != nil {
		return err
	}
	if !n.ClosesAt.After(n.OpensAt) {
		return invalid("closes_at", "must be after opens_at")
	}
	return nil
}

// Patch changes a draft: absent fields stay; a null scope_unit_id clears it.
type Patch struct {
	Title       *string
	Description *string
	OpensAt     *time.Time
	ClosesAt    *time.Time
	ScopeUnitID membership.Nullable[int64]
}

// fields names the fields a patch sets, for the log.
func (p Patch) fields() []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"title", p.Title != nil}, {"description", p.Description != nil}, {"opens_at", p.OpensAt != nil},
		{"closes_at", p.ClosesAt != nil}, {"scope_unit_id", p.ScopeUnitID.Set}} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

func (p Patch) validate() error {
	if len(p.fields()) == 0 {
		return invalid("the body", "must change at least one of title, description, opens_at, closes_at, scope_unit_id")
	}
	if p.Title != nil {
		if err := checkText("title", *p.Title, 1, MaxTitle, false); err != nil {
			return err
		}
	}
	if p.Description != nil {
		if err := checkText("description", *p.Description, 0, MaxDescription, true); err != nil {
			return err
		}
	}
	if p.OpensAt != nil {
		if err := checkTime("opens_at", *p.OpensAt); err != nil {
			return err
		}
	}
	if p.ClosesAt != nil {
		if err := checkTime("closes_at", *p.ClosesAt); err != nil {
			return err
		}
	}
	if p.OpensAt != nil && p.ClosesAt != nil && !p.ClosesAt.After(*p.OpensAt) {
		return invalid("closes_at", "must be after opens_at")
	}
	return nil
}

const columns = `id, tenant_id, title, description, status, opens_at, closes_at, scope_unit_id, ballots,
	opened_at, closed_at, published_at, created_at, updated_at`

func (e *Election) dest() []any {
	return []any{&e.ID, &e.TenantID, &e.Title, &e.Description, &e.Status, &e.OpensAt, &e.ClosesAt, &e.ScopeUnitID,
		&e.Ballots, &e.OpenedAt, &e.ClosedAt, &e.PublishedAt, &e.CreatedAt, &e.UpdatedAt}
}

// owned enforces the golden rule on a row read back: a row of another
// tenant reads as absent.
func owned(rowTenant, tid uuid.UUID, kind error) error {
	if rowTenant != tid {
		return fmt.Errorf("%w (row of another tenant refused)", kind)
	}
	return nil
}

func actorOrNil(a string) *string {
	if a == "" {
		return nil
	}
	return &a
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// Create adds a draft election and its "created" entry, in one statement.
func (s *Service) Create(ctx context.Context, slug tenant.Slug, in New, actor string) (Election, error) {
	in.Title = strings.TrimSpace(in.Title)
	if err := in.validate(); err != nil {
		return Election{}, err
	}
	if err := s.checkScope(ctx, in.ScopeUnitID); err != nil {
		return Election{}, err
	}
	id, actID := newID(), newID()
	var e Election
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`WITH e AS (
				INSERT INTO elections (id, tenant_id, title, description, opens_at, closes_at, scope_unit_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+columns+`
			), act AS (
				INSERT INTO election_activities (id, tenant_id, election_id, action, actor)
				SELECT $8, $2, e.id, 'created', $9 FROM e
			)
			SELECT `+columns+` FROM e`, id, tid, in.Title, in.Description, in.OpensAt, in.ClosesAt, in.ScopeUnitID,
			actID, actorOrNil(actor)).
			QueryRow(func(row pgx.Row) error { return scanElection(row, tid, &e) })
		return nil
	})
	return e, mapErr(err)
}

// queueStatus queues the read of the election's status, after the
// statements queued before it: nil when the election does not exist.
func queueStatus(b *pgroute.Batch, tid, id uuid.UUID, status **string) {
	b.Queue(`SELECT status FROM elections WHERE tenant_id = $1 AND id = $2`, tid, id).
		Query(func(rows pgx.Rows) error {
			*status = nil
			for rows.Next() {
				var st string
				if err := rows.Scan(&st); err != nil {
					return err
				}
				*status = &st
			}
			return rows.Err()
		})
}

// lockedOr is the error of a change that found the election absent or not
// a draft.
func lockedOr(status *string) error {
	if status == nil {
		return ErrNotFound
	}
	return fmt.Errorf("%w: it is %s", ErrLocked, *status)
}

// Update changes a draft election (and logs which fields), in one statement
// that locks the election, so that it cannot open meanwhile.
func (s *Service) Update(ctx context.Context, slug tenant.Slug, id uuid.UUID, p Patch, actor string) (Election, error) {
	if p.Title != nil {
		v := strings.TrimSpace(*p.Title)
		p.Title = &v
	}
	if err := p.validate(); err != nil {
		return Election{}, err
	}
	var scope *int64
	if p.ScopeUnitID.Valid {
		v := p.ScopeUnitID.V
		if err := s.checkScope(ctx, &v); err != nil {
			return Election{}, err
		}
		scope = &v
	}
	detail, err := json.Marshal(map[string]any{"fields": p.fields()})
	if err != nil {
		return Election{}, err
	}
	actID := newID()
	var e Election
	var status *string
	err = s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		e = Election{}
		b.Queue(`WITH cur AS (
				SELECT id FROM elections WHERE tenant_id = $1 AND id = $2 AND status = 'draft' FOR UPDATE
			), upd AS (
				UPDATE elections e SET
					title         = coalesce($3, e.title),
					description   = coalesce($4, e.description),
					opens_at      = coalesce($5, e.opens_at),
					closes_at     = coalesce($6, e.closes_at),
					scope_unit_id = CASE WHEN $7 THEN $8::bigint ELSE e.scope_unit_id END,
					updated_at    = now()
				  FROM cur WHERE e.id = cur.id AND e.tenant_id = $1 AND e.status = 'draft'
				RETURNING e.*
			), act AS (
				INSERT INTO election_activities (id, tenant_id, election_id, action, actor, detail)
				SELECT $9, $1, upd.id, 'updated', $10, $11 FROM upd
			)
			SELECT `+columns+` FROM upd`,
			tid, id, p.Title, p.Description, p.OpensAt, p.ClosesAt, p.ScopeUnitID.Set, scope, actID, actorOrNil(actor), string(detail)).
			Query(func(rows pgx.Rows) error { return scanOne(rows, tid, &e) })
		queueStatus(b, tid, id, &status)
		return nil
	})
	switch {
	case err != nil:
		return Election{}, mapErr(err)
	case e.ID == uuid.Nil:
		return Election{}, lockedOr(status)
	}
	return e, nil
}

// scanOne reads at most one election from rows into e.
func scanOne(rows pgx.Rows, tid uuid.UUID, e *Election) error {
	for rows.Next() {
		if err := rows.Scan(e.dest()...); err != nil {
			return err
		}
		if err := owned(e.TenantID, tid, ErrNotFound); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Get returns an election with its positions and candidates, in one round
// trip. A draft is an admin's only: to others it does not exist.
func (s *Service) Get(ctx context.Context, slug tenant.Slug, id uuid.UUID, v Viewer) (Detail, error) {
	var d Detail
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		d = Detail{Positions: []Position{}}
		b.Queue(`SELECT `+columns+` FROM elections WHERE tenant_id = $1 AND id = $2 AND ($3 OR status <> 'draft')`, tid, id, v.Admin).
			Query(func(rows pgx.Rows) error { return scanOne(rows, tid, &d.Election) })
		queuePositions(b, tid, id, &d.Positions)
		return nil
	})
	if err != nil {
		return Detail{}, mapErr(err)
	}
	if d.ID == uuid.Nil {
		return Detail{}, ErrNotFound
	}
	return d, nil
}

// queuePositions queues the reads of an election's positions and their
// candidates (with the members' names), in creation order.
func queuePositions(b *pgroute.Batch, tid, id uuid.UUID, out *[]Position) {
	b.Queue(`SELECT id, tenant_id, election_id, title, seats, created_at FROM election_positions
		WHERE tenant_id = $1 AND election_id = $2 ORDER BY id`, tid, id).
		Query(func(rows pgx.Rows) error {
			*out = []Position{}
			for rows.Next() {
				var p Position
				var owner uuid.UUID
				if err := rows.Scan(&p.ID, &owner, &p.ElectionID, &p.Title, &p.Seats, &p.CreatedAt); err != nil {
					return err
				}
				if err := owned(owner, tid, ErrNotFound); err != nil {
					return err
				}
				p.Candidates = []Candidate{}
				*out = append(*out, p)
			}
			return rows.Err()
		})
	b.Queue(`SELECT c.id, c.tenant_id, c.position_id, c.member_id, m.full_name, c.created_at
		  FROM election_candidates c JOIN members m ON m.tenant_id = c.tenant_id AND m.id = c.member_id
		 WHERE c.tenant_id = $1 AND c.election_id = $2 ORDER BY c.position_id, c.id`, tid, id).
		Query(func(rows pgx.Rows) error {
			at := map[uuid.UUID]int{}
			for i, p := range *out {
				at[p.ID] = i
			}
			for rows.Next() {
				var c Candidate
				var owner uuid.UUID
				if err := rows.Scan(&c.ID, &owner, &c.PositionID, &c.MemberID, &c.FullName, &c.CreatedAt); err != nil {
					return err
				}
				if err := owned(owner, tid, ErrNotFound); err != nil {
					return err
				}
				if i, ok := at[c.PositionID]; ok {
					(*out)[i].Candidates = append((*out)[i].Candidates, c)
				}
			}
			return rows.Err()
		})
}

// ListQuery filters and pages a listing (keyset on id).
type ListQuery struct {
	After  *uuid.UUID
	Limit  int
	Status string
}

// List returns up to q.Limit elections after q.After, ordered by id (their
// creation), and whether more follow. Drafts are listed to admins only.
func (s *Service) List(ctx context.Context, slug tenant.Slug, q ListQuery, v Viewer) ([]Election, bool, error) {
	if q.Limit <= 0 || q.Limit > MaxLimit {
		return nil, false, invalid("limit", fmt.Sprintf("must be between 1 and %d", MaxLimit))
	}
	var status *string
	if q.Status != "" {
		if !validStatus(q.Status) {
			return nil, false, invalid("status", "must be one of "+strings.Join(Statuses, ", "))
		}
		status = &q.Status
	}
	var out []Election
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`SELECT `+columns+` FROM elections
			WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3 OR status <> 'draft')
			  AND ($4::uuid IS NULL OR id > $4)
			ORDER BY id LIMIT $5`, tid, status, v.Admin, q.After, q.Limit+1).
			Query(func(rows pgx.Rows) (err error) {
				out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Election, error) {
					var e Election
					if err := r.Scan(e.dest()...); err != nil {
						return e, err
					}
					return e, owned(e.TenantID, tid, ErrNotFound)
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

// NewPosition is the body of a position's creation.
type NewPosition struct {
	Title string `json:"title"`
	Seats int    `json:"seats"`
}

// AddPosition adds a position to a draft election, logged, in one statement.
func (s *Service) AddPosition(ctx context.Context, slug tenant.Slug, electionID uuid.UUID, in NewPosition, actor string) (Position, error) {
	in.Title = strings.TrimSpace(in.Title)
	if err := checkText("title", in.Title, 1, MaxTitle, false); err != nil {
		return Position{}, err
	}
	if in.Seats < 1 || in.Seats > MaxSeats {
		return Position{}, invalid("seats", fmt.Sprintf("must be between 1 and %d", MaxSeats))
	}
	id, actID := newID(), newID()
	var p Position
	var status *string
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		p = Position{}
		b.Queue(`WITH e AS (
				SELECT id FROM elections WHERE tenant_id = $1 AND id = $2 AND status = 'draft' FOR UPDATE
			), p AS (
				INSERT INTO election_positions (id, tenant_id, election_id, title, seats)
				SELECT $3, $1, e.id, $4, $5 FROM e
				RETURNING id, tenant_id, election_id, title, seats, created_at
			), act AS (
				INSERT INTO election_activities (id, tenant_id, election_id, action, actor, detail)
				SELECT $6, $1, p.election_id, 'position_added', $7,
				       jsonb_build_object('position_id', p.id, 'title', p.title, 'seats', p.seats) FROM p
			)
			SELECT id, tenant_id, election_id, title, seats, created_at FROM p`,
			tid, electionID, id, in.Title, in.Seats, actID, actorOrNil(actor)).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var owner uuid.UUID
					if err := rows.Scan(&p.ID, &owner, &p.ElectionID, &p.Title, &p.Seats, &p.CreatedAt); err != nil {
						return err
					}
					if err := owned(owner, tid, ErrNotFound); err != nil {
						return err
					}
				}
				return rows.Err()
			})
		queueStatus(b, tid, electionID, &status)
		return nil
	})
	switch {
	case err != nil:
		return Position{}, mapErr(err)
	case p.ID == uuid.Nil:
		return Position{}, lockedOr(status)
	}
	p.Candidates = []Candidate{}
	return p, nil
}

// RemovePosition removes a position (and its candidates) from a draft
// election, logged, in one statement.
func (s *Service) RemovePosition(ctx context.Context, slug tenant.Slug, electionID, positionID uuid.UUID, actor string) error {
	actID := newID()
	var removed, exists bool
	var status *string
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`WITH e AS (
				SELECT id FROM elections WHERE tenant_id = $1 AND id = $2 AND status = 'draft' FOR UPDATE
			), p AS (
				DELETE FROM election_positions p USING e
				 WHERE p.tenant_id = $1 AND p.election_id = e.id AND p.id = $3
				RETURNING p.id, p.election_id, p.title
			), act AS (
				INSERT INTO election_activities (id, tenant_id, election_id, action, actor, detail)
				SELECT $4, $1, p.election_id, 'position_removed', $5, jsonb_build_object('position_id', p.id, 'title', p.title) FROM p
			)
			SELECT EXISTS (SELECT FROM p), EXISTS (SELECT FROM election_positions WHERE tenant_id = $1 AND election_id = $2 AND id = $3)`,
			tid, electionID, positionID, actID, actorOrNil(actor)).
			QueryRow(func(row pgx.Row) error { return row.Scan(&removed, &exists) })
		queueStatus(b, tid, electionID, &status)
		return nil
	})
	switch {
	case err != nil:
		return mapErr(err)
	case removed:
		return nil
	case status == nil:
		return ErrNotFound
	case !exists:
		return ErrPositionNotFound
	}
	return lockedOr(status)
}

// AddCandidate makes an active member of the tenant a candidate for a
// position of a draft election, logged, in one statement.
func (s *Service) AddCandidate(ctx context.Context, slug tenant.Slug, electionID, positionID, memberID uuid.UUID, actor string) (Candidate, error) {
	if memberID == uuid.Nil {
		return Candidate{}, invalid("member_id", "is required")
	}
	id, actID := newID(), newID()
	var c Candidate
	var status, memberStatus *string
	var position bool
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		c = Candidate{}
		b.Queue(`WITH e AS (
				SELECT id FROM elections WHERE tenant_id = $1 AND id = $2 AND status = 'draft' FOR UPDATE
			), p AS (
				SELECT p.id, p.election_id FROM election_positions p JOIN e ON e.id = p.election_id
				 WHERE p.tenant_id = $1 AND p.id = $3
			), m AS (
				SELECT id, full_name FROM members WHERE tenant_id = $1 AND id = $4 AND status = 'active'
			), c AS (
				INSERT INTO election_candidates (id, tenant_id, election_id, position_id, member_id)
				SELECT $5, $1, p.election_id, p.id, m.id FROM p, m
				ON CONFLICT (position_id, member_id) DO NOTHING
				RETURNING id, tenant_id, position_id, member_id, created_at
			), act AS (
				INSERT INTO election_activities (id, tenant_id, election_id, action, actor, detail)
				SELECT $6, $1, $2, 'candidate_added', $7,
				       jsonb_build_object('candidate_id', c.id, 'position_id', c.position_id, 'member_id', c.member_id) FROM c
			)
			SELECT c.id, c.tenant_id, c.position_id, c.member_id, m.full_name, c.created_at FROM c JOIN m ON m.id = c.member_id`,
			tid, electionID, positionID, memberID, id, actID, actorOrNil(actor)).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var owner uuid.UUID
					if err := rows.Scan(&c.ID, &owner, &c.PositionID, &c.MemberID, &c.FullName, &c.CreatedAt); err != nil {
						return err
					}
					if err := owned(owner, tid, ErrCandidateNotFound); err != nil {
						return err
					}
				}
				return rows.Err()
			})
		b.Queue(`SELECT (SELECT status FROM elections WHERE tenant_id = $1 AND id = $2),
		                EXISTS (SELECT FROM election_positions WHERE tenant_id = $1 AND election_id = $2 AND id = $3),
		                (SELECT status FROM members WHERE tenant_id = $1 AND id = $4)`, tid, electionID, positionID, memberID).
			QueryRow(func(row pgx.Row) error { return row.Scan(&status, &position, &memberStatus) })
		return nil
	})
	switch {
	case err != nil:
		return Candidate{}, mapErr(err)
	case c.ID != uuid.Nil:
		return c, nil
	case status == nil:
		return Candidate{}, ErrNotFound
	case !position:
		return Candidate{}, ErrPositionNotFound
	case *status != StatusDraft:
		return Candidate{}, lockedOr(status)
	case memberStatus == nil:
		return Candidate{}, ErrMemberNotFound
	case *memberStatus != "active":
		return Candidate{}, fmt.Errorf("%w: a candidate must be an active member (this one is %s)", ErrMemberNotActive, *memberStatus)
	}
	return Candidate{}, ErrCandidateExists
}

// RemoveCandidate withdraws a candidate of a draft election, logged, in one
// statement.
func (s *Service) RemoveCandidate(ctx context.Context, slug tenant.Slug, electionID, positionID, candidateID uuid.UUID, actor string) error {
	actID := newID()
	var removed, exists bool
	var status *string
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`WITH e AS (
				SELECT id FROM elections WHERE tenant_id = $1 AND id = $2 AND status = 'draft' FOR UPDATE
			), c AS (
				DELETE FROM election_candidates c USING e
				 WHERE c.tenant_id = $1 AND c.election_id = e.id AND c.position_id = $3 AND c.id = $4
				RETURNING c.id, c.position_id, c.member_id
			), act AS (
				INSERT INTO election_activities (id, tenant_id, election_id, action, actor, detail)
				SELECT $5, $1, $2, 'candidate_removed', $6,
				       jsonb_build_object('candidate_id', c.id, 'position_id', c.position_id, 'member_id', c.member_id) FROM c
			)
			SELECT EXISTS (SELECT FROM c),
			       EXISTS (SELECT FROM election_candidates WHERE tenant_id = $1 AND election_id = $2 AND position_id = $3 AND id = $4)`,
			tid, electionID, positionID, candidateID, actID, actorOrNil(actor)).
			QueryRow(func(row pgx.Row) error { return row.Scan(&removed, &exists) })
		queueStatus(b, tid, electionID, &status)
		return nil
	})
	switch {
	case err != nil:
		return mapErr(err)
	case removed:
		return nil
	case status == nil:
		return ErrNotFound
	case !exists:
		return ErrCandidateNotFound
	}
	return lockedOr(status)
}

// Transition applies an action in one transaction of two round trips: the
// election is read and locked (with what opening needs to know), the state
// machine decides, and the change travels with the COMMIT — on opening,
// with the scope's geography units; on closing, with the sealed ballots and
// the tally. The lock waits for ballots being cast (they hold a share lock
// on the election) and makes later ones wait, then find the election
// closed: the tally counts every accepted ballot and only those.
func (s *Service) Transition(ctx context.Context, slug tenant.Slug, id uuid.UUID, action Action, actor string) (Election, error) {
	if _, ok := activityOf[action]; !ok {
		return Election{}, fmt.Errorf("%w: unknown action %q", ErrInvalid, action)
	}
	var e Election
	err := s.router.Tx(ctx, slug, pgroute.TxOptions{}, func(ctx context.Context, tx *pgroute.Tx) error {
		tid := tx.Tenant().ID
		var cur Election
		var st State
		found := false
		var ballots int
		tx.Queue(`SELECT `+columns+`, now() FROM elections WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, tid, id).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					found = true
					if err := rows.Scan(append(cur.dest(), &st.Now)...); err != nil {
						return err
					}
					if err := owned(cur.TenantID, tid, ErrNotFound); err != nil {
						return err
					}
				}
				return rows.Err()
			})
		// A statement of its own, so that it reads after the lock: what the
		// changes and ballots it waited for wrote.
		tx.Queue(`SELECT
				(SELECT count(*) FROM election_positions p WHERE p.tenant_id = $1 AND p.election_id = $2),
				(SELECT count(*) FROM election_positions p WHERE p.tenant_id = $1 AND p.election_id = $2
				    AND NOT EXISTS (SELECT FROM election_candidates c WHERE c.tenant_id = $1 AND c.position_id = p.id)),
				(SELECT count(*) FROM election_ballots b WHERE b.tenant_id = $1 AND b.election_id = $2)`, tid, id).
			QueryRow(func(row pgx.Row) error { return row.Scan(&st.Positions, &st.Empty, &ballots) })
		if err := tx.Flush(ctx); err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		st.Status, st.ClosesAt = cur.Status, cur.ClosesAt
		next, err := Next(st, action)
		if err != nil {
			return err
		}
		detail := map[string]any{"from": cur.Status, "to": next}
		switch action {
		case Open:
			units, err := s.scopeUnits(ctx, cur.ScopeUnitID)
			if err != nil {
				return err
			}
			if units != nil {
				detail["scope_units"] = len(units)
				tx.Queue(`INSERT INTO election_scope_units (tenant_id, election_id, geo_unit_id)
					SELECT $1, $2, u FROM unnest($3::bigint[]) u`, tid, id, units)
			}
			tx.Queue(`UPDATE elections SET status = 'open', opened_at = now(), updated_at = now()
				WHERE tenant_id = $1 AND id = $2 RETURNING `+columns, tid, id).
				QueryRow(func(row pgx.Row) error { return scanElection(row, tid, &e) })
		case Close:
			queueClose(tx, tid, id, ballots, s.sealChunk, &e)
		case Publish:
			tx.Queue(`UPDATE elections SET status = 'published', published_at = now(), updated_at = now()
				WHERE tenant_id = $1 AND id = $2 RETURNING `+columns, tid, id).
				QueryRow(func(row pgx.Row) error { return scanElection(row, tid, &e) })
		}
		raw, err := json.Marshal(detail)
		if err != nil {
			return err
		}
		// On closing, the entry also says how many ballots were cast.
		tx.Queue(`INSERT INTO election_activities (id, tenant_id, election_id, action, actor, detail)
			SELECT $1, $2, $3, $4, $5, $6::jsonb || CASE WHEN $4 = 'closed' THEN jsonb_build_object('ballots', e.ballots) ELSE '{}' END
			  FROM elections e WHERE e.tenant_id = $2 AND e.id = $3`,
			newID(), tid, id, activityOf[action], actorOrNil(actor), string(raw))
		return nil
	})
	if err != nil {
		return Election{}, mapErr(err)
	}
	return e, nil
}

// scanElection reads one election row into e (the golden rule checked).
func scanElection(row pgx.Row, tid uuid.UUID, e *Election) error {
	if err := row.Scan(e.dest()...); err != nil {
		return err
	}
	return owned(e.TenantID, tid, ErrNotFound)
}

// scopeUnits is the subtree of the scope unit (nil without a scope).
func (s *Service) scopeUnits(ctx context.Context, scope *int64) ([]int64, error) {
	if scope == nil {
		return nil, nil
	}
	units, err := s.geo.Subtree(ctx, *scope)
	if err != nil {
		if errors.Is(err, ErrUnknownGeo) || apperr.CodeOf(err) == "unit_not_found" {
			return nil, &TransitionError{From: StatusDraft, Action: Open,
				Reason: fmt.Sprintf("its scope unit %d is no longer in the geography", *scope)}
		}
		return nil, fmt.Errorf("election scope: %w", pgroute.Classify(err))
	}
	return units, nil
}

// Activities returns an election's log, oldest first (up to limit entries
// after the entry with id after, if set).
func (s *Service) Activities(ctx context.Context, slug tenant.Slug, electionID uuid.UUID, after *uuid.UUID, limit int) ([]Activity, bool, error) {
	if limit <= 0 || limit > MaxLimit {
		return nil, false, invalid("limit", fmt.Sprintf("must be between 1 and %d", MaxLimit))
	}
	exists := false
	var out []Activity
	err := s.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		tid := b.Tenant().ID
		b.Queue(`SELECT EXISTS (SELECT FROM elections WHERE tenant_id = $1 AND id = $2)`, tid, electionID).
			QueryRow(func(row pgx.Row) error { return row.Scan(&exists) })
		b.Queue(`SELECT id, election_id, action, actor, detail, created_at, tenant_id FROM election_activities
			WHERE tenant_id = $1 AND election_id = $2 AND ($3::uuid IS NULL OR id > $3)
			ORDER BY id LIMIT $4`, tid, electionID, after, limit+1).
			Query(func(rows pgx.Rows) (err error) {
				out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Activity, error) {
					var a Activity
					var owner uuid.UUID
					var detail []byte
					if err := r.Scan(&a.ID, &a.ElectionID, &a.Action, &a.Actor, &detail, &a.CreatedAt, &owner); err != nil {
						return a, err
					}
					a.Detail = json.RawMessage(detail)
					return a, owned(owner, tid, ErrNotFound)
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
	var pe *pgroute.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case errors.As(err, &pe) && pe.Constraint == "elections_window_check":
		return invalid("closes_at", "must be after opens_at")
	}
	return err
}
