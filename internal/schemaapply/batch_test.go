package schemaapply_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

// A tenant that fails inside a batch (its table locked elsewhere: the lock
// timeout) rolls the batch back; its tenants are then applied one by one,
// so the others are applied and it alone fails, with nothing of the change.
func TestFleetBatchFailureIsIsolated(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("fb")
	var schemas []string
	slugOf := map[string]string{}
	for range 7 {
		tt := dbtest.TenantRow(t, prefix+"_")
		schemas = append(schemas, tt.Schema)
		slugOf[tt.Schema] = tt.Slug
	}
	sort.Strings(schemas)
	f, o := fleetFor(t, prefix)
	o.Parallel, o.Batch = 1, 8
	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	require.NoError(t, res.Err(), res.Tenants)

	// Unlocked, the same change goes in batches (see below); here the fifth
	// tenant's members table is held by another transaction.
	locked := schemas[4]
	lockTx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer lockTx.Rollback() //nolint:errcheck // released below
	_, err = lockTx.Exec(`LOCK TABLE ` + locked + `.members IN ACCESS SHARE MODE`)
	require.NoError(t, err)
	f.Target = withMembersNickname
	o.LockTimeout = 300 * time.Millisecond
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	t.Log(res.Describe())
	assert.Equal(t, 6, res.Applied)
	assert.Equal(t, 1, res.Failed)
	assert.Zero(t, res.Batched, "the batch was rolled back")
	assert.Equal(t, schemaapply.StatusFailed, statuses(res)[slugOf[locked]])
	hasNickname := func(schema string) bool {
		return countWhere(t, db, `SELECT count(*) FROM information_schema.columns WHERE table_schema = $1
			AND table_name = 'members' AND column_name = 'nickname'`, schema) == 1
	}
	for _, s := range schemas {
		assert.Equal(t, s != locked, hasNickname(s), s)
	}
	assert.Zero(t, countWhere(t, db, `SELECT count(*) FROM pg_indexes WHERE schemaname = $1
		AND indexname = 'members_tenant_nickname_idx'`, locked), "nothing of the change is left in the failed tenant")
	assert.Equal(t, 1, recorded(t, db, schemas, func(r catalogtest.Record) bool { return r.Error != "" }))
	require.NoError(t, lockTx.Rollback())

	// A rerun applies only the failed tenant; then all are converged.
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Applied)
	assert.Equal(t, 6, res.Converged)
	assert.True(t, hasNickname(locked))

	// A destructive change (allowed), nothing locked: the first tenant is
	// inspected, the other six go in one batch, and each ends with its own fingerprint and
	// stamp recorded (the next run trusts the stamps: all converged).
	f.Target = withoutMembersPhone
	o.AllowDestructive = true
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	require.NoError(t, res.Err(), res.Tenants)
	assert.Equal(t, 7, res.Applied)
	assert.Equal(t, 6, res.Batched)
	for _, tr := range res.Tenants { // phone and the nickname added above
		require.NotEmpty(t, tr.Statements)
		assert.Contains(t, tr.Statements[0], `DROP COLUMN "phone"`)
		assert.Contains(t, tr.Statements[0], tr.Schema)
		assert.Len(t, tr.Destructive, 2)
	}
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 7, res.Converged)
	assert.Zero(t, res.Fingerprinted, "the stamps recorded by the batch hold")
}

// Tenants with the same catalog but not the same physical layout (a column
// added and dropped by hand: invisible to the fingerprint, but the next
// column gets another number) share a twin key; in a batch their result
// differs from the twin's. The batch is rolled back and applied again
// without them; they go one by one.
func TestFleetBatchLeavesOutTenantsThatDiffer(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	prefix := dbtest.Name("fd")
	var schemas []string
	for range 6 {
		schemas = append(schemas, dbtest.TenantRow(t, prefix+"_").Schema)
	}
	sort.Strings(schemas)
	f, o := fleetFor(t, prefix)
	o.Parallel, o.Batch = 1, 8
	res, err := f.Apply(ctx, o)
	require.NoError(t, err)
	require.NoError(t, res.Err(), res.Tenants)
	for _, s := range schemas[3:] {
		_, err := db.Exec(`ALTER TABLE ` + s + `.members ADD COLUMN gone text; ALTER TABLE ` + s + `.members DROP COLUMN gone`)
		require.NoError(t, err)
	}
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 6, res.Converged, "the fingerprint does not see a dropped column")

	f.Target = withMembersNickname
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	require.NoError(t, res.Err(), res.Tenants)
	t.Log(res.Describe())
	assert.Equal(t, 6, res.Applied)
	assert.Equal(t, 2, res.Batched, "the first is the twin; the next two match it, the last three differ")
	res, err = f.Apply(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, 6, res.Converged)
	assert.Zero(t, res.Fingerprinted, "each recorded its own fingerprint and stamp")
}
