package move

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// upgradeTimeout bounds the wait for readers when the switch takes ACCESS
// EXCLUSIVE locks (reads are short; a long one makes the switch try again).
const upgradeTimeout = time.Second

// retire ends the source under the locks src's transaction holds (EXCLUSIVE
// on every table): it takes ACCESS EXCLUSIVE locks, so that from here no
// reader with a stale placement reads the retired copy either, renames the
// schema to the retired name, takes every privilege of the tenant's role
// away from it, and PREPAREs the transaction: its locks now survive a crash
// of the mover. One round trip.
func (m *Mover) retire(ctx context.Context, src *pgx.Conn, t tenant.Tenant, rec record, tables []table) error {
	role := pgx.Identifier{t.Slug.RoleName()}.Sanitize()
	retired := pgx.Identifier{rec.Retired}.Sanitize()
	script := fmt.Sprintf("SET LOCAL lock_timeout = %d; ", upgradeTimeout.Milliseconds()) +
		"LOCK TABLE " + idents(tables, rec.From.Schema) + " IN ACCESS EXCLUSIVE MODE; " +
		"ALTER SCHEMA " + pgx.Identifier{rec.From.Schema}.Sanitize() + " RENAME TO " + retired + "; " +
		"REVOKE ALL ON ALL TABLES IN SCHEMA " + retired + " FROM " + role + "; " +
		"REVOKE ALL ON ALL SEQUENCES IN SCHEMA " + retired + " FROM " + role + "; " +
		"REVOKE ALL ON SCHEMA " + retired + " FROM " + role + "; " +
		"PREPARE TRANSACTION '" + rec.gid() + "'"
	if _, err := src.Exec(ctx, script); err != nil {
		return fmt.Errorf("move: retire source: %w", err)
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
// announced) and records the retired copy and the audit trail's entry, in
// one landlord transaction. The move's own record says flipped once the
// source is released (a rerun recognises a flipped move by the tenant's
// placement).
func (m *Mover) flip(ctx context.Context, t tenant.Tenant, rec *record) error {
	tx, err := m.cat.Admin().BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("move: flip: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after the commit
	if err := catalog.FlipMoved(ctx, tx, t, rec.To, catalog.RetiredCopy{TenantID: t.ID,
		Cluster: rec.From.Cluster, Database: rec.From.Database, Schema: rec.Retired,
		WholeDatabase: rec.From.Kind == tenant.PlacementDatabase}); err != nil {
		return err
	}
	if err := audit.Record(ctx, tx, audit.Event{Action: audit.TenantMove, TenantID: t.ID, Tenant: t.Slug.String(),
		Target: rec.ID, Detail: map[string]any{
			"mode":           string(rec.Mode),
			"from_placement": string(rec.From.Kind), "from_cluster": rec.From.Cluster, "from_database": rec.From.Database,
			"to_placement": string(rec.To.Kind), "to_cluster": rec.To.Cluster, "to_database": rec.To.Database,
			"rows": rec.Rows, "retired": rec.Retired}}); err != nil {
		return fmt.Errorf("move: flip: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("move: flip: %w", err)
	}
	m.cat.Notify(t.Slug)
	m.hook(StepFlipped)
	return nil
}

// finish commits the prepared source transaction (blocked writes wake up and
// go to the new placement), removes the move's publication and slots, drops
// the tenant's role from a server the tenant left, retires a dedicated
// source database under its retired name, and closes the move.
func (m *Mover) finish(ctx context.Context, t tenant.Tenant, rec *record, res *Result) error {
	release := time.Now()
	conn := res.release // this run prepared it, on this session
	res.release = nil
	if conn == nil {
		prepared, err := m.isPrepared(ctx, *rec)
		if err != nil {
			return err
		}
		if prepared {
			if conn, err = m.connect(ctx, rec.From.Cluster, rec.From.Database); err != nil {
				return err
			}
		}
	}
	if conn != nil {
		_, err := conn.Exec(ctx, "COMMIT PREPARED '"+rec.gid()+"'")
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("move: release source: %w", err)
		}
	}
	var pause *int64
	if !res.lockedAt.IsZero() {
		res.WritePause = time.Since(res.lockedAt)
		res.Switch.Release = time.Since(release)
		ms := res.WritePause.Milliseconds()
		pause = &ms
	}
	if err := m.setState(ctx, rec, "flipped", ""); err != nil {
		return err
	}
	if err := m.dropArtefacts(ctx, *rec); err != nil {
		return err
	}
	if rec.From.Cluster != rec.To.Cluster {
		if err := m.dropRole(ctx, rec.From.Cluster, t.Slug.RoleName()); err != nil {
			return err
		}
	}
	if rec.From.Kind == tenant.PlacementDatabase {
		if err := m.cl.RenameDatabase(ctx, rec.From.Cluster, rec.From.Database, rec.Retired); err != nil {
			return err
		}
		if err := m.cat.RetiredDatabaseRenamed(ctx, t.ID, rec.Retired); err != nil {
			return err
		}
	}
	if err := m.setState(ctx, rec, "done", ", finished_at = now(), lag_ms = NULL, write_pause_ms = coalesce($3, write_pause_ms)", pause); err != nil {
		return err
	}
	m.cat.Notify(t.Slug)
	m.hook(StepDone)
	return nil
}

// dropRole drops a tenant's role from a server the tenant no longer lives
// on. The retired copy's privileges were revoked when it was retired; any
// privilege left elsewhere on that server (older retired copies) is dropped
// database by database first.
func (m *Mover) dropRole(ctx context.Context, cluster, role string) error {
	server, err := m.cl.Admin(cluster)
	if err != nil {
		return err
	}
	drop := "DROP ROLE IF EXISTS " + pgx.Identifier{role}.Sanitize()
	_, err = server.ExecContext(ctx, drop)
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "2BP01" { // dependent_objects_still_exist
		if err != nil {
			return fmt.Errorf("move: drop role %s on cluster %s: %w", role, cluster, err)
		}
		return nil
	}
	rows, err := server.QueryContext(ctx, `SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
		WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)`, role)
	if err != nil {
		return fmt.Errorf("move: privileges of %s on cluster %s: %w", role, cluster, err)
	}
	var dbs []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return err
		}
		dbs = append(dbs, d)
	}
	rows.Close()
	for _, d := range dbs {
		db, err := m.cl.Open(ctx, cluster, d)
		if err != nil {
			return fmt.Errorf("move: drop role %s: %w", role, err)
		}
		// DROP OWNED needs the role's privileges; membership is dropped with the role.
		_, err = db.ExecContext(ctx, "GRANT "+pgx.Identifier{role}.Sanitize()+" TO CURRENT_USER")
		if err == nil {
			_, err = db.ExecContext(ctx, "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
		}
		db.Close()
		if err != nil {
			return fmt.Errorf("move: drop privileges of %s in %s on cluster %s: %w", role, d, cluster, err)
		}
	}
	if _, err := server.ExecContext(ctx, drop); err != nil {
		return fmt.Errorf("move: drop role %s on cluster %s: %w", role, cluster, err)
	}
	return nil
}
