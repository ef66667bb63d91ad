package provision

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The warm pool keeps Config.Tenant.WarmPool spare tenant schemas ready on
// the default cluster when its database holds the landlord catalog. A spare
// is named <prefix><random> — schema and role alike — and built by the same
// schema apply as a tenant (the core and the default modules). Provisioning claims one by
// renaming its schema and role to tenant_<slug> in the transaction that
// activates the tenant, which takes a few milliseconds instead of a full
// apply. landlord.tenant_spares tracks every spare (a row exists before
// its schema is built, until after it is claimed or dropped).

// warmEligible reports whether provisioning on db may claim a spare.
func (p *Provisioner) warmEligible(db *sql.DB) bool {
	return p.o.WarmPool > 0 && db == p.admin
}

// spareSpec is the spec of a spare (or of a tenant claiming one): the core
// with the default modules, under one name for schema and role.
func (p *Provisioner) spareSpec(name string) schemaapply.TenantSpec {
	return schemaapply.TenantSpec{Schema: name, Role: name, AppRole: p.o.AppRole, Modules: p.o.Defaults.Files}
}

// coreHash is the hash of the desired schema of a new tenant (the core and
// the default modules), which Target.Hash makes independent of the schema
// and role name.
func (p *Provisioner) coreHash(schemaName string) (string, error) {
	t, err := schemaapply.TenantTarget(p.spareSpec(schemaName))
	if err != nil {
		return "", err
	}
	return t.Hash(), nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// provisionWarm provisions from the warm pool in one transaction on the
// landlord database: tenant lock, catalog row, a ready spare (locked,
// skipping those other claims hold), schema and role renamed to the
// tenant's, the spare's row deleted, the tenant recorded and active — all
// or nothing. done is false, with nothing written, when no spare fits: none
// ready, the tenant's lock is held (the cold path waits for it), or the
// tenant's schema or role exists already (an interrupted cold provisioning,
// which the cold path completes).
func (p *Provisioner) provisionWarm(ctx context.Context, r Request, pl tenant.Placement) (Result, bool, error) {
	res := Result{Path: Warm}
	role := r.Slug.RoleName()
	if role != pl.Schema || pl.Kind != tenant.PlacementSchema {
		return res, false, nil // a spare's schema and role share one name
	}
	hash, err := p.coreHash(pl.Schema)
	if err != nil {
		return res, false, err
	}
	tx, err := p.admin.BeginTx(ctx, nil)
	if err != nil {
		return res, false, fmt.Errorf("provision %s: %w", r.Slug, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	// The tenant's lock, if free: a transaction on a work connection never
	// waits for it (its holder may need a connection); the cold path does.
	locked, err := catalog.TryLockTx(ctx, tx, r.Slug)
	if err != nil || !locked {
		return res, false, err
	}
	t, inserted, err := catalog.InsertProvisioning(ctx, tx, r.Slug, r.Name, pl)
	if err != nil {
		return res, false, err
	}
	if !inserted {
		if t.Status != tenant.StatusProvisioning {
			return res, true, fmt.Errorf("tenant %s (%s): %w", r.Slug, t.Status, tenant.ErrExists)
		}
		if t.Kind != pl.Kind || t.Cluster != pl.Cluster || t.Schema != pl.Schema {
			return res, false, nil
		}
		res.Resumed = true
	}

	// The spare, and the same lock a schema apply of this tenant takes.
	var spare, fingerprint string
	err = tx.QueryRowContext(ctx, `
		SELECT s.name, coalesce(s.schema_fingerprint, ''), pg_advisory_xact_lock(hashtext('schema:' || $4))::text
		  FROM landlord.tenant_spares s
		 WHERE s.cluster = $1 AND s.schema_hash = $2 AND s.status = 'ready' AND starts_with(s.name, $3)
		   AND NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = $4)
		   AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = $4)
		 ORDER BY s.created_at
		 LIMIT 1
		 FOR UPDATE OF s SKIP LOCKED`, pl.Cluster, hash, p.o.SparePrefix, pl.Schema).Scan(&spare, &fingerprint, new(string))
	if errors.Is(err, sql.ErrNoRows) {
		return res, false, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("claim spare: %w", err)
	}
	// Both renames in one round trip; the names are validated identifiers.
	if _, err := tx.ExecContext(ctx,
		"ALTER SCHEMA "+ident(spare)+" RENAME TO "+ident(pl.Schema)+"; ALTER ROLE "+ident(spare)+" RENAME TO "+ident(role),
		pgx.QueryExecModeSimpleProtocol); err != nil {
		return res, false, fmt.Errorf("claim spare %s: %w", spare, err)
	}
	p.hook(StepClaiming)
	if _, err := tx.ExecContext(ctx, `DELETE FROM landlord.tenant_spares WHERE name = $1`, spare); err != nil {
		return res, false, fmt.Errorf("claim spare %s: %w", spare, err)
	}
	if err := p.o.Defaults.record(ctx, tx, t); err != nil {
		return res, false, fmt.Errorf("claim spare %s: default modules: %w", spare, err)
	}
	active, err := catalog.ActivateApplied(ctx, tx, t, hash, fingerprint)
	if err != nil {
		return res, false, fmt.Errorf("claim spare %s: activate: %w", spare, err)
	}
	if err := audit.Record(ctx, tx, createdEvent(active, Warm, res.Resumed)); err != nil {
		return res, false, err
	}
	if err := tx.Commit(); err != nil {
		return res, false, fmt.Errorf("claim spare %s: commit: %w", spare, err)
	}
	res.Tenant = active
	p.hook(StepActivated)
	p.cat.Notify(r.Slug)
	p.KickWarmPool()
	return res, true, nil
}

// KickWarmPool asks RunWarmPool to refill now (non-blocking).
func (p *Provisioner) KickWarmPool() {
	select {
	case p.refill <- struct{}{}:
	default:
	}
}

// RunWarmPool keeps the warm pool filled until ctx is done: at once, after
// each claim, and every interval (which also reaps spares whose builder
// died). It returns when ctx is done; errors are logged and retried.
func (p *Provisioner) RunWarmPool(ctx context.Context, interval time.Duration) {
	if p.o.WarmPool <= 0 {
		return
	}
	if interval <= 0 {
		interval = time.Minute
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if n, err := p.FillWarmPool(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn().Err(err).Msg("warm pool refill failed")
		} else if n > 0 {
			p.log.Debug().Int("built", n).Msg("warm pool refilled")
		}
		if st, err := p.WarmPoolStats(ctx); err == nil {
			p.ready.Store(int64(st.Ready))
		}
		select {
		case <-ctx.Done():
			return
		case <-p.refill:
		case <-tick.C:
		}
	}
}

// FillWarmPool builds spares, one at a time, until the pool holds
// Config.Tenant.WarmPool spares (ready or being built) of the current
// schema; on the way it drops spares of an older schema and those whose
// builder died. It returns how many it built.
func (p *Provisioner) FillWarmPool(ctx context.Context) (int, error) {
	built := 0
	for ctx.Err() == nil {
		more, err := p.buildOneSpare(ctx)
		if err != nil {
			return built, err
		}
		if !more {
			return built, nil
		}
		built++
	}
	return built, ctx.Err()
}

// buildOneSpare builds one spare if the pool is short of one.
func (p *Provisioner) buildOneSpare(ctx context.Context) (bool, error) {
	cluster := p.cl.Default()
	db, err := p.cl.Admin(cluster)
	if err != nil {
		return false, err
	}
	if !p.warmEligible(db) {
		return false, nil
	}
	name, err := p.spareName()
	if err != nil {
		return false, err
	}
	hash, err := p.coreHash(name)
	if err != nil {
		return false, err
	}

	// The builder's lock on its spare: while it is held, the spare's row
	// (status building) is alive; once the holder is gone, reap takes it.
	hold, err := p.admin.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("warm pool: %w", err)
	}
	defer hold.Rollback() //nolint:errcheck // releases the lock
	if _, err := hold.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('spare:' || $1))", name); err != nil {
		return false, fmt.Errorf("warm pool: lock: %w", err)
	}

	short, err := p.reserveSpare(ctx, cluster, name, hash)
	if err != nil || !short {
		return false, err
	}
	p.hook(StepSpareInserted)

	_, err = p.applyTenant(ctx, cluster, p.admin, p.spareSpec(name), schemaapply.Options{BeforeCommit: func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error {
		p.hook(StepSpareBuilt)
		r, err := tx.ExecContext(ctx, `UPDATE landlord.tenant_spares
			SET status = 'ready', schema_fingerprint = nullif($2, '') WHERE name = $1`, name, res.Fingerprint)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil || n != 1 {
			// The reservation is gone (drained): commit no schema without its row.
			return fmt.Errorf("spare %s lost its reservation", name)
		}
		return nil
	}})
	if err != nil {
		// The apply rolled back: no schema, no role. Drop the reservation.
		_, derr := p.admin.ExecContext(context.WithoutCancel(ctx), `DELETE FROM landlord.tenant_spares WHERE name = $1`, name)
		return false, errors.Join(fmt.Errorf("warm pool: build %s: %w", name, err), derr)
	}
	return true, nil
}

