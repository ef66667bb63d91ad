// Package schemaapply applies Atlas HCL schemas in-process with the embedded
// ariga.io/atlas library: parse with variables → transaction → advisory lock
// for the schema → inspect (not for a tenant schema that does not exist yet:
// its plan starts from nothing) → diff → refuse destructive changes unless
// forced → plan → apply → commit. It serves the landlord catalog and every
// tenant schema; what open-source Atlas cannot express (extensions, grants)
// runs as idempotent SQL steps in the same transaction, only when needed.
//
// Tenants: TenantTarget and ApplyTenant (schema, role, grants, core and
// module HCL); Twins (new schemas built from an earlier one's plan);
// Fingerprints (catalog fingerprints of many schemas in one query); Fleet (every tenant of the landlord catalog: converged tenants
// skipped without inspection, the rest applied in parallel, canaries first,
// failures isolated and recorded; Drift reports without changing anything).
package schemaapply

import (
	"github.com/publicdigit/publicdigit/internal/apperr"

	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/jackc/pgx/v5"
	"github.com/zclconf/go-cty/cty"
)

// Target is the desired state of one PostgreSQL schema.
type Target struct {
	// Schema is the name of the one schema the HCL describes (already validated).
	Schema string
	// HCL is the desired schema, one or more Atlas HCL documents.
	HCL [][]byte
	// Files optionally names the HCL documents (same order), for error messages.
	Files []string
	// Vars are the HCL input variables, e.g. "tenant" → the schema name.
	Vars map[string]string
	// Before runs ahead of inspection, in the same transaction (e.g.
	// extensions). A tenant apply (ApplyTenant, Twins, Fleet) evaluates the
	// checks of all Before steps in one query, before any of them runs; for a
	// schema that does not exist yet, their statements then travel with the
	// plan's.
	Before []Step
	// After runs once the plan is applied, in the same transaction (e.g. grants).
	After []Step
}

// Step is idempotent SQL that Atlas cannot express. Check, when set, is a
// query returning one boolean: true means the step is already satisfied and
// is skipped, so a converged schema runs no statement at all.
type Step struct {
	Name  string
	Check string
	Args  []any
	SQL   []string
}

// Options control one apply.
type Options struct {
	// DryRun plans and returns the SQL but changes nothing.
	DryRun bool
	// AllowDestructive permits drops of schemas, tables and columns and column type changes.
	AllowDestructive bool
	// LockTimeout bounds the wait for the schema's advisory lock and for table
	// locks (0: wait as long as the statement timeout allows).
	LockTimeout time.Duration
	// BeforeExecute, when set, runs in the apply's transaction once the
	// schema's advisory lock is held, before anything is inspected or changed
	// (also in a dry run): e.g. a check of the data that a destructive plan
	// would drop, in the database and transaction that drop it. An error
	// rolls everything back.
	BeforeExecute func(ctx context.Context, tx *sql.Tx) error
	// BeforeCommit, when set, runs in the apply's transaction after the plan
	// and the After steps, just before commit (never in a dry run): record
	// the applied hash in a catalog in the same database, so that the schema
	// change and its record commit together. An error rolls everything back.
	BeforeCommit func(ctx context.Context, tx *sql.Tx, res Result) error
}

// Result describes what an apply did (or, in a dry run, would do).
type Result struct {
	// Statements are the planned statements, in order, including steps that ran.
	Statements []string
	// Hash identifies the desired state (HCL and variables other than the schema name).
	Hash string
	// Destructive lists the planned changes that lose data (drops, type
	// changes); they ran only if Options.AllowDestructive was set.
	Destructive []string
	// Fingerprint is the catalog fingerprint of the schema after the apply
	// (see Fingerprints); set by ApplyTenant and the fleet runner, not in a dry run.
	Fingerprint string
	// Stamp is the schema's catalog stamp after the apply (see Stamps), when
	// Fingerprint was computed (not taken from a twin): record it with the
	// fingerprint, so that the fleet runner need not compute it again.
	Stamp string
	// Duration of the whole apply.
	Duration time.Duration
}

// Changed reports whether the apply ran (or would run) any statement.
func (r Result) Changed() bool { return len(r.Statements) > 0 }

// ErrDestructive is returned, wrapped in *DestructiveError, when the plan
// would drop or retype something and Options.AllowDestructive is false.
var ErrDestructive = apperr.New("destructive_change", "destructive change refused")

// DestructiveError lists the destructive changes that were refused.
type DestructiveError struct {
	Schema  string
	Changes []string
}

