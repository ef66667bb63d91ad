// Package provision creates tenants' storage and destroys it: provisioning
// (the catalog row first, then the tenant's role, schema and tables — the
// Atlas applier of internal/schemaapply, or a pre-built spare from the warm
// pool — then activation), schema applies of one tenant (module installs),
// and purge of deleted tenants and of the copies moves retired. It is a peer
// of the catalog (internal/catalog) and the clusters (internal/clusters),
// which it uses; it owns the warm pool's table, landlord.tenant_spares.
package provision

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/requestid"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Path says how a tenant schema was built.
type Path string

const (
	// Cold applied the schema from the HCL (Atlas inspect, diff, apply).
	Cold Path = "cold"
	// Warm claimed a pre-built spare schema from the warm pool.
	Warm Path = "warm"
)

// Step names a point in provisioning, purge or the warm pool where a hook is
// called: tests kill the process there to prove that a rerun completes.
type Step string

// The hook points.
const (
	// StepInserted: the catalog row (status provisioning) is committed.
	StepInserted Step = "inserted"
	// StepApplied: the tenant schema and role are built, inside the apply's
	// transaction (before commit) when the catalog shares the tenant's
	// database, else committed with the row still provisioning.
	StepApplied Step = "applied"
	// StepClaiming: inside the warm-pool claim transaction, schema and role
	// renamed, not committed.
	StepClaiming Step = "claiming"
	// StepActivated: the row is active (committed).
	StepActivated Step = "activated"
	// StepSpareInserted: a spare's row (status building) is committed, its schema not built.
	StepSpareInserted Step = "spare-inserted"
	// StepSpareBuilt: a spare's schema is built, inside its apply transaction.
	StepSpareBuilt Step = "spare-built"
	// StepDropped: a purged tenant's schema and role are dropped, inside the
	// purge transaction (before commit).
	StepDropped Step = "dropped"
	// StepRestoring: a restored tenant's schema is filled, swapped in and
	// recorded, inside the restore's transaction (before commit).
	StepRestoring Step = "restoring"
)

// Options configure a Provisioner.
type Options struct {
	// Catalog is the tenant catalog (required).
	Catalog *catalog.Catalog
	// Clusters reaches the tenants' databases (required).
	Clusters *clusters.Clusters
	// AppRole (config tenant.app_role) is granted every tenant role.
	AppRole string
	// Log receives provisioning and warm-pool events.
	Log zerolog.Logger
	// WarmPool is the number of spares to keep ready (Config.Tenant.WarmPool;
	// 0 turns the warm pool off: provisioning always applies the schema).
	WarmPool int
	// SparePrefix names this pool's spare schemas (default "pd_spare_"); tests
	// and benchmarks use their own so that they never claim each other's.
	SparePrefix string
	// OnProvision observes each provisioning attempt (metrics). May be nil.
	OnProvision func(path Path, d time.Duration, err error)
	// Hook, when set, is called at each Step (fault injection in tests).
	Hook func(Step)
	// Defaults are the modules every new tenant starts with
	// (internal/modules.ForNewTenants); zero: the core schema only.
	Defaults DefaultModules
}

// DefaultModules are the modules a new tenant gets: their schema files are
// built with the core (by the apply, or in the warm pool's spares), and
// Record marks them installed in the transaction that activates the tenant.
type DefaultModules struct {
	// Files are the modules' tenant schema files, sorted.
	Files []string
	// Record writes the install records of t on db (the landlord database,
	// in the activation's transaction). Required with Files.
	Record func(ctx context.Context, db catalog.DBTX, t tenant.Tenant) error
}

// record marks the default modules installed (nothing without them).
func (d DefaultModules) record(ctx context.Context, db catalog.DBTX, t tenant.Tenant) error {
	if d.Record == nil {
		return nil
	}
	return d.Record(ctx, db, t)
}

// DefaultSparePrefix prefixes spare schema and role names.
const DefaultSparePrefix = "pd_spare_"

// Provisioner provisions tenants, applies their schemas and runs the warm
// pool. Safe for concurrent use.
type Provisioner struct {
	o      Options
	cat    *catalog.Catalog
	cl     *clusters.Clusters
	admin  *sql.DB // the landlord's admin connection
	log    zerolog.Logger
	refill chan struct{}
	ready  atomic.Int64 // ReadySpares

	mu    sync.Mutex
	twins map[string]*schemaapply.Twins // cluster → how a new schema of its shared database was built
}

