package move

import (
	"context"
	"fmt"
	"time"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// copyLocked is the lock mode: it builds the target, locks the source's
// tables against writes, copies and verifies every table, commits the
// target, then retires the source and prepares its transaction (locks kept
// until the flip is committed). Writes wait for all of it.
func (m *Mover) copyLocked(ctx context.Context, t tenant.Tenant, rec *record, res *Result) error {
	if err := m.buildTarget(ctx, t, *rec); err != nil {
		return err
	}
	src, err := m.connect(ctx, rec.From.Cluster, rec.From.Database)
	if err != nil {
		return err
	}
	defer func() {
		if res.release != src { // kept to commit the prepared transaction
			src.Close(context.WithoutCancel(ctx))
		}
	}()
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
	lockedAt := time.Now()
	if _, err := src.Exec(ctx, "LOCK TABLE "+idents(srcTables, rec.From.Schema)+" IN EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("move: lock source tables: %w", err)
	}
	res.Switch = SwitchTimes{Lock: time.Since(lockedAt)}
	m.hook(StepLocked)

	out, err := load{src: src, dst: dst, tables: srcTables, fromSchema: rec.From.Schema, schema: rec.To.Schema,
		onFirstTable: func() { m.hook(StepMidCopy) }, verify: true}.run(ctx)
	if err != nil {
		return err
	}
	res.Copy, res.Verify = out.copy, out.verify
	rec.Rows = out.rows
	if err := m.setState(ctx, rec, "copied", ", rows_copied = $3", out.rows); err != nil {
		return err
	}
	m.hook(StepCopied)

	// Retire the source under the same locks, and keep them past a crash.
	retire := time.Now()
	if err := m.retire(ctx, src, t, *rec, srcTables); err != nil {
		return err
	}
	res.Switch.Retire = time.Since(retire)
	res.lockedAt, res.release = lockedAt, src
	if err := m.setState(ctx, rec, "prepared", ""); err != nil {
		return err
	}
	m.hook(StepPrepared)
	return nil
}
