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

	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenancy"
)

// The warm pool keeps Config.Tenant.WarmPool spare tenant schemas ready on
// the default cluster when its database holds the landlord catalog. A spare
// is named <prefix><random> — schema and role alike — and built by the same
// schema apply as a tenant (core, no modules). Provisioning claims one by
// renaming its schema and role to tenant_<slug> in the transaction that
// activates the tenant, which takes a few milliseconds instead of a full
// apply. landlord.tenant_spares tracks every spare (a row exists before
// its schema is built, until after it is claimed or dropped).

// warmEligible reports whether provisioning on db may claim a spare.
func (p *Provisioner) warmEligible(db *sql.DB) bool {
	return p.o.WarmPool > 0 && db == p.admin
}

// coreHash is the hash of the desired schema of a tenant without modules,
// which Target.Hash makes independent of the schema and role name.
func (p *Provisioner) coreHash(schemaName string) (string, error) {
	t, err := schemaapply.TenantTarget(schemaapply.TenantSpec{
		Schema: schemaName, Role: schemaName, AppRole: p.t.Config().Tenant.AppRole,
	})
	if err != nil {
		return "", err
	}
	return t.Hash(), nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// claimSpare renames a ready spare to the tenant and activates the tenant,
// in one transaction. ok is false when no spare fits (none ready, or the
// tenant's schema or role already exists from an interrupted cold apply).
func (p *Provisioner) claimSpare(ctx context.Context, t tenancy.Tenant) (tenancy.Tenant, bool, error) {
	role := t.Slug.RoleName()
	if role != t.Schema {
		return tenancy.Tenant{}, false, nil // a spare's schema and role share one name
	}
	hash, err := p.coreHash(t.Schema)
	if err != nil {
		return tenancy.Tenant{}, false, err
	}
	tx, err := p.admin.BeginTx(ctx, nil)
	if err != nil {
		return tenancy.Tenant{}, false, fmt.Errorf("claim spare: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit

	var spare, fingerprint string
	err = tx.QueryRowContext(ctx, `
		SELECT s.name, coalesce(s.schema_fingerprint, '')
		  FROM landlord.tenant_spares s
		 WHERE s.cluster = $1 AND s.schema_hash = $2 AND s.status = 'ready' AND starts_with(s.name, $3)
		   AND NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = $4)
		   AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = $4)
		 ORDER BY s.created_at
		 LIMIT 1
		 FOR UPDATE OF s SKIP LOCKED`, t.Cluster, hash, p.o.SparePrefix, t.Schema).Scan(&spare, &fingerprint)
	if errors.Is(err, sql.ErrNoRows) {
		return tenancy.Tenant{}, false, nil
	}
	if err != nil {
		return tenancy.Tenant{}, false, fmt.Errorf("claim spare: %w", err)
	}
	// The same lock a schema apply of this tenant takes.
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('schema:' || $1))", t.Schema); err != nil {
		return tenancy.Tenant{}, false, fmt.Errorf("claim spare: lock: %w", err)
	}
	for _, stmt := range []string{
		"ALTER SCHEMA " + ident(spare) + " RENAME TO " + ident(t.Schema),
		"ALTER ROLE " + ident(spare) + " RENAME TO " + ident(role),
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return tenancy.Tenant{}, false, fmt.Errorf("claim spare %s: %w", spare, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM landlord.tenant_spares WHERE name = $1`, spare); err != nil {
		return tenancy.Tenant{}, false, fmt.Errorf("claim spare %s: %w", spare, err)
	}
	p.hook(tenancy.StepClaiming)
	if _, err := tx.ExecContext(ctx, `UPDATE landlord.tenants
		SET schema_hash = $2, schema_fingerprint = nullif($3, ''), schema_applied_at = now(), schema_error = NULL
		WHERE id = $1`, t.ID, hash, fingerprint); err != nil {
		return tenancy.Tenant{}, false, fmt.Errorf("claim spare %s: record: %w", spare, err)
	}
	active, err := tenancy.Activate(ctx, tx, t)
	if err != nil {
		return tenancy.Tenant{}, false, err
	}
	if err := tx.Commit(); err != nil {
		return tenancy.Tenant{}, false, fmt.Errorf("claim spare %s: commit: %w", spare, err)
	}
	return active, true, nil
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
	cluster := p.t.Config().DefaultCluster
	db, err := p.t.ClusterAdmin(cluster)
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
	p.hook(tenancy.StepSpareInserted)

	_, err = schemaapply.ApplyTenant(ctx, p.admin, schemaapply.TenantSpec{
		Schema: name, Role: name, AppRole: p.t.Config().Tenant.AppRole,
	}, schemaapply.Options{BeforeCommit: func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error {
		p.hook(tenancy.StepSpareBuilt)
		_, err := tx.ExecContext(ctx, `UPDATE landlord.tenant_spares
			SET status = 'ready', schema_fingerprint = nullif($2, '') WHERE name = $1`, name, res.Fingerprint)
		return err
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
	rows, err := tx.QueryContext(ctx, `
		SELECT name FROM landlord.tenant_spares
		 WHERE starts_with(name, $1) AND cluster = $2
		   AND ((status = 'building' AND pg_try_advisory_xact_lock(hashtext('spare:' || name)))
		     OR (status = 'ready' AND schema_hash <> $3))`, p.o.SparePrefix, cluster, hash)
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
		p.log.Info().Str("spare", n).Msg("warm pool: dropped a dead or stale spare")
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
	for _, n := range names {
		// Wait for a builder to finish (or die) before dropping its spare.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('spare:' || $1))", n); err != nil {
			return 0, fmt.Errorf("warm pool: lock %s: %w", n, err)
		}
		if err := dropSpare(ctx, tx, n); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("warm pool: drain: %w", err)
	}
	return len(names), nil
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