// New returns a Provisioner.
func New(o Options) (*Provisioner, error) {
	if o.Catalog == nil || o.Clusters == nil {
		return nil, errors.New("provision: Catalog and Clusters are required")
	}
	if o.SparePrefix == "" {
		o.SparePrefix = DefaultSparePrefix
	}
	if err := validSparePrefix(o.SparePrefix); err != nil {
		return nil, err
	}
	if o.WarmPool < 0 {
		return nil, fmt.Errorf("provision: warm pool size %d is negative", o.WarmPool)
	}
	if len(o.Defaults.Files) > 0 && o.Defaults.Record == nil {
		return nil, errors.New("provision: default modules need their Record")
	}
	p := &Provisioner{o: o, cat: o.Catalog, cl: o.Clusters, admin: o.Catalog.Admin(), log: o.Log.Hook(requestid.Hook),
		refill: make(chan struct{}, 1), twins: map[string]*schemaapply.Twins{}}
	p.ready.Store(-1)
	return p, nil
}

// applyTenant is schemaapply.ApplyTenant on db. In a cluster's shared
// database (cluster set: schema placement, spares), a schema that does not
// exist yet is built like the previous new one there (schemaapply.Twins),
// without inspection, parsing or planning, when its desired state is the
// same. A tenant's own database (cluster ""), where twins would seldom
// meet, applies without.
func (p *Provisioner) applyTenant(ctx context.Context, cluster string, db *sql.DB, spec schemaapply.TenantSpec,
	o schemaapply.Options) (schemaapply.Result, error) {
	if cluster == "" {
		return schemaapply.ApplyTenant(ctx, db, spec, o)
	}
	p.mu.Lock()
	tw := p.twins[cluster]
	if tw == nil {
		tw = schemaapply.NewTwins()
		p.twins[cluster] = tw
	}
	p.mu.Unlock()
	return tw.ApplyTenant(ctx, db, spec, o)
}

// twinsKey is the applyTenant cluster of t: its cluster for schema placement, else "".
func twinsKey(t tenant.Tenant) string {
	if t.Kind == tenant.PlacementSchema {
		return t.Cluster
	}
	return ""
}

func validSparePrefix(p string) error {
	ok := len(p) >= 3 && len(p) <= 40 && p[0] >= 'a' && p[0] <= 'z'
	for _, r := range p {
		ok = ok && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}
	if !ok || len(p) >= len(tenant.SchemaPrefix) && p[:len(tenant.SchemaPrefix)] == tenant.SchemaPrefix {
		return fmt.Errorf("provision: spare prefix %q must be 3 to 40 of a-z, 0-9, _ (starting with a letter), not %s…",
			p, tenant.SchemaPrefix)
	}
	return nil
}

func (p *Provisioner) hook(st Step) {
	if p.o.Hook != nil {
		p.o.Hook(st)
	}
}

// Request asks for a new tenant.
type Request struct {
	Slug tenant.Slug
	Name string
	// Placement, when nil, is the default placement (schema on the default cluster).
	Placement *tenant.Placement
}

// Result is the outcome of Provision.
type Result struct {
	Tenant tenant.Tenant
	// Path says how the schema was built: cold (schema apply) or warm (a spare claimed).
	Path Path
	// Resumed is true when an earlier, interrupted provisioning of the same
	// slug was completed.
	Resumed  bool
	Duration time.Duration
}

// Provision creates a tenant: catalog row (status provisioning) → tenant
// role, schema and tables (a spare from the warm pool when one is ready,
// else a schema apply) → status active. The row comes first, so no schema
// or role ever exists without one; the schema, its record and the
// activation commit together, so no tenant is active half-built. Calling it
// again after a failure or crash completes the same tenant; calling it for
// a tenant already past provisioning returns tenant.ErrExists.
func (p *Provisioner) Provision(ctx context.Context, r Request) (Result, error) {
	start := time.Now()
	res, err := p.provision(ctx, r)
	res.Duration = time.Since(start)
	if err != nil {
		p.cat.Audit().Failed(ctx, audit.Event{Action: audit.TenantCreate, TenantID: res.Tenant.ID, Tenant: r.Slug.String(),
			Detail: map[string]any{"name": r.Name}}, err)
	}
	// Observed: every attempt that built (or failed to build) a schema; not
	// a slug already taken or a refused request.
	if p.o.OnProvision != nil && res.Path != "" && !errors.Is(err, tenant.ErrExists) {
		p.o.OnProvision(res.Path, res.Duration, err)
	}
	if err != nil {
		return res, err
	}
	p.log.Info().Ctx(ctx).Str("tenant", r.Slug.String()).Str("path", string(res.Path)).Bool("resumed", res.Resumed).
		Dur("duration", res.Duration).Msg("tenant provisioned")
	return res, nil
}

