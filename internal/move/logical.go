package move

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The logical mode, step by step (copyAndStream):
//
//  1. a session on the source holds the schema's advisory lock for the
//     whole move (the fleet runner's schema applies wait: a changed table
//     would break the stream);
//  2. the target is built from the tenant's HCL; a publication lists the
//     source's tables; a temporary slot is created on a replication
//     connection, exporting its snapshot;
//  3. the rows are copied under that snapshot (binary COPY, indexes built
//     after) and the target commits;
//  4. the slot streams every change committed after its snapshot; the
//     applier applies them in commit order and confirms its position;
//  5. a second temporary slot's snapshot fixes a point of the source; the
//     applier pauses between the transactions before and after that point
//     long enough for the target to take its own snapshot, and every table
//     is compared on both (counts and row hashes) while writes go on;
//  6. the switch: the source's tables are locked against writes, a marker
//     emitted after the lock tells when everything before it is applied,
//     the rows changed since the verified point are compared, sequences are
//     synced, and the source is retired in a prepared transaction.
//
// Slots are temporary: the server drops them when the mover's connection
// ends, crash or not. The publication is dropped on success, on failure and
// before a rerun starts over.

// Limits of the logical mode.
const (
	// catchUpGoal: the switch starts once a marker is applied this soon
	// after it was emitted (the target is close behind).
	catchUpGoal = 100 * time.Millisecond
	// catchUpRounds bounds the attempts to get that close before switching anyway.
	catchUpRounds = 30
	// switchAttempts bounds the switches that give up on a lock and try again.
	switchAttempts = 5
	// switchLockTimeout bounds the wait for the source's write locks at the
	// switch (in-flight writes must finish).
	switchLockTimeout = 2 * time.Second
	// markerTimeout bounds the wait for a marker once the source is locked.
	markerTimeout = 30 * time.Second
	// switchKeys: the switch starts once at most this many rows changed
	// since the last verified point (it checks them with writes blocked);
	// maxCheckRounds bounds the verifications of the rows changed meanwhile.
	switchKeys     = 256
	maxCheckRounds = 5
)

