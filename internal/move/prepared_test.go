package move_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// moverWith is the env's mover with other limits.
func (e *env) moverWith(t *testing.T, o move.Options) *move.Mover {
	t.Helper()
	o.Catalog, o.Clusters, o.Modules, o.AppRole = e.tenants, e.clusters, e.modules, e.cfg.Tenant.AppRole
	m, err := move.New(o)
	require.NoError(t, err)
	return m
}

// openTx starts a transaction that holds a transaction id on cluster main's
// test database, on a connection of its own; the caller ends it.
func openTx(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.AdminURL(t))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, "BEGIN; SELECT txid_current()")
	require.NoError(t, err)
	return conn
}

// A prepared transaction left on the source server (by a crash, an
// operator, another program) would make the creation of a replication slot
// wait for ever. A logical move names it and fails at once when it is older
// than the grace, or as soon as it gets that old while the move waits; the
// tenant stays active on its source with nothing of the move left, and the
// move goes through once the transaction is ended.
func TestMoveNamesAPreparedTransactionThatBlocksItsSlot(t *testing.T) {
	e := newEnv(t, envOptions{})
	slug := e.tenant(t, 50)
	ctx := context.Background()
	gid := dbtest.Name("pd_test_foreign_")
	src, err := e.tenants.Get(ctx, slug)
	require.NoError(t, err)
	m := e.moverWith(t, move.Options{PreparedGrace: 700 * time.Millisecond, SlotTimeout: time.Minute})

	conn := openTx(t)
	_, err = conn.Exec(ctx, "PREPARE TRANSACTION '"+gid+"'")
	require.NoError(t, err)
	ended := false
	t.Cleanup(func() {
		if !ended {
			_, _ = dbtest.AdminDB(t).Exec("ROLLBACK PREPARED '" + gid + "'")
		}
	})

	// Young when the move starts: it waits for the slot, then gives up
	// once the transaction is older than the grace.
	start := time.Now()
	_, err = m.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	took := time.Since(start)
	require.ErrorIs(t, err, move.ErrLogicalUnavailable)
	assert.Contains(t, err.Error(), `prepared transaction "`+gid+`" in database `+src.Database)
	assert.Contains(t, err.Error(), "ROLLBACK PREPARED")
	assert.Contains(t, err.Error(), "cluster main")
	assert.Less(t, took, 15*time.Second, "failed long before the slot timeout")
	t.Logf("young: failed after %v: %v", took, err)

	// Old when the move starts: refused before anything changes.
	moves := len(movesOf(t, slug))
	start = time.Now()
	_, err = m.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	require.ErrorIs(t, err, move.ErrLogicalUnavailable)
	assert.Contains(t, err.Error(), gid)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Len(t, movesOf(t, slug), moves, "nothing recorded")

	tn, err := e.tenants.Get(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, tenant.StatusActive, tn.Status)
	assert.Equal(t, "main", tn.Cluster)
	assert.Empty(t, e.leftovers(t, slug))

	_, err = dbtest.AdminDB(t).Exec("ROLLBACK PREPARED '" + gid + "'")
	require.NoError(t, err)
	ended = true
	res, err := m.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	require.NoError(t, err)
	assert.Equal(t, "b", res.Tenant.Cluster)
	assert.Empty(t, e.leftovers(t, slug))
}

// Any other transaction that keeps the slot waiting is waited for no longer
// than the slot timeout, and named.
func TestMoveBoundsItsWaitForASlot(t *testing.T) {
	e := newEnv(t, envOptions{})
	slug := e.tenant(t, 50)
	ctx := context.Background()
	m := e.moverWith(t, move.Options{SlotTimeout: 2 * time.Second})

	conn := openTx(t)
	start := time.Now()
	_, err := m.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	took := time.Since(start)
	_, cerr := conn.Exec(ctx, "COMMIT")
	require.NoError(t, cerr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "did not end within 2s")
	assert.Contains(t, err.Error(), "in a transaction since")
	assert.Less(t, took, 20*time.Second)
	t.Logf("failed after %v: %v", took, err)

	tn, err := e.tenants.Get(ctx, slug)
	require.NoError(t, err)
	assert.Equal(t, tenant.StatusActive, tn.Status)
	assert.Equal(t, "main", tn.Cluster)
	assert.Empty(t, e.leftovers(t, slug))
}
