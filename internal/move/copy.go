package move

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// sessionFormats make both sides render values identically for checksums.
const sessionFormats = `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';
SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; SET LOCAL idle_in_transaction_session_timeout = 0`

func (m *Mover) connect(ctx context.Context, cluster, database string) (*pgx.Conn, error) {
	raw, err := m.cl.AdminURL(cluster, database)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "publicdigit-move"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s on cluster %s: %w", database, cluster, err)
	}
	return conn, nil
}

// table is one tenant table and the columns to copy, in copy order.
type table struct {
	name    string
	columns []string
}

func (t table) ident(schema string) string { return pgx.Identifier{schema, t.name}.Sanitize() }

func (t table) columnList() string {
	q := make([]string, len(t.columns))
	for i, c := range t.columns {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// tables lists a schema's tables with their columns, parents before
// children (by the foreign keys inside the schema), so that the copy
// satisfies every constraint as it goes.
func tables(ctx context.Context, conn *pgx.Conn, schema string) ([]table, error) {
	rows, err := conn.Query(ctx, `
		SELECT c.relname,
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
		if err := rows.Scan(&n.t.name, &n.t.columns, &n.parents); err != nil {
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

// copyAndPrepare builds the target, locks the source's tables, copies and
// verifies every table, commits the target, then retires the source and
// prepares its transaction (locks kept until the flip is committed).
func (m *Mover) copyAndPrepare(ctx context.Context, t tenant.Tenant, rec *record, res *Result) error {
	if err := m.buildTarget(ctx, t, *rec); err != nil {
		return err
	}
	src, err := m.connect(ctx, rec.From.Cluster, rec.From.Database)
	if err != nil {
		return err
	}
	defer src.Close(context.WithoutCancel(ctx))
	dst, err := m.connect(ctx, rec.To.Cluster, rec.To.Database)
	if err != nil {
		return err
	}
	defer dst.Close(context.WithoutCancel(ctx))

	// Source: one transaction holding EXCLUSIVE locks: reads go on, every
	// write (and SELECT … FOR UPDATE) waits.
	if _, err := src.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	if _, err := src.Exec(ctx, sessionFormats); err != nil {
		return err
	}
	if _, err := src.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)",
		fmt.Sprintf("%dms", m.o.LockTimeout.Milliseconds())); err != nil {
		return err
	}
	// Serialize with schema applies of the fleet runner.
	if _, err := src.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('schema:' || $1))", rec.From.Schema); err != nil {
		return fmt.Errorf("move: lock source schema: %w", err)
	}
	srcTables, err := tables(ctx, src, rec.From.Schema)
	if err != nil {
		return err
	}
	if len(srcTables) == 0 {
		return fmt.Errorf("move: source schema %s has no tables", rec.From.Schema)
	}
	names := make([]string, len(srcTables))
	for i, tb := range srcTables {
		names[i] = tb.ident(rec.From.Schema)
	}
	if _, err := src.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("move: lock source tables: %w", err)
	}
	lockedAt := time.Now()
	m.hook(StepLocked)

	// Target: one transaction; leftovers of an interrupted attempt go first.
	if _, err := dst.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	if _, err := dst.Exec(ctx, sessionFormats); err != nil {
		return err
	}
	dstTables, err := tables(ctx, dst, rec.To.Schema)
	if err != nil {
		return err
	}
	if err := sameShape(srcTables, dstTables); err != nil {
		return fmt.Errorf("move: target schema differs from the source (is the source converged? tenantctl schema drift): %w", err)
	}
	dstNames := make([]string, len(dstTables))
	for i, tb := range dstTables {
		dstNames[i] = tb.ident(rec.To.Schema)
	}
	if _, err := dst.Exec(ctx, "TRUNCATE "+strings.Join(dstNames, ", ")); err != nil {
		return fmt.Errorf("move: clear target: %w", err)
	}

	copyStart := time.Now()
	// Loading into tables without indexes and building them afterwards (one
	// sort each) is several times faster than maintaining them row by row,
	// and this is the time writes wait.
	rebuild, err := dropIndexes(ctx, dst, rec.To.Schema)
	if err != nil {
		return fmt.Errorf("move: prepare target: %w", err)
	}
	var rows int64
	for i, tb := range srcTables {
		n, err := copyTable(ctx, src, dst, tb, rec.From.Schema, rec.To.Schema)
		if err != nil {
			return fmt.Errorf("move: copy %s: %w", tb.name, err)
		}
		rows += n
		if i == 0 {
			m.hook(StepMidCopy)
		}
	}
	for _, stmt := range rebuild {
		if _, err := dst.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("move: rebuild target index: %w", err)
		}
	}
	copied := time.Now()
	for _, tb := range srcTables {
		if err := verify(ctx, src, dst, tb, rec.From.Schema, rec.To.Schema); err != nil {
			return err
		}
	}
	res.Verify = time.Since(copied)
	if err := syncSequences(ctx, src, dst, rec.From.Schema, rec.To.Schema); err != nil {
		return err
	}
	res.Copy = time.Since(copyStart)
	if _, err := dst.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("move: commit target: %w", err)
	}
	rec.Rows = rows
	if err := m.setState(ctx, rec, "copied", ", rows_copied = $3", rows); err != nil {
		return err
	}
	m.hook(StepCopied)

	// Retire the source under the same locks, and keep them past a crash.
	role := pgx.Identifier{t.Slug.RoleName()}.Sanitize()
	retired := pgx.Identifier{rec.Retired}.Sanitize()
	for _, stmt := range []string{
		"ALTER SCHEMA " + pgx.Identifier{rec.From.Schema}.Sanitize() + " RENAME TO " + retired,
		"REVOKE ALL ON ALL TABLES IN SCHEMA " + retired + " FROM " + role,
		"REVOKE ALL ON SCHEMA " + retired + " FROM " + role,
		"PREPARE TRANSACTION '" + rec.gid() + "'",
	} {
		if _, err := src.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("move: retire source: %w", err)
		}
	}
	res.lockedAt = lockedAt
	if err := m.setState(ctx, rec, "prepared", ""); err != nil {
		return err
	}
	m.hook(StepPrepared)
	return nil
}

// dropIndexes drops the foreign keys, primary keys, unique constraints and
// indexes of a schema's tables (in the caller's transaction) and returns the
// statements that rebuild them exactly (same names, same definitions).
func dropIndexes(ctx context.Context, conn *pgx.Conn, schema string) ([]string, error) {
	if _, err := conn.Exec(ctx, "SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
		return nil, err
	}
	type item struct{ drop, create string }
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
		ORDER BY 1, 2`, schema)
	if err != nil {
		return nil, err
	}
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
	// Drop foreign keys first, then keys, then plain indexes; rebuild in the
	// opposite order.
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

// copyTable streams one table with binary COPY from src to dst.
func copyTable(ctx context.Context, src, dst *pgx.Conn, tb table, fromSchema, toSchema string) (int64, error) {
	pr, pw := io.Pipe()
	out := make(chan error, 1)
	go func() {
		_, err := src.PgConn().CopyTo(ctx, pw, "COPY "+tb.ident(fromSchema)+" ("+tb.columnList()+") TO STDOUT (FORMAT binary)")
		pw.CloseWithError(err)
		out <- err
	}()
	tag, err := dst.PgConn().CopyFrom(ctx, pr, "COPY "+tb.ident(toSchema)+" ("+tb.columnList()+") FROM STDIN (FORMAT binary)")
	pr.CloseWithError(err)
	if srcErr := <-out; srcErr != nil && !errors.Is(srcErr, io.ErrClosedPipe) {
		return 0, srcErr
	}
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// verify compares row counts and an order-independent checksum of every row
// (a 64-bit hash of each row's text, summed) of one table on both sides,
// computed on both servers at the same time.
func verify(ctx context.Context, src, dst *pgx.Conn, tb table, fromSchema, toSchema string) error {
	q := func(schema string) string {
		return `SELECT count(*), coalesce(sum(hashtextextended(ROW(` + tb.columnList() + `)::text, 0)::numeric), 0)::text
		  FROM ` + tb.ident(schema)
	}
	var n1, n2 int64
	var s1, s2 string
	srcErr := make(chan error, 1)
	go func() { srcErr <- src.QueryRow(ctx, q(fromSchema)).Scan(&n1, &s1) }()
	if err := dst.QueryRow(ctx, q(toSchema)).Scan(&n2, &s2); err != nil {
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

// isPrepared reports whether the move's source transaction is prepared.
func (m *Mover) isPrepared(ctx context.Context, rec record) (bool, error) {
	server, err := m.cl.Admin(rec.From.Cluster)
	if err != nil {
		return false, err
	}
	var ok bool
	if err := server.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_prepared_xacts WHERE gid = $1)`, rec.gid()).Scan(&ok); err != nil {
		return false, fmt.Errorf("move: prepared transactions: %w", err)
	}
	return ok, nil
}

// flip points the catalog at the target (status active, version bumped,
// announced) and records the retired copy, in one landlord transaction.
func (m *Mover) flip(ctx context.Context, t tenant.Tenant, rec *record) error {
	tx, err := m.cat.Admin().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if err := catalog.Flip(ctx, tx, t, rec.To); err != nil {
		return err
	}
	if err := catalog.InsertRetired(ctx, tx, catalog.RetiredCopy{TenantID: t.ID, Slug: t.Slug.String(),
		Cluster: rec.From.Cluster, Database: rec.From.Database, Schema: rec.Retired,
		WholeDatabase: rec.From.Kind == tenant.PlacementDatabase}); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE landlord.tenant_moves SET state = 'flipped', updated_at = now() WHERE id = $1`, rec.ID); err != nil {
		return err
	}
	if err := audit.Record(ctx, tx, audit.Event{Action: audit.TenantMove, TenantID: t.ID, Tenant: t.Slug.String(),
		Target: rec.ID, Detail: map[string]any{
			"from_placement": string(rec.From.Kind), "from_cluster": rec.From.Cluster, "from_database": rec.From.Database,
			"to_placement": string(rec.To.Kind), "to_cluster": rec.To.Cluster, "to_database": rec.To.Database,
			"rows": rec.Rows, "retired": rec.Retired}}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("move: flip: %w", err)
	}
	rec.State = "flipped"
	m.cat.Notify(t.Slug)
	m.hook(StepFlipped)
	return nil
}

// finish commits the prepared source transaction (blocked writes wake up and
// go to the new placement), retires a dedicated source database under its
// retired name, and closes the move.
func (m *Mover) finish(ctx context.Context, t tenant.Tenant, rec *record, res *Result) error {
	prepared, err := m.isPrepared(ctx, *rec)
	if err != nil {
		return err
	}
	if prepared {
		conn, err := m.connect(ctx, rec.From.Cluster, rec.From.Database)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "COMMIT PREPARED '"+rec.gid()+"'")
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("move: release source: %w", err)
		}
	}
	var pause *int64
	if !res.lockedAt.IsZero() {
		res.WritePause = time.Since(res.lockedAt)
		ms := res.WritePause.Milliseconds()
		pause = &ms
	}
	if rec.From.Kind == tenant.PlacementDatabase {
		if err := m.cl.RenameDatabase(ctx, rec.From.Cluster, rec.From.Database, rec.Retired); err != nil {
			return err
		}
		if err := m.cat.RetiredDatabaseRenamed(ctx, t.ID, rec.Retired); err != nil {
			return err
		}
	}
	if err := m.setState(ctx, rec, "done", ", finished_at = now(), write_pause_ms = coalesce($3, write_pause_ms)", pause); err != nil {
		return err
	}
	m.cat.Notify(t.Slug)
	m.hook(StepDone)
	return nil
}
