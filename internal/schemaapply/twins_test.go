package schemaapply_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

func recordIn(tt dbtest.TestTenant) schemaapply.Options {
	return schemaapply.Options{BeforeCommit: func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error {
		return catalog.RecordApplied(ctx, tx, tt.ID, res.Hash, res.Fingerprint)
	}}
}

// New tenants after the first are built from its plan, renamed, without
// inspection or planning; each ends converged, with its live fingerprint
// recorded, and the fleet runner skips them all without inspecting.
func TestTwinsBuildNewTenantsLikeTheFirst(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("tw")
	twins := schemaapply.NewTwins()
	var first schemaapply.Result
	var firstSchema string
	for i := range 4 {
		tt := dbtest.TenantRow(t, prefix+"_")
		spec := tt.Spec("pd_app", modules.DefaultFiles()...)
		target, err := schemaapply.TenantTarget(spec)
		require.NoError(t, err)
		res, err := twins.ApplyTenant(ctx, db, spec, recordIn(tt))
		require.NoError(t, err)
		held, verified := schemaapply.TwinState(twins, target.Hash())
		assert.True(t, held, "the first new schema's plan is kept")
		assert.Equal(t, i > 0, verified, "the plan is checked by its first use")

		live, err := schemaapply.Fingerprint(ctx, db, tt.Schema, tt.Role)
		require.NoError(t, err)
		assert.Equal(t, live, res.Fingerprint, "tenant %d: the recorded fingerprint is the live one", i)
		again, err := schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{})
		require.NoError(t, err)
		assert.Empty(t, again.Statements, "tenant %d is converged", i)
		if i == 0 {
			first, firstSchema = res, tt.Schema
			continue
		}
		assert.Equal(t, first.Fingerprint, res.Fingerprint)
		assert.Equal(t, first.Hash, res.Hash)
		require.Len(t, res.Statements, len(first.Statements))
		for j, s := range res.Statements { // schema and role share the name
			assert.Equal(t, first.Statements[j], strings.ReplaceAll(s, tt.Schema, firstSchema), "statement %d", j)
		}
	}
	f, o := fleetFor(t, prefix)
	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 4, res.Total)
	assert.Equal(t, 4, res.Converged, "skipped without inspection")
	assert.Zero(t, res.Inspected)
}

// A new tenant whose start differs from the twin's (here its role exists
// already, able to log in) is checked by its fingerprint, found different,
// rolled back and built again with Atlas; what is recorded is its own.
func TestTwinsMismatchIsBuiltAgain(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("twm")
	twins := schemaapply.NewTwins()
	for range 2 { // a twin, checked once
		tt := dbtest.TenantRow(t, prefix+"_")
		_, err := twins.ApplyTenant(ctx, db, tt.Spec("pd_app", modules.DefaultFiles()...), recordIn(tt))
		require.NoError(t, err)
	}
	odd := dbtest.TenantRow(t, prefix+"_")
	_, err := db.Exec("CREATE ROLE " + pgx.Identifier{odd.Role}.Sanitize() + " LOGIN")
	require.NoError(t, err)
	res, err := twins.ApplyTenant(ctx, db, odd.Spec("pd_app", modules.DefaultFiles()...), recordIn(odd))
	require.NoError(t, err)
	target, err := schemaapply.TenantTarget(odd.Spec("pd_app", modules.DefaultFiles()...))
	require.NoError(t, err)
	held, verified := schemaapply.TwinState(twins, target.Hash())
	assert.True(t, held)
	assert.False(t, verified, "the tenant built again is the new twin")
	live, err := schemaapply.Fingerprint(ctx, db, odd.Schema, odd.Role)
	require.NoError(t, err)
	assert.Equal(t, live, res.Fingerprint)

	normal := dbtest.TenantRow(t, prefix+"_")
	res2, err := twins.ApplyTenant(ctx, db, normal.Spec("pd_app", modules.DefaultFiles()...), recordIn(normal))
	require.NoError(t, err)
	assert.NotEqual(t, res.Fingerprint, res2.Fingerprint, "a login role is part of the fingerprint")
	live, err = schemaapply.Fingerprint(ctx, db, normal.Schema, normal.Role)
	require.NoError(t, err)
	assert.Equal(t, live, res2.Fingerprint)

	f, o := fleetFor(t, prefix)
	fr, err := f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 4, fr.Converged)
}

// The plan's statements travel together; one failing rolls back all of the
// apply (role, schema, tables) and the error says which statements.
func TestFailingStatementRollsBackTheApply(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	tt := dbtest.TenantRow(t, "fail")
	target, err := schemaapply.TenantTarget(tt.Spec("pd_app", modules.DefaultFiles()...))
	require.NoError(t, err)
	anchor := []byte(`  column "action" {`) // in card_activities (modules/digital_cards.hcl)
	f := slices.IndexFunc(target.HCL, func(b []byte) bool { return bytes.Contains(b, anchor) })
	require.GreaterOrEqual(t, f, 0)
	target.HCL[f] = bytes.Replace(target.HCL[f], anchor, append([]byte(
		"  column \"broken\" {\n    type = text\n    default = sql(\"no_such_function()\")\n  }\n"), anchor...), 1)

	_, err = schemaapply.Apply(ctx, db, target, schemaapply.Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no_such_function")
	assert.Contains(t, err.Error(), "statements 1 to")
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM pg_namespace WHERE nspname = $1`, tt.Schema).Scan(&n))
	assert.Zero(t, n, "no schema")
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM pg_roles WHERE rolname = $1`, tt.Role).Scan(&n))
	assert.Zero(t, n, "no role")
	assert.False(t, errors.Is(err, schemaapply.ErrDestructive))
}

func TestShiftParams(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`SELECT $1, $2`: `SELECT $4, $5`,
		`SELECT pg_has_role($2, r.oid, 'MEMBER')`:   `SELECT pg_has_role($5, r.oid, 'MEMBER')`,
		`SELECT '$1', "a$1", $1::text[]`:            `SELECT '$1', "a$1", $4::text[]`,
		`SELECT 'it''s $1', $10 -- $2` + "\n$2":     `SELECT 'it''s $1', $13 -- $2` + "\n$5",
		`SELECT /* $1 */ $$ $1 $$, $q$ $2 $q$, a$1`: `SELECT /* $1 */ $$ $1 $$, $q$ $2 $q$, a$1`,
		`SELECT ANY($1)`:                            `SELECT ANY($4)`,
	} {
		assert.Equal(t, want, schemaapply.ShiftParams(in, 3), in)
	}
}
