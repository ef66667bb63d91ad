package transfer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// sessionFormats makes every server render values alike for the row
// checksums (as the mover does), in the current transaction.
const sessionFormats = `SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true),
	set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '3', true),
	set_config('bytea_output', 'hex', true)`

// tenantIDColumn is the column every tenant table carries: the tenant's
// catalog id, rewritten to the new tenant's id on import.
const tenantIDColumn = "tenant_id"

// liveColumn is a column of a live table, with what the import's schema
// check needs to know.
type liveColumn struct {
	Column
	notNull    bool
	hasDefault bool
}

// liveTable is a table of a live schema.
type liveTable struct {
	name        string
	partitioned bool
	columns     []liveColumn // by name
}

// queryer is what *pgx.Conn and the import's transaction have in common here.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// liveTables lists the tables of a schema (not partitions), by name, with
// their stored columns (not generated ones), by name.
func liveTables(ctx context.Context, q queryer, schema string) ([]liveTable, error) {
	rows, err := q.Query(ctx, `
		SELECT c.relname::text, c.relkind = 'p', a.attname::text, format_type(a.atttypid, a.atttypmod),
		       a.attnotnull, a.atthasdef OR a.attidentity <> ''
		  FROM pg_class c
		  JOIN pg_namespace n ON n.oid = c.relnamespace
		  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		 ORDER BY c.relname COLLATE "C", a.attname COLLATE "C"`, schema)
	if err != nil {
		return nil, fmt.Errorf("list tables of %s: %w", schema, err)
	}
	defer rows.Close()
	var out []liveTable
	for rows.Next() {
		var table string
		var part bool
		var c liveColumn
		if err := rows.Scan(&table, &part, &c.Name, &c.Type, &c.notNull, &c.hasDefault); err != nil {
			return nil, fmt.Errorf("list tables of %s: %w", schema, err)
		}
		if len(out) == 0 || out[len(out)-1].name != table {
			out = append(out, liveTable{name: table, partitioned: part})
		}
		out[len(out)-1].columns = append(out[len(out)-1].columns, c)
	}
	return out, rows.Err()
}

func quoteColumns(cols []Column) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// tenantIDField is the position of the uuid tenant_id column among cols, or -1.
func tenantIDField(cols []Column) int {
	for i, c := range cols {
		if c.Name == tenantIDColumn && c.Type == "uuid" {
			return i
		}
	}
	return -1
}

// The row checksum of a table: its row count and the sum of a 64-bit hash
// of each row — order-independent, computed by the database on both sides
// (as the mover's verification does), without moving the rows. The hash is
// hash_record_extended, which hashes each value with its type's own hash
// function (the ones hash partitioning relies on: stable across releases);
// a table with a column type that has none (json, point…) falls back to
// hashtextextended of the row's text, as the mover does, which costs several
// times more (the row is printed). Both depend on the byte order and
// encoding of the server, like hash partitions.
const (
	checksumRecord = "hash_record_extended"
	checksumText   = "hashtextextended"
)

// checksumSQL is the checksum query of a table with the columns cols (in
// their order). The tenant_id column counts as NULL where it holds the
// tenant's own id ($1), so a tenant imported under a new id has the same
// checksum.
func checksumSQL(method, schema, table string, cols []Column) (string, bool) {
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	byID := tenantIDField(cols)
	if byID >= 0 {
		exprs[byID] = "nullif(" + exprs[byID] + ", $1::uuid)"
	}
	row := "ROW(" + strings.Join(exprs, ", ") + ")"
	hash := "hash_record_extended(" + row + ", 0)"
	if method == checksumText {
		hash = "hashtextextended(" + row + "::text, 0)"
	}
	return `SELECT count(*), coalesce(sum(` + hash + `), 0)::text FROM ` + pgx.Identifier{schema, table}.Sanitize(), byID >= 0
}

