package pgroute

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Batch collects the statements of one single-shot unit of work (Router.Do).
// Attach result handling to each queued statement:
//
//	b.Queue(`SELECT full_name FROM members WHERE tenant_id = $1 AND id = $2`, b.Tenant().ID, id).
//		QueryRow(func(row pgx.Row) error { return row.Scan(&name) })
type Batch struct {
	t   tenant.Tenant
	pb  pgx.Batch
	n   int
	err error
	// qs backs pb.QueuedQueries: the binding and a few statements need no
	// allocation of their own.
	qs [8]*pgx.QueuedQuery
}

// Tenant is the tenant the batch is bound to (its ID for the golden rule).
func (b *Batch) Tenant() tenant.Tenant { return b.t }

// Queue adds one statement. Session-level statements (SET, PREPARE, LISTEN,
// set_config, …) and multi-statement strings are refused: Do then fails
// with ErrSessionStatement before anything is sent.
func (b *Batch) Queue(sql string, args ...any) *pgx.QueuedQuery {
	if err := checkStatement(sql); err != nil && b.err == nil {
		b.err = err
	}
	if err := checkArgs(args); err != nil && b.err == nil {
		b.err = err
	}
	b.n++
	return b.pb.Queue(sql, args...)
}

// Len is the number of statements queued by tenant code.
func (b *Batch) Len() int { return b.n }

// Page trims the rows of a keyset page, read with LIMIT limit+1, to limit
// and reports whether more follow.
func Page[T any](rows []T, limit int) ([]T, bool) {
	if len(rows) > limit {
		return rows[:limit], true
	}
	return rows, false
}

// checkArgs refuses values that PostgreSQL cannot store and that the simple
// protocol could not carry: a NUL byte ends a Query message early.
func checkArgs(args []any) error {
	for i, a := range args {
		switch v := a.(type) {
		case string:
			if strings.IndexByte(v, 0) >= 0 {
				return fmt.Errorf("%w: argument %d contains a NUL byte", ErrInvalidData, i+1)
			}
		case *string:
			if v != nil && strings.IndexByte(*v, 0) >= 0 {
				return fmt.Errorf("%w: argument %d contains a NUL byte", ErrInvalidData, i+1)
			}
		case []string:
			for _, s := range v {
				if strings.IndexByte(s, 0) >= 0 {
					return fmt.Errorf("%w: argument %d contains a NUL byte", ErrInvalidData, i+1)
				}
			}
		}
	}
	return nil
}

// Tx is an explicit transaction bound to one tenant (Router.Tx). Statements
// are queued and sent by Flush; whatever is still queued when the function
// returns is sent together with COMMIT. The first flush also carries BEGIN
// and the tenant binding, so no round trip is spent on them alone.
type Tx struct {
	r       *Router
	conn    *pgxpool.Conn
	e       *entry
	begin   string
	begun   bool
	pending pgx.Batch
	n       int
	failed  error
}

// Tenant is the tenant the transaction is bound to.
func (t *Tx) Tenant() tenant.Tenant { return t.e.t }

// Queue adds a statement to the next flush (or the commit), with the same
// rules as Batch.Queue.
func (t *Tx) Queue(sql string, args ...any) *pgx.QueuedQuery {
	if err := checkStatement(sql); err != nil && t.failed == nil {
		t.failed = err
	}
	if err := checkArgs(args); err != nil && t.failed == nil {
		t.failed = err
	}
	t.n++
	return t.pending.Queue(sql, args...)
}

// Flush sends the queued statements (one round trip) and runs their result
// callbacks. After a failed flush the transaction is aborted: Tx returns the
// error and rolls back, whatever fn does next.
func (t *Tx) Flush(ctx context.Context) error {
	if t.failed != nil {
		return t.failed
	}
	if t.n == 0 {
		return nil
	}
	b := t.take()
	if !t.begun {
		b = t.withBegin(b)
		t.begun = true
	}
	if err := t.conn.SendBatch(ctx, b).Close(); err != nil {
		t.failed = Classify(err)
		return t.failed
	}
	return nil
}

// take returns the pending statements and resets the queue.
func (t *Tx) take() *pgx.Batch {
	b := &pgx.Batch{QueuedQueries: t.pending.QueuedQueries}
	t.pending = pgx.Batch{}
	t.n = 0
	return b
}

// withBegin prefixes BEGIN and the tenant binding.
func (t *Tx) withBegin(b *pgx.Batch) *pgx.Batch {
	head := &pgx.Batch{}
	head.Queue(t.begin)
	t.r.queueBind(head, t.e)
	head.QueuedQueries = append(head.QueuedQueries, b.QueuedQueries...)
	return head
}

var errRolledBack = errors.New("transaction was rolled back by the server")

// commit sends what is queued with COMMIT. A transaction that never flushed
// needs no BEGIN: its statements go as one implicit transaction, like Do.
func (t *Tx) commit(ctx context.Context) error {
	if t.failed != nil {
		return t.failed
	}
	if !t.begun {
		if t.n == 0 {
			return nil
		}
		b := &pgx.Batch{}
		t.r.queueBind(b, t.e)
		b.QueuedQueries = append(b.QueuedQueries, t.take().QueuedQueries...)
		return Classify(t.conn.SendBatch(ctx, b).Close())
	}
	b := t.take()
	var tag pgconn.CommandTag
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		tag = ct
		return nil
	})
	if err := t.conn.SendBatch(ctx, b).Close(); err != nil {
		return Classify(err)
	}
	// COMMIT of an aborted transaction answers ROLLBACK without an error.
	if tag.String() != "COMMIT" {
		return &Error{Kind: ErrRetryable, Err: errRolledBack}
	}
	return nil
}

// rollback ends a begun transaction; if that fails, the connection is closed
// (pgxpool then drops it on release).
func (t *Tx) rollback(ctx context.Context) {
	if !t.begun || t.conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = t.conn.Conn().Close(ctx)
	}
}

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
