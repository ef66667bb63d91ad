package pgroute

import (
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The binding of a tenant lasts for the rest of its transaction only: in
// the simple protocol SET LOCAL statements (built once per cache entry by
// bindStatements), in the extended protocol set_config(…, true) with bound
// parameters. Either way each setting dies with the transaction, so nothing
// leaks to the next client of the server connection.
const (
	bindSQL       = `SELECT set_config('search_path', $1, true), set_config('statement_timeout', $2, true), set_config('role', $3, true)`
	bindSQLNoRole = `SELECT set_config('search_path', $1, true), set_config('statement_timeout', $2, true)`
	// While a tenant moves, its writes wait on the mover's table locks: bound
	// that wait so the client gets a quick retryable error instead.
	bindMovingSQL = `SELECT set_config('lock_timeout', $1, true)`
)

// timeout is the tenant's statement timeout: its own, else the default.
func (r *Router) timeout(t tenant.Tenant) int64 {
	if t.StatementTimeout > 0 {
		return t.StatementTimeout.Milliseconds()
	}
	return r.o.StatementTimeout.Milliseconds()
}

// bindStatements returns the SET LOCAL statements that bind t. Every name
// is quoted as an identifier; the timeouts are integers. SET LOCAL is a
// utility statement: measured cheaper for the server than one SELECT of
// three set_config() calls (no plan, no row).
func (r *Router) bindStatements(t tenant.Tenant) []string {
	stmts := []string{
		"SET LOCAL search_path = " + pgx.Identifier{t.Schema}.Sanitize(),
		"SET LOCAL statement_timeout = " + strconv.FormatInt(r.timeout(t), 10),
	}
	if r.o.Roles {
		stmts = append(stmts, "SET LOCAL ROLE "+pgx.Identifier{t.Slug.RoleName()}.Sanitize())
	}
	if t.Status == tenant.StatusMoving {
		stmts = append(stmts, "SET LOCAL lock_timeout = "+strconv.FormatInt(r.o.MovingLockTimeout.Milliseconds(), 10))
	}
	return stmts
}

// queueBind queues the binding of e at the head of b.
func (r *Router) queueBind(b *pgx.Batch, e *entry) {
	if r.o.ExecMode == pgx.QueryExecModeSimpleProtocol {
		// The simple protocol sends values as literals anyway; the binding
		// of a cached tenant never changes, so its text is built once.
		for _, stmt := range e.bind {
			b.Queue(stmt)
		}
		return
	}
	path := pgx.Identifier{e.t.Schema}.Sanitize()
	ms := strconv.FormatInt(r.timeout(e.t), 10)
	if r.o.Roles {
		b.Queue(bindSQL, path, ms, e.t.Slug.RoleName())
	} else {
		b.Queue(bindSQLNoRole, path, ms)
	}
	if e.t.Status == tenant.StatusMoving {
		b.Queue(bindMovingSQL, strconv.FormatInt(r.o.MovingLockTimeout.Milliseconds(), 10))
	}
}
