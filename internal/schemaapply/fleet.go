package schemaapply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Fleet applies the tenant schemas listed in the landlord catalog.
//
// A run lists the selected tenants with their installed modules, computes
// each one's desired hash (Target.Hash, independent of the schema name: once
// per set of modules) and the live catalog fingerprint of every schema, and
// skips, without inspecting it, every tenant whose recorded hash and
// fingerprint both still match. The fingerprint of a schema whose catalog
// stamp (Stamps: ~10 times cheaper) is the one recorded when its
// fingerprint last matched is not computed again: nothing changed since.
// Both are read per database, in one snapshot; a tenant found converged by
// its fingerprint gets its stamp recorded, so that the next run trusts it. The rest are applied with bounded
// parallelism, canaries first, each in its own transaction under its own
// lock_timeout; a failure is recorded and the others go on; each success
// records its hash and fingerprint, so a rerun touches only what is left.
//
// Tenants that share a desired hash and a live fingerprint have the same
// schema up to its name, so a worker inspects the first of them with Atlas
// and plans the others from that inspection (renamed), checking in each
// tenant's transaction that its fingerprint before and after the apply is
// the twin's; on any difference it inspects that tenant for real. This keeps
// a fleet-wide change linear in the tenant count: Atlas's inspection scans
// the whole database catalog, so inspecting every tenant is quadratic.
type Fleet struct {
	// Catalog lists the tenants and records each apply (see FleetCatalog).
	Catalog FleetCatalog
	// Landlord is the direct admin connection to the landlord database:
	// tenants whose TenantDB is this connection are applied in a transaction
	// that also records the apply, so both commit together.
	Landlord *sql.DB
	// TenantDB returns a direct admin connection to the database holding a
	// placement, and a func that releases it (clusters.Clusters.TenantDB).
	TenantDB func(ctx context.Context, pl tenant.Placement) (*sql.DB, func(), error)
	// AppRole is granted every tenant role (config tenant.app_role).
	AppRole string
	// Target builds a tenant's desired state; nil means TenantTarget. Like
	// TenantTarget's, its Hash must depend on nothing of the spec but the
	// modules (it is computed once per set of modules).
	Target func(TenantSpec) (Target, error)
	// Log receives debug events per tenant (results are returned, not logged).
	Log zerolog.Logger
}

// FleetCatalog is the landlord catalog as the fleet runner reads and
// records it (internal/app joins the catalog and the module registry).
type FleetCatalog interface {
	// FleetTenants lists the selected live tenants in slug order, each with
	// the schema files of the modules it installed.
	FleetTenants(ctx context.Context, sel Selection) ([]FleetTenant, error)
	// RecordApplied records an apply's hash, fingerprint and stamp (may be
	// empty): in tx when it is not nil (the apply's own transaction on the
	// landlord database).
	RecordApplied(ctx context.Context, tx *sql.Tx, id uuid.UUID, hash, fingerprint, stamp string) error
	// RecordFailed records the error of a failed apply.
	RecordFailed(ctx context.Context, id uuid.UUID, cause error) error
	// RecordStamps records catalog stamps under which live fingerprints were
	// found equal to the recorded ones, each unless that record changed since.
	RecordStamps(ctx context.Context, stamps []Stamp) error
}

// Stamp is a tenant's catalog stamp (Stamps) under which its live
// fingerprint was found equal to the recorded one.
type Stamp struct {
	ID          uuid.UUID
	Fingerprint string
	Stamp       string
}

// FleetTenant is one tenant as the fleet runner sees it.
type FleetTenant struct {
	Tenant  tenant.Tenant
	Modules []string // module schema files, relative to schema/tenant/
}

// Selection picks tenants from the catalog: every non-deleted tenant, or
// only the listed slugs, or only those whose slug starts with a prefix.
type Selection struct {
	// Slugs, when set, selects exactly these tenants; a slug missing from
	// the catalog (or deleted) is a tenant.ErrNotFound.
	Slugs []string
	// SlugPrefix, when set, selects the tenants whose slug starts with it.
	SlugPrefix string
}