func (e *DestructiveError) Error() string {
	return fmt.Sprintf("schema %s: %s (use --allow-destructive to force): %s",
		e.Schema, ErrDestructive, strings.Join(e.Changes, "; "))
}

func (e *DestructiveError) Unwrap() error { return ErrDestructive }

// Desired parses the target's HCL into an Atlas realm.
func (t Target) Desired() (*schema.Realm, error) {
	vars := make(map[string]cty.Value, len(t.Vars))
	for k, v := range t.Vars {
		vars[k] = cty.StringVal(v)
	}
	// One parser, one file per document: errors name the file and its line,
	// and the documents reference each other as the atlas CLI's do.
	p := hclparse.NewParser()
	for i, b := range t.HCL {
		name := fmt.Sprintf("hcl#%d", i+1)
		if i < len(t.Files) && t.Files[i] != "" {
			name = t.Files[i]
		}
		if _, diags := p.ParseHCL(b, name); diags.HasErrors() {
			return nil, fmt.Errorf("parse HCL for %s: %w", t.Schema, diags)
		}
	}
	var r schema.Realm
	if err := postgres.EvalHCL.Eval(p, &r, vars); err != nil {
		return nil, fmt.Errorf("parse HCL for %s: %w", t.Schema, err)
	}
	if len(r.Schemas) != 1 || r.Schemas[0].Name != t.Schema {
		names := make([]string, 0, len(r.Schemas))
		for _, s := range r.Schemas {
			names = append(names, s.Name)
		}
		return nil, fmt.Errorf("HCL for %s must describe exactly that schema (got %v)", t.Schema, names)
	}
	return &r, nil
}

