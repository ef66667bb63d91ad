package schemaapply_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/tenant"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

// fleetFor returns a fleet runner on the test catalog and the options that
// select only this test's tenants (slug prefix): other packages' tests share
// the catalog.
func fleetFor(t *testing.T, prefix string) (*schemaapply.Fleet, schemaapply.FleetOptions) {
	t.Helper()
	f := apptest.Open(t, apptest.Options{}).Fleet()
	return f, schemaapply.FleetOptions{Selection: schemaapply.Selection{SlugPrefix: prefix}, Parallel: 4}
}

// recorded counts the tenants of schemas whose catalog record satisfies ok.
func recorded(t *testing.T, db *sql.DB, schemas []string, ok func(catalogtest.Record) bool) int {
	t.Helper()
	return catalogtest.Count(catalogtest.Records(t, db, schemas), ok)
}

// withMembersNickname adds a column and an index to members, in memory: the
// real HCL files stay as they are.
func withMembersNickname(spec schemaapply.TenantSpec) (schemaapply.Target, error) {
	t, err := schemaapply.TenantTarget(spec)
	if err != nil {
		return t, err
	}
	core := t.HCL[0]
	anchor := []byte(`  index "members_tenant_status_idx" {`)
	if !bytes.Contains(core, anchor) {
		return t, errors.New("anchor not found in core.hcl")
	}
	extra := []byte("  column \"nickname\" {\n    type = text\n    null = true\n  }\n" +
		"  index \"members_tenant_nickname_idx\" {\n    columns = [column.tenant_id, column.nickname]\n  }\n")
	t.HCL = append([][]byte{bytes.Replace(core, anchor, append(extra, anchor...), 1)}, t.HCL[1:]...)
	return t, nil
}

// withoutMembersPhone drops a column, in memory.
func withoutMembersPhone(spec schemaapply.TenantSpec) (schemaapply.Target, error) {
	t, err := schemaapply.TenantTarget(spec)
	if err != nil {
		return t, err
	}
	col := []byte("  column \"phone\" {\n    type = text\n    null = true\n  }\n")
	if !bytes.Contains(t.HCL[0], col) {
		return t, errors.New("members.phone not found in core.hcl")
	}
	t.HCL = append([][]byte{bytes.Replace(t.HCL[0], col, nil, 1)}, t.HCL[1:]...)
	return t, nil
}

func countWhere(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(query, args...).Scan(&n))
	return n
}

func statuses(r schemaapply.FleetResult) map[string]string {
	m := map[string]string{}
	for _, tr := range r.Tenants {
		m[tr.Slug] = tr.Status
	}
	return m
}

func TestFleetRollsAdditiveChangeTo50Tenants(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("fa")
	events := dbtest.Module(t, "ev", "modules/events.hcl")
	var schemas []string
	for i := range 50 {
		var tt dbtest.TestTenant
		if i%5 == 0 { // every fifth tenant has a module: two desired schemas in one fleet
			tt = dbtest.TenantRow(t, prefix+"_", events)
		} else {
			tt = dbtest.TenantRow(t, prefix+"_")
		}
		schemas = append(schemas, tt.Schema)
	}
	f, o := fleetFor(t, prefix)

	// Fresh apply: every schema, role and grant is created and recorded.
	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	t.Log("fresh: ", res.Describe())
	require.NoError(t, res.Err(), res.Tenants)
	assert.Equal(t, 50, res.Total)
	assert.Equal(t, 50, res.Applied)
	assert.LessOrEqual(t, res.Inspected, 2*o.Parallel, "twins: at most one inspection per worker and desired schema")
	assert.Equal(t, 10, countWhere(t, db, `SELECT count(*) FROM information_schema.tables WHERE table_schema = ANY($1) AND table_name = 'events'`, schemas))
	assert.Equal(t, 50, recorded(t, db, schemas, func(r catalogtest.Record) bool {
		return r.Hash != "" && r.Fingerprint != "" && r.Error == ""
	}))

	// Second run: everything converged, no tenant inspected, no statement.
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 50, res.Converged)
	assert.Zero(t, res.Inspected+res.FromTwin)
	assert.Empty(t, res.Tenants)

	// An additive change (new column + index) rolls to all 50.
	f.Target = withMembersNickname
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	t.Log("additive: ", res.Describe())
	require.NoError(t, res.Err(), res.Tenants)
	assert.Equal(t, 50, res.Applied)
	for _, tr := range res.Tenants {
		assert.Equal(t, schemaapply.ReasonChanged, tr.Reason)
		require.Len(t, tr.Statements, 2, tr.Statements)
		assert.Contains(t, tr.Statements[0], `ADD COLUMN "nickname" text NULL`)
		assert.Contains(t, tr.Statements[1], `CREATE INDEX "members_tenant_nickname_idx"`)
	}
	assert.GreaterOrEqual(t, res.FromTwin, 50-2*o.Parallel, "most tenants are planned from a twin")
	assert.Equal(t, 48, res.Batched, "all but the first of each desired schema are applied in batches")
	assert.Equal(t, 50, countWhere(t, db, `SELECT count(*) FROM information_schema.columns WHERE table_schema = ANY($1)
		AND table_name = 'members' AND column_name = 'nickname'`, schemas))
	assert.Equal(t, 50, countWhere(t, db, `SELECT count(*) FROM pg_indexes WHERE schemaname = ANY($1)
		AND indexname = 'members_tenant_nickname_idx'`, schemas))

	// And a rerun finds them converged again; a full inspection agrees.
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 50, res.Converged)
	o.InspectAll = true
	o.Selection.Slugs = []string{strings.TrimPrefix(schemas[0], schemaapply.TenantPrefix), strings.TrimPrefix(schemas[1], schemaapply.TenantPrefix)}
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Unchanged, res.Tenants)
	assert.Equal(t, 2, res.Inspected)
}

