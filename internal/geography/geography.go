// Package geography is the landlord's administrative hierarchy (country →
// province → district → ward …) in landlord.geo_administrative_units. Each
// unit's path is an ltree of ids from its root (e.g. "1.5.23"), indexed with
// GiST, so ancestors and descendants are one indexed query each. The
// application role's search_path is empty: ltree operators and functions
// are called schema-qualified (OPERATOR(public.<@), public.nlevel).
package geography

import (
	"github.com/publicdigit/publicdigit/internal/apperr"

	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Unit is one administrative unit.
type Unit struct {
	ID       int64  `json:"id"`
	ParentID *int64 `json:"parent_id"`
	Code     string `json:"code"`
	Name     string `json:"name"`
	Level    string `json:"level"`
	// Path is the ltree of ids from the root to this unit, e.g. "1.5.23".
	Path string `json:"path"`
	// Depth is the number of labels in Path (a root has depth 1).
	Depth int `json:"depth"`
}

// Detail is a unit with its ancestors (root first) and descendants (in path order).
type Detail struct {
	Unit
	Ancestors   []Unit `json:"ancestors"`
	Descendants []Unit `json:"descendants"`
	// DescendantsTruncated is true when more descendants exist than were returned.
	DescendantsTruncated bool `json:"descendants_truncated"`
}

var (
	// ErrUnitNotFound: no unit with that id.
	ErrUnitNotFound = apperr.New("unit_not_found", "geography unit not found")
	// ErrInvalidQuery is wrapped by errors about query parameters.
	ErrInvalidQuery = apperr.New("invalid_query", "invalid geography query")
)

// Querier is what the store needs from a pool: *pgxpool.Pool (the landlord
// pool for reads; a direct admin pool for Import, which reserves ids from
// the table's identity sequence).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Store reads and imports units.
type Store struct {
	db Querier
}

// New returns a Store on db.
func New(db Querier) *Store { return &Store{db: db} }

const unitCols = `u.id, u.parent_id, u.code, u.name, u.level, u.path::text, public.nlevel(u.path)`

func scanUnit(r pgx.Row) (Unit, error) {
	var u Unit
	err := r.Scan(&u.ID, &u.ParentID, &u.Code, &u.Name, &u.Level, &u.Path, &u.Depth)
	return u, err
}

func collectUnits(rows pgx.Rows) ([]Unit, error) {
	us, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Unit, error) { return scanUnit(r) })
	if us == nil {
		us = []Unit{}
	}
	return us, err
}

// Get returns one unit.
func (s *Store) Get(ctx context.Context, id int64) (Unit, error) {
	u, err := scanUnit(s.db.QueryRow(ctx, `SELECT `+unitCols+` FROM landlord.geo_administrative_units u WHERE u.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Unit{}, fmt.Errorf("unit %d: %w", id, ErrUnitNotFound)
	}
	if err != nil {
		return Unit{}, fmt.Errorf("get unit %d: %w", id, err)
	}
	return u, nil
}

// Exists reports whether a unit exists (tenant APIs validate unit ids with it).
func (s *Store) Exists(ctx context.Context, id int64) (bool, error) {
	var ok bool
	if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM landlord.geo_administrative_units WHERE id = $1)`, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("unit %d: %w", id, err)
	}
	return ok, nil
}

// MaxSubtree caps Subtree.
const MaxSubtree = 100_000

// Subtree returns the ids of a unit and of every unit below it (ltree
// descendants), in one indexed query. An unknown unit is ErrUnitNotFound; a
// subtree larger than MaxSubtree is ErrInvalidQuery.
func (s *Store) Subtree(ctx context.Context, id int64) ([]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT u.id
		   FROM landlord.geo_administrative_units u, landlord.geo_administrative_units me
		  WHERE me.id = $1 AND u.path OPERATOR(public.<@) me.path
		  ORDER BY u.id LIMIT $2`, id, MaxSubtree+1)
	if err != nil {
		return nil, fmt.Errorf("unit %d subtree: %w", id, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("unit %d subtree: %w", id, err)
	}
	switch {
	case len(ids) == 0:
		return nil, fmt.Errorf("unit %d: %w", id, ErrUnitNotFound)
	case len(ids) > MaxSubtree:
		return nil, fmt.Errorf("%w: unit %d has more than %d units below it", ErrInvalidQuery, id, MaxSubtree)
	}
	return ids, nil
}

// MaxDescendants caps Detail's descendants.
const MaxDescendants = 1000

// Detail returns a unit with its ancestors and up to maxDescendants of its
// descendants (1 to MaxDescendants), in one round trip.
func (s *Store) Detail(ctx context.Context, id int64, maxDescendants int) (Detail, error) {
	if maxDescendants < 1 || maxDescendants > MaxDescendants {
		return Detail{}, fmt.Errorf("%w: descendants limit must be between 1 and %d", ErrInvalidQuery, MaxDescendants)
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT `+unitCols+` FROM landlord.geo_administrative_units u WHERE u.id = $1`, id)
	b.Queue(`SELECT `+unitCols+`
		   FROM landlord.geo_administrative_units u, landlord.geo_administrative_units me
		  WHERE me.id = $1 AND u.path OPERATOR(public.@>) me.path AND u.id <> me.id
		  ORDER BY public.nlevel(u.path)`, id)
	b.Queue(`SELECT `+unitCols+`
		   FROM landlord.geo_administrative_units u, landlord.geo_administrative_units me
		  WHERE me.id = $1 AND u.path OPERATOR(public.<@) me.path AND u.id <> me.id
		  ORDER BY u.path
		  LIMIT $2`, id, maxDescendants+1)
	br := s.db.SendBatch(ctx, b)
	defer br.Close()
	var d Detail
	var err error
	d.Unit, err = scanUnit(br.QueryRow())
	if errors.Is(err, pgx.ErrNoRows) {
		return Detail{}, fmt.Errorf("unit %d: %w", id, ErrUnitNotFound)
	}
	if err != nil {
		return Detail{}, fmt.Errorf("unit %d: %w", id, err)
	}
	rows, err := br.Query()
	if err != nil {
		return Detail{}, fmt.Errorf("unit %d ancestors: %w", id, err)
	}
	if d.Ancestors, err = collectUnits(rows); err != nil {
		return Detail{}, fmt.Errorf("unit %d ancestors: %w", id, err)
	}
	rows, err = br.Query()
	if err != nil {
		return Detail{}, fmt.Errorf("unit %d descendants: %w", id, err)
	}
	if d.Descendants, err = collectUnits(rows); err != nil {
		return Detail{}, fmt.Errorf("unit %d descendants: %w", id, err)
	}
	if len(d.Descendants) > maxDescendants {
		d.Descendants = d.Descendants[:maxDescendants]
		d.DescendantsTruncated = true
	}
	return d, br.Close()
}