// FleetOptions control one fleet run.
type FleetOptions struct {
	// Options apply to every tenant (DryRun, AllowDestructive, LockTimeout).
	Options
	Selection
	// Parallel is the number of tenants applied at once (default 4).
	Parallel int
	// Canary tenants are applied first; if one fails, the rest are not started.
	Canary int
	// InspectAll inspects every selected tenant with Atlas, converged or not,
	// and never plans from a twin (the naive loop; slow on big fleets).
	InspectAll bool
	// Batch is how many tenants with a twin's fingerprint are applied
	// together, in one transaction, from the twin's plan (see applyBatch);
	// 0 means DefaultBatch, 1 one tenant per transaction, at most 64. Dry runs,
	// canaries and runs with a BeforeExecute hook go one at a time.
	Batch int
	// OnStart, when set, is called once with the number of tenants to apply.
	OnStart func(toApply int)
	// OnTenant, when set, is called after each tenant (one call at a time).
	OnTenant func(TenantResult)
}

// Tenant statuses in a TenantResult.
const (
	StatusConverged  = "converged"   // recorded hash and fingerprint match: skipped without inspection
	StatusApplied    = "applied"     // statements ran and the result was recorded
	StatusUnchanged  = "unchanged"   // inspected, nothing to run (the new hash was recorded)
	StatusPlanned    = "planned"     // dry run: statements would run
	StatusFailed     = "failed"      // see Error; nothing of this tenant's apply remains
	StatusNotStarted = "not_started" // a canary failed, or the run was cancelled
)

// Reasons why a tenant was not skipped.
const (
	ReasonNew        = "new"        // never applied
	ReasonChanged    = "changed"    // the desired schema changed since the last apply
	ReasonDrift      = "drift"      // the live schema changed since the last apply
	ReasonMissing    = "missing"    // the schema does not exist
	ReasonUnrecorded = "unrecorded" // no fingerprint recorded
	ReasonForced     = "forced"     // converged, inspected because asked to
)

// TenantResult is what happened to one tenant in a fleet run.
type TenantResult struct {
	ID          string   `json:"id"`
	Slug        string   `json:"slug"`
	Schema      string   `json:"schema"`
	Cluster     string   `json:"cluster"`
	Database    string   `json:"database"`
	Status      string   `json:"status"`
	Reason      string   `json:"reason,omitempty"`
	Canary      bool     `json:"canary,omitempty"`
	Twin        bool     `json:"planned_from_twin,omitempty"`
	Statements  []string `json:"statements,omitempty"`
	Destructive []string `json:"destructive,omitempty"`
	Error       string   `json:"error,omitempty"`
	DurationMS  float64  `json:"duration_ms"`
}

// FleetResult sums up a fleet run. Tenants lists every selected tenant that
// was not skipped as converged, in slug order.
type FleetResult struct {
	DryRun     bool `json:"dry_run"`
	Total      int  `json:"total"`
	Converged  int  `json:"converged"`
	Applied    int  `json:"applied"`
	Unchanged  int  `json:"unchanged"`
	Planned    int  `json:"planned"`
	Failed     int  `json:"failed"`
	NotStarted int  `json:"not_started"`
	// Fingerprinted tenants had their live fingerprint computed (their
	// catalog stamp was not the recorded one); the others' was trusted.
	Fingerprinted int `json:"fingerprinted"`
	// Stamped tenants were found converged by computing their fingerprint
	// and had their stamp recorded.
	Stamped int `json:"stamped"`
	// Restamped tenants' stamps held and were replaced by newer ones (see
	// checkStamps), so that the next run reads fewer catalog rows.
	Restamped int `json:"restamped,omitempty"`
	Inspected int `json:"inspected"`
	FromTwin  int `json:"planned_from_twin"`
	// Batched tenants were applied from a twin's plan in batches (applyBatch).
	Batched      int            `json:"batched"`
	CanaryFailed bool           `json:"canary_failed,omitempty"`
	DurationMS   float64        `json:"duration_ms"`
	Tenants      []TenantResult `json:"tenants"`
}