func (p *Provisioner) provision(ctx context.Context, r Request) (Result, error) {
	if r.Slug.IsZero() {
		return Result{}, fmt.Errorf("%w: empty", tenant.ErrInvalidSlug)
	}
	if err := tenant.ValidateName(r.Name); err != nil {
		return Result{}, err
	}
	pl, err := p.cl.CheckPlacement(r.Slug, r.Placement)
	if err != nil {
		return Result{}, err
	}
	db, err := p.cl.Admin(pl.Cluster)
	if err != nil {
		return Result{}, err
	}
	if p.warmEligible(db) {
		res, done, err := p.provisionWarm(ctx, r, pl)
		if err != nil {
			return res, err
		}
		if done {
			return res, nil
		}
		// No spare fits: nothing was written; build the schema.
	}
	return p.provisionCold(ctx, r, pl, db)
}

// provisionCold: row (committed) → schema apply → active.
func (p *Provisioner) provisionCold(ctx context.Context, r Request, pl tenant.Placement, db *sql.DB) (Result, error) {
	res := Result{Path: Cold}
	unlock, err := p.cat.Lock(ctx, r.Slug)
	if err != nil {
		return res, err
	}
	defer unlock()

	t, inserted, err := catalog.InsertProvisioning(ctx, p.admin, r.Slug, r.Name, pl)
	if err != nil {
		return res, err
	}
	if !inserted {
		if t.Status != tenant.StatusProvisioning {
			return res, fmt.Errorf("tenant %s (%s): %w", r.Slug, t.Status, tenant.ErrExists)
		}
		res.Resumed = true
		p.log.Warn().Ctx(ctx).Str("tenant", r.Slug.String()).Msg("completing an interrupted provisioning")
	}
	p.hook(StepInserted)
	// An interrupted provisioning elsewhere is completed where its row says.
	db, closeDB, err := p.tenantDB(ctx, t)
	if err != nil {
		return res, err
	}
	defer closeDB()
	active, err := p.applyAndActivate(ctx, db, t, res.Resumed)
	if err != nil {
		return res, err
	}
	res.Tenant = active
	p.hook(StepActivated)
	p.cat.Notify(t.Slug)
	return res, nil
}

// Spec is the schemaapply spec of a tenant with the given module files.
func (p *Provisioner) Spec(t tenant.Tenant, moduleFiles []string) schemaapply.TenantSpec {
	return schemaapply.TenantSpec{
		Schema:  t.Schema,
		Role:    t.Slug.RoleName(),
		AppRole: p.o.AppRole,
		Modules: moduleFiles,
	}
}

// applyAndActivate applies the core schema with the default modules and
// activates the tenant. When the tenant's cluster database holds the
// catalog, the record, the default modules' installs, the activation and its
// audit record run in the apply's transaction; elsewhere they follow it, in
// a transaction of their own (a crash in between is completed by a rerun,
// the apply being idempotent).
func (p *Provisioner) applyAndActivate(ctx context.Context, db *sql.DB, t tenant.Tenant, resumed bool) (tenant.Tenant, error) {
	var active tenant.Tenant
	activate := func(ctx context.Context, tx catalog.DBTX, res schemaapply.Result) error {
		if err := p.o.Defaults.record(ctx, tx, t); err != nil {
			return err
		}
		// The record of the apply (schemaapply.RecordApplied) and the
		// activation in one statement, and the audit record with them.
		a, err := catalog.ActivateApplied(ctx, tx, t, res.Hash, res.Fingerprint)
		if err != nil {
			return err
		}
		active = a
		return audit.Record(ctx, tx, createdEvent(a, Cold, resumed))
	}
	o := schemaapply.Options{}
	sameDB := db == p.admin
	if sameDB {
		o.BeforeCommit = func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error {
			p.hook(StepApplied)
			return activate(ctx, tx, res)
		}
	}
	res, err := p.applyTenant(ctx, twinsKey(t), db, p.Spec(t, p.o.Defaults.Files), o)
	if err != nil {
		if !errors.Is(err, tenant.ErrWrongStatus) {
			_ = catalog.RecordFailed(context.WithoutCancel(ctx), p.admin, t.ID, err)
		}
		return tenant.Tenant{}, fmt.Errorf("provision %s: %w", t.Slug, err)
	}
	if !sameDB {
		p.hook(StepApplied)
		if err := p.inTx(ctx, func(tx *sql.Tx) error { return activate(ctx, tx, res) }); err != nil {
			return tenant.Tenant{}, fmt.Errorf("provision %s: %w", t.Slug, err)
		}
	}
	return active, nil
}

