// Package audit is the platform's audit trail: one row per platform action
// in landlord.audit_events (this package is the only one with SQL on it) —
// who (the actor: an API token, or the CLI's operator), what (the action,
// the tenant, a target), when, the request id, and the outcome.
//
// A successful action is recorded in the action's own transaction (Record
// on database/sql, RecordTx on pgx), so the trail and the change commit
// together or not at all. A failed action is recorded after the fact, in a
// statement of its own (Log.Failed). Actions that are not one transaction
// (a purge of a dedicated database, a move) are recorded in the transaction
// that commits their outcome in the catalog.
//
// The application role may INSERT and SELECT the table, never UPDATE or
// DELETE it; the platform API reads it in keyset pages (Log.List) and has
// no route that changes it.
package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/apperr"
	"github.com/publicdigit/publicdigit/internal/requestid"
)

// Action names what was done: <noun>.<verb>.
type Action string

// The audited platform actions.
const (
	TenantCreate    Action = "tenant.create"
	TenantRename    Action = "tenant.rename"
	TenantSuspend   Action = "tenant.suspend"
	TenantResume    Action = "tenant.resume"
	TenantDelete    Action = "tenant.delete"
	TenantPurge     Action = "tenant.purge"
	TenantMove      Action = "tenant.move"
	TenantLimits    Action = "tenant.limits"
	ModuleInstall   Action = "module.install"
	ModuleUninstall Action = "module.uninstall"
	TokenCreate     Action = "token.create"
	TokenRevoke     Action = "token.revoke"
)

// Actor is who acts: an API token (TokenID set), or an operator of the CLI.
type Actor struct {
	// Name is what the trail shows: "token:<id>", "tenantctl:<user>".
	Name string
	// TokenID is the API token's id, when the actor is one.
	TokenID string
}

// TokenActor is the actor of a request authenticated with a token.
func TokenActor(tokenID string) Actor { return Actor{Name: "token:" + tokenID, TokenID: tokenID} }

type actorKey struct{}

// WithActor returns ctx carrying the actor: the HTTP layer sets it once the
// token is authenticated, tenantctl at start.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor in ctx, or "unknown" when there is none
// (an action run by code that set no actor: recorded all the same).
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok && a.Name != "" {
		return a
	}
	return Actor{Name: "unknown"}
}

// Event is one action to record.
type Event struct {
	Action Action
	// TenantID and Tenant (its slug) name the tenant acted on, if any.
	TenantID uuid.UUID
	Tenant   string
	// Target names what else the action is about (a module, a token id).
	Target string
	// Detail is free-form context (a move's placements, new limits).
	Detail map[string]any
}

// Entry is one recorded event, as the trail returns it.
type Entry struct {
	ID        int64          `json:"id"`
	At        time.Time      `json:"at"`
	Actor     string         `json:"actor"`
	TokenID   *string        `json:"token_id"`
	Action    Action         `json:"action"`
	TenantID  *string        `json:"tenant_id"`
	Tenant    *string        `json:"tenant"`
	Target    string         `json:"target"`
	RequestID *string        `json:"request_id"`
	Outcome   string         `json:"outcome"`
	ErrorCode *string        `json:"error_code"`
	Detail    map[string]any `json:"detail"`
}

// The outcomes.
const (
	OK    = "ok"
	Error = "error"
)

