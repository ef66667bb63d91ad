// Package move moves a tenant between placements online: schema ⇄ dedicated
// database, and from one cluster (PostgreSQL server) to another, including
// within one server.
//
// Two modes carry the rows (docs/MOVES.md explains the choice):
//
//   - ModeLogical (the default): the mover copies the tables under the
//     snapshot of a temporary logical replication slot, streams the changes
//     made meanwhile from that slot and applies them to the target itself
//     (pgoutput, decoded with pglogrepl; no subscription, so no superuser),
//     verifies the target against a second snapshot while writes go on, and
//     only then blocks writes for the switch: lock the source, apply the last
//     changes, verify what changed since, sync sequences, retire the source.
//     Writes wait for the switch alone, whatever the tenant's size.
//   - ModeLock: the source's tables stay locked for writes during the whole
//     copy; for servers without logical replication.
//
// Either way the switch ends the same, with the tenant's operation lock held:
// the source schema is renamed to a retired name and closed to the tenant's
// role under ACCESS EXCLUSIVE locks in a PREPAREd transaction (its locks
// survive a crash of the mover, so nothing reads or writes a copy being
// retired); the catalog flips (placement, status active, version, NOTIFY);
// COMMIT PREPARED releases the waiting statements, which find their tables
// gone and are retried once by the router on the new placement.
//
// A move killed at any point leaves the tenant served from one complete
// placement (the source before the flip, the target after), and running the
// same move again finishes it or starts it over. A failed move leaves the
// tenant on its source, intact, and removes what it built. Neither leaves a
// publication or a replication slot behind.
package move

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/apperr"
	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Mode says how a move carries the rows.
type Mode string

// The modes.
const (
	// ModeLogical copies under a slot's snapshot and streams the changes made
	// meanwhile; writes wait only for the final switch.
	ModeLogical Mode = "logical"
	// ModeLock copies with the source's writes blocked for the whole copy.
	ModeLock Mode = "lock"
)

// ParseMode accepts "logical", "lock" and "" (logical).
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeLogical:
		return ModeLogical, nil
	case ModeLock:
		return ModeLock, nil
	}
	return "", fmt.Errorf("%w: move mode %q (logical or lock)", tenant.ErrInvalid, s)
}

// Step names a point of a move where tests kill the process.
type Step string

// The points, in the order a move passes them (lock mode skips slot and
// streaming; its locked comes before the copy, logical mode's before the
// switch).
const (
	StepStarted   Step = "started"   // tenant marked moving, target not built
	StepSlot      Step = "slot"      // logical: publication and slot made, nothing copied
	StepLocked    Step = "locked"    // source tables locked (lock: nothing copied; logical: the switch began)
	StepMidCopy   Step = "mid-copy"  // first table copied, target not complete
	StepLoaded    Step = "loaded"    // logical: every table copied, keys rebuilt, the copy's sessions still open
	StepCopied    Step = "copied"    // target committed (lock: and verified)
	StepStreaming Step = "streaming" // logical: changes applied, target verified against a snapshot
	StepPrepared  Step = "prepared"  // source retired and prepared, catalog not flipped
	StepFlipped   Step = "flipped"   // catalog flipped, source transaction still prepared
	StepDone      Step = "done"      // move finished
)

// Errors of a move request.
var (
	// ErrSamePlacement: the tenant already is where it is asked to go.
	ErrSamePlacement = apperr.New("same_placement", "tenant is already on that placement")
	// ErrAlreadyMoving: another move of the tenant is unfinished.
	ErrAlreadyMoving = apperr.New("already_moving", "tenant is already moving")
	// ErrVerify: the copy does not match the source (nothing was flipped).
	ErrVerify = apperr.New("move_verify_failed", "copy verification failed")
	// ErrLogicalUnavailable: the source server cannot stream changes (wal_level,
	// privileges, free slots) or a table has no key; mode lock still works.
	ErrLogicalUnavailable = apperr.New("logical_replication_unavailable",
		"logical replication is not available for this move; move with mode lock")
)