// reserveSpare, under the pool's lock, reaps dead and stale spares, counts
// the rest and, when the pool is short, inserts the new spare's row.
func (p *Provisioner) reserveSpare(ctx context.Context, cluster, name, hash string) (bool, error) {
	tx, err := p.admin.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("warm pool: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('warm-pool:' || $1))", p.o.SparePrefix); err != nil {
		return false, fmt.Errorf("warm pool: lock: %w", err)
	}
	// Dead: building, and nobody holds its builder lock. Stale: built for
	// another schema. Both are dropped with their schema and role, if any.
	// Rows a claim holds are skipped (a server of another version may be
	// claiming a spare that is stale to this one).
	rows, err := tx.QueryContext(ctx, `
		SELECT name FROM landlord.tenant_spares
		 WHERE starts_with(name, $1) AND cluster = $2
		   AND ((status = 'building' AND pg_try_advisory_xact_lock(hashtext('spare:' || name)))
		     OR (status = 'ready' AND schema_hash <> $3))
		   FOR UPDATE SKIP LOCKED`, p.o.SparePrefix, cluster, hash)
	if err != nil {
		return false, fmt.Errorf("warm pool: reap: %w", err)
	}
	var dead []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return false, fmt.Errorf("warm pool: reap: %w", err)
		}
		dead = append(dead, n)
	}
	if err := rows.Close(); err != nil {
		return false, fmt.Errorf("warm pool: reap: %w", err)
	}
	for _, n := range dead {
		if err := dropSpare(ctx, tx, n); err != nil {
			return false, err
		}
		p.log.Info().Ctx(ctx).Str("spare", n).Msg("warm pool: dropped a dead or stale spare")
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM landlord.tenant_spares
		WHERE starts_with(name, $1) AND cluster = $2 AND schema_hash = $3`, p.o.SparePrefix, cluster, hash).Scan(&have); err != nil {
		return false, fmt.Errorf("warm pool: count: %w", err)
	}
	if have >= p.o.WarmPool {
		return false, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO landlord.tenant_spares (name, cluster, schema_hash) VALUES ($1, $2, $3)`,
		name, cluster, hash); err != nil {
		return false, fmt.Errorf("warm pool: reserve %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("warm pool: reserve %s: %w", name, err)
	}
	return true, nil
}