const insertSQL = `INSERT INTO landlord.audit_events
	(actor, token_id, action, tenant_id, tenant, target, request_id, outcome, error_code, detail)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

// args are insertSQL's parameters for e in ctx with the outcome of err.
func args(ctx context.Context, e Event, err error) ([]any, error) {
	a := ActorFrom(ctx)
	detail := e.Detail
	if detail == nil {
		detail = map[string]any{}
	}
	raw, jerr := json.Marshal(detail)
	if jerr != nil {
		return nil, fmt.Errorf("audit %s: detail: %w", e.Action, jerr)
	}
	outcome, code := OK, (*string)(nil)
	if err != nil {
		outcome = Error
		c := apperr.CodeOf(err)
		if c == "" {
			c = "internal"
		}
		code = &c
	}
	return []any{a.Name, nullIf(a.TokenID), string(e.Action), nullUUID(e.TenantID), nullIf(e.Tenant), e.Target,
		nullIf(requestid.From(ctx)), outcome, code, string(raw)}, nil
}

func nullIf(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullUUID(id uuid.UUID) *string {
	if id == uuid.Nil {
		return nil
	}
	s := id.String()
	return &s
}

// SQLExecer is a database/sql connection or transaction.
type SQLExecer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// PgxExecer is a pgx connection, pool or transaction.
type PgxExecer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Record records a successful action in tx: the action's own transaction
// on database/sql (usually the admin connection to the landlord database).
func Record(ctx context.Context, tx SQLExecer, e Event) error {
	a, err := args(ctx, e, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, insertSQL, a...); err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// RecordTx is Record in a pgx transaction (the landlord pool's).
func RecordTx(ctx context.Context, tx PgxExecer, e Event) error {
	a, err := args(ctx, e, nil)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, insertSQL, a...); err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// Log records failed actions and reads the trail, on the landlord pool.
// A nil *Log records nothing.
type Log struct {
	pool *pgxpool.Pool
	log  zerolog.Logger
}

// New returns the trail on the landlord pool.
func New(pool *pgxpool.Pool, log zerolog.Logger) *Log {
	return &Log{pool: pool, log: log.Hook(requestid.Hook)}
}

// Failed records that an action failed with cause, in a statement of its
// own (the action's transaction, if any, rolled back). It never fails the
// caller: a trail that cannot be written is logged as an error.
func (l *Log) Failed(ctx context.Context, e Event, cause error) {
	if cause != nil {
		l.Record(ctx, e, cause)
	}
}

// Record records an action's outcome (cause nil: ok) in a statement of its
// own, for what has no transaction to join: failures, and actions that
// changed nothing (a suspend of a suspended tenant). Like Failed, it logs
// rather than fails.
func (l *Log) Record(ctx context.Context, e Event, cause error) {
	if l == nil {
		return
	}
	ctx = context.WithoutCancel(ctx) // the failure may be the client going away
	a, err := args(ctx, e, cause)
	if err == nil {
		_, err = l.pool.Exec(ctx, insertSQL, a...)
	}
	if err != nil {
		l.log.Error().Ctx(ctx).Err(err).Str("action", string(e.Action)).Str("tenant", e.Tenant).
			AnErr("cause", cause).Msg("audit: could not record an action")
	}
}

// ListOptions select and page the trail, newest first.
type ListOptions struct {
	// Before is the Next of the previous page (0: from the newest).
	Before int64
	// Limit is the page size, 1 to MaxPage (0: DefaultPage).
	Limit int
	// Tenant, when set, lists the events of the tenants of that slug only
	// (a purged tenant's too).
	Tenant string
	// Action, when set, lists that action only.
	Action Action
}

// Page sizes of List.
const (
	DefaultPage = 50
	MaxPage     = 500
)

// ErrInvalid: a bad listing request.
var ErrInvalid = apperr.New("invalid_audit_query", "invalid audit query")

// Page is one page of the trail; Next is the Before of the next page, 0 at the end.
type Page struct {
	Entries []Entry
	Next    int64
}

// List returns one page of the trail, newest first (keyset on id).
func (l *Log) List(ctx context.Context, o ListOptions) (Page, error) {
	if o.Limit == 0 {
		o.Limit = DefaultPage
	}
	if o.Limit < 1 || o.Limit > MaxPage {
		return Page{}, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalid, MaxPage)
	}
	if o.Before < 0 {
		return Page{}, fmt.Errorf("%w: before must be the next of a previous page", ErrInvalid)
	}
	before := o.Before
	if before == 0 {
		before = 1<<63 - 1
	}
	rows, err := l.pool.Query(ctx, `
		SELECT id, at, actor, token_id::text, action, tenant_id::text, tenant, target, request_id, outcome, error_code, detail
		  FROM landlord.audit_events
		 WHERE id < $1 AND ($2 = '' OR tenant = $2) AND ($3 = '' OR action = $3)
		 ORDER BY id DESC
		 LIMIT $4`, before, o.Tenant, string(o.Action), o.Limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("audit trail: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		var action string
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.TokenID, &action, &e.TenantID, &e.Tenant, &e.Target,
			&e.RequestID, &e.Outcome, &e.ErrorCode, &e.Detail)
		e.Action = Action(action)
		return e, err
	})
	if err != nil {
		return Page{}, fmt.Errorf("audit trail: %w", err)
	}
	p := Page{Entries: entries}
	if len(entries) > o.Limit {
		p.Entries = entries[:o.Limit]
		p.Next = p.Entries[o.Limit-1].ID
	}
	if p.Entries == nil {
		p.Entries = []Entry{}
	}
	return p, nil
}

// IsAction reports whether a is one of the audited actions.
func IsAction(a Action) bool {
	switch a {
	case TenantCreate, TenantRename, TenantSuspend, TenantResume, TenantDelete, TenantPurge, TenantMove,
		TenantLimits, ModuleInstall, ModuleUninstall, TokenCreate, TokenRevoke:
		return true
	}
	return false
}