// ModuleFiles lists the schema files of a tenant's installed modules (the
// module registry, internal/modules, implements it).
type ModuleFiles interface {
	FilesOf(ctx context.Context, tenantID uuid.UUID) ([]string, error)
}

// Options configure a Mover.
type Options struct {
	// Catalog, Clusters and Modules are required.
	Catalog  *catalog.Catalog
	Clusters *clusters.Clusters
	Modules  ModuleFiles
	// AppRole (config tenant.app_role) is granted the tenant's role on the target.
	AppRole string
	Log     zerolog.Logger
	// LockTimeout bounds the wait for the source's table locks (in-flight
	// writes must finish first). Default 5s.
	LockTimeout time.Duration
	// CopyWorkers is how many tables a logical move copies at once (each
	// with a session on both servers). Default 2.
	CopyWorkers int
	// SlotTimeout bounds the wait of a logical move for its replication
	// slot: the source server first waits for every transaction running on
	// it to end. Default 2 minutes.
	SlotTimeout time.Duration
	// PreparedGrace: a prepared transaction older than this on the source
	// server (nothing ends it but COMMIT or ROLLBACK PREPARED) fails a
	// logical move before it waits for a slot, naming the transaction.
	// Default 10s (a move's own switch holds one for milliseconds).
	PreparedGrace time.Duration
	// Hook, when set, is called at each Step (fault injection in tests).
	Hook func(Step)
}

// Mover runs moves. Safe for concurrent use (moves of one tenant serialize
// on its operation lock).
type Mover struct {
	o   Options
	cat *catalog.Catalog
	cl  *clusters.Clusters
}