// Err reports failed and not started tenants as one error (nil if none).
func (r FleetResult) Err() error {
	if r.Failed == 0 && r.NotStarted == 0 {
		return nil
	}
	msg := fmt.Sprintf("%d of %d tenants failed", r.Failed, r.Total)
	if r.NotStarted > 0 {
		msg += fmt.Sprintf(", %d not started", r.NotStarted)
		if r.CanaryFailed {
			msg += " (a canary failed)"
		}
	}
	return errors.New(msg)
}

// fleetTenant is one selected tenant while a run goes.
type fleetTenant struct {
	res         TenantResult
	id          uuid.UUID
	role        string
	modules     []string
	storedHash  string
	storedFP    string
	storedStamp string
	liveFP      string
	liveStamp   string
	stamped     bool // the recorded stamp holds: liveFP is storedFP, not computed
	refreshed   bool // stamped, and liveStamp is a new stamp to record (checkStamps)
	spec        TenantSpec
	target      *Target // built only for tenants that are applied
	hash        string
	db          *sql.DB
	dbKey       string
	sameDB      bool
}

func (f *Fleet) target(spec TenantSpec) (Target, error) {
	if f.Target != nil {
		return f.Target(spec)
	}
	return TenantTarget(spec)
}

// list reads the selected tenants from the catalog.
func (f *Fleet) list(ctx context.Context, sel Selection) ([]*fleetTenant, error) {
	rows, err := f.Catalog.FleetTenants(ctx, sel)
	if err != nil {
		return nil, err
	}
	out := make([]*fleetTenant, 0, len(rows))
	found := make(map[string]bool, len(rows))
	for _, r := range rows {
		t := r.Tenant
		found[t.Slug.String()] = true
		out = append(out, &fleetTenant{
			res: TenantResult{ID: t.ID.String(), Slug: t.Slug.String(), Schema: t.Schema, Cluster: t.Cluster, Database: t.Database},
			id:  t.ID, role: t.Slug.RoleName(), modules: r.Modules,
			storedHash: t.SchemaHash, storedFP: t.SchemaFingerprint, storedStamp: t.SchemaStamp,
		})
	}
	for _, s := range sel.Slugs {
		if !found[s] {
			return nil, fmt.Errorf("%w in the landlord catalog: %q", tenant.ErrNotFound, s)
		}
	}
	return out, nil
}

// prepare computes desired hashes, resolves connections and reads every
// schema's live fingerprint (prepareDB); tenants that cannot be prepared fail.
func (f *Fleet) prepare(ctx context.Context, tenants []*fleetTenant) (release func(), err error) {
	var releases []func()
	release = func() {
		for _, r := range releases {
			r()
		}
	}
	dbs := map[string]*sql.DB{}
	groups := map[string][]*fleetTenant{}
	hashes := map[string]string{}
	for _, ft := range tenants {
		ft.spec = TenantSpec{Schema: ft.res.Schema, Role: ft.role, AppRole: f.AppRole, Modules: ft.modules}
		if ft.hash, err = f.hashOf(ft.spec, hashes); err != nil {
			ft.fail(fmt.Errorf("tenant %s: %w", ft.res.Slug, err))
			continue
		}
		ft.dbKey = ft.res.Cluster + "/" + ft.res.Database
		if ft.db = dbs[ft.dbKey]; ft.db == nil {
			db, done, err := f.TenantDB(ctx, tenant.Placement{Cluster: ft.res.Cluster, Database: ft.res.Database, Schema: ft.res.Schema})
			if err != nil {
				ft.fail(fmt.Errorf("tenant %s: %w", ft.res.Slug, err))
				continue
			}
			releases = append(releases, done)
			dbs[ft.dbKey], ft.db = db, db
		}
		ft.sameDB = ft.db == f.Landlord
		groups[ft.dbKey] = append(groups[ft.dbKey], ft)
	}
	for _, group := range groups {
		if err := prepareDB(ctx, group[0].db, group); err != nil {
			for _, ft := range group {
				ft.fail(fmt.Errorf("tenant %s: %w", ft.res.Slug, err))
			}
		}
	}
	return release, nil
}