func TestFleetDestructiveRefusedAndDryRun(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("fd")
	var schemas []string
	for range 3 {
		schemas = append(schemas, dbtest.Tenant(t, prefix+"_").Schema)
	}
	f, o := fleetFor(t, prefix)
	phone := func() int {
		return countWhere(t, db, `SELECT count(*) FROM information_schema.columns WHERE table_schema = ANY($1)
			AND table_name = 'members' AND column_name = 'phone'`, schemas)
	}
	hashes := func() string {
		rs := catalogtest.Records(t, db, schemas)
		var s []string
		for _, sc := range schemas {
			s = append(s, rs[sc].Hash+rs[sc].Fingerprint)
		}
		return strings.Join(s, ",")
	}
	before := hashes()

	// A destructive change is refused for every tenant; nothing changes.
	f.Target = withoutMembersPhone
	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Failed)
	assert.Error(t, res.Err())
	for _, tr := range res.Tenants {
		assert.Contains(t, tr.Error, "destructive change refused")
		assert.Contains(t, tr.Error, "drop column members.phone")
		assert.Contains(t, tr.Error, "--allow-destructive")
	}
	assert.Equal(t, 3, phone(), "refused apply changed nothing")
	assert.Equal(t, before, hashes(), "refused apply recorded nothing")
	assert.Equal(t, 3, recorded(t, db, schemas, func(r catalogtest.Record) bool {
		return strings.Contains(r.Error, "destructive change refused")
	}), "the failure is recorded")

	// A dry run of an additive change changes nothing and records nothing.
	f.Target = withMembersNickname
	o.DryRun = true
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Planned)
	for _, tr := range res.Tenants {
		assert.Len(t, tr.Statements, 2)
	}
	assert.Zero(t, countWhere(t, db, `SELECT count(*) FROM information_schema.columns WHERE table_schema = ANY($1)
		AND column_name = 'nickname'`, schemas), "dry run changed nothing")
	assert.Equal(t, before, hashes(), "dry run recorded nothing")

	// Forced, the drop runs, and the error is cleared.
	f.Target = withoutMembersPhone
	o.DryRun, o.AllowDestructive = false, true
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	require.NoError(t, res.Err(), res.Tenants)
	assert.Equal(t, 3, res.Applied)
	assert.Zero(t, phone())
	assert.Zero(t, recorded(t, db, schemas, func(r catalogtest.Record) bool { return r.Error != "" }))
}