// Hash returns a stable digest of the desired state, independent of the
// schema name, so that every tenant with the same modules has the same hash.
func (t Target) Hash() string {
	h := sha256.New()
	h.Write([]byte("publicdigit-schema-v1\x00"))
	h.Write(joinHCL(t.HCL))
	keys := make([]string, 0, len(t.Vars))
	for k := range t.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := t.Vars[k]
		if v == t.Schema {
			v = "<schema>"
		}
		fmt.Fprintf(h, "\x00%s=%s", k, v)
	}
	// Steps name the schema (and, for tenants, the role of the same name) in
	// their SQL: hash them with the name replaced, like the variables above.
	anon := func(x string) string {
		if t.Schema == "" {
			return x
		}
		return strings.ReplaceAll(x, t.Schema, "<schema>")
	}
	for _, s := range append(append([]Step{}, t.Before...), t.After...) {
		fmt.Fprintf(h, "\x00step %s %s %s", s.Name, anon(s.Check), anon(strings.Join(s.SQL, ";")))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func joinHCL(files [][]byte) []byte {
	var b []byte
	for _, f := range files {
		b = append(b, f...)
		b = append(b, '\n')
	}
	return b
}

// Apply brings one schema to the target state in one transaction on db,
// which must be a direct (non-PgBouncer) admin connection. The schema's
// advisory lock serializes concurrent applies to the same schema.
func Apply(ctx context.Context, db *sql.DB, t Target, o Options) (Result, error) {
	return apply(ctx, db, t, o, applyHooks{})
}

// applyHooks let the fleet runner reuse one tenant's inspection for its
// twins, and Twins reuse the plan of a schema built from nothing.
type applyHooks struct {
	// fingerprintRole, when set, makes apply compute the schema's catalog
	// fingerprint (with this role) in the transaction: before planning, and
	// after the After steps (Result.Fingerprint). A schema whose fingerprint
	// before is "" does not exist: it is planned from an empty realm, without
	// inspection.
	fingerprintRole string
	// base, when set and its before-fingerprint equals the schema's, replaces
	// inspection: the realm of a twin schema, renamed (or, for a twin built
	// from nothing that carries its plan, parsing and planning too). The
	// after-fingerprint must then equal base.after too, or the apply fails
	// with errTwinMismatch.
	base *twin
	// inspected receives the realm that inspection returned, with the
	// before- and after-fingerprints, once the apply succeeded.
	inspected func(tw *twin)
	// freshPlan, when set, makes a successful apply of a schema that did not
	// exist give inspected a twin that carries its plan (see twinPlan).
	freshPlan bool
	// usedTwin, when set, tells whether base replaced inspection.
	usedTwin *bool
	// known, when set, is the schema's fingerprint and stamp as the fleet
	// runner read them before the apply: if the stamp still holds in the
	// apply's transaction, the fingerprint before is known without computing it.
	known *knownState
}

// knownState is a schema's fingerprint under a catalog stamp.
type knownState struct{ fingerprint, stamp string }

// twin is an inspected schema whose plan serves schemas with the same fingerprint.
type twin struct {
	realm         *schema.Realm
	before, after string
	// plan, for a twin built from nothing (before ""), is the plan's
	// statements for the schema twinSchema; nil when it is not known or
	// cannot be renamed safely.
	plan []string
	// ranBefore tells which Before steps the twin's apply ran (runSteps).
	ranBefore string
	// verified is set once an apply from plan computed the fingerprint after
	// and found the twin's: later applies from plan that ran the same Before
	// steps record it without computing it.
	verified atomic.Bool
	// changes, for a twin that existed (before not ""), ran no Before step
	// and was planned with Atlas without arguments, is that plan for the
	// schema twinSchema (nil otherwise): the fleet runner applies it, renamed,
	// to a batch of tenants with the twin's fingerprint (applyBatch).
	changes []string
	// ranAfter tells which After steps the twin's apply ran (runSteps), and
	// destructive lists its plan's destructive changes.
	ranAfter    string
	destructive []string
}

// errTwinMismatch means a twin's plan did not produce the twin's result; the
// transaction was rolled back and the caller inspects for real.
var errTwinMismatch = errors.New("schema differs from its twin after apply")

// twinSchema names the schema a twin's plan is made for: a name that no HCL
// uses otherwise, replaced (as a quoted identifier) by the schema applied.
const twinSchema = "pd_twin_schema_5f0c2a9e"

// twinPlan plans t from an empty realm for the schema twinSchema. It
// returns nil unless every occurrence of that name in the statements is the
// quoted schema identifier (e.g. the HCL also used var.tenant in a string),
// or a statement takes arguments.
func twinPlan(ctx context.Context, drv migrate.Driver, t Target) []string {
	tt := t
	tt.Schema = twinSchema
	tt.Vars = make(map[string]string, len(t.Vars))
	for k, v := range t.Vars {
		if v == t.Schema {
			v = twinSchema
		}
		tt.Vars[k] = v
	}
	desired, err := tt.Desired()
	if err != nil {
		return nil
	}
	plan, changes, err := planFrom(ctx, drv, twinSchema, schema.NewRealm(), desired)
	if err != nil || len(Destructive(changes)) > 0 {
		return nil
	}
	quoted := pgx.Identifier{twinSchema}.Sanitize()
	stmts := make([]string, 0, len(plan.Changes))
	for _, c := range plan.Changes {
		if len(c.Args) > 0 || strings.Count(c.Cmd, twinSchema) != strings.Count(c.Cmd, quoted) {
			return nil
		}
		stmts = append(stmts, c.Cmd)
	}
	return stmts
}

// portablePlan is a plan made for the schema name, for the schema
// twinSchema (renamePlan makes it any schema's): nil unless every
// occurrence of the name in the statements is the quoted schema identifier,
// and no statement takes arguments.
func portablePlan(stmts []string, args [][]any, name string) []string {
	quoted, to := pgx.Identifier{name}.Sanitize(), pgx.Identifier{twinSchema}.Sanitize()
	out := make([]string, len(stmts))
	for i, s := range stmts {
		if (i < len(args) && len(args[i]) > 0) || strings.Count(s, name) != strings.Count(s, quoted) {
			return nil
		}
		out[i] = strings.ReplaceAll(s, quoted, to)
	}
	return out
}

// renamePlan is a twin's plan for the schema name (a validated identifier).
func renamePlan(stmts []string, name string) []string {
	quoted, to := pgx.Identifier{twinSchema}.Sanitize(), pgx.Identifier{name}.Sanitize()
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i] = strings.ReplaceAll(s, quoted, to)
	}
	return out
}

// Twins remembers, for one database, how a tenant schema was built from
// nothing, so that the next schema built from nothing with the same desired
// state (Target.Hash) is neither inspected nor parsed nor planned: it runs
// the twin's statements with its own schema name, and its catalog
// fingerprint after the apply must be the twin's, or that apply is rolled
// back and done again with Atlas (which then becomes the twin). Schemas that
// exist are applied as ApplyTenant does. Keep one Twins per database (plans
// and fingerprints may depend on the server, default privileges on the
// database); safe for concurrent use.
type Twins struct {
	mu sync.Mutex
	m  map[string]*twin // desired hash → twin built from nothing, with its plan
}

// NewTwins returns an empty Twins.
func NewTwins() *Twins { return &Twins{m: map[string]*twin{}} }