// New returns a Mover.
func New(o Options) (*Mover, error) {
	if o.Catalog == nil || o.Clusters == nil || o.Modules == nil {
		return nil, errors.New("move: Catalog, Clusters and Modules are required")
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.CopyWorkers <= 0 {
		o.CopyWorkers = 2
	}
	if o.SlotTimeout <= 0 {
		o.SlotTimeout = 2 * time.Minute
	}
	if o.PreparedGrace <= 0 {
		o.PreparedGrace = 10 * time.Second
	}
	return &Mover{o: o, cat: o.Catalog, cl: o.Clusters}, nil
}

func (m *Mover) hook(s Step) {
	if m.o.Hook != nil {
		m.o.Hook(s)
	}
}

// Request asks to move a tenant.
type Request struct {
	Slug tenant.Slug
	// To is the target placement kind.
	To tenant.PlacementKind
	// Cluster is the target cluster; empty keeps the tenant's cluster.
	Cluster string
	// Mode carries the rows; empty is ModeLogical.
	Mode Mode
}

// Result describes a finished move.
type Result struct {
	Tenant tenant.Tenant
	From   tenant.Placement
	Mode   Mode
	// Retired is the name the source schema (and dedicated database) got.
	Retired string
	// Rows copied, and how long writes waited (source tables locked).
	Rows       int64
	WritePause time.Duration
	// Copy is the time spent copying the rows and building the target's
	// indexes; Verify the time spent comparing whole tables (lock mode: with
	// writes blocked; logical mode: while they go on); CatchUp the time the
	// logical mode spent applying the changes made during the copy.
	Copy     time.Duration
	Verify   time.Duration
	CatchUp  time.Duration
	Duration time.Duration
	// Resumed is true when an interrupted move was finished.
	Resumed bool
	// Restarts counts the fresh starts of a logical move whose change stream
	// failed (a new slot, a new copy).
	Restarts int
	// Switch breaks the write pause down (this run's last switch).
	Switch SwitchTimes

	lockedAt time.Time // when the source's tables were locked (this run)
	release  *pgx.Conn // the session that prepared the source transaction, to commit it
}

// SwitchTimes are the parts of a write pause: waiting for the source's
// locks (in-flight writes end first), applying the last changes (logical),
// comparing the rows they touched (Keys of them), syncing sequences and
// retiring the source (prepared), flipping the catalog, releasing the
// source (COMMIT PREPARED).
type SwitchTimes struct {
	Lock, CatchUp, Check, Retire, Flip, Release time.Duration
	Keys                                        int
}

// record is a landlord.tenant_moves row.
type record struct {
	ID      string
	From    tenant.Placement
	To      tenant.Placement
	Mode    Mode
	State   string
	Retired string
	Rows    int64
}

// gid names the prepared source transaction of a move.
func (r record) gid() string { return "pd_move_" + r.ID }

// slotName names the move's publication and replication slot (logical
// mode): pd_move_ and the move id without dashes, a valid unquoted name.
func (r record) slotName() string { return "pd_move_" + strings.ReplaceAll(r.ID, "-", "") }

// verifySlotName names the short-lived slot whose snapshot verifies the target.
func (r record) verifySlotName() string { return r.slotName() + "_v" }

// Move moves a tenant, or finishes its interrupted move to the same target.
// The move is recorded in the audit trail in the transaction that flips the
// catalog (a failed one after the fact).
func (m *Mover) Move(ctx context.Context, req Request) (Result, error) {
	var res Result
	ev := audit.Event{Action: audit.TenantMove, Tenant: req.Slug.String(),
		Detail: map[string]any{"to_placement": string(req.To), "to_cluster": req.Cluster}}
	err := m.cat.WithTenantLock(ctx, req.Slug, func(ctx context.Context, t tenant.Tenant) (err error) {
		ev.TenantID = t.ID
		res, err = m.move(ctx, req, t)
		return err
	})
	if err != nil {
		m.cat.Audit().Failed(ctx, ev, err)
	}
	return res, err
}

// move runs Move with the tenant's operation lock held.
func (m *Mover) move(ctx context.Context, req Request, t tenant.Tenant) (Result, error) {
	start := time.Now()
	mode, err := ParseMode(string(req.Mode))
	if err != nil {
		return Result{}, err
	}
	cluster := req.Cluster
	if cluster == "" {
		cluster = t.Cluster
	}
	target, err := m.cl.PlacementFor(req.Slug, req.To, cluster)
	if err != nil {
		return Result{}, err
	}
	rec, found, err := m.openMove(ctx, t.ID)
	if err != nil {
		return Result{}, err
	}
	res := Result{Resumed: found}
	if found {
		if rec.To != target {
			return Result{}, fmt.Errorf("%w: to %s on cluster %s (run that move again to finish it)",
				ErrAlreadyMoving, rec.To.Kind, rec.To.Cluster)
		}
		m.o.Log.Warn().Str("tenant", t.Slug.String()).Str("state", rec.State).Msg("finishing an interrupted move")
		if rec.State != "flipped" && t.Placement != rec.To && t.Status == tenant.StatusActive {
			// Someone set the tenant active behind the move's back: it is
			// moving until this run ends (the flip expects it).
			if err := m.remarkMoving(ctx, t); err != nil {
				return Result{}, err
			}
		}
	} else {
		if t.Placement == target {
			return Result{}, fmt.Errorf("%w: %s on cluster %s", ErrSamePlacement, target.Kind, target.Cluster)
		}
		if t.Status != tenant.StatusActive {
			return Result{}, &tenant.StatusError{Slug: t.Slug, Status: t.Status, Op: "move"}
		}
		if mode == ModeLogical {
			// Before anything changes: a move that cannot stream says why.
			if err := m.checkLogical(ctx, t.Placement); err != nil {
				return Result{}, err
			}
		}
		if rec, err = m.startMove(ctx, t, target, mode); err != nil {
			return Result{}, err
		}
	}
	res.From = rec.From
	res.Retired = rec.Retired
	m.hook(StepStarted)

	if err := m.run(ctx, t, &rec, mode, &res); err != nil {
		return res, err
	}
	res.Mode = rec.Mode
	res.Duration = time.Since(start)
	if res.Tenant, err = m.cat.Get(ctx, req.Slug); err != nil {
		return res, err
	}
	m.o.Log.Info().Str("tenant", t.Slug.String()).Str("to", string(target.Kind)).Str("cluster", target.Cluster).
		Str("mode", string(rec.Mode)).Int64("rows", res.Rows).Dur("write_pause", res.WritePause).
		Dur("duration", res.Duration).Msg("tenant moved")
	return res, nil
}

// run drives a move from whatever state it is in to done. A move that has
// not prepared its source yet starts over in mode (its leftovers removed).
func (m *Mover) run(ctx context.Context, t tenant.Tenant, rec *record, mode Mode, res *Result) error {
	defer func() {
		if res.release != nil { // the flip failed: the prepared transaction waits for a rerun
			res.release.Close(context.WithoutCancel(ctx))
			res.release = nil
		}
	}()
	prepared, err := m.isPrepared(ctx, *rec)
	if err != nil {
		return err
	}
	switch {
	case rec.State == "flipped" || t.Placement == rec.To:
		// Catalog flipped; finish the source.
	case prepared:
		// The source is retired and locked by the prepared transaction, the
		// target committed and verified before it: flip.
		if err := m.flip(ctx, t, rec); err != nil {
			return err
		}
	default:
		// Nothing durable on the source yet: (re)build and copy.
		if err := m.copyAndPrepare(ctx, t, rec, mode, res); err != nil {
			m.fail(context.WithoutCancel(ctx), t, rec, err)
			return err
		}
		flip := time.Now()
		if err := m.flip(ctx, t, rec); err != nil {
			return err
		}
		res.Switch.Flip = time.Since(flip)
	}
	if err := m.finish(ctx, t, rec, res); err != nil {
		return err
	}
	res.Rows = rec.Rows
	return nil
}

// copyAndPrepare starts (or starts over) the copy in mode and returns once
// the source is retired in a prepared transaction.
func (m *Mover) copyAndPrepare(ctx context.Context, t tenant.Tenant, rec *record, mode Mode, res *Result) error {
	// Leftovers of an interrupted attempt go first: its publication and
	// slots, and its target, maybe half loaded.
	if err := m.dropArtefacts(ctx, *rec); err != nil {
		return err
	}
	if res.Resumed {
		if err := m.dropTarget(ctx, t, *rec); err != nil {
			return err
		}
	}
	if rec.State != "started" || rec.Mode != mode {
		if mode == ModeLogical {
			if err := m.checkLogical(ctx, rec.From); err != nil {
				return err
			}
		}
		if err := m.setState(ctx, rec, "started", ", mode = $3", string(mode)); err != nil {
			return err
		}
		rec.Mode = mode
	}
	if mode == ModeLogical {
		return m.copyAndStreamRestarting(ctx, t, rec, res)
	}
	return m.copyLocked(ctx, t, rec, res)
}

// streamAttempts bounds the fresh starts of a logical move whose change
// stream failed in a way a new slot gets past (restartable).
const streamAttempts = 3

// copyAndStreamRestarting runs the logical mode, starting it over from a
// fresh slot and a rebuilt target when the change stream fails in a way a
// new slot gets past (PostgreSQL's decoder race, a terminated walsender).
// Nothing durable has happened on the source before the prepare: every
// write acknowledged meanwhile is in the source, and the next copy takes it.
func (m *Mover) copyAndStreamRestarting(ctx context.Context, t tenant.Tenant, rec *record, res *Result) error {
	for attempt := 1; ; attempt++ {
		err := m.copyAndStream(ctx, t, rec, res)
		if err == nil || !restartable(err) || attempt == streamAttempts || ctx.Err() != nil {
			return err
		}
		if prepared, perr := m.isPrepared(ctx, *rec); perr != nil || prepared {
			return err // never start over a retired source (cannot happen: the prepare is the last step)
		}
		m.o.Log.Warn().Str("tenant", t.Slug.String()).Err(err).Int("attempt", attempt).
			Msg("move: the change stream failed; starting over from a fresh slot")
		res.Restarts++
		if err := m.dropArtefacts(ctx, *rec); err != nil {
			return err
		}
		if err := m.dropTarget(ctx, t, *rec); err != nil {
			return err
		}
		if err := m.setState(ctx, rec, "started", ", rows_copied = $3", 0); err != nil {
			return err
		}
	}
}

// openMove returns the tenant's unfinished move, if any.
func (m *Mover) openMove(ctx context.Context, tenantID uuid.UUID) (record, bool, error) {
	var r record
	err := m.cat.Admin().QueryRowContext(ctx, `SELECT id::text, from_placement, from_cluster, from_database, from_schema,
			to_placement, to_cluster, to_database, to_schema, mode, state, retired_name, rows_copied
		  FROM landlord.tenant_moves WHERE tenant_id = $1 AND state NOT IN ('done', 'failed')`, tenantID).Scan(
		&r.ID, &r.From.Kind, &r.From.Cluster, &r.From.Database, &r.From.Schema,
		&r.To.Kind, &r.To.Cluster, &r.To.Database, &r.To.Schema, &r.Mode, &r.State, &r.Retired, &r.Rows)
	if errors.Is(err, sql.ErrNoRows) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("move: read state: %w", err)
	}
	return r, true, nil
}

