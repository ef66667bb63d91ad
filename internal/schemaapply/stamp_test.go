package schemaapply_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

// Whatever changes a tenant's fingerprint makes its stamp not hold, and
// what changes only its data (rows, statistics, vacuum) does not. A stamp
// taken by either query (through indexes, for a few schemas, or by scans,
// for many) is checked the same by both.
func TestStampChangesWhenTheFingerprintDoes(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	b := dbtest.Tenant(t, "stb")
	other := dbtest.Tenant(t, "sto")
	items := []schemaapply.SchemaRole{{Schema: b.Schema, Role: b.Role}}
	take := func(byIndex bool) string {
		t.Helper()
		st, err := schemaapply.StampsBy(ctx, db, items, byIndex)
		require.NoError(t, err)
		require.NotEmpty(t, st[b.Schema])
		return st[b.Schema]
	}
	// changed checks stamp both ways and returns whether it did not hold.
	changed := func(stamp, what string) bool {
		t.Helper()
		var out []bool
		for _, byIndex := range []bool{true, false} {
			ch, err := schemaapply.ChangedStampsBy(ctx, db, items, []string{stamp}, byIndex)
			require.NoError(t, err)
			if len(ch) > 0 {
				assert.NotEmpty(t, ch[b.Schema], what)
			}
			out = append(out, len(ch) > 0)
		}
		assert.Equal(t, out[0], out[1], "through indexes and by scans, the same verdict (%s)", what)
		return out[0]
	}
	fingerprint := func() string {
		t.Helper()
		fp, err := schemaapply.Fingerprint(ctx, db, b.Schema, b.Role)
		require.NoError(t, err)
		return fp
	}
	fp := fingerprint()
	for _, byIndex := range []bool{true, false} {
		assert.False(t, changed(take(byIndex), "fresh"), "a stamp taken just now holds (by index: %t)", byIndex)
	}
	assert.True(t, changed("", "unrecorded"))
	assert.True(t, changed("s1.garbage", "another format"))
	otherStamps, err := schemaapply.Stamps(ctx, db, []schemaapply.SchemaRole{{Schema: other.Schema, Role: other.Role}})
	require.NoError(t, err)
	assert.True(t, changed(otherStamps[other.Schema], "another schema's"), "stamps are per schema, not per shape")
	gone := []schemaapply.SchemaRole{{Schema: b.Schema + "_gone", Role: b.Role}}
	for _, byIndex := range []bool{true, false} {
		ch, err := schemaapply.ChangedStampsBy(ctx, db, gone, []string{take(true)}, byIndex)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{gone[0].Schema: ""}, ch, "a schema that does not exist has the stamp \"\"")
		ch, err = schemaapply.ChangedStampsBy(ctx, db, gone, []string{""}, byIndex)
		require.NoError(t, err)
		assert.Empty(t, ch)
	}

	stamp := take(false)
	for _, stmt := range []string{
		`INSERT INTO %s.members (tenant_id, full_name) VALUES (gen_random_uuid(), 'x')`,
		`ANALYZE %s.members`,
		`VACUUM %s.members`,
	} {
		_, err := db.Exec(fmt.Sprintf(stmt, b.Schema))
		require.NoError(t, err)
		assert.Equal(t, fp, fingerprint(), stmt)
		assert.False(t, changed(stamp, stmt), "data, not the catalog: %s", stmt)
	}

	for i, ddl := range []string{
		`COMMENT ON TABLE %s.members IS 'x'`,
		`COMMENT ON COLUMN %s.members.phone IS 'y'`,
		`COMMENT ON INDEX %s.members_tenant_status_idx IS 'z'`,
		`COMMENT ON INDEX %s.members_tenant_status_idx IS NULL`,
		`ALTER TABLE %s.members ALTER COLUMN phone SET DEFAULT 'n/a'`,
		`ALTER TABLE %s.members ALTER COLUMN phone SET DEFAULT 'none'`,
		`ALTER TABLE %s.members ALTER COLUMN phone DROP DEFAULT`,
		`ALTER TABLE %s.members ALTER COLUMN full_name DROP NOT NULL`,
		`ALTER TABLE %s.members ALTER COLUMN full_name SET NOT NULL`,
		`ALTER TABLE %s.members RENAME COLUMN phone TO telephone`,
		`ALTER TABLE %s.members ADD COLUMN extra text`,
		`ALTER TABLE %s.members DROP COLUMN extra`,
		`ALTER TABLE %s.members ALTER COLUMN telephone TYPE varchar(40)`,
		`ALTER TABLE %s.members ALTER COLUMN telephone TYPE varchar(80)`,
		`CREATE INDEX extra_idx ON %s.card_activities (action)`,
		`ALTER INDEX %s.extra_idx SET (fillfactor = 70)`,
		`ALTER INDEX %s.extra_idx RENAME TO extra2_idx`,
		`DROP INDEX %s.extra2_idx`,
		`ALTER TABLE %s.members ADD CONSTRAINT extra_check CHECK (length(full_name) > 0)`,
		`ALTER TABLE %s.members DROP CONSTRAINT extra_check`,
		`ALTER TABLE %s.members ADD CONSTRAINT extra_fk FOREIGN KEY (id) REFERENCES %[1]s.members (id)`,
		`ALTER TABLE %s.members DROP CONSTRAINT extra_fk`,
		`GRANT TRUNCATE ON %s.members TO pd_app`,
		`REVOKE TRUNCATE ON %s.members FROM pd_app`,
		`CREATE TYPE %s.mood AS ENUM ('a', 'b')`,
		`ALTER TYPE %s.mood ADD VALUE 'c'`,
		`DROP TYPE %s.mood`,
		`CREATE DOMAIN %s.positive AS integer CHECK (VALUE > 0)`,
		`CREATE SEQUENCE %s.extra_seq`,
		`ALTER SEQUENCE %s.extra_seq INCREMENT BY 5`,
		`DROP SEQUENCE %s.extra_seq`,
	} {
		_, err := db.Exec(fmt.Sprintf(ddl, b.Schema))
		require.NoError(t, err, ddl)
		fp2 := fingerprint()
		assert.NotEqual(t, fp, fp2, "fingerprint: %s", ddl)
		assert.True(t, changed(stamp, ddl), "stamp: %s", ddl)
		fp, stamp = fp2, take(i%2 == 0) // taken one way, checked both
		assert.False(t, changed(stamp, ddl+" (new stamp)"), ddl)
	}
	// The tenant role's members are part of both.
	_, err = db.Exec(`REVOKE ` + b.Role + ` FROM pd_app`)
	require.NoError(t, err)
	assert.NotEqual(t, fp, fingerprint())
	assert.True(t, changed(stamp, "role membership"), "role membership")

	// A stamp taken in a transaction that changed the schema knows its own
	// rows; a change by another transaction that the stamp could not see
	// (it committed later) is found.
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer tx.Rollback() //nolint:errcheck // committed below
	_, err = tx.Exec(`ALTER TABLE ` + b.Schema + `.members ADD COLUMN own text`)
	require.NoError(t, err)
	var other2 *sql.Tx
	other2, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer other2.Rollback() //nolint:errcheck // committed below
	_, err = other2.Exec(`COMMENT ON TABLE ` + b.Schema + `.card_activities IS 'later'`)
	require.NoError(t, err)
	st, err := schemaapply.Stamps(ctx, tx, items)
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	assert.False(t, changed(st[b.Schema], "own rows"), "the stamp's own transaction")
	require.NoError(t, other2.Commit())
	assert.True(t, changed(st[b.Schema], "running then"), "a transaction running when the stamp was taken")
}