// hashOf is the desired hash of spec. Target.Hash does not depend on the
// schema or role name, so it is computed once per set of modules and kept
// in memo.
func (f *Fleet) hashOf(spec TenantSpec, memo map[string]string) (string, error) {
	if err := spec.validate(); err != nil {
		return "", err
	}
	key := fmt.Sprintf("%q %t", sortedUnique(spec.Modules), spec.Role == spec.Schema)
	if h, ok := memo[key]; ok {
		return h, nil
	}
	t, err := f.target(spec)
	if err != nil {
		return "", err
	}
	h := t.Hash()
	memo[key] = h
	return h, nil
}

// prepareDB reads, in one snapshot of db, the catalog stamps of the group's
// schemas that are not the recorded ones (compared in the query: nothing is
// fetched for a schema that did not change), and the fingerprints of those.
// The stamp query reads whole catalogs: it runs without JIT compilation
// (hundreds of milliseconds of CPU for 10,000 schemas, more than it saves)
// and without parallel workers (whose CPU time is nobody's to measure, and
// which a busy server cannot spare).
func prepareDB(ctx context.Context, db *sql.DB, group []*fleetTenant) error {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // read only
	if _, err := tx.ExecContext(ctx, catalogScanSettings); err != nil {
		return err
	}
	items := make([]SchemaRole, len(group))
	recorded := make([]string, len(group))
	for i, ft := range group {
		items[i] = SchemaRole{Schema: ft.res.Schema, Role: ft.role}
		recorded[i] = ft.storedStamp
	}
	changed, refreshed, err := checkStamps(ctx, tx, items, recorded, stampFew)
	if err != nil {
		return err
	}
	var unsure []SchemaRole
	for _, ft := range group {
		live, ok := changed[ft.res.Schema]
		if !ok {
			live = ft.storedStamp
		}
		ft.liveStamp = live
		if ft.storedStamp != "" && ft.liveStamp == ft.storedStamp && ft.storedFP != "" {
			ft.liveFP, ft.stamped = ft.storedFP, true
			if st := refreshed[ft.res.Schema]; st != "" {
				ft.liveStamp, ft.refreshed = st, true
			}
			continue
		}
		unsure = append(unsure, SchemaRole{Schema: ft.res.Schema, Role: ft.role})
	}
	fps, err := Fingerprints(ctx, tx, unsure)
	if err != nil {
		return err
	}
	for _, ft := range group {
		if !ft.stamped {
			ft.liveFP = fps[ft.res.Schema]
		}
	}
	return tx.Commit()
}

// catalogScanSettings are, for the rest of a transaction, the settings of
// queries that read whole catalogs (see prepareDB).
const catalogScanSettings = `SELECT set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true)`

// buildTarget builds the desired state of a tenant that is applied.
func (f *Fleet) buildTarget(ft *fleetTenant) (Target, error) {
	if ft.target == nil {
		t, err := f.target(ft.spec)
		if err != nil {
			return t, err
		}
		ft.target = &t
	}
	return *ft.target, nil
}

func (ft *fleetTenant) fail(err error) {
	ft.res.Status = StatusFailed
	ft.res.Error = err.Error()
}

// reason says why a tenant needs an apply ("" when it is converged).
func (ft *fleetTenant) reason() string {
	changed := ft.storedHash != ft.hash
	drift := ft.storedFP != ft.liveFP
	switch {
	case ft.storedHash == "":
		return ReasonNew
	case ft.liveFP == "":
		return ReasonMissing
	case ft.storedFP == "":
		return ReasonUnrecorded
	case changed && drift:
		return ReasonChanged + "+" + ReasonDrift
	case changed:
		return ReasonChanged
	case drift:
		return ReasonDrift
	}
	return ""
}