// checkLogical tells, in one line, why a move from pl cannot use logical
// replication, or returns nil.
func (m *Mover) checkLogical(ctx context.Context, pl tenant.Placement) error {
	db, done, err := m.cl.TenantDB(ctx, pl)
	if err != nil {
		return err
	}
	defer done()
	var walLevel, user string
	var replication bool
	var freeSlots, freeSenders int
	if err := db.QueryRowContext(ctx, `SELECT current_setting('wal_level'), current_user::text,
			coalesce((SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), false),
			current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots),
			current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication)`).Scan(
		&walLevel, &user, &replication, &freeSlots, &freeSenders); err != nil {
		return fmt.Errorf("move: check the source server: %w", err)
	}
	var keyless []string
	rows, err := db.QueryContext(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		   AND NOT (c.relreplident = 'd' AND EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
		   AND NOT (c.relreplident = 'i' AND EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident))
		 ORDER BY 1`, pl.Schema)
	if err != nil {
		return fmt.Errorf("move: check the source tables: %w", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		keyless = append(keyless, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if reason := logicalBlocker(pl.Cluster, walLevel, user, replication, freeSlots, freeSenders, keyless); reason != "" {
		return fmt.Errorf("%w: %s; move with --mode=lock to copy with writes blocked instead", ErrLogicalUnavailable, reason)
	}
	return m.checkPrepared(ctx, pl.Cluster)
}

// logicalBlocker names what keeps a server from streaming a tenant's
// changes, or returns "".
func logicalBlocker(cluster, walLevel, user string, replication bool, freeSlots, freeSenders int, keyless []string) string {
	switch {
	case walLevel != "logical":
		return fmt.Sprintf("wal_level is %s on cluster %s (logical replication needs wal_level = logical, then a restart)", walLevel, cluster)
	case !replication:
		return fmt.Sprintf("role %s has no REPLICATION attribute on cluster %s (ALTER ROLE %s REPLICATION)", user, cluster, user)
	case freeSlots < 2:
		return fmt.Sprintf("cluster %s has %d free replication slots, a move needs 2 (max_replication_slots)", cluster, max(freeSlots, 0))
	case freeSenders < 2:
		return fmt.Sprintf("cluster %s has %d free WAL senders, a move needs 2 (max_wal_senders)", cluster, max(freeSenders, 0))
	case len(keyless) == 1:
		return fmt.Sprintf("table %s has no primary key to apply its changes by", keyless[0])
	case len(keyless) > 1:
		return fmt.Sprintf("tables %s have no primary key to apply their changes by", strings.Join(keyless, ", "))
	}
	return ""
}

// replConnect opens a logical replication connection to a database.
func (m *Mover) replConnect(ctx context.Context, pl tenant.Placement) (*pgconn.PgConn, error) {
	raw, err := m.cl.AdminURL(pl.Cluster, pl.Database)
	if err != nil {
		return nil, err
	}
	cfg, err := pgconn.ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "publicdigit-move"
	cfg.RuntimeParams["replication"] = "database"
	for k, v := range formatParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("move: replication connection to %s on cluster %s: %w", pl.Database, pl.Cluster, err)
	}
	return conn, nil
}

// slot is a created slot: where its stream starts and the snapshot that
// sees exactly what committed before.
type slot struct {
	lsn      pglogrepl.LSN
	snapshot string
}

var snapshotName = regexp.MustCompile(`^[0-9A-F]+-[0-9A-F]+-[0-9]+$`)

// createSlot creates a temporary pgoutput slot on conn (a replication
// connection to cluster), exporting its snapshot (valid until conn runs
// another command). The server first waits for every transaction with an
// id on it to end, prepared ones included: a prepared transaction older
// than Options.PreparedGrace (one a crash or an operator left behind, which
// nothing would ever end) fails the creation at once, or as soon as it
// gets that old, naming it; any other wait is bounded by
// Options.SlotTimeout and names the oldest transaction.
func (m *Mover) createSlot(ctx context.Context, conn *pgconn.PgConn, cluster, name string) (slot, error) {
	if err := m.checkPrepared(ctx, cluster); err != nil {
		return slot{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, m.o.SlotTimeout)
	defer cancel()
	blocked := make(chan error, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(min(max(m.o.PreparedGrace/4, 100*time.Millisecond), time.Second))
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			if err := m.checkPrepared(sctx, cluster); errors.Is(err, ErrLogicalUnavailable) {
				blocked <- err
				cancel()
				return
			}
		}
	}()
	r, err := pglogrepl.CreateReplicationSlot(sctx, conn, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication,
	})
	timedOut := errors.Is(sctx.Err(), context.DeadlineExceeded)
	cancel()
	<-watched
	if err != nil {
		select {
		case berr := <-blocked:
			return slot{}, berr
		default:
		}
		if timedOut && ctx.Err() == nil {
			return slot{}, fmt.Errorf("move: create replication slot: a transaction running on cluster %s did not end within %s%s",
				cluster, m.o.SlotTimeout, m.oldestTransaction(ctx, cluster))
		}
		return slot{}, fmt.Errorf("move: create replication slot: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(r.ConsistentPoint)
	if err != nil {
		return slot{}, fmt.Errorf("move: replication slot: %w", err)
	}
	if !snapshotName.MatchString(r.SnapshotName) {
		return slot{}, fmt.Errorf("move: replication slot: unexpected snapshot name %q", r.SnapshotName)
	}
	return slot{lsn: lsn, snapshot: r.SnapshotName}, nil
}

// checkPrepared fails with ErrLogicalUnavailable, naming them, when
// prepared transactions older than Options.PreparedGrace are on a server:
// no logical slot can be created there until someone commits or rolls them
// back. Younger ones (a move's own switch holds one for milliseconds) are
// waited for.
func (m *Mover) checkPrepared(ctx context.Context, cluster string) error {
	server, err := m.cl.Admin(cluster)
	if err != nil {
		return err
	}
	rows, err := server.QueryContext(ctx, `SELECT gid, database::text, prepared, extract(epoch FROM now() - prepared)::float8
		  FROM pg_prepared_xacts WHERE prepared < now() - make_interval(secs => $1) ORDER BY prepared`,
		m.o.PreparedGrace.Seconds())
	if err != nil {
		return fmt.Errorf("move: list prepared transactions on cluster %s: %w", cluster, err)
	}
	defer rows.Close()
	var names []string
	moveLeft := false
	for rows.Next() {
		var gid, database string
		var since time.Time
		var age float64
		if err := rows.Scan(&gid, &database, &since, &age); err != nil {
			return err
		}
		names = append(names, fmt.Sprintf("%q in database %s (prepared %s ago, at %s)", gid, database,
			time.Duration(age*float64(time.Second)).Round(time.Second), since.UTC().Format(time.RFC3339)))
		moveLeft = moveLeft || strings.HasPrefix(gid, "pd_move_")
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	what, blocks, end := "prepared transaction "+names[0], "blocks", "it ends"
	if len(names) > 1 {
		what, blocks, end = fmt.Sprintf("%d prepared transactions: %s", len(names), strings.Join(names, ", ")), "block", "they end"
	}
	hint := "end it with COMMIT PREPARED or ROLLBACK PREPARED in its database"
	if moveLeft {
		hint = "a pd_move_ transaction is an interrupted move: run that move again (tenantctl tenant moves lists it); end any other with COMMIT PREPARED or ROLLBACK PREPARED in its database"
	}
	return fmt.Errorf("%w: %s %s the creation of replication slots on cluster %s until %s; %s, then retry, or move with --mode=lock",
		ErrLogicalUnavailable, what, blocks, cluster, end, hint)
}

// oldestTransaction describes the oldest prepared or running transaction
// on a server, for an error message.
func (m *Mover) oldestTransaction(ctx context.Context, cluster string) string {
	server, err := m.cl.Admin(cluster)
	if err != nil {
		return ""
	}
	var what string
	if server.QueryRowContext(ctx, `SELECT format(' (prepared transaction %s in %s since %s%s)', gid, database, prepared,
			CASE WHEN gid LIKE 'pd_move_%' THEN ': an interrupted move; run it again' ELSE '' END)
		  FROM pg_prepared_xacts ORDER BY prepared LIMIT 1`).Scan(&what) == nil {
		return what
	}
	if server.QueryRowContext(ctx, `SELECT format(' (process %s of %s in %s, in a transaction since %s)', pid, usename, datname, xact_start)
		  FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY xact_start LIMIT 1`).Scan(&what) == nil {
		return what
	}
	return ""
}

// importSnapshot starts a read-only transaction on conn that sees the
// slot's snapshot.
func importSnapshot(ctx context.Context, conn *pgx.Conn, s slot) error {
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '"+s.snapshot+"'; "+sessionFormats); err != nil {
		return fmt.Errorf("move: import snapshot: %w", err)
	}
	return nil
}

// emit writes a marker into the source's change stream (committed at once).
func emit(ctx context.Context, conn *pgx.Conn, rec record, marker string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2)", rec.slotName(), marker); err != nil {
		return fmt.Errorf("move: mark the change stream: %w", err)
	}
	return nil
}

// dropArtefacts removes the move's publication and slots from the source,
// whatever state an earlier run left them in. A slot still held by a
// connection of a killed mover is freed by ending that connection.
func (m *Mover) dropArtefacts(ctx context.Context, rec record) error {
	db, done, err := m.cl.TenantDB(ctx, rec.From)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		_, err = db.ExecContext(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{rec.slotName()}.Sanitize())
		done()
		if err != nil {
			return fmt.Errorf("move: drop publication: %w", err)
		}
	case errors.As(err, &pgErr) && pgErr.Code == "3D000":
		// The source database is retired (renamed): its publication went first.
	default:
		return err
	}
	server, err := m.cl.Admin(rec.From.Cluster)
	if err != nil {
		return err
	}
	for _, name := range []string{rec.slotName(), rec.verifySlotName()} {
		if err := dropSlot(ctx, server, name); err != nil {
			return err
		}
	}
	return nil
}

// dropSlot makes sure no slot of that name is left on a server.
func dropSlot(ctx context.Context, server *sql.DB, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pid sql.NullInt32
		err := server.QueryRowContext(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&pid)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("move: replication slots: %w", err)
		}
		if pid.Valid {
			// A temporary slot goes with its connection.
			_, err = server.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid.Int32)
		} else {
			_, err = server.ExecContext(ctx, `SELECT pg_drop_replication_slot($1)`, name)
		}
		var pgErr *pgconn.PgError
		if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42704" || pgErr.Code == "55006")) { // gone, or in use meanwhile
			return fmt.Errorf("move: drop replication slot %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("move: replication slot %s is still in use", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// copyAndStream is the logical mode, from a clean start to the source
// retired in a prepared transaction.
func (m *Mover) copyAndStream(ctx context.Context, t tenant.Tenant, rec *record, res *Result) error {
	from, to := rec.From, rec.To
	guard, err := m.connect(ctx, from.Cluster, from.Database)
	if err != nil {
		return err
	}
	defer func() {
		if res.release != guard { // kept to commit the prepared transaction
			guard.Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := guard.Exec(ctx, "SELECT set_config('lock_timeout', $1, false)", fmt.Sprintf("%dms", m.o.LockTimeout.Milliseconds())); err != nil {
		return err
	}
	if _, err := guard.Exec(ctx, "SELECT pg_advisory_lock(hashtext('schema:' || $1))", from.Schema); err != nil {
		return fmt.Errorf("move: lock source schema: %w", err)
	}
	srcTables, err := tables(ctx, guard, from.Schema)
	if err != nil {
		return err
	}
	if len(srcTables) == 0 {
		return fmt.Errorf("move: source schema %s has no tables", from.Schema)
	}
	seqs, err := sequences(ctx, guard, from.Schema)
	if err != nil {
		return err
	}
	if err := m.buildTarget(ctx, t, *rec); err != nil {
		return err
	}
	if _, err := guard.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{rec.slotName()}.Sanitize()+" FOR TABLE "+
		idents(srcTables, from.Schema)+" WITH (publish_via_partition_root = true)"); err != nil {
		return fmt.Errorf("move: create publication: %w", err)
	}
	repl, err := m.replConnect(ctx, from)
	if err != nil {
		return err
	}
	defer repl.Close(context.WithoutCancel(ctx))
	sl, err := m.createSlot(ctx, repl, from.Cluster, rec.slotName())
	if err != nil {
		return err
	}
	m.hook(StepSlot)

	// Copy under the slot's snapshot.
	out, err := m.loadParallel(ctx, *rec, srcTables, sl, m.o.CopyWorkers)
	if err != nil {
		return err
	}
	// The sessions that verify and switch: the target's, and a source
	// session for markers.
	src, err := m.connect(ctx, from.Cluster, from.Database)
	if err != nil {
		return err
	}
	defer src.Close(context.WithoutCancel(ctx))
	dst, err := m.connect(ctx, to.Cluster, to.Database)
	if err != nil {
		return err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	res.Copy, rec.Rows = out.copy, out.rows
	if err := m.setState(ctx, rec, "copied", ", rows_copied = $3", out.rows); err != nil {
		return err
	}
	m.hook(StepCopied)

	// Stream what changed since, and catch up.
	applyConn, err := m.connect(ctx, to.Cluster, to.Database, formatParams)
	if err != nil {
		return err
	}
	defer applyConn.Close(context.WithoutCancel(ctx))
	a, err := startApply(ctx, repl, applyConn.PgConn(), rec.slotName(), sl.lsn, from.Schema, to.Schema, m.o.Log)
	if err != nil {
		return err
	}
	defer a.stop()
	catchUp := time.Now()
	if err := m.catchUp(ctx, a, guard, *rec, "caught up"); err != nil {
		return err
	}
	res.CatchUp = time.Since(catchUp)

	// Verify the whole target at one point, then the rows changed since at
	// later points, until few enough changed for the switch to check them.
	verifyStart := time.Now()
	if err := m.verifyAtSnapshot(ctx, a, *rec, srcTables, guard, src, dst, true); err != nil {
		return err
	}
	for round := 0; round < maxCheckRounds && a.keysSince() > switchKeys; round++ {
		if err := m.verifyAtSnapshot(ctx, a, *rec, srcTables, guard, src, dst, false); err != nil {
			return err
		}
	}
	res.Verify = time.Since(verifyStart)
	if err := m.setState(ctx, rec, "streaming", ""); err != nil {
		return err
	}
	m.hook(StepStreaming)

	for attempt := 1; ; attempt++ {
		if err := m.catchUp(ctx, a, guard, *rec, fmt.Sprintf("before switch %d", attempt)); err != nil {
			return err
		}
		err := m.trySwitch(ctx, t, *rec, res, a, guard, src, dst, srcTables, seqs, attempt)
		if err == nil {
			break
		}
		var pgErr *pgconn.PgError
		retry := errors.As(err, &pgErr) && (pgErr.Code == "55P03" || pgErr.Code == "40P01") // lock_not_available, deadlock_detected
		if !retry || attempt == switchAttempts {
			return err
		}
		m.o.Log.Warn().Str("tenant", t.Slug.String()).Err(err).Int("attempt", attempt).Msg("move: switch gave up on a lock; trying again")
	}
	m.hook(StepPrepared)
	return nil
}

// catchUp emits markers until one is applied within catchUpGoal of its
// emission (or catchUpRounds have passed), recording the lag meanwhile.
func (m *Mover) catchUp(ctx context.Context, a *applier, ctl *pgx.Conn, rec record, what string) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for round := 0; round < catchUpRounds; round++ {
		marker := fmt.Sprintf("%s, round %d", what, round)
		reached := a.expect(marker)
		start := time.Now()
		if err := emit(ctx, ctl, rec, marker); err != nil {
			return err
		}
	wait:
		for {
			select {
			case <-reached:
				break wait
			case <-tick.C:
				m.recordLag(ctx, rec, a.lag())
			case <-a.done:
				return a.failure()
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if time.Since(start) < catchUpGoal {
			break
		}
	}
	m.recordLag(ctx, rec, a.lag())
	return nil
}

// verifyAtSnapshot compares the target with the source at one point of the
// stream, while writes go on: a second slot's snapshot fixes the source's
// side; the applier stops between the transactions before and after that
// point while the target takes its snapshot. full compares every table;
// otherwise the rows changed since the previous point. From there the
// applier records anew the keys it touches.
func (m *Mover) verifyAtSnapshot(ctx context.Context, a *applier, rec record, tables []table, ctl, src, dst *pgx.Conn, full bool) error {
	a.hold() // nothing applied from now on can be after the snapshot below
	repl, err := m.replConnect(ctx, rec.From)
	if err != nil {
		return err
	}
	sl, err := m.createSlot(ctx, repl, rec.From.Cluster, rec.verifySlotName())
	if err == nil {
		err = importSnapshot(ctx, src, sl)
	}
	repl.Close(context.WithoutCancel(ctx)) // the temporary slot goes with it
	if err != nil {
		return err
	}
	defer src.Exec(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // read-only
	defer dst.Exec(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // read-only
	marker := "verification point " + sl.lsn.String()
	cp := a.checkpointAt(sl.lsn, marker, func() error {
		_, err := dst.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "+sessionFormats+"; SELECT 1")
		return err
	})
	if err := emit(ctx, ctl, rec, marker); err != nil {
		return err
	}
	select {
	case err := <-cp.done:
		if err != nil {
			return fmt.Errorf("move: target snapshot: %w", err)
		}
	case <-a.done:
		return a.failure()
	case <-ctx.Done():
		return ctx.Err()
	}
	if full || cp.touched == nil {
		for _, tb := range tables {
			if err := verify(ctx, src, dst, tb, rec.From.Schema, rec.To.Schema); err != nil {
				return err
			}
		}
	} else if err := checkKeys(ctx, src.PgConn(), dst.PgConn(), tables, rec.From.Schema, rec.To.Schema, cp.touched, cp.truncated, nil); err != nil {
		return err
	}
	server, err := m.cl.Admin(rec.From.Cluster)
	if err != nil {
		return err
	}
	return dropSlot(ctx, server, rec.verifySlotName())
}

// trySwitch locks the source's tables against writes, waits until the
// target has applied everything committed before, checks the rows changed
// since the verification point, syncs sequences and retires the source in
// a prepared transaction. On error the source transaction is rolled back
// (writes resume on the source).
func (m *Mover) trySwitch(ctx context.Context, t tenant.Tenant, rec record, res *Result, a *applier,
	guard, ctl, dst *pgx.Conn, tables []table, seqs []string, attempt int) (err error) {
	lockedAt := time.Now()
	prepared := false
	defer func() {
		if !prepared {
			_, _ = guard.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if _, err := guard.Exec(ctx, fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = %d; %s; LOCK TABLE %s IN EXCLUSIVE MODE",
		switchLockTimeout.Milliseconds(), sessionFormats, idents(tables, rec.From.Schema))); err != nil {
		return fmt.Errorf("move: lock source tables: %w", err)
	}
	st := SwitchTimes{Lock: time.Since(lockedAt)}
	m.hook(StepLocked)
	mark := time.Now()
	marker := fmt.Sprintf("switch %d", attempt)
	reached := a.expect(marker)
	if err := emit(ctx, ctl, rec, marker); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, markerTimeout)
	err = a.wait(wctx, reached)
	cancel()
	if err != nil {
		return fmt.Errorf("move: apply the last changes: %w", err)
	}
	st.CatchUp = time.Since(mark)
	check := time.Now()
	touched, truncated := a.touchedSince()
	for _, ks := range touched {
		st.Keys += len(ks.keys)
	}
	if err := checkKeys(ctx, guard.PgConn(), dst.PgConn(), tables, rec.From.Schema, rec.To.Schema, touched, truncated, seqs); err != nil {
		return err
	}
	st.Check = time.Since(check)
	retire := time.Now()
	if err := m.retire(ctx, guard, t, rec, tables); err != nil {
		return err
	}
	st.Retire = time.Since(retire)
	prepared = true
	res.lockedAt, res.release, res.Switch = lockedAt, guard, st
	return nil
}

// checkKeys compares, on both sides at once and in one round trip each,
// the rows of the keys changed since a verification point (counts and row
// hashes by key, through the keys' indexes; a truncated table whole), reads
// the source's sequences, and gives their positions to the target's.
func checkKeys(ctx context.Context, src, dst *pgconn.PgConn, tables []table, fromSchema, toSchema string,
	touched map[string]*keySet, truncated map[string]bool, seqs []string) error {
	type part struct {
		tb   table
		n    int // results
		keys int
	}
	build := func(b *pgconn.Batch, schema string) []part {
		var parts []part
		for _, tb := range tables {
			switch ks := touched[tb.name]; {
			case truncated[tb.name]:
				b.ExecParams(checksumSQL(tb, schema, ""), nil, nil, nil, nil)
				parts = append(parts, part{tb: tb, n: 1})
			case ks != nil && len(ks.columns) == 1:
				vals := make([]string, 0, len(ks.keys))
				for _, v := range ks.keys {
					vals = append(vals, arrayElement(v[0]))
				}
				where := pgx.Identifier{ks.columns[0]}.Sanitize() + " = ANY($1)"
				b.ExecParams(checksumSQL(tb, schema, where), [][]byte{[]byte("{" + strings.Join(vals, ",") + "}")}, nil, nil, nil)
				parts = append(parts, part{tb: tb, n: 1, keys: len(ks.keys)})
			case ks != nil:
				conds := make([]string, len(ks.columns))
				for i, c := range ks.columns {
					conds[i] = fmt.Sprintf("%s = $%d", pgx.Identifier{c}.Sanitize(), i+1)
				}
				q := checksumSQL(tb, schema, strings.Join(conds, " AND "))
				for _, v := range ks.keys {
					params := make([][]byte, len(v))
					for i := range v {
						params[i] = []byte(v[i])
					}
					b.ExecParams(q, params, nil, nil, nil)
				}
				parts = append(parts, part{tb: tb, n: len(ks.keys), keys: len(ks.keys)})
			}
		}
		return parts
	}
	// A few hundred keys make the planner prefer a scan of the whole table.
	srcBatch := &pgconn.Batch{}
	srcBatch.ExecParams("SET enable_seqscan = off", nil, nil, nil, nil)
	parts := build(srcBatch, fromSchema)
	for _, sq := range seqs {
		srcBatch.ExecParams("SELECT last_value, is_called FROM "+pgx.Identifier{fromSchema, sq}.Sanitize(), nil, nil, nil, nil)
	}
	srcBatch.ExecParams("RESET enable_seqscan", nil, nil, nil, nil)
	dstBatch := &pgconn.Batch{}
	dstBatch.ExecParams("SET enable_seqscan = off", nil, nil, nil, nil)
	build(dstBatch, toSchema)
	dstBatch.ExecParams("RESET enable_seqscan", nil, nil, nil, nil)
	type out struct {
		results []*pgconn.Result
		err     error
	}
	srcOut := make(chan out, 1)
	go func() {
		r, err := src.ExecBatch(ctx, srcBatch).ReadAll()
		srcOut <- out{r, err}
	}()
	dstResults, err := dst.ExecBatch(ctx, dstBatch).ReadAll()
	so := <-srcOut
	if so.err != nil {
		return fmt.Errorf("move: check the changed rows on the source: %w", so.err)
	}
	if err != nil {
		return fmt.Errorf("move: check the changed rows on the target: %w", err)
	}
	if len(so.results) < 2 || len(dstResults) < 2 {
		return errors.New("move: check the changed rows: unexpected results")
	}
	// Without the SETs and RESETs.
	so.results, dstResults = so.results[1:len(so.results)-1], dstResults[1:len(dstResults)-1]
	if len(so.results) != len(dstResults)+len(seqs) {
		return errors.New("move: check the changed rows: unexpected results")
	}
	at := 0
	for _, p := range parts {
		n1, s1, err := foldChecksums(so.results[at : at+p.n])
		if err != nil {
			return err
		}
		n2, s2, err := foldChecksums(dstResults[at : at+p.n])
		if err != nil {
			return err
		}
		if n1 != n2 || s1.Cmp(s2) != 0 {
			return fmt.Errorf("%w: table %s, %d changed keys: %d rows (checksum %s) on the source, %d (%s) on the target",
				ErrVerify, p.tb.name, p.keys, n1, s1, n2, s2)
		}
		at += p.n
	}
	if len(seqs) == 0 {
		return nil
	}
	set := &pgconn.Batch{}
	for i, sq := range seqs {
		r := so.results[at+i]
		if len(r.Rows) != 1 || len(r.Rows[0]) != 2 {
			return fmt.Errorf("move: sequence %s: unexpected result", sq)
		}
		set.ExecParams("SELECT setval($1::regclass, $2, $3)", [][]byte{[]byte(pgx.Identifier{toSchema, sq}.Sanitize()),
			r.Rows[0][0], r.Rows[0][1]}, nil, nil, nil)
	}
	if _, err := dst.ExecBatch(ctx, set).ReadAll(); err != nil {
		return fmt.Errorf("move: sync sequences: %w", err)
	}
	return nil
}

// foldChecksums adds up checksum results (count, sum).
func foldChecksums(results []*pgconn.Result) (int64, *big.Int, error) {
	total, sum := int64(0), new(big.Int)
	for _, r := range results {
		if len(r.Rows) != 1 || len(r.Rows[0]) != 2 {
			return 0, nil, errors.New("move: unexpected checksum result")
		}
		n, err := strconv.ParseInt(string(r.Rows[0][0]), 10, 64)
		if err != nil {
			return 0, nil, err
		}
		s, ok := new(big.Int).SetString(string(r.Rows[0][1]), 10)
		if !ok {
			return 0, nil, fmt.Errorf("move: checksum %q", r.Rows[0][1])
		}
		total += n
		sum.Add(sum, s)
	}
	return total, sum, nil
}

// sequences lists a schema's sequences.
func sequences(ctx context.Context, conn *pgx.Conn, schema string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'S' ORDER BY 1`, schema)
	if err != nil {
		return nil, fmt.Errorf("move: sequences: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// arrayElement quotes a value for a text array literal.
func arrayElement(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}