// Stamps that hold come back renewed when the catalog rows written since
// the oldest of them outnumber the schemas (by scans only: through indexes
// the rows read do not depend on the stamps' age).
func TestStampsRenewedWhenOldOnesCostRows(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	b := dbtest.Tenant(t, "srb")
	c := dbtest.Tenant(t, "src")
	items := []schemaapply.SchemaRole{{Schema: b.Schema, Role: b.Role}, {Schema: c.Schema, Role: c.Role}}
	old, err := schemaapply.StampsBy(ctx, db, items[:1], false)
	require.NoError(t, err)
	for _, ddl := range []string{`ALTER TABLE %s.members ADD COLUMN x1 text`, `ALTER TABLE %s.members ADD COLUMN x2 text`,
		`CREATE INDEX x_idx ON %s.members (x1)`} {
		_, err := db.Exec(fmt.Sprintf(ddl, c.Schema))
		require.NoError(t, err)
	}
	later, err := schemaapply.StampsBy(ctx, db, items[1:], false)
	require.NoError(t, err)
	recorded := []string{old[b.Schema], later[c.Schema]}

	changed, renewed, err := schemaapply.CheckStampsBy(ctx, db, items, recorded, true)
	require.NoError(t, err)
	assert.Empty(t, changed, "both hold")
	assert.Empty(t, renewed, "through indexes, never renewed")
	changed, renewed, err = schemaapply.CheckStampsBy(ctx, db, items, recorded, false)
	require.NoError(t, err)
	assert.Empty(t, changed, "both hold")
	require.Len(t, renewed, 2, "c's new rows postdate b's stamp: both are renewed")
	recorded = []string{renewed[b.Schema], renewed[c.Schema]}
	// Renewed stamps hold. (Whether they are renewed once more depends on
	// the catalog rows other tests write meanwhile in the same database —
	// under make test, many — so it is not asserted.)
	changed, _, err = schemaapply.CheckStampsBy(ctx, db, items, recorded, false)
	require.NoError(t, err)
	assert.Empty(t, changed, "the renewed stamps hold")
	_, err = db.Exec(`DROP INDEX ` + c.Schema + `.x_idx`)
	require.NoError(t, err)
	changed, _, err = schemaapply.CheckStampsBy(ctx, db, items, recorded, false)
	require.NoError(t, err)
	assert.Equal(t, []string{c.Schema}, keys(changed), "a renewed stamp still sees what changes after it")
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The fleet runner computes each fingerprint once: a converged tenant gets
// its stamp recorded and is trusted by later runs while its stamp holds; a
// change by hand is still found, and an apply records the new stamp.
func TestFleetTrustsStampsAndStillSeesDrift(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("fs")
	changed := dbtest.Tenant(t, prefix+"_")
	dbtest.Tenant(t, prefix+"_")
	dbtest.Tenant(t, prefix+"_")
	f, o := fleetFor(t, prefix)

	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Converged)
	assert.Equal(t, 3, res.Fingerprinted, "no stamp yet")
	assert.Equal(t, 3, res.Stamped)

	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Converged)
	assert.Zero(t, res.Fingerprinted, "every stamp holds")
	assert.Zero(t, res.Stamped)

	_, err = db.Exec(`DROP INDEX ` + changed.Schema + `.digital_cards_tenant_member_idx`)
	require.NoError(t, err)
	r, err := f.Drift(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 2, r.Converged)
	require.Len(t, r.Drifted, 1)
	assert.Equal(t, changed.Slug, r.Drifted[0].Slug)
	assert.Equal(t, schemaapply.ReasonDrift, r.Drifted[0].Reason)

	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Applied)
	assert.Equal(t, 1, res.Fingerprinted)
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Converged)
	assert.Zero(t, res.Fingerprinted, "the apply recorded its stamp")
	assert.Zero(t, res.Stamped)

	// A stamp recorded by anyone but the runner itself is checked all the
	// same: a change after it is drift.
	_, err = db.Exec(`ALTER TABLE ` + changed.Schema + `.members ADD COLUMN extra text`)
	require.NoError(t, err)
	r, err = f.Drift(ctx, o)
	require.NoError(t, err)
	require.Len(t, r.Drifted, 1)
	assert.Equal(t, []string{"drop column members.extra"}, r.Drifted[0].Destructive)
}