// dropSpare drops a spare's schema and role, if they exist, and its row.
func dropSpare(ctx context.Context, tx *sql.Tx, name string) error {
	for _, stmt := range []string{
		"DROP SCHEMA IF EXISTS " + ident(name) + " CASCADE",
		"DROP ROLE IF EXISTS " + ident(name),
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("warm pool: drop %s: %w", name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM landlord.tenant_spares WHERE name = $1`, name); err != nil {
		return fmt.Errorf("warm pool: drop %s: %w", name, err)
	}
	return nil
}

// DrainWarmPool drops every spare of this Service's prefix (spares being
// built are waited for) and returns how many it dropped.
func (p *Provisioner) DrainWarmPool(ctx context.Context) (int, error) {
	tx, err := p.admin.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("warm pool: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('warm-pool:' || $1))", p.o.SparePrefix); err != nil {
		return 0, fmt.Errorf("warm pool: lock: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT name FROM landlord.tenant_spares WHERE starts_with(name, $1) ORDER BY name`, p.o.SparePrefix)
	if err != nil {
		return 0, fmt.Errorf("warm pool: list: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return 0, fmt.Errorf("warm pool: list: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("warm pool: list: %w", err)
	}
	dropped := 0
	for _, n := range names {
		// Wait for a builder to finish (or die), then for a claim: a spare
		// claimed meanwhile has no row any more and is not ours to drop.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('spare:' || $1))", n); err != nil {
			return dropped, fmt.Errorf("warm pool: lock %s: %w", n, err)
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM landlord.tenant_spares WHERE name = $1 FOR UPDATE`, n).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return dropped, fmt.Errorf("warm pool: lock %s: %w", n, err)
		}
		if err := dropSpare(ctx, tx, n); err != nil {
			return dropped, err
		}
		dropped++
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("warm pool: drain: %w", err)
	}
	return dropped, nil
}

// ReadySpares is the number of ready spares as RunWarmPool last counted
// them (after each refill: every interval and after each claim), or -1
// before the first count; 0 with the warm pool off. It runs no query, so a
// metrics scrape costs the database nothing.
func (p *Provisioner) ReadySpares() int64 {
	if p.o.WarmPool <= 0 {
		return 0
	}
	return p.ready.Load()
}

// WarmPoolStats counts this Service's spares.
type WarmPoolStats struct {
	Ready, Building int
}

// WarmPoolStats counts the spares of this Service's prefix.
func (p *Provisioner) WarmPoolStats(ctx context.Context) (WarmPoolStats, error) {
	var st WarmPoolStats
	err := p.admin.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'building')
		FROM landlord.tenant_spares WHERE starts_with(name, $1)`, p.o.SparePrefix).Scan(&st.Ready, &st.Building)
	if err != nil {
		return st, fmt.Errorf("warm pool stats: %w", err)
	}
	return st, nil
}

func (p *Provisioner) spareName() (string, error) {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("warm pool: random: %w", err)
	}
	return p.o.SparePrefix + hex.EncodeToString(b[:]), nil
}