// Apply runs the fleet: see Fleet. The error is for the run as a whole (the
// catalog unreachable, an unknown slug, a desired schema that does not
// parse); failures of single tenants are in the result (see FleetResult.Err).
func (f *Fleet) Apply(ctx context.Context, o FleetOptions) (FleetResult, error) {
	start := time.Now()
	res := FleetResult{DryRun: o.DryRun}
	tenants, err := f.list(ctx, o.Selection)
	if err != nil {
		return res, err
	}
	release, err := f.prepare(ctx, tenants)
	if err != nil {
		return res, err
	}
	defer release()
	res.Total = len(tenants)

	var work, done []*fleetTenant
	var stamps, restamps []Stamp
	for _, ft := range tenants {
		if ft.res.Status == StatusFailed {
			done = append(done, ft)
			continue
		}
		if !ft.stamped {
			res.Fingerprinted++
		}
		if ft.refreshed {
			restamps = append(restamps, Stamp{ID: ft.id, Fingerprint: ft.liveFP, Stamp: ft.liveStamp})
		}
		ft.res.Reason = ft.reason()
		if ft.res.Reason == "" {
			if !ft.stamped && ft.liveStamp != "" {
				stamps = append(stamps, Stamp{ID: ft.id, Fingerprint: ft.liveFP, Stamp: ft.liveStamp})
			}
			if !o.InspectAll {
				res.Converged++
				continue
			}
			ft.res.Reason = ReasonForced
		}
		work = append(work, ft)
	}
	res.Stamped = f.recordStamps(ctx, stamps)
	res.Restamped = f.recordStamps(ctx, restamps)
	// Parse each distinct desired schema once: an HCL error is the run's, not each tenant's.
	parsed := map[string]bool{}
	buildable := work[:0]
	for _, ft := range work {
		t, err := f.buildTarget(ft)
		if err != nil {
			ft.fail(fmt.Errorf("tenant %s: %w", ft.res.Slug, err))
			done = append(done, ft)
			continue
		}
		buildable = append(buildable, ft)
		if parsed[ft.hash] {
			continue
		}
		if _, err := t.Desired(); err != nil {
			return res, err
		}
		parsed[ft.hash] = true
	}
	work = buildable

	if o.OnStart != nil {
		o.OnStart(len(work) + len(done))
	}
	var mu sync.Mutex
	report := func(ft *fleetTenant) {
		if o.OnTenant != nil {
			mu.Lock()
			o.OnTenant(ft.res)
			mu.Unlock()
		}
	}
	for _, ft := range done {
		report(ft)
	}

	parallel := o.Parallel
	if parallel <= 0 {
		parallel = 4
	}
	workers := make([]*worker, parallel)
	for i := range workers {
		workers[i] = &worker{twins: map[string]*twin{}}
	}
	canary := min(max(o.Canary, 0), len(work))
	for _, ft := range work[:canary] {
		ft.res.Canary = true
	}
	f.runPhase(ctx, workers, work[:canary], o, report)
	rest := work[canary:]
	for _, ft := range work[:canary] {
		if ft.res.Status == StatusFailed {
			res.CanaryFailed = true
		}
	}
	if res.CanaryFailed {
		for _, ft := range rest {
			ft.res.Status = StatusNotStarted
			ft.res.Error = "not started: a canary tenant failed"
			report(ft)
		}
	} else {
		f.runRest(ctx, workers, rest, o, report)
	}

	all := append(done, work...)
	sort.Slice(all, func(i, j int) bool { return all[i].res.Slug < all[j].res.Slug })
	res.Tenants = make([]TenantResult, 0, len(all))
	for _, ft := range all {
		switch ft.res.Status {
		case StatusApplied:
			res.Applied++
		case StatusUnchanged:
			res.Unchanged++
		case StatusPlanned:
			res.Planned++
		case StatusFailed:
			res.Failed++
		case StatusNotStarted:
			res.NotStarted++
		}
		res.Tenants = append(res.Tenants, ft.res)
	}
	for _, w := range workers {
		res.Inspected += w.inspected
		res.FromTwin += w.fromTwin
		res.Batched += w.batched
	}
	res.DurationMS = ms(time.Since(start))
	return res, nil
}