// ApplyTenant is the package's ApplyTenant, planning from a twin when it can.
// A nil *Twins applies without one.
func (c *Twins) ApplyTenant(ctx context.Context, db *sql.DB, spec TenantSpec, o Options) (Result, error) {
	t, err := TenantTarget(spec)
	if err != nil {
		return Result{}, err
	}
	h := applyHooks{fingerprintRole: spec.Role}
	if c == nil {
		return apply(ctx, db, t, o, h)
	}
	hash := t.Hash()
	h.base, h.freshPlan = c.get(hash), true
	h.inspected = func(tw *twin) { c.keep(hash, tw) }
	res, err := apply(ctx, db, t, o, h)
	if errors.Is(err, errTwinMismatch) {
		c.forget(hash, h.base)
		h.base = nil
		res, err = apply(ctx, db, t, o, h)
	}
	return res, err
}

// get returns the twin for a desired hash, or nil.
func (c *Twins) get(hash string) *twin {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[hash]
}

// keep makes tw the twin for a desired hash if it was built from nothing
// and both its plan and its fingerprint after are known.
func (c *Twins) keep(hash string, tw *twin) {
	if tw.before != "" || tw.after == "" || tw.plan == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[hash] = tw
}

// forget drops the twin tw for a desired hash, unless another replaced it.
func (c *Twins) forget(hash string, tw *twin) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[hash] == tw {
		delete(c.m, hash)
	}
}

// apply brings t's schema to its desired state in one transaction, step by
// step (see applier): lock, checkBefore, plan, execute, then — not in a dry
// run — fingerprint and commit.
func apply(ctx context.Context, db *sql.DB, t Target, o Options, h applyHooks) (Result, error) {
	a := &applier{t: t, o: o, h: h, start: time.Now(), res: Result{Hash: t.Hash()}}
	if err := a.parse(); err != nil {
		return a.res, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return a.res, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	a.tx = tx
	if err := a.run(ctx); err != nil {
		return a.res, err
	}
	a.res.Duration = time.Since(a.start)
	return a.res, nil
}

// applier is one apply: its transaction, target, options and hooks, and what
// each step learns for the next. On error, res holds what was done so far.
type applier struct {
	t     Target
	o     Options
	h     applyHooks
	tx    *sql.Tx
	start time.Time
	res   Result

	desired *schema.Realm // nil while a twin's plan may serve
	// missing: the tenant schema does not exist yet (its fingerprint before is "").
	missing           bool
	before, ranBefore string   // fingerprint before; which Before steps ran (runSteps)
	ranAfter          string   // which After steps ran (runSteps)
	pending           []string // Before statements that go with the plan
	pendingNotes      []string
	// reused: the twin's realm replaces inspection; fromPlan: its plan,
	// renamed, replaces parsing and planning too.
	reused, fromPlan bool
	drv              migrate.Driver // nil when planned from the twin's plan
	current          *schema.Realm
	stmts            []string // the plan's statements, with their arguments and comments
	args             [][]any
	comments         []string
}

// parse reads the desired realm from the HCL. A twin built from nothing
// carries its plan: no HCL to parse if it serves (plan parses otherwise).
func (a *applier) parse() error {
	if a.h.base != nil && a.h.base.plan != nil {
		return nil
	}
	var err error
	a.desired, err = a.t.Desired()
	return err
}

// run takes the open transaction through the steps; a dry run ends after
// execute, rolled back by apply.
func (a *applier) run(ctx context.Context) error {
	if err := a.lock(ctx); err != nil {
		return err
	}
	if a.o.BeforeExecute != nil {
		if err := a.o.BeforeExecute(ctx, a.tx); err != nil {
			return err
		}
	}
	if err := a.checkBefore(ctx); err != nil {
		return err
	}
	if err := a.plan(ctx); err != nil {
		return err
	}
	if err := a.execute(ctx); err != nil {
		return err
	}
	if a.o.DryRun {
		if !a.reused && a.h.inspected != nil {
			a.h.inspected(&twin{realm: a.current, before: a.before})
		}
		return nil // deferred rollback
	}
	if err := a.fingerprint(ctx); err != nil {
		return err
	}
	return a.commit(ctx)
}

// lock bounds the waits for locks, then takes the schema's advisory lock,
// which serializes concurrent applies to the same schema.
func (a *applier) lock(ctx context.Context) error {
	if a.o.LockTimeout > 0 {
		if _, err := a.tx.ExecContext(ctx, "SELECT set_config('lock_timeout', $1, true)",
			fmt.Sprintf("%dms", a.o.LockTimeout.Milliseconds())); err != nil {
			return fmt.Errorf("set lock_timeout: %w", err)
		}
	}
	if _, err := a.tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('schema:' || $1))", a.t.Schema); err != nil {
		return fmt.Errorf("lock schema %s: %w", a.t.Schema, err)
	}
	return nil
}