// ListOptions select a page of units under one parent.
type ListOptions struct {
	// Parent is the parent's id; nil lists the roots (unless Code is set).
	Parent *int64
	// Code, when set, selects the unit with that code (anywhere in the tree)
	// instead of a parent's children.
	Code string
	// After is the last id of the previous page (0: from the start).
	After int64
	// Limit is 1 to MaxPage (0: DefaultPage).
	Limit int
}

// Page sizes of List.
const (
	DefaultPage = 100
	MaxPage     = 1000
)

// Page is a page of units in id order; Next is the After of the next page (0 at the end).
type Page struct {
	Units []Unit
	Next  int64
}

// List returns the children of a unit (or the roots, or the unit with a
// code), in id order. An unknown parent is ErrUnitNotFound.
func (s *Store) List(ctx context.Context, o ListOptions) (Page, error) {
	if o.Limit == 0 {
		o.Limit = DefaultPage
	}
	if o.Limit < 1 || o.Limit > MaxPage {
		return Page{}, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalidQuery, MaxPage)
	}
	if o.After < 0 {
		return Page{}, fmt.Errorf("%w: after must not be negative", ErrInvalidQuery)
	}
	if o.Code != "" {
		if o.Parent != nil {
			return Page{}, fmt.Errorf("%w: use either parent or code", ErrInvalidQuery)
		}
		if !codePattern.MatchString(o.Code) {
			return Page{}, fmt.Errorf("%w: code must be 1 to 64 of A-Z, a-z, 0-9, _ . -", ErrInvalidQuery)
		}
	}
	if o.Parent != nil {
		ok, err := s.Exists(ctx, *o.Parent)
		if err != nil {
			return Page{}, err
		}
		if !ok {
			return Page{}, fmt.Errorf("parent %d: %w", *o.Parent, ErrUnitNotFound)
		}
	}
	rows, err := s.db.Query(ctx, `SELECT `+unitCols+` FROM landlord.geo_administrative_units u
		 WHERE CASE WHEN $4 <> '' THEN u.code = $4
		            WHEN $1::bigint IS NULL THEN u.parent_id IS NULL
		            ELSE u.parent_id = $1 END
		   AND u.id > $2
		 ORDER BY u.id LIMIT $3`, o.Parent, o.After, o.Limit+1, o.Code)
	if err != nil {
		return Page{}, fmt.Errorf("list units: %w", err)
	}
	us, err := collectUnits(rows)
	if err != nil {
		return Page{}, fmt.Errorf("list units: %w", err)
	}
	p := Page{Units: us}
	if len(us) > o.Limit {
		p.Units = us[:o.Limit]
		p.Next = p.Units[o.Limit-1].ID
	}
	return p, nil
}

// ParseID parses a unit id from a path or query parameter.
func ParseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("%w: unit id %q must be a positive integer", ErrInvalidQuery, s)
	}
	return id, nil
}