// startMove records the move and marks the tenant moving, in one transaction.
func (m *Mover) startMove(ctx context.Context, t tenant.Tenant, to tenant.Placement, mode Mode) (record, error) {
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return record{}, err
	}
	rec := record{From: t.Placement, To: to, Mode: mode, State: "started", Retired: "pd_retired_" + hex.EncodeToString(suffix[:])}
	tx, err := m.cat.Admin().BeginTx(ctx, nil)
	if err != nil {
		return record{}, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if err := tx.QueryRowContext(ctx, `INSERT INTO landlord.tenant_moves
			(tenant_id, from_placement, from_cluster, from_database, from_schema, to_placement, to_cluster, to_database, to_schema,
			 retired_name, mode)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id::text`,
		t.ID, t.Kind, t.Cluster, t.Database, t.Schema, to.Kind, to.Cluster, to.Database, to.Schema, rec.Retired, string(mode)).Scan(&rec.ID); err != nil {
		return record{}, fmt.Errorf("move: record: %w", err)
	}
	if err := setStatus(ctx, tx, t, tenant.StatusActive, tenant.StatusMoving); err != nil {
		return record{}, err
	}
	if err := tx.Commit(); err != nil {
		return record{}, fmt.Errorf("move: start: %w", err)
	}
	m.cat.Notify(t.Slug)
	return rec, nil
}