// checkBefore runs the Before steps whose checks fail. Tenant applies check
// the schema and every Before step in one round trip. A schema that does not
// exist has the fingerprint "" and is planned from an empty realm, without
// inspection; its Before statements then go with the plan. (Apply of the
// landlord catalog runs its steps one by one and always inspects.)
func (a *applier) checkBefore(ctx context.Context) error {
	if a.h.fingerprintRole == "" {
		ran, ranBefore, err := runSteps(ctx, a.tx, a.t.Before, a.o.DryRun)
		if err != nil {
			return err
		}
		a.ranBefore = ranBefore
		a.res.Statements = append(a.res.Statements, ran...)
		return nil
	}
	missing, done, err := checkSchemaAndSteps(ctx, a.tx, a.t.Schema, a.t.Before)
	if err != nil {
		return err
	}
	a.missing = missing
	a.pendBefore(done)
	if a.missing {
		return nil
	}
	if !a.o.DryRun {
		if err := execAll(ctx, a.tx, a.pending, make([][]any, len(a.pending)), a.pendingNotes); err != nil {
			return fmt.Errorf("schema %s: %w", a.t.Schema, err)
		}
	}
	ranSteps := len(a.pending) > 0
	a.pending, a.pendingNotes = nil, nil
	if k := a.h.known; k != nil && k.stamp != "" && !ranSteps {
		changed, err := ChangedStamps(ctx, a.tx, []SchemaRole{{Schema: a.t.Schema, Role: a.h.fingerprintRole}}, []string{k.stamp})
		if err != nil {
			return err
		}
		if len(changed) == 0 {
			a.before = k.fingerprint
			return nil
		}
	}
	a.before, err = Fingerprint(ctx, a.tx, a.t.Schema, a.h.fingerprintRole)
	return err
}

// pendBefore queues the statements of the Before steps not done (each named
// for errors) and records which ran, one byte per step as runSteps does.
func (a *applier) pendBefore(done []bool) {
	var w []byte
	for i, s := range a.t.Before {
		if done[i] {
			w = append(w, '0')
			continue
		}
		w = append(w, '1')
		a.res.Statements = append(a.res.Statements, s.SQL...)
		a.pending = append(a.pending, s.SQL...)
		for range s.SQL {
			a.pendingNotes = append(a.pendingNotes, "step "+s.Name)
		}
	}
	a.ranBefore = string(w)
}

// plan decides whether the twin serves (its before-fingerprint is the
// schema's) and sets the statements to run: the twin's plan renamed, for a
// schema built from nothing, or else Atlas' plan (planAtlas).
func (a *applier) plan(ctx context.Context) error {
	a.reused = a.h.base != nil && a.h.base.before == a.before && len(a.h.base.realm.Schemas) <= 1
	if a.h.usedTwin != nil {
		*a.h.usedTwin = a.reused
	}
	a.fromPlan = a.reused && a.missing && a.h.base.plan != nil
	if !a.fromPlan {
		return a.planAtlas(ctx)
	}
	a.stmts = renamePlan(a.h.base.plan, a.t.Schema)
	a.args = make([][]any, len(a.stmts))
	return nil
}

// planAtlas diffs the current realm (currentRealm) with the desired one and
// plans the changes, refusing destructive ones unless allowed.
func (a *applier) planAtlas(ctx context.Context) error {
	var err error
	if a.desired == nil { // the twin does not serve: parse after all
		if a.desired, err = a.t.Desired(); err != nil {
			return err
		}
	}
	if a.drv, err = postgres.Open(a.tx); err != nil {
		return fmt.Errorf("atlas driver: %w", err)
	}
	if a.current, err = a.currentRealm(ctx); err != nil {
		return err
	}
	plan, changes, err := planFrom(ctx, a.drv, a.t.Schema, a.current, a.desired)
	if err != nil {
		return err
	}
	a.res.Destructive = Destructive(changes)
	if !a.o.AllowDestructive && len(a.res.Destructive) > 0 {
		return &DestructiveError{Schema: a.t.Schema, Changes: a.res.Destructive}
	}
	for _, c := range plan.Changes {
		a.stmts = append(a.stmts, c.Cmd)
		a.args = append(a.args, c.Args)
		a.comments = append(a.comments, c.Comment)
	}
	return nil
}

