package schemaapply_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

// Whatever changes a tenant's fingerprint changes its stamp, and what
// changes only its data (rows, statistics, vacuum) changes neither.
func TestStampChangesWhenTheFingerprintDoes(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	b := dbtest.Tenant(t, "stb")
	other := dbtest.Tenant(t, "sto")
	items := []schemaapply.SchemaRole{{Schema: b.Schema, Role: b.Role}}
	state := func() (string, string) {
		t.Helper()
		fp, err := schemaapply.Fingerprint(ctx, db, b.Schema, b.Role)
		require.NoError(t, err)
		st, err := schemaapply.Stamps(ctx, db, items)
		require.NoError(t, err)
		require.NotEmpty(t, st[b.Schema])
		return fp, st[b.Schema]
	}
	fp, stamp := state()
	agree := func(what string) {
		t.Helper()
		few, err := schemaapply.StampsBy(ctx, db, items, true)
		require.NoError(t, err)
		scan, err := schemaapply.StampsBy(ctx, db, items, false)
		require.NoError(t, err)
		assert.Equal(t, scan[b.Schema], few[b.Schema], "read through indexes or by scans, the same stamp (%s)", what)
	}
	agree("fresh")
	otherStamps, err := schemaapply.Stamps(ctx, db, []schemaapply.SchemaRole{{Schema: other.Schema, Role: other.Role}})
	require.NoError(t, err)
	assert.NotEqual(t, stamp, otherStamps[other.Schema], "stamps are per schema, not per shape")

	for _, stmt := range []string{
		`INSERT INTO %s.members (tenant_id, full_name) VALUES (gen_random_uuid(), 'x')`,
		`ANALYZE %s.members`,
		`VACUUM %s.members`,
	} {
		_, err := db.Exec(fmt.Sprintf(stmt, b.Schema))
		require.NoError(t, err)
		fp2, stamp2 := state()
		assert.Equal(t, fp, fp2, stmt)
		assert.Equal(t, stamp, stamp2, "data, not the catalog: %s", stmt)
	}

	for _, ddl := range []string{
		`COMMENT ON TABLE %s.members IS 'x'`,
		`COMMENT ON COLUMN %s.members.phone IS 'y'`,
		`COMMENT ON INDEX %s.members_tenant_status_idx IS 'z'`,
		`ALTER TABLE %s.members ALTER COLUMN phone SET DEFAULT 'n/a'`,
		`ALTER TABLE %s.members ALTER COLUMN phone SET DEFAULT 'none'`,
		`ALTER TABLE %s.members ALTER COLUMN phone DROP DEFAULT`,
		`ALTER TABLE %s.members ALTER COLUMN full_name DROP NOT NULL`,
		`ALTER TABLE %s.members ALTER COLUMN full_name SET NOT NULL`,
		`ALTER TABLE %s.members RENAME COLUMN phone TO telephone`,
		`ALTER TABLE %s.members ADD COLUMN extra text`,
		`ALTER TABLE %s.members DROP COLUMN extra`,
		`ALTER TABLE %s.members ALTER COLUMN telephone TYPE varchar(40)`,
		`CREATE INDEX extra_idx ON %s.card_activities (action)`,
		`ALTER INDEX %s.extra_idx SET (fillfactor = 70)`,
		`ALTER INDEX %s.extra_idx RENAME TO extra2_idx`,
		`DROP INDEX %s.extra2_idx`,
		`ALTER TABLE %s.members ADD CONSTRAINT extra_check CHECK (length(full_name) > 0)`,
		`ALTER TABLE %s.members DROP CONSTRAINT extra_check`,
		`GRANT TRUNCATE ON %s.members TO pd_app`,
		`REVOKE TRUNCATE ON %s.members FROM pd_app`,
		`CREATE TYPE %s.mood AS ENUM ('a', 'b')`,
		`ALTER TYPE %s.mood ADD VALUE 'c'`,
		`CREATE DOMAIN %s.positive AS integer CHECK (VALUE > 0)`,
		`CREATE SEQUENCE %s.extra_seq`,
		`ALTER SEQUENCE %s.extra_seq INCREMENT BY 5`,
	} {
		_, err := db.Exec(fmt.Sprintf(ddl, b.Schema))
		require.NoError(t, err, ddl)
		fp2, stamp2 := state()
		assert.NotEqual(t, fp, fp2, "fingerprint: %s", ddl)
		assert.NotEqual(t, stamp, stamp2, "stamp: %s", ddl)
		agree(ddl)
		fp, stamp = fp2, stamp2
	}
	// The tenant role's members are part of both.
	_, err = db.Exec(`REVOKE ` + b.Role + ` FROM pd_app`)
	require.NoError(t, err)
	fp2, stamp2 := state()
	assert.NotEqual(t, fp, fp2)
	assert.NotEqual(t, stamp, stamp2, "role membership")
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
