package provision

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/publicdigit/publicdigit/internal/apperr"
	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// ErrRestoreUnsupported: the default cluster's database does not hold the
// catalog, so a restore could not be one transaction.
var ErrRestoreUnsupported = apperr.New("restore_unsupported",
	"restoring a tenant needs the default cluster's database to hold the landlord catalog")

// RestoreRequest asks for a tenant built from data from elsewhere (a tenant
// archive): like a provisioning, with rows.
type RestoreRequest struct {
	Slug tenant.Slug
	Name string
	// ModuleFiles are the schema files of the modules the tenant gets.
	ModuleFiles []string
	// Fill loads the tenant's rows into the side schema (built, empty) and
	// verifies them, in the restore's transaction.
	Fill func(ctx context.Context, s Side) error
	// BeforeCommit records what else goes with the tenant (module installs)
	// in the restore's transaction, with the tenant as it will commit.
	BeforeCommit func(ctx context.Context, tx *sql.Tx, t tenant.Tenant) error
}

// Side is the schema a restore fills before it becomes the tenant's.
type Side struct {
	// Schema is the side schema's name: pd_import_<random>.
	Schema string
	// Tenant is the new tenant's catalog row (status provisioning, not committed).
	Tenant tenant.Tenant
	// Applied is the schema apply that built the side schema; its Hash is
	// that of the tenant's desired schema here, as the catalog will record it.
	Applied schemaapply.Result
	// Tx is the restore's transaction; Conn its connection, for what
	// database/sql cannot do (COPY: Conn.Raw). Use one at a time.
	Tx   *sql.Tx
	Conn *sql.Conn
}

// SidePrefix prefixes the side schemas of restores (never a tenant's).
const SidePrefix = "pd_import_"

// Restore creates a tenant from data, in ONE transaction on the default
// cluster's database, which must hold the catalog: the tenant's lock and
// catalog row (a slug already taken is tenant.ErrExists), a side schema
// built as a provisioning builds a tenant's (role, tables, grants: core and
// r.ModuleFiles), r.Fill, the side schema renamed to the tenant's, the
// tenant recorded (hash, fingerprint) and active, r.BeforeCommit, commit.
// Any error, or a crash anywhere, leaves nothing behind: no row, no schema,
// no role. The tenant is announced once committed.
//
// The restore is recorded in the audit trail as a tenant.create (path
// "import") in the same transaction, a failed one on its own.
func (p *Provisioner) Restore(ctx context.Context, r RestoreRequest) (tenant.Tenant, error) {
	t, err := p.restore(ctx, r)
	if err != nil {
		p.cat.Audit().Failed(ctx, audit.Event{Action: audit.TenantCreate, Tenant: r.Slug.String(),
			Detail: map[string]any{"name": r.Name, "path": string(PathImport)}}, err)
	}
	return t, err
}

// PathImport is the audit trail's path of a tenant created by a restore.
const PathImport Path = "import"

func (p *Provisioner) restore(ctx context.Context, r RestoreRequest) (tenant.Tenant, error) {
	start := time.Now()
	if r.Slug.IsZero() {
		return tenant.Tenant{}, fmt.Errorf("%w: empty", tenant.ErrInvalidSlug)
	}
	if err := tenant.ValidateName(r.Name); err != nil {
		return tenant.Tenant{}, err
	}
	pl, err := p.cl.CheckPlacement(r.Slug, nil)
	if err != nil {
		return tenant.Tenant{}, err
	}
	db, err := p.cl.Admin(pl.Cluster)
	if err != nil {
		return tenant.Tenant{}, err
	}
	if db != p.admin {
		return tenant.Tenant{}, fmt.Errorf("%w (cluster %s): restore on the platform's cluster, then move the tenant", ErrRestoreUnsupported, pl.Cluster)
	}
	// The tenant's lock first, on the lock pool (catalog.Catalog.Lock),
	// never waited for while holding a work connection.
	unlock, err := p.cat.Lock(ctx, r.Slug)
	if err != nil {
		return tenant.Tenant{}, err
	}
	defer unlock()
	conn, err := db.Conn(ctx)
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("restore %s: %w", r.Slug, err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("restore %s: %w", r.Slug, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit

	t, inserted, err := catalog.InsertProvisioning(ctx, tx, r.Slug, r.Name, pl)
	if err != nil {
		return tenant.Tenant{}, err
	}
	if !inserted {
		return tenant.Tenant{}, fmt.Errorf("tenant %s (%s): %w", r.Slug, t.Status, tenant.ErrExists)
	}
	side, err := sideName()
	if err != nil {
		return tenant.Tenant{}, err
	}
	spec := p.Spec(t, r.ModuleFiles)
	target, err := schemaapply.TenantTarget(spec)
	if err != nil {
		return tenant.Tenant{}, err
	}
	spec.Schema = side
	applied, err := schemaapply.ApplyTenantTx(ctx, tx, spec, schemaapply.Options{})
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("restore %s: build: %w", r.Slug, err)
	}
	// The hash of the tenant's desired schema under its own name (the
	// side schema's differs: its name is not the role's).
	applied.Hash = target.Hash()
	if err := r.Fill(ctx, Side{Schema: side, Tenant: t, Applied: applied, Tx: tx, Conn: conn}); err != nil {
		return tenant.Tenant{}, err
	}

	// The swap: the side schema becomes the tenant's, as one of its own.
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('schema:' || $1))", pl.Schema); err != nil {
		return tenant.Tenant{}, fmt.Errorf("restore %s: lock: %w", r.Slug, err)
	}
	if _, err := tx.ExecContext(ctx, "ALTER SCHEMA "+ident(side)+" RENAME TO "+ident(pl.Schema)); err != nil {
		var pe interface{ SQLState() string }
		if errors.As(err, &pe) && pe.SQLState() == "42P06" { // duplicate_schema
			return tenant.Tenant{}, fmt.Errorf("restore %s: schema %s exists without a catalog row (a leftover: drop it): %w",
				r.Slug, pl.Schema, tenant.ErrExists)
		}
		return tenant.Tenant{}, fmt.Errorf("restore %s: swap: %w", r.Slug, err)
	}
	fp, err := schemaapply.Fingerprint(ctx, tx, pl.Schema, r.Slug.RoleName())
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("restore %s: %w", r.Slug, err)
	}
	active, err := catalog.ActivateApplied(ctx, tx, t, applied.Hash, fp)
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("restore %s: %w", r.Slug, err)
	}
	if err := audit.Record(ctx, tx, createdEvent(active, PathImport, false)); err != nil {
		return tenant.Tenant{}, fmt.Errorf("restore %s: %w", r.Slug, err)
	}
	if r.BeforeCommit != nil {
		if err := r.BeforeCommit(ctx, tx, active); err != nil {
			return tenant.Tenant{}, err
		}
	}
	p.hook(StepRestoring)
	if err := tx.Commit(); err != nil {
		return tenant.Tenant{}, fmt.Errorf("restore %s: commit: %w", r.Slug, err)
	}
	p.cat.Notify(r.Slug)
	p.log.Info().Ctx(ctx).Str("tenant", r.Slug.String()).Dur("duration", time.Since(start)).Msg("tenant restored")
	return active, nil
}

func sideName() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("restore: random: %w", err)
	}
	return SidePrefix + hex.EncodeToString(b[:]), nil
}