// currentRealm is where the plan starts: the twin's realm, renamed to the
// schema; an empty realm for a schema that does not exist; or the schema as
// inspected.
func (a *applier) currentRealm(ctx context.Context) (*schema.Realm, error) {
	switch {
	case a.reused:
		current := a.h.base.realm
		if len(current.Schemas) == 1 {
			current.Schemas[0].Name = a.t.Schema
		}
		return current, nil
	case a.missing:
		return schema.NewRealm(), nil
	}
	current, err := a.drv.InspectRealm(ctx, &schema.InspectRealmOption{Schemas: []string{a.t.Schema}})
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", a.t.Schema, err)
	}
	return current, nil
}

// execute runs the plan, then the After steps whose checks fail (in a dry
// run, only lists them). A new schema goes in one round trip (executeNew).
func (a *applier) execute(ctx context.Context) error {
	a.res.Statements = append(a.res.Statements, a.stmts...)
	if a.missing {
		return a.executeNew(ctx)
	}
	if !a.o.DryRun {
		if err := execAll(ctx, a.tx, a.stmts, a.args, a.comments); err != nil {
			return fmt.Errorf("schema %s: %w", a.t.Schema, err)
		}
	}
	ran, ranAfter, err := runSteps(ctx, a.tx, a.t.After, a.o.DryRun)
	if err != nil {
		return err
	}
	a.ranAfter = ranAfter
	a.res.Statements = append(a.res.Statements, ran...)
	return nil
}

// executeNew runs the plan of a schema created here. It cannot satisfy an
// After step already: the steps (idempotent) run without their checks, and
// everything — Before statements, plan, After statements — goes in one
// round trip.
func (a *applier) executeNew(ctx context.Context) error {
	comments := a.comments
	if comments == nil {
		comments = make([]string, len(a.stmts))
	}
	batch := append(a.pending, a.stmts...)
	notes := append(a.pendingNotes, comments...)
	for _, s := range a.t.After {
		a.res.Statements = append(a.res.Statements, s.SQL...)
		batch = append(batch, s.SQL...)
		for range s.SQL {
			notes = append(notes, "step "+s.Name)
		}
	}
	if a.o.DryRun {
		return nil
	}
	bargs := make([][]any, len(a.pending), len(batch))
	bargs = append(append(bargs, a.args...), make([][]any, len(batch)-len(a.pending)-len(a.args))...)
	if err := execAll(ctx, a.tx, batch, bargs, notes); err != nil {
		return fmt.Errorf("schema %s: %w", a.t.Schema, err)
	}
	return nil
}

// fingerprint sets Result.Fingerprint for a tenant apply: the catalog
// fingerprint after the apply, which must be the twin's if the twin served.
func (a *applier) fingerprint(ctx context.Context) error {
	switch {
	case a.h.fingerprintRole == "":
	case a.fromPlan && a.ranBefore == a.h.base.ranBefore && a.h.base.verified.Load():
		// From the same start as the twin (no schema, the same Before steps
		// run: e.g. the tenant role created here), the twin's statements,
		// renamed, as an earlier use of this twin whose fingerprint was
		// computed and matched: the fingerprint is the twin's. Should the live
		// one differ all the same (a change outside the plan, such as new
		// default privileges), the fleet runner finds the recorded fingerprint
		// stale and inspects the tenant: it never skips on a wrong one.
		a.res.Fingerprint = a.h.base.after
	default:
		// The stamp first, then the fingerprint (each statement has its own
		// snapshot): whatever another transaction changes between the two
		// is in the fingerprint and, written after the stamp's horizon, makes
		// the stamp not hold; the other way round it would be missed. This
		// transaction's own rows carry its id, which the stamp names.
		st, err := Stamps(ctx, a.tx, []SchemaRole{{Schema: a.t.Schema, Role: a.h.fingerprintRole}})
		if err != nil {
			return err
		}
		if a.res.Fingerprint, err = Fingerprint(ctx, a.tx, a.t.Schema, a.h.fingerprintRole); err != nil {
			return err
		}
		if a.reused && a.res.Fingerprint != a.h.base.after {
			return errTwinMismatch
		}
		a.res.Stamp = st[a.t.Schema]
	}
	return nil
}

