package move

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// sessionFormats make both sides render values identically for checksums.
const sessionFormats = `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';
SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; SET LOCAL idle_in_transaction_session_timeout = 0`

// formatParams are the same settings as connection parameters, for the
// sessions that stream and apply changes: values travel as text, and both
// ends must read them back exactly.
var formatParams = map[string]string{
	"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
	"extra_float_digits": "3", "bytea_output": "hex", "idle_in_transaction_session_timeout": "0",
}

// connect opens a direct admin connection to a database of a cluster;
// extra runtime parameters (e.g. replication=database) may be added.
func (m *Mover) connect(ctx context.Context, cluster, database string, extra ...map[string]string) (*pgx.Conn, error) {
	raw, err := m.cl.AdminURL(cluster, database)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "publicdigit-move"
	for _, params := range extra {
		for k, v := range params {
			cfg.RuntimeParams[k] = v
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s on cluster %s: %w", database, cluster, err)
	}
	return conn, nil
}

// table is one tenant table and the columns to copy, in copy order.
type table struct {
	name        string
	columns     []string
	partitioned bool // COPY FREEZE cannot load it
}

func (t table) ident(schema string) string { return pgx.Identifier{schema, t.name}.Sanitize() }

func (t table) columnList() string {
	q := make([]string, len(t.columns))
	for i, c := range t.columns {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// idents quotes the tables of a schema, for LOCK, TRUNCATE and publications.
func idents(tables []table, schema string) string {
	names := make([]string, len(tables))
	for i, tb := range tables {
		names[i] = tb.ident(schema)
	}
	return strings.Join(names, ", ")
}

// tables lists a schema's tables with their columns, parents before
// children (by the foreign keys inside the schema), so that the copy
// satisfies every constraint as it goes.
func tables(ctx context.Context, conn *pgx.Conn, schema string) ([]table, error) {
	rows, err := conn.Query(ctx, `
		SELECT c.relname, c.relkind = 'p',
		       array(SELECT a.attname::text FROM pg_attribute a
		              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		              ORDER BY a.attname),
		       array(SELECT DISTINCT p.relname::text FROM pg_constraint f JOIN pg_class p ON p.oid = f.confrelid
		              WHERE f.conrelid = c.oid AND f.contype = 'f' AND p.relnamespace = c.relnamespace AND p.oid <> c.oid)
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		 ORDER BY c.relname`, schema)
	if err != nil {
		return nil, fmt.Errorf("list tables of %s: %w", schema, err)
	}
	type node struct {
		t       table
		parents []string
	}
	var nodes []node
	for rows.Next() {
		var n node
		if err := rows.Scan(&n.t.name, &n.t.partitioned, &n.t.columns, &n.parents); err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Topological order; names break ties, so both sides agree.
	var out []table
	done := map[string]bool{}
	for len(out) < len(nodes) {
		progress := false
		for _, n := range nodes {
			if done[n.t.name] {
				continue
			}
			ready := true
			for _, p := range n.parents {
				ready = ready && done[p]
			}
			if ready {
				out = append(out, n.t)
				done[n.t.name] = true
				progress = true
			}
		}
		if !progress {
			return nil, fmt.Errorf("schema %s: foreign keys form a cycle", schema)
		}
	}
	return out, nil
}

// load is one copy of a tenant's rows into its target.
type load struct {
	src, dst           *pgx.Conn // src in a transaction that sees the rows to copy (locks or a snapshot)
	tables             []table
	fromSchema, schema string
	onFirstTable       func()
	// verify compares every table before the target commits (lock mode).
	verify bool
}

// loadResult is what a load did.
type loadResult struct {
	rows         int64
	copy, verify time.Duration
}

// run copies every table into the (emptied) target in one transaction on
// dst, loading into tables without indexes and building them afterwards
// (one sort each, several times faster than maintaining them row by row),
// verifies when asked, syncs the sequences and commits the target.
func (l load) run(ctx context.Context) (loadResult, error) {
	var out loadResult
	if _, err := l.dst.Exec(ctx, "BEGIN"); err != nil {
		return out, err
	}
	defer l.dst.Exec(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // no-op after COMMIT
	if _, err := l.dst.Exec(ctx, sessionFormats); err != nil {
		return out, err
	}
	dstTables, err := tables(ctx, l.dst, l.schema)
	if err != nil {
		return out, err
	}
	if err := sameShape(l.tables, dstTables); err != nil {
		return out, fmt.Errorf("move: target schema differs from the source (is the source converged? tenantctl schema drift): %w", err)
	}
	if _, err := l.dst.Exec(ctx, "TRUNCATE "+idents(dstTables, l.schema)); err != nil {
		return out, fmt.Errorf("move: clear target: %w", err)
	}
	start := time.Now()
	rebuild, err := dropIndexes(ctx, l.dst, l.schema)
	if err != nil {
		return out, fmt.Errorf("move: prepare target: %w", err)
	}
	for i, tb := range l.tables {
		n, err := copyTable(ctx, l.src, l.dst, tb, l.fromSchema, l.schema, !tb.partitioned) // truncated above
		if err != nil {
			return out, fmt.Errorf("move: copy %s: %w", tb.name, err)
		}
		out.rows += n
		if i == 0 && l.onFirstTable != nil {
			l.onFirstTable()
		}
	}
	for _, stmt := range rebuild {
		if _, err := l.dst.Exec(ctx, stmt); err != nil {
			return out, fmt.Errorf("move: rebuild target index: %w", err)
		}
	}
	out.copy = time.Since(start)
	if l.verify {
		v := time.Now()
		for _, tb := range l.tables {
			if err := verify(ctx, l.src, l.dst, tb, l.fromSchema, l.schema); err != nil {
				return out, err
			}
		}
		out.verify = time.Since(v)
	}
	if err := syncSequences(ctx, l.src, l.dst, l.fromSchema, l.schema); err != nil {
		return out, err
	}
	if _, err := l.dst.Exec(ctx, "COMMIT"); err != nil {
		return out, fmt.Errorf("move: commit target: %w", err)
	}
	// Fresh tables have no statistics until autovacuum gets to them: the
	// tenant's queries (and the switch's checks) would be planned blind.
	if _, err := l.dst.Exec(ctx, "ANALYZE "+idents(l.tables, l.schema)); err != nil {
		return out, fmt.Errorf("move: analyze target: %w", err)
	}
	return out, nil
}

// indexItem is a foreign key (phase 1), primary key or unique constraint
// (2), or plain index (3) of a table: how to drop it and how to rebuild it
// exactly (same name, same definition).
type indexItem struct {
	phase        int
	table        string
	drop, create string
	// validate, for a valid foreign key: the statement that validates it
	// once added NOT VALID.
	validate string
	// index builds the index of a key or plain index on its own (CREATE
	// INDEX, which other builds on the same table do not wait for); attach,
	// for a key, then makes that index the constraint (ADD CONSTRAINT …
	// USING INDEX: no scan, the key's columns being NOT NULL already).
	index, attach string
	columns       int // key columns of the index: builds with more cost more
}

// indexItems lists the foreign keys, keys and indexes of a schema's tables.
func indexItems(ctx context.Context, conn *pgx.Conn, schema string) ([]indexItem, error) {
	rows, err := conn.Query(ctx, `
		SELECT 1 AS phase, r.relname::text, format('ALTER TABLE %s DROP CONSTRAINT %I', k.conrelid::regclass, k.conname),
		       format('ALTER TABLE %s ADD CONSTRAINT %I %s', k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid)),
		       CASE WHEN k.convalidated THEN format('ALTER TABLE %s VALIDATE CONSTRAINT %I', k.conrelid::regclass, k.conname) ELSE '' END,
		       '', '', 0
		  FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid WHERE k.connamespace = $1::regnamespace AND k.contype = 'f'
		UNION ALL
		SELECT 2, r.relname::text, format('ALTER TABLE %s DROP CONSTRAINT %I', k.conrelid::regclass, k.conname),
		       format('ALTER TABLE %s ADD CONSTRAINT %I %s', k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid)), '',
		       pg_get_indexdef(k.conindid),
		       format('ALTER TABLE %s ADD CONSTRAINT %I %s USING INDEX %I%s%s', k.conrelid::regclass, k.conname,
		              CASE k.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, c.relname,
		              CASE WHEN k.condeferrable THEN ' DEFERRABLE' ELSE '' END, CASE WHEN k.condeferred THEN ' INITIALLY DEFERRED' ELSE '' END),
		       i.indnkeyatts::int
		  FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid JOIN pg_class c ON c.oid = k.conindid JOIN pg_index i ON i.indexrelid = k.conindid
		 WHERE k.connamespace = $1::regnamespace AND k.contype IN ('p', 'u')
		UNION ALL
		SELECT 3, r.relname::text, format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid), '',
		       pg_get_indexdef(i.indexrelid), '', i.indnkeyatts::int
		  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class r ON r.oid = i.indrelid
		 WHERE c.relnamespace = $1::regnamespace
		   AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
		ORDER BY 1, 3`, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (indexItem, error) {
		var it indexItem
		err := r.Scan(&it.phase, &it.table, &it.drop, &it.create, &it.validate, &it.index, &it.attach, &it.columns)
		return it, err
	})
}

// dropItems runs the drops of items, foreign keys first, then keys, then
// plain indexes, and returns the statements that rebuild them, in the
// opposite order.
func dropItems(ctx context.Context, conn *pgx.Conn, items []indexItem) ([]string, error) {
	var rebuild []string
	for _, ph := range []int{1, 2, 3} {
		for _, it := range items {
			if it.phase != ph {
				continue
			}
			if _, err := conn.Exec(ctx, it.drop); err != nil {
				return nil, err
			}
		}
	}
	for _, ph := range []int{3, 2, 1} {
		for _, it := range items {
			if it.phase == ph {
				rebuild = append(rebuild, it.create)
			}
		}
	}
	return rebuild, nil
}

// dropIndexes drops the foreign keys, primary keys, unique constraints and
// indexes of a schema's tables (in the caller's transaction) and returns the
// statements that rebuild them exactly (same names, same definitions).
func dropIndexes(ctx context.Context, conn *pgx.Conn, schema string) ([]string, error) {
	if _, err := conn.Exec(ctx, "SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
		return nil, err
	}
	items, err := indexItems(ctx, conn, schema)
	if err != nil {
		return nil, err
	}
	return dropItems(ctx, conn, items)
}

// sameShape checks that both sides have the same tables and columns.
func sameShape(a, b []table) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d tables on the source, %d on the target", len(a), len(b))
	}
	for i := range a {
		if a[i].name != b[i].name || strings.Join(a[i].columns, ",") != strings.Join(b[i].columns, ",") {
			return fmt.Errorf("table %s: columns %v on the source, %s: %v on the target", a[i].name, a[i].columns, b[i].name, b[i].columns)
		}
	}
	return nil
}

// copyChunk is how many bytes of COPY data the mover passes on at once:
// what pgconn's CopyFrom reads into one CopyData message (64 KiB less its
// header). The source sends one message per row; handed on one by one,
// every row would cost a switch between the two goroutines, a write to the
// target's socket and a message for the target to take apart.
const copyChunk = 65536 - 5

// copyTable streams one table with binary COPY from src to dst; freeze
// loads it frozen (the table must have been created or truncated in dst's
// transaction).
func copyTable(ctx context.Context, src, dst *pgx.Conn, tb table, fromSchema, toSchema string, freeze bool) (int64, error) {
	pr, pw := io.Pipe()
	out := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, copyChunk)
		_, err := src.PgConn().CopyTo(ctx, bw, "COPY "+tb.ident(fromSchema)+" ("+tb.columnList()+") TO STDOUT (FORMAT binary)")
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		out <- err
	}()
	opts := "FORMAT binary"
	if freeze {
		opts += ", FREEZE"
	}
	tag, err := dst.PgConn().CopyFrom(ctx, pr, "COPY "+tb.ident(toSchema)+" ("+tb.columnList()+") FROM STDIN ("+opts+")")
	pr.CloseWithError(err)
	if srcErr := <-out; srcErr != nil && !errors.Is(srcErr, io.ErrClosedPipe) {
		return 0, srcErr
	}
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// checksumSQL counts the rows of a table and sums a 64-bit hash of each
// row's text (order-independent); where, when set, restricts the rows.
func checksumSQL(tb table, schema, where string) string {
	q := `SELECT count(*), coalesce(sum(hashtextextended(ROW(` + tb.columnList() + `)::text, 0)::numeric), 0)::text
		  FROM ` + tb.ident(schema)
	if where != "" {
		q += " WHERE " + where
	}
	return q
}

// verify compares row counts and an order-independent checksum of every row
// (a 64-bit hash of each row's text, summed) of one table on both sides,
// computed on both servers at the same time.
func verify(ctx context.Context, src, dst *pgx.Conn, tb table, fromSchema, toSchema string) error {
	var n1, n2 int64
	var s1, s2 string
	srcErr := make(chan error, 1)
	go func() { srcErr <- src.QueryRow(ctx, checksumSQL(tb, fromSchema, "")).Scan(&n1, &s1) }()
	if err := dst.QueryRow(ctx, checksumSQL(tb, toSchema, "")).Scan(&n2, &s2); err != nil {
		<-srcErr
		return fmt.Errorf("move: verify %s on the target: %w", tb.name, err)
	}
	if err := <-srcErr; err != nil {
		return fmt.Errorf("move: verify %s on the source: %w", tb.name, err)
	}
	if n1 != n2 || s1 != s2 {
		return fmt.Errorf("%w: table %s: %d rows (checksum %s) on the source, %d (%s) on the target", ErrVerify, tb.name, n1, s1, n2, s2)
	}
	return nil
}

// syncSequences gives the target's sequences (identity and serial columns)
// the source's positions, so that new rows do not collide with copied ones.
func syncSequences(ctx context.Context, src, dst *pgx.Conn, fromSchema, toSchema string) error {
	rows, err := src.Query(ctx, `SELECT sequencename::text, last_value FROM pg_sequences WHERE schemaname = $1 AND last_value IS NOT NULL`, fromSchema)
	if err != nil {
		return fmt.Errorf("move: sequences: %w", err)
	}
	type seq struct {
		name string
		last int64
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seq, error) {
		var s seq
		err := r.Scan(&s.name, &s.last)
		return s, err
	})
	if err != nil {
		return fmt.Errorf("move: sequences: %w", err)
	}
	for _, s := range seqs {
		if _, err := dst.Exec(ctx, `SELECT setval($1::regclass, $2, true)`, pgx.Identifier{toSchema, s.name}.Sanitize(), s.last); err != nil {
			return fmt.Errorf("move: sequence %s: %w", s.name, err)
		}
	}
	return nil
}