func TestDriftReportedAndRepaired(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("dr")
	extra := dbtest.Tenant(t, prefix+"_")
	dropped := dbtest.Tenant(t, prefix+"_")
	dbtest.Tenant(t, prefix+"_")
	f, o := fleetFor(t, prefix)

	r, err := f.Drift(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 3, r.Converged)
	assert.Empty(t, r.Drifted)

	_, err = db.Exec(`ALTER TABLE ` + extra.Schema + `.members ADD COLUMN extra text`)
	require.NoError(t, err)
	_, err = db.Exec(`DROP INDEX ` + dropped.Schema + `.digital_cards_tenant_member_idx`)
	require.NoError(t, err)

	r, err = f.Drift(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 1, r.Converged)
	require.Len(t, r.Drifted, 2)
	bySlug := map[string]schemaapply.TenantResult{}
	for _, d := range r.Drifted {
		assert.Equal(t, schemaapply.ReasonDrift, d.Reason)
		bySlug[d.Slug] = d
	}
	assert.Equal(t, []string{"drop column members.extra"}, bySlug[extra.Slug].Destructive)
	assert.Contains(t, strings.Join(bySlug[extra.Slug].Statements, ";"), `DROP COLUMN "extra"`)
	assert.Empty(t, bySlug[dropped.Slug].Destructive)
	assert.Contains(t, strings.Join(bySlug[dropped.Slug].Statements, ";"), `CREATE INDEX "digital_cards_tenant_member_idx"`)
	assert.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'extra'`, extra.Schema), "drift changed nothing")

	// Apply repairs the dropped index; the extra column needs --allow-destructive.
	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	st := statuses(res)
	assert.Equal(t, schemaapply.StatusApplied, st[dropped.Slug])
	assert.Equal(t, schemaapply.StatusFailed, st[extra.Slug])
	assert.Equal(t, 1, countWhere(t, db, `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'digital_cards_tenant_member_idx'`, dropped.Schema))

	o.AllowDestructive = true
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Converged)
	assert.Equal(t, map[string]string{extra.Slug: schemaapply.StatusApplied}, statuses(res))
	assert.Zero(t, countWhere(t, db, `SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'extra'`, extra.Schema))

	r, err = f.Drift(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 3, r.Converged)
	assert.Empty(t, r.Drifted)

	// A revoked grant is drift too, and apply puts it back.
	_, err = db.Exec(`REVOKE DELETE ON ` + extra.Schema + `.members FROM ` + extra.Role)
	require.NoError(t, err)
	r, err = f.Drift(ctx, o)
	require.NoError(t, err)
	require.Len(t, r.Drifted, 1)
	assert.Contains(t, strings.Join(r.Drifted[0].Statements, ";"), "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE")
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Applied)
	var canDelete bool
	require.NoError(t, db.QueryRow(`SELECT has_table_privilege($1, $2, 'DELETE')`, extra.Role, extra.Schema+".members").Scan(&canDelete))
	assert.True(t, canDelete)
}

func TestFailingTenantDoesNotStopTheFleet(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("ff")
	bad := dbtest.TenantRow(t, prefix+"_a") // sorts first: the canary below
	for range 4 {
		dbtest.TenantRow(t, prefix+"_b")
	}
	// A view squats the name of a tenant table: Atlas does not see views, so
	// the plan's CREATE TABLE members fails in the middle of the apply.
	_, err := db.Exec(`CREATE SCHEMA ` + bad.Schema + `; CREATE VIEW ` + bad.Schema + `.members AS SELECT 1 AS id`)
	require.NoError(t, err)
	f, o := fleetFor(t, prefix)

	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 4, res.Applied)
	assert.Equal(t, 1, res.Failed)
	require.Error(t, res.Err())
	assert.Equal(t, "1 of 5 tenants failed", res.Err().Error())
	st := statuses(res)
	assert.Equal(t, schemaapply.StatusFailed, st[bad.Slug])
	var msg string
	for _, tr := range res.Tenants {
		if tr.Slug == bad.Slug {
			msg = tr.Error
		}
	}
	assert.Contains(t, msg, `"members" already exists`)

	// All or nothing: the failed tenant has no role and no table, and no hash.
	assert.Zero(t, countWhere(t, db, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, bad.Role))
	assert.Zero(t, countWhere(t, db, `SELECT count(*) FROM pg_tables WHERE schemaname = $1`, bad.Schema))
	rec := catalogtest.Recorded(t, db, bad.ID)
	assert.Empty(t, rec.Hash)
	assert.Contains(t, rec.Error, "already exists")

	// Resumable: a rerun tries only the failed tenant.
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 4, res.Converged)
	assert.Equal(t, map[string]string{bad.Slug: schemaapply.StatusFailed}, statuses(res))

	// Canary: the failing tenant goes first, alone, and the rest wait for it.
	c1 := dbtest.TenantRow(t, prefix+"_c")
	c2 := dbtest.TenantRow(t, prefix+"_c")
	o.Canary = 1
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.True(t, res.CanaryFailed)
	assert.Equal(t, map[string]string{bad.Slug: schemaapply.StatusFailed,
		c1.Slug: schemaapply.StatusNotStarted, c2.Slug: schemaapply.StatusNotStarted}, statuses(res))
	assert.Contains(t, res.Err().Error(), "a canary failed")
	assert.Zero(t, countWhere(t, db, `SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1)`, []string{c1.Schema, c2.Schema}))

	// Repaired, the canary passes and the rest follow.
	_, err = db.Exec(`DROP VIEW ` + bad.Schema + `.members`)
	require.NoError(t, err)
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	require.NoError(t, res.Err())
	assert.Equal(t, 3, res.Applied)
}

func TestConcurrentAppliesToOneTenantSerialize(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	tt := dbtest.TenantRow(t, "cc")
	spec := tt.Spec("pd_app")

	// Two applies race on a new tenant: both succeed, one creates everything,
	// the other (waiting on the schema's advisory lock) finds nothing to do.
	var wg sync.WaitGroup
	results := make([]schemaapply.Result, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{})
		}()
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	assert.True(t, results[0].Changed() != results[1].Changed(), "exactly one of the two applies ran statements")

	// While someone holds the schema's lock, an apply with a lock_timeout gives up…
	holder, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer holder.Rollback() //nolint:errcheck
	_, err = holder.Exec(`SELECT pg_advisory_xact_lock(hashtext('schema:' || $1))`, tt.Schema)
	require.NoError(t, err)
	start := time.Now()
	_, err = schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{LockTimeout: 150 * time.Millisecond})
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "55P03", pgErr.Code, "lock_not_available")
	assert.Less(t, time.Since(start), 5*time.Second)

	// …and one without waits until the lock is released.
	done := make(chan error, 1)
	go func() {
		_, err := schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("apply did not wait for the lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, holder.Commit())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("apply still waiting after the lock was released")
	}
}

func TestHCLSyntaxErrorIsOneLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := dbtest.Name("fh")
	dbtest.TenantRow(t, prefix+"_")
	dbtest.TenantRow(t, prefix+"_")
	f, o := fleetFor(t, prefix)
	f.Target = func(spec schemaapply.TenantSpec) (schemaapply.Target, error) {
		tg, err := schemaapply.TenantTarget(spec)
		tg.HCL = append(tg.HCL, []byte("table \"broken\" {\n  schema = schema.tenant\n  column \"x\" {\n"))
		return tg, err
	}
	_, err := f.Apply(ctx, o)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "\n")
	assert.Contains(t, err.Error(), "parse HCL")
}

func TestUnknownTenantAndModuleFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, o := fleetFor(t, "")
	o.Slugs = []string{"no_such_tenant_" + strings.ToLower(dbtest.Name("x"))}
	_, err := f.Apply(ctx, o)
	assert.ErrorIs(t, err, tenant.ErrNotFound)

	// A tenant whose module lists a file that does not exist fails alone.
	mod := dbtest.Module(t, "bad", "modules/no_such_module.hcl")
	prefix := dbtest.Name("fm")
	tt := dbtest.TenantRow(t, prefix+"_", mod)
	f, o = fleetFor(t, prefix)
	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{tt.Slug: schemaapply.StatusFailed}, statuses(res))
	assert.Contains(t, res.Tenants[0].Error, "modules/no_such_module.hcl does not exist")
}

func TestFingerprintIgnoresNamesButSeesChanges(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	a := dbtest.Tenant(t, "fpa")
	b := dbtest.Tenant(t, "fpb")
	missing := "tenant_" + dbtest.Name("fpmissing")
	fps, err := schemaapply.Fingerprints(ctx, db, []schemaapply.SchemaRole{
		{Schema: a.Schema, Role: a.Role}, {Schema: b.Schema, Role: b.Role}, {Schema: missing, Role: missing}})
	require.NoError(t, err)
	require.NotEmpty(t, fps[a.Schema])
	assert.Equal(t, fps[a.Schema], fps[b.Schema], "same shape, different names")
	assert.Equal(t, "", fps[missing])

	for i, ddl := range []string{
		`COMMENT ON TABLE %s.members IS 'x'`,
		`ALTER TABLE %s.members ALTER COLUMN phone SET DEFAULT 'n/a'`,
		`CREATE INDEX extra_idx ON %s.card_activities (action)`,
		`GRANT TRUNCATE ON %s.members TO pd_app`,
	} {
		_, err := db.Exec(fmt.Sprintf(ddl, b.Schema))
		require.NoError(t, err)
		fp, err := schemaapply.Fingerprint(ctx, db, b.Schema, b.Role)
		require.NoError(t, err)
		assert.NotEqual(t, fps[b.Schema], fp, "change %d not seen: %s", i, ddl)
		fps[b.Schema] = fp
	}
}

func TestTenantRoleSeesOnlyItsSchema(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	a := dbtest.Tenant(t, "rla")
	b := dbtest.Tenant(t, "rlb")
	var login, member, own, other, public bool
	require.NoError(t, db.QueryRow(`SELECT rolcanlogin, pg_has_role('pd_app', oid, 'MEMBER') FROM pg_roles WHERE rolname = $1`, a.Role).Scan(&login, &member))
	assert.False(t, login, "tenant roles are NOLOGIN")
	assert.True(t, member, "the application role can assume the tenant role")
	require.NoError(t, db.QueryRow(`SELECT has_table_privilege($1, $2, 'SELECT') AND has_table_privilege($1, $2, 'INSERT')
		AND has_table_privilege($1, $2, 'UPDATE') AND has_table_privilege($1, $2, 'DELETE')`, a.Role, a.Schema+".digital_cards").Scan(&own))
	assert.True(t, own)
	require.NoError(t, db.QueryRow(`SELECT has_schema_privilege($1, $2, 'USAGE') OR has_table_privilege($1, $3, 'SELECT')`,
		a.Role, b.Schema, b.Schema+".members").Scan(&other))
	assert.False(t, other, "a tenant role cannot reach another tenant")
	require.NoError(t, db.QueryRow(`SELECT has_schema_privilege('public', $1, 'USAGE')`, a.Schema).Scan(&public))
	assert.False(t, public)
}

func TestTenantHashIsSchemaIndependent(t *testing.T) {
	t.Parallel()
	x, err := schemaapply.TenantTarget(schemaapply.TenantSpec{Schema: "tenant_x", Role: "tenant_x", AppRole: "pd_app"})
	require.NoError(t, err)
	y, err := schemaapply.TenantTarget(schemaapply.TenantSpec{Schema: "tenant_y", Role: "tenant_y", AppRole: "pd_app"})
	require.NoError(t, err)
	assert.Equal(t, x.Hash(), y.Hash())
	z, err := schemaapply.TenantTarget(schemaapply.TenantSpec{Schema: "tenant_y", Role: "tenant_y", AppRole: "pd_app",
		Modules: []string{"modules/events.hcl", "modules/donations.hcl"}})
	require.NoError(t, err)
	z2, err := schemaapply.TenantTarget(schemaapply.TenantSpec{Schema: "tenant_z", Role: "tenant_z", AppRole: "pd_app",
		Modules: []string{"modules/donations.hcl", "modules/events.hcl", "modules/events.hcl"}})
	require.NoError(t, err)
	assert.NotEqual(t, y.Hash(), z.Hash())
	assert.Equal(t, z.Hash(), z2.Hash(), "module order and duplicates do not matter")

	for _, bad := range []schemaapply.TenantSpec{
		{Schema: `tenant_x"; DROP`, Role: "tenant_x"},
		{Schema: "tenant_x", Role: "Tenant_X"},
		{Schema: "tenant_x", Role: "tenant_x", Modules: []string{"../landlord.hcl"}},
		{Schema: "tenant_x", Role: "pd_app", AppRole: "pd_app"},
	} {
		_, err := schemaapply.TenantTarget(bad)
		assert.Error(t, err, "%+v", bad)
	}
}