// checksum runs checksumSQL for a table of the tenant whose id is id.
func checksum(ctx context.Context, conn *pgx.Conn, method, schema, table string, cols []Column, id uuid.UUID) (int64, string, error) {
	q, withID := checksumSQL(method, schema, table, cols)
	var args []any
	if withID {
		args = append(args, id.String())
	}
	var n int64
	var sum string
	if err := conn.QueryRow(ctx, q, args...).Scan(&n, &sum); err != nil {
		return 0, "", fmt.Errorf("checksum of table %s: %w", table, err)
	}
	return n, sum, nil
}

// exportChecksum computes a table's checksum in the export's snapshot with
// the record hash, or with the text hash when a column type has no hash
// function (tried under a savepoint, which keeps the snapshot).
func exportChecksum(ctx context.Context, conn *pgx.Conn, schema, table string, cols []Column, id uuid.UUID) (string, int64, string, error) {
	if _, err := conn.Exec(ctx, "SAVEPOINT pd_checksum"); err != nil {
		return "", 0, "", err
	}
	n, sum, err := checksum(ctx, conn, checksumRecord, schema, table, cols, id)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42883" { // undefined_function: a type without a hash function
		if _, err := conn.Exec(ctx, "ROLLBACK TO SAVEPOINT pd_checksum"); err != nil {
			return "", 0, "", err
		}
		n, sum, err = checksum(ctx, conn, checksumText, schema, table, cols, id)
		return checksumText, n, sum, err
	}
	return checksumRecord, n, sum, err
}

// sequences lists the positions of a schema's sequences that were used.
func sequences(ctx context.Context, conn *pgx.Conn, schema string) ([]Sequence, error) {
	rows, err := conn.Query(ctx, `SELECT sequencename::text, last_value FROM pg_sequences
		WHERE schemaname = $1 AND last_value IS NOT NULL ORDER BY 1`, schema)
	if err != nil {
		return nil, fmt.Errorf("sequences of %s: %w", schema, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sequence, error) {
		var s Sequence
		err := r.Scan(&s.Name, &s.LastValue)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("sequences of %s: %w", schema, err)
	}
	return out, nil
}

// dropIndexes drops the foreign keys, primary keys, unique constraints and
// indexes of a schema's tables (in the caller's transaction) and returns the
// statements that rebuild them exactly: loading tables without indexes and
// building each index once afterwards (one sort) is several times faster
// than maintaining them row by row, and the rebuild checks every key.
func dropIndexes(ctx context.Context, conn *pgx.Conn, schema string) ([]string, error) {
	if _, err := conn.Exec(ctx, "SELECT set_config('maintenance_work_mem', '256MB', true)"); err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, `
		SELECT 1 AS phase, format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname),
		       format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
		  FROM pg_constraint WHERE connamespace = $1::regnamespace AND contype = 'f'
		UNION ALL
		SELECT 2, format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname),
		       format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
		  FROM pg_constraint WHERE connamespace = $1::regnamespace AND contype IN ('p', 'u')
		UNION ALL
		SELECT 3, format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
		  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		 WHERE c.relnamespace = $1::regnamespace
		   AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
		ORDER BY 1, 2`, pgx.Identifier{schema}.Sanitize())
	if err != nil {
		return nil, err
	}
	type item struct{ drop, create string }
	var phases [4][]item
	for rows.Next() {
		var phase int
		var it item
		if err := rows.Scan(&phase, &it.drop, &it.create); err != nil {
			rows.Close()
			return nil, err
		}
		phases[phase] = append(phases[phase], it)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Foreign keys go first, then keys, then plain indexes; they come back
	// in the opposite order.
	var rebuild []string
	for _, ph := range []int{1, 2, 3} {
		for _, it := range phases[ph] {
			if _, err := conn.Exec(ctx, it.drop); err != nil {
				return nil, err
			}
		}
	}
	for _, ph := range []int{3, 2, 1} {
		for _, it := range phases[ph] {
			rebuild = append(rebuild, it.create)
		}
	}
	return rebuild, nil
}