// commit runs the BeforeCommit hook and commits, then keeps the books of
// twins: a twin's plan that served is verified; a schema planned without a
// twin is handed to the inspected hook (with its plan, if built from nothing).
func (a *applier) commit(ctx context.Context) error {
	if a.o.BeforeCommit != nil {
		if err := a.o.BeforeCommit(ctx, a.tx, a.res); err != nil {
			return fmt.Errorf("schema %s: before commit: %w", a.t.Schema, err)
		}
	}
	if err := a.tx.Commit(); err != nil {
		return fmt.Errorf("commit schema %s: %w", a.t.Schema, err)
	}
	if a.fromPlan {
		a.h.base.verified.Store(true)
	}
	if !a.reused && a.h.inspected != nil {
		tw := &twin{realm: a.current, before: a.before, after: a.res.Fingerprint, ranBefore: a.ranBefore,
			ranAfter: a.ranAfter, destructive: a.res.Destructive}
		if !a.missing && strings.Trim(a.ranBefore, "0") == "" {
			tw.changes = portablePlan(a.stmts, a.args, a.t.Schema)
		}
		if a.missing && a.h.freshPlan {
			// Planned once more, for the name twins are made for (outside the
			// transaction: its locks are gone). PlanChanges reads nothing.
			tw.plan = twinPlan(ctx, a.drv, a.t)
		}
		a.h.inspected(tw)
	}
	return nil
}