func TestFleetTenantInAnotherDatabase(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("fo")
	tt := dbtest.TenantRow(t, prefix+"_")
	// Placed on another cluster: the runner asks for its connection and
	// records the result on the catalog after the commit.
	catalogtest.SetCluster(t, db, tt.ID, "other")
	a := apptest.Open(t, apptest.Options{})
	f := a.Fleet()
	o := schemaapply.FleetOptions{Selection: schemaapply.Selection{SlugPrefix: prefix}, Parallel: 4}

	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	require.Len(t, res.Tenants, 1)
	assert.Contains(t, res.Tenants[0].Error, `unknown cluster "other"`)

	var asked []string
	f.TenantDB = func(ctx context.Context, pl tenant.Placement) (*sql.DB, func(), error) {
		asked = append(asked, pl.Cluster+"/"+pl.Database)
		if pl.Cluster == "other" {
			pl.Cluster = "main"
			// Another cluster: a connection of its own, not the landlord's.
			conn, err := a.Clusters.Open(ctx, pl.Cluster, pl.Database)
			return conn, func() { conn.Close() }, err
		}
		return a.Clusters.TenantDB(ctx, pl)
	}
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	require.NoError(t, res.Err(), res.Tenants)
	assert.Equal(t, 1, res.Applied)
	var dbName string
	require.NoError(t, db.QueryRow(`SELECT current_database()`).Scan(&dbName))
	assert.Equal(t, []string{"other/" + dbName}, asked)
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Converged, "recorded after the commit")

	_, _, err = a.Clusters.TenantDB(ctx, tenant.Placement{Cluster: "nope", Database: "x"})
	assert.ErrorIs(t, err, tenant.ErrInvalid)
}
