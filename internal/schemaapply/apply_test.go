package schemaapply_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	hcl "github.com/publicdigit/publicdigit/schema"
)

// landlordIn returns the landlord target re-pointed at another schema, so a
// test can apply the real landlord HCL without touching the shared catalog.
func landlordIn(name string) schemaapply.Target {
	t := schemaapply.Landlord("pd_app")
	src := hcl.Landlord()
	src = bytes.ReplaceAll(src, []byte(`schema "landlord"`), []byte(`schema "`+name+`"`))
	src = bytes.ReplaceAll(src, []byte(`schema.landlord`), []byte(`schema.`+name))
	t.Schema = name
	t.HCL = [][]byte{src}
	t.After = nil
	return t
}

func TestLandlordApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	name := dbtest.Name("test_landlord_")
	t.Cleanup(func() { dbtest.DropSchema(t, db, name) })

	first, err := schemaapply.Apply(ctx, db, landlordIn(name), schemaapply.Options{})
	require.NoError(t, err)
	assert.NotEmpty(t, first.Statements, "first apply creates the catalog")

	second, err := schemaapply.Apply(ctx, db, landlordIn(name), schemaapply.Options{})
	require.NoError(t, err)
	assert.Empty(t, second.Statements, "second apply must run no statement")
	assert.Equal(t, first.Hash, second.Hash)
}

func TestRealLandlordConverges(t *testing.T) {
	t.Parallel()
	dbtest.Landlord(t)
	db := dbtest.AdminDB(t)
	res, err := schemaapply.Apply(context.Background(), db, schemaapply.Landlord("pd_app"), schemaapply.Options{})
	require.NoError(t, err)
	assert.Empty(t, res.Statements, "the shared landlord catalog is converged, grants included")

	var canRead bool
	require.NoError(t, db.QueryRow(`SELECT has_table_privilege('pd_app', 'landlord.modules', 'SELECT, INSERT')`).Scan(&canRead))
	assert.True(t, canRead, "the application role can use the catalog")
}

func TestDestructiveChangeRefused(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	name := dbtest.Name("test_landlord_")
	t.Cleanup(func() { dbtest.DropSchema(t, db, name) })

	target := landlordIn(name)
	_, err := schemaapply.Apply(ctx, db, target, schemaapply.Options{})
	require.NoError(t, err)

	// Drop the api_tokens table and the tenants.deleted_at column from the HCL.
	src := target.HCL[0]
	i := bytes.Index(src, []byte(`table "api_tokens"`))
	require.Positive(t, i)
	src = src[:i]
	src = bytes.Replace(src, []byte("column \"deleted_at\" {\n    type = timestamptz\n    null = true\n  }"), nil, 1)
	shrunk := target
	shrunk.HCL = [][]byte{src}

	_, err = schemaapply.Apply(ctx, db, shrunk, schemaapply.Options{})
	var de *schemaapply.DestructiveError
	require.ErrorAs(t, err, &de)
	assert.True(t, errors.Is(err, schemaapply.ErrDestructive))
	assert.Contains(t, de.Changes, "drop table api_tokens")
	assert.Contains(t, de.Changes, "drop column tenants.deleted_at")

	var tables, cols int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'api_tokens'`, name).Scan(&tables))
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'tenants' AND column_name = 'deleted_at'`, name).Scan(&cols))
	assert.Equal(t, 1, tables, "refused apply changed nothing")
	assert.Equal(t, 1, cols, "refused apply changed nothing")

	// A dry run with force shows the drops but still changes nothing.
	res, err := schemaapply.Apply(ctx, db, shrunk, schemaapply.Options{AllowDestructive: true, DryRun: true})
	require.NoError(t, err)
	assert.NotEmpty(t, res.Statements)
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'api_tokens'`, name).Scan(&tables))
	assert.Equal(t, 1, tables, "dry run changed nothing")

	// Forced, it drops.
	_, err = schemaapply.Apply(ctx, db, shrunk, schemaapply.Options{AllowDestructive: true})
	require.NoError(t, err)
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'api_tokens'`, name).Scan(&tables))
	assert.Equal(t, 0, tables)
}

func TestHCLMustDescribeTheTargetSchema(t *testing.T) {
	t.Parallel()
	target := landlordIn("elsewhere")
	target.Schema = "other"
	_, err := target.Desired()
	require.Error(t, err)
}