// remarkMoving marks a tenant whose move is resumed moving again.
func (m *Mover) remarkMoving(ctx context.Context, t tenant.Tenant) error {
	tx, err := m.cat.Admin().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if err := setStatus(ctx, tx, t, tenant.StatusActive, tenant.StatusMoving); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("move: mark moving: %w", err)
	}
	m.cat.Notify(t.Slug)
	return nil
}

// setStatus changes the tenant's status from → to (version bumped, announced).
func setStatus(ctx context.Context, tx *sql.Tx, t tenant.Tenant, from, to tenant.Status) error {
	return catalog.SetStatus(ctx, tx, t, from, to, "move")
}

func (m *Mover) setState(ctx context.Context, rec *record, state string, extra string, args ...any) error {
	q := `UPDATE landlord.tenant_moves SET state = $2, updated_at = now()` + extra + ` WHERE id = $1`
	if _, err := m.cat.Admin().ExecContext(ctx, q, append([]any{rec.ID, state}, args...)...); err != nil {
		return fmt.Errorf("move: record state %s: %w", state, err)
	}
	rec.State = state
	return nil
}

// recordLag records a streaming move's replication lag (best effort).
func (m *Mover) recordLag(ctx context.Context, rec record, lag time.Duration) {
	_, _ = m.cat.Admin().ExecContext(ctx, `UPDATE landlord.tenant_moves SET lag_ms = $2, updated_at = now() WHERE id = $1`,
		rec.ID, lag.Milliseconds())
}

