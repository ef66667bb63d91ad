package workload

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Kind names an error for the report: by SQLSTATE where the server (or
// PgBouncer) answered, else by what the client saw.
func Kind(err error) string {
	var pg *pgconn.PgError
	var conn *pgconn.ConnectError
	switch {
	case errors.As(err, &pg):
		switch pg.Code {
		case "53300":
			return "too_many_connections"
		case "42P01", "3F000":
			return "undefined_table" // no tenant bound: an empty search_path
		case "42501":
			return "permission_denied"
		case "57014":
			return "statement_timeout"
		case "40001", "40P01":
			return "serialization_or_deadlock"
		case "23505":
			return "unique_violation"
		case "23503":
			return "foreign_key_violation"
		case "08P01": // PgBouncer's own errors
			switch {
			case strings.Contains(pg.Message, "query_wait_timeout"):
				return "pgbouncer_query_wait_timeout"
			case strings.Contains(pg.Message, "no more connections"):
				return "pgbouncer_no_more_connections"
			}
			return "pgbouncer_protocol"
		}
		return "sqlstate_" + pg.Code
	case errors.Is(err, pgx.ErrNoRows):
		return "not_found"
	case errors.Is(err, context.DeadlineExceeded):
		return "client_timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &conn):
		return "connect"
	case strings.Contains(err.Error(), "rolled back"):
		return "rolled_back"
	}
	return "other"
}

// unsure reports whether a failed write may have committed anyway: the
// server gave no answer (a client timeout or a broken connection after the
// statement was sent). A server error, no row, a refused connection or a
// transaction the server rolled back all mean nothing was written.
func unsure(err error) bool {
	var pg *pgconn.PgError
	var conn *pgconn.ConnectError
	switch {
	case errors.As(err, &pg), errors.Is(err, pgx.ErrNoRows), errors.As(err, &conn),
		pgconn.SafeToRetry(err), strings.Contains(err.Error(), "rolled back"):
		return false
	}
	return true
}
