package pgroute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/publicdigit/publicdigit/internal/apperr"
)

// The router's error kinds. Every error the router returns wraps at most one
// of them (or a tenant kind: tenant.ErrNotFound, ErrSuspended, ErrNotReady),
// so callers branch with errors.Is and the HTTP layer maps each code to a
// status. Their texts carry SQL and server internals: the HTTP layer shows a
// fixed text instead.
var (
	// ErrTenantNotProvisioned: its schema or a table is missing (SQLSTATE 3F000, 42P01).
	ErrTenantNotProvisioned = apperr.New("tenant_unavailable", "tenant schema not provisioned")
	// ErrTimeout: the statement ran past the tenant's statement_timeout (57014).
	ErrTimeout = apperr.New("timeout", "statement timeout")
	// ErrRetryable: a serialization failure, deadlock or lock timeout (40001,
	// 40P01, 55P03); the whole unit of work may be retried.
	ErrRetryable = apperr.New("retry", "retryable conflict")
	// ErrConflict: a unique constraint was violated (23505).
	ErrConflict = apperr.New("conflict", "conflict")
	// ErrReferenced: a foreign key prevented the change (23503).
	ErrReferenced = apperr.New("referenced", "foreign key violation")
	// ErrInvalidData: a value was refused by a check, not-null or type rule (23514, 23502, 22xxx).
	ErrInvalidData = apperr.New("invalid_data", "invalid data")
	// ErrPermission: the tenant role may not touch the object (42501): a wrong
	// search_path or a bug reaching another tenant's schema.
	ErrPermission = apperr.New("permission_denied", "permission denied")
	// ErrSessionStatement: tenant code tried a session-level statement (SET,
	// PREPARE, LISTEN, …) that would leak to other clients behind PgBouncer.
	ErrSessionStatement = apperr.New("session_statement", "session-level statement refused on the pooled path")
	// ErrUnavailable: the database or its pooler could not be reached, refused
	// the connection for now, or the connection broke.
	ErrUnavailable = apperr.New("unavailable", "database unavailable")
)

// Error is a classified database error. It keeps the original error for
// logs; its message never reaches HTTP clients.
type Error struct {
	Kind       *apperr.Kind // one of the kinds above
	SQLState   string       // PostgreSQL error code, when there was one
	Constraint string       // the violated constraint, for conflicts
	Err        error        // the original error
}

func (e *Error) Error() string {
	if e.SQLState != "" {
		return fmt.Sprintf("%v (SQLSTATE %s): %v", e.Kind, e.SQLState, e.Err)
	}
	return fmt.Sprintf("%v: %v", e.Kind, e.Err)
}

// Unwrap exposes both the kind and the original error to errors.Is / As.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Classify maps a pgx/PostgreSQL error to a classified *Error. Errors that are
// already classified, context errors and unknown errors are returned as they are.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		kind := kindOf(pgErr.Code)
		if roleMissing(pgErr) {
			// The binding's SET LOCAL ROLE names a role this server no longer
			// has: the tenant's copy here was retired by a move (the router
			// then retries on the new placement), or never finished.
			kind = ErrTenantNotProvisioned
		}
		if kind == nil {
			return err
		}
		return &Error{Kind: kind, SQLState: pgErr.Code, Constraint: pgErr.ConstraintName, Err: err}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if connectionLost(err) {
		return &Error{Kind: ErrUnavailable, Err: err}
	}
	return err
}

// connectionLost reports whether err says that the database could not be
// reached or that the connection broke: no connection could be made, the
// peer closed or reset it (a restarted PgBouncer or PostgreSQL, a
// terminated backend), the pool is closed.
func connectionLost(err error) bool {
	var connectErr *pgconn.ConnectError
	switch {
	case errors.As(err, &connectErr), pgconn.SafeToRetry(err), isNetError(err):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, puddle.ErrClosedPool):
		return true
	}
	return false
}

// roleMissing reports whether pgErr is PostgreSQL's refusal of SET ROLE to a
// role that does not exist (a GUC check failure: 22023, invalid_parameter_value).
func roleMissing(pgErr *pgconn.PgError) bool {
	return pgErr.Code == "22023" && strings.HasPrefix(pgErr.Message, `role "`) &&
		strings.HasSuffix(pgErr.Message, `" does not exist`)
}

func kindOf(code string) *apperr.Kind {
	switch code {
	case "3F000", "42P01": // invalid_schema_name, undefined_table
		return ErrTenantNotProvisioned
	case "57014": // query_canceled (statement_timeout)
		return ErrTimeout
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return ErrRetryable
	case "55P03": // lock_not_available (lock_timeout): try again later
		return ErrRetryable
	case "23505":
		return ErrConflict
	case "23503":
		return ErrReferenced
	case "23514", "23502", "22P02", "22001", "22003", "22007", "22008", "22023":
		return ErrInvalidData
	case "42501":
		return ErrPermission
	case "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004",
		// PgBouncer's refusals while its server is down or just restarted
		// ("server login has been failing, try again later",
		// query_wait_timeout, no more connections allowed).
		"08P01", "53300":
		return ErrUnavailable
	}
	return nil
}

func isNetError(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && !errors.Is(err, context.DeadlineExceeded)
}