// fail ends an unsuccessful move before the flip: the tenant is active on
// its source again, and the publication, slots and target are removed.
func (m *Mover) fail(ctx context.Context, t tenant.Tenant, rec *record, cause error) {
	log := m.o.Log.Error().Str("tenant", t.Slug.String()).Err(cause)
	if prepared, err := m.isPrepared(ctx, *rec); err != nil || prepared {
		// Never undo a source that is already retired: a rerun finishes it.
		log.Msg("move failed after the source was retired; run it again to finish")
		return
	}
	tx, err := m.cat.Admin().BeginTx(ctx, nil)
	if err == nil {
		defer tx.Rollback() //nolint:errcheck // no-op after commit
		_, err = tx.ExecContext(ctx, `UPDATE landlord.tenant_moves SET state = 'failed', error = $2, updated_at = now(),
			finished_at = now() WHERE id = $1`, rec.ID, clip(cause.Error(), 500))
		if err == nil {
			err = setStatus(ctx, tx, t, tenant.StatusMoving, tenant.StatusActive)
		}
		if err == nil {
			err = tx.Commit()
		}
	}
	if err != nil {
		log.AnErr("record_error", err).Msg("move failed; could not record it")
		return
	}
	m.cat.Notify(t.Slug)
	if err := m.dropArtefacts(ctx, *rec); err != nil {
		m.o.Log.Warn().Err(err).Str("tenant", t.Slug.String()).Msg("move failed; replication leftovers remain (a rerun removes them)")
	}
	if err := m.dropTarget(ctx, t, *rec); err != nil {
		m.o.Log.Warn().Err(err).Str("tenant", t.Slug.String()).Msg("move failed; target leftovers remain")
	}
	log.Msg("move failed; the tenant stays on its source")
}

// dropTarget removes a target that never went live, and the tenant's role
// on the target's server when the tenant lives on another one.
func (m *Mover) dropTarget(ctx context.Context, t tenant.Tenant, rec record) error {
	if rec.To.Kind == tenant.PlacementDatabase {
		if err := m.cl.DropDatabase(ctx, rec.To.Cluster, rec.To.Database); err != nil {
			return err
		}
	} else {
		db, err := m.cl.Open(ctx, rec.To.Cluster, rec.To.Database)
		if err != nil {
			return err
		}
		_, err = db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{rec.To.Schema}.Sanitize()+" CASCADE")
		db.Close()
		if err != nil {
			return err
		}
	}
	if rec.To.Cluster != rec.From.Cluster {
		return m.dropRole(ctx, rec.To.Cluster, t.Slug.RoleName())
	}
	return nil
}

// buildTarget creates the target database (when dedicated) and applies the
// tenant's schema there: role, schema, tables, grants.
func (m *Mover) buildTarget(ctx context.Context, t tenant.Tenant, rec record) error {
	if rec.To.Kind == tenant.PlacementDatabase {
		if err := m.cl.EnsureDatabase(ctx, rec.To.Cluster, rec.To.Database); err != nil {
			return err
		}
	}
	files, err := m.o.Modules.FilesOf(ctx, t.ID)
	if err != nil {
		return err
	}
	db, err := m.cl.Open(ctx, rec.To.Cluster, rec.To.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	spec := schemaapply.TenantSpec{Schema: rec.To.Schema, Role: t.Slug.RoleName(), AppRole: m.o.AppRole, Modules: files}
	if _, err := schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{}); err != nil {
		return fmt.Errorf("move: build target: %w", err)
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