type worker struct {
	twins     map[string]*twin
	inspected int
	fromTwin  int
	batched   int
}

// runPhase applies tenants with len(workers) goroutines at most.
func (f *Fleet) runPhase(ctx context.Context, workers []*worker, tenants []*fleetTenant, o FleetOptions, report func(*fleetTenant)) {
	next := make(chan *fleetTenant)
	var wg sync.WaitGroup
	for _, w := range workers[:min(len(workers), len(tenants))] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ft := range next {
				f.applyAndReport(ctx, w, ft, o, report)
			}
		}()
	}
	for _, ft := range tenants {
		next <- ft
	}
	close(next)
	wg.Wait()
}

// applyAndReport applies one tenant (or records it not started when the
// run was cancelled) and reports it.
func (f *Fleet) applyAndReport(ctx context.Context, w *worker, ft *fleetTenant, o FleetOptions, report func(*fleetTenant)) {
	if ctx.Err() != nil {
		ft.res.Status = StatusNotStarted
		ft.res.Error = "not started: " + ctx.Err().Error()
	} else {
		f.applyOne(ctx, w, ft, o)
	}
	report(ft)
}

// applyOne applies one tenant, planning from a twin when the worker has one.
func (f *Fleet) applyOne(ctx context.Context, w *worker, ft *fleetTenant, o FleetOptions) {
	start := time.Now()
	key := ft.twinKey()
	opts := o.Options
	if !o.DryRun && ft.sameDB {
		opts.BeforeCommit = func(ctx context.Context, tx *sql.Tx, r Result) error {
			if o.BeforeCommit != nil {
				if err := o.BeforeCommit(ctx, tx, r); err != nil {
					return err
				}
			}
			return f.Catalog.RecordApplied(ctx, tx, ft.id, r.Hash, r.Fingerprint, r.Stamp)
		}
	}
	hooks := applyHooks{fingerprintRole: ft.role, known: &knownState{fingerprint: ft.liveFP, stamp: ft.liveStamp}}
	if !o.InspectAll {
		hooks.base = w.twins[key]
		hooks.inspected = func(tw *twin) { w.twins[key] = tw }
	}
	var usedTwin bool
	hooks.usedTwin = &usedTwin
	res, err := apply(ctx, ft.db, *ft.target, opts, hooks)
	if errors.Is(err, errTwinMismatch) {
		f.Log.Debug().Str("tenant", ft.res.Slug).Msg("schema differs from its twin after apply; inspecting it")
		delete(w.twins, key)
		hooks.base = nil
		res, err = apply(ctx, ft.db, *ft.target, opts, hooks)
	}
	if usedTwin {
		w.fromTwin++
		ft.res.Twin = true
	} else {
		w.inspected++
	}
	if err == nil && !o.DryRun && !ft.sameDB {
		if rerr := f.Catalog.RecordApplied(ctx, nil, ft.id, res.Hash, res.Fingerprint, res.Stamp); rerr != nil {
			err = fmt.Errorf("applied, but not recorded (the next run will inspect it again): %w", rerr)
		}
	}
	ft.res.Statements = res.Statements
	ft.res.Destructive = res.Destructive
	ft.res.DurationMS = ms(time.Since(start))
	switch {
	case err != nil:
		ft.fail(fmt.Errorf("tenant %s: %w", ft.res.Slug, err))
		f.Log.Debug().Str("tenant", ft.res.Slug).Err(err).Msg("tenant schema apply failed")
		if !o.DryRun && ctx.Err() == nil {
			if rerr := f.Catalog.RecordFailed(ctx, ft.id, err); rerr != nil {
				f.Log.Warn().Str("tenant", ft.res.Slug).Err(rerr).Msg("could not record the failure")
			}
		}
	case o.DryRun && res.Changed():
		ft.res.Status = StatusPlanned
	case o.DryRun || !res.Changed():
		ft.res.Status = StatusUnchanged
	default:
		ft.res.Status = StatusApplied
		f.Log.Debug().Str("tenant", ft.res.Slug).Int("statements", len(res.Statements)).Msg("tenant schema applied")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// recordStamps records the live stamps of tenants found converged by their
// computed fingerprints (bookkeeping, also in dry runs: no schema is
// touched) and returns how many. A failure only costs the next run those
// fingerprints, so it is logged.
func (f *Fleet) recordStamps(ctx context.Context, stamps []Stamp) int {
	if len(stamps) == 0 {
		return 0
	}
	if err := f.Catalog.RecordStamps(ctx, stamps); err != nil {
		f.Log.Warn().Err(err).Int("tenants", len(stamps)).Msg("could not record schema stamps")
		return 0
	}
	return len(stamps)
}

// DriftResult is the report of Fleet.Drift.
type DriftResult struct {
	// Total tenants selected.
	Total int `json:"total"`
	// Converged tenants: recorded hash and live fingerprint match (not inspected).
	Converged int `json:"converged"`
	// InSync tenants were inspected and need no statement.
	InSync int `json:"in_sync"`
	// Drifted tenants differ from their desired schema: Reason says why
	// (drift: changed by hand; changed: the desired schema changed; new;
	// missing), Statements what apply would run, Destructive what of it
	// needs --allow-destructive.
	Drifted []TenantResult `json:"drifted"`
	// Failed tenants could not be checked.
	Failed     []TenantResult `json:"failed"`
	DurationMS float64        `json:"duration_ms"`
}

// Drift reports, in one pass, every selected tenant whose live schema
// differs from its desired one. Converged tenants are recognised by their
// recorded hash and fingerprint without inspection; the others are planned
// (a dry run that allows destructive changes, so that all are listed) and
// nothing is changed or recorded.
func (f *Fleet) Drift(ctx context.Context, o FleetOptions) (DriftResult, error) {
	o.DryRun, o.AllowDestructive, o.Canary = true, true, 0
	r, err := f.Apply(ctx, o)
	out := DriftResult{Total: r.Total, Converged: r.Converged, DurationMS: r.DurationMS,
		Drifted: []TenantResult{}, Failed: []TenantResult{}}
	if err != nil {
		return out, err
	}
	for _, t := range r.Tenants {
		switch t.Status {
		case StatusPlanned:
			out.Drifted = append(out.Drifted, t)
		case StatusUnchanged:
			out.InSync++
		default:
			out.Failed = append(out.Failed, t)
		}
	}
	return out, nil
}

// Describe is a one-line summary of a fleet run.
func (r FleetResult) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d tenants: %d converged (skipped), ", r.Total, r.Converged)
	if r.DryRun {
		fmt.Fprintf(&b, "%d would change, %d up to date", r.Planned, r.Unchanged)
	} else {
		fmt.Fprintf(&b, "%d applied, %d unchanged", r.Applied, r.Unchanged)
	}
	fmt.Fprintf(&b, ", %d failed", r.Failed)
	if r.NotStarted > 0 {
		fmt.Fprintf(&b, ", %d not started", r.NotStarted)
	}
	fmt.Fprintf(&b, " in %s (%d inspected, %d planned from a twin",
		(time.Duration(r.DurationMS*1000) * time.Microsecond).Round(time.Millisecond), r.Inspected, r.FromTwin)
	if r.Batched > 0 {
		fmt.Fprintf(&b, ", %d of them in batches", r.Batched)
	}
	if r.Stamped > 0 {
		fmt.Fprintf(&b, ", %d stamped", r.Stamped)
	}
	if r.Restamped > 0 {
		fmt.Fprintf(&b, ", %d restamped", r.Restamped)
	}
	b.WriteString(")")
	return b.String()
}