// createdEvent is the audit record of a tenant provisioned on path.
func createdEvent(t tenant.Tenant, path Path, resumed bool) audit.Event {
	return audit.Event{Action: audit.TenantCreate, TenantID: t.ID, Tenant: t.Slug.String(), Detail: map[string]any{
		"name": t.Name, "path": string(path), "resumed": resumed,
		"placement": string(t.Kind), "cluster": t.Cluster, "database": t.Database}}
}

// inTx runs fn in a transaction on the landlord's admin connection.
func (p *Provisioner) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := p.admin.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// SharesCatalog reports whether t's schema lives in the landlord's own
// database, where a schema change and its catalog record commit together.
func (p *Provisioner) SharesCatalog(t tenant.Tenant) (bool, error) {
	if t.Kind != tenant.PlacementSchema {
		return false, nil
	}
	db, err := p.cl.Admin(t.Cluster)
	if err != nil {
		return false, err
	}
	return db == p.admin, nil
}

// ApplySchema brings a tenant's schema to core + moduleFiles on its placement
// and records the hash and fingerprint; beforeCommit (may be nil) runs in
// the apply's transaction when the tenant's database holds the catalog, else
// in a transaction on the landlord database right after. Callers hold the
// tenant's lock (catalog.Catalog.WithTenantLock).
func (p *Provisioner) ApplySchema(ctx context.Context, t tenant.Tenant, moduleFiles []string, o schemaapply.Options,
	beforeCommit func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error) (schemaapply.Result, error) {
	db, closeDB, err := p.tenantDB(ctx, t)
	if err != nil {
		return schemaapply.Result{}, err
	}
	defer closeDB()
	record := func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error {
		if err := catalog.RecordAppliedStamped(ctx, tx, t.ID, res.Hash, res.Fingerprint, res.Stamp); err != nil {
			return err
		}
		if beforeCommit != nil {
			return beforeCommit(ctx, tx, res)
		}
		return nil
	}
	sameDB := db == p.admin
	if sameDB && !o.DryRun {
		o.BeforeCommit = record
	}
	res, err := p.applyTenant(ctx, twinsKey(t), db, p.Spec(t, moduleFiles), o)
	if err != nil {
		return res, fmt.Errorf("tenant %s: %w", t.Slug, err)
	}
	if !sameDB && !o.DryRun {
		tx, err := p.admin.BeginTx(ctx, nil)
		if err != nil {
			return res, fmt.Errorf("tenant %s: record apply: %w", t.Slug, err)
		}
		defer tx.Rollback() //nolint:errcheck // no-op after commit
		if err := record(ctx, tx, res); err != nil {
			return res, fmt.Errorf("tenant %s: %w", t.Slug, err)
		}
		if err := tx.Commit(); err != nil {
			return res, fmt.Errorf("tenant %s: record apply: %w", t.Slug, err)
		}
	}
	return res, nil
}

// tenantDB returns a direct admin connection to the database that holds t's
// schema: the cluster's shared one for schema placement, the tenant's own
// (created when missing) for database placement. Call the returned func when done.
func (p *Provisioner) tenantDB(ctx context.Context, t tenant.Tenant) (*sql.DB, func(), error) {
	switch t.Kind {
	case tenant.PlacementSchema:
	case tenant.PlacementDatabase:
		if err := p.cl.EnsureDatabase(ctx, t.Cluster, t.Database); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("%w: placement %q is not supported", tenant.ErrInvalid, t.Kind)
	}
	return p.cl.TenantDB(ctx, t.Placement)
}