// execAll runs a plan's statements in order on tx (comments name them in
// errors). Statements without arguments go together, as one simple-protocol
// Query message: one round trip; inside the transaction, the first error
// stops the rest and aborts it.
func execAll(ctx context.Context, tx *sql.Tx, stmts []string, args [][]any, comments []string) error {
	for i := 0; i < len(stmts); {
		j := i + 1
		if len(args[i]) == 0 {
			for j < len(stmts) && len(args[j]) == 0 {
				j++
			}
		}
		var err error
		if j == i+1 {
			_, err = tx.ExecContext(ctx, stmts[i], args[i]...)
		} else {
			err = execBatch(ctx, tx, stmts[i:j])
		}
		if err != nil {
			what := fmt.Sprintf("statements %d to %d of %d", i+1, j, len(stmts))
			if j == i+1 {
				what = fmt.Sprintf("statement %d of %d", i+1, len(stmts))
				if i < len(comments) && comments[i] != "" {
					what = comments[i]
				}
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		i = j
	}
	return nil
}

// execBatch runs statements without arguments in one round trip.
func execBatch(ctx context.Context, tx *sql.Tx, stmts []string) error {
	var err error
	switch len(stmts) {
	case 0:
	case 1:
		_, err = tx.ExecContext(ctx, stmts[0])
	default:
		_, err = tx.ExecContext(ctx, strings.Join(stmts, ";\n"), pgx.QueryExecModeSimpleProtocol)
	}
	return err
}

// Plan returns the statements that Apply would run, without the lock or the steps.
func Plan(ctx context.Context, db *sql.DB, t Target) ([]string, []schema.Change, error) {
	desired, err := t.Desired()
	if err != nil {
		return nil, nil, err
	}
	plan, changes, err := planChanges(ctx, db, t.Schema, desired)
	if err != nil {
		return nil, nil, err
	}
	stmts := make([]string, 0, len(plan.Changes))
	for _, c := range plan.Changes {
		stmts = append(stmts, c.Cmd)
	}
	return stmts, changes, nil
}

func planChanges(ctx context.Context, conn schema.ExecQuerier, name string, desired *schema.Realm) (*migrate.Plan, []schema.Change, error) {
	drv, err := postgres.Open(conn)
	if err != nil {
		return nil, nil, fmt.Errorf("atlas driver: %w", err)
	}
	current, err := drv.InspectRealm(ctx, &schema.InspectRealmOption{Schemas: []string{name}})
	if err != nil {
		return nil, nil, fmt.Errorf("inspect %s: %w", name, err)
	}
	return planFrom(ctx, drv, name, current, desired)
}

func planFrom(ctx context.Context, drv migrate.Driver, name string, current, desired *schema.Realm) (*migrate.Plan, []schema.Change, error) {
	changes, err := drv.RealmDiff(current, desired)
	if err != nil {
		return nil, nil, fmt.Errorf("diff %s: %w", name, err)
	}
	plan, err := drv.PlanChanges(ctx, name, changes)
	if err != nil {
		return nil, nil, fmt.Errorf("plan %s: %w", name, err)
	}
	return plan, changes, nil
}

// checkSchemaAndSteps tells, in one query, whether the schema is missing
// and which steps' checks are satisfied (a step without a check is not).
// The checks are evaluated together, before any step runs: a step whose
// check an earlier step would satisfy runs too (steps are idempotent).
func checkSchemaAndSteps(ctx context.Context, tx *sql.Tx, schemaName string, steps []Step) (bool, []bool, error) {
	var q strings.Builder
	q.WriteString("SELECT NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
	args := []any{schemaName}
	var idx []int // steps with a check, in column order
	for i, s := range steps {
		if s.Check == "" {
			continue
		}
		q.WriteString(", (")
		q.WriteString(shiftParams(s.Check, len(args)))
		q.WriteString(")")
		args = append(args, s.Args...)
		idx = append(idx, i)
	}
	var missing bool
	cols := make([]bool, len(idx))
	dest := []any{&missing}
	for i := range cols {
		dest = append(dest, &cols[i])
	}
	if err := tx.QueryRowContext(ctx, q.String(), args...).Scan(dest...); err != nil {
		return false, nil, fmt.Errorf("schema %s: check schema and steps: %w", schemaName, err)
	}
	done := make([]bool, len(steps))
	for j, i := range idx {
		done[i] = cols[j]
	}
	return missing, done, nil
}

// shiftParams renumbers the parameters $1, $2, … of a query by adding by,
// leaving string literals, quoted identifiers, dollar-quoted strings and
// comments alone (step checks are this package's own SQL).
func shiftParams(query string, by int) string {
	var b strings.Builder
	identChar := func(c byte) bool {
		return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
	}
	for i := 0; i < len(query); {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(query) {
				if query[j] == c {
					if j+1 < len(query) && query[j+1] == c { // doubled: escaped
						j += 2
						continue
					}
					break
				}
				j++
			}
			end := min(j+1, len(query))
			b.WriteString(query[i:end])
			i = end
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			j := strings.Index(query[i+2:], "*/")
			end := len(query)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(query[i:end])
			i = end
		case c == '$' && (i == 0 || !identChar(query[i-1])):
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			if j > i+1 { // a parameter
				n, _ := strconv.Atoi(query[i+1 : j])
				b.WriteString("$" + strconv.Itoa(n+by))
				i = j
				continue
			}
			// A dollar quote: $tag$ … $tag$.
			k := i + 1
			for k < len(query) && query[k] != '$' && identChar(query[k]) {
				k++
			}
			if k < len(query) && query[k] == '$' {
				tag := query[i : k+1]
				end := strings.Index(query[k+1:], tag)
				stop := len(query)
				if end >= 0 {
					stop = k + 1 + end + len(tag)
				}
				b.WriteString(query[i:stop])
				i = stop
				continue
			}
			b.WriteByte(c)
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// runSteps runs, one by one, the steps whose check fails; which has one byte
// per step: '1' ran, '0' skipped.
func runSteps(ctx context.Context, tx *sql.Tx, steps []Step, dryRun bool) ([]string, string, error) {
	var ran []string
	w := make([]byte, 0, len(steps))
	for _, s := range steps {
		if s.Check != "" {
			var done bool
			if err := tx.QueryRowContext(ctx, s.Check, s.Args...).Scan(&done); err != nil {
				return ran, "", fmt.Errorf("step %s: check: %w", s.Name, err)
			}
			if done {
				w = append(w, '0')
				continue
			}
		}
		w = append(w, '1')
		ran = append(ran, s.SQL...)
		if dryRun {
			continue
		}
		if err := execBatch(ctx, tx, s.SQL); err != nil {
			return ran, "", fmt.Errorf("step %s: %w", s.Name, err)
		}
	}
	return ran, string(w), nil
}

// Destructive describes the changes that lose data: dropped schemas, tables,
// columns and objects, and column type changes.
func Destructive(changes []schema.Change) []string {
	var out []string
	for _, c := range changes {
		switch c := c.(type) {
		case *schema.DropSchema:
			out = append(out, "drop schema "+c.S.Name)
		case *schema.DropTable:
			out = append(out, "drop table "+c.T.Name)
		case *schema.DropObject:
			out = append(out, fmt.Sprintf("drop object %T", c.O))
		case *schema.ModifyTable:
			for _, tc := range c.Changes {
				switch tc := tc.(type) {
				case *schema.DropColumn:
					out = append(out, fmt.Sprintf("drop column %s.%s", c.T.Name, tc.C.Name))
				case *schema.ModifyColumn:
					if tc.Change.Is(schema.ChangeType) {
						out = append(out, fmt.Sprintf("change type of column %s.%s", c.T.Name, tc.From.Name))
					}
				}
			}
		}
	}
	return out
}
