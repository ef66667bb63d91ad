package move_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Writers issue numbered writes at full speed through the router during
// three moves (schema on main → database on b → schema on b → schema on
// main). Every acknowledged write is present exactly once afterwards, no
// write lands in a retired copy only, and every failed write failed with
// an error the router classifies as retryable. Through PgBouncer and
// straight to PostgreSQL; with a generous write wait (writes ride out the
// switch) and a tiny one (some give up, told to retry: a 503 to an HTTP
// client); and once in lock mode.
func TestWritesDuringMoves(t *testing.T) {
	for _, c := range []struct {
		path dbtest.Path
		mode move.Mode
		wait time.Duration
	}{
		{dbtest.Bouncer, move.ModeLogical, 500 * time.Millisecond},
		{dbtest.Direct, move.ModeLogical, 500 * time.Millisecond},
		{dbtest.Bouncer, move.ModeLogical, 5 * time.Millisecond},
		{dbtest.Direct, move.ModeLock, 500 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s", c.path, c.mode, c.wait), func(t *testing.T) {
			writesDuringMoves(t, c.path, c.mode, c.wait)
		})
	}
}

func writesDuringMoves(t *testing.T, path dbtest.Path, mode move.Mode, writeWait time.Duration) {
	e := newEnv(t, envOptions{writeWait: writeWait, path: path})
	slug := e.tenant(t, 2000)
	ctx := context.Background()

	stopWriters := e.startMemberWriters(slug, 4)

	time.Sleep(200 * time.Millisecond)
	var moves []move.Result
	for _, to := range []move.Request{
		{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b", Mode: mode},
		{Slug: slug, To: tenant.PlacementSchema, Cluster: "b", Mode: mode},
		{Slug: slug, To: tenant.PlacementSchema, Cluster: "main", Mode: mode},
	} {
		res, err := e.mover.Move(ctx, to)
		require.NoError(t, err)
		moves = append(moves, res)
		time.Sleep(200 * time.Millisecond)
	}
	acked, failedErr := stopWriters()

	live := e.writes(t, slug)
	require.NotEmpty(t, acked)
	dup := 0
	seen := map[string]bool{}
	for _, n := range live {
		if seen[n] {
			dup++
		}
		seen[n] = true
	}
	assert.Zero(t, dup, "no write present twice")
	for n := range acked {
		assert.True(t, seen[n], "acknowledged write %s is present", n)
	}
	for n := range seen {
		assert.True(t, acked[n], "write %s present but never acknowledged", n)
	}
	for kind, n := range failedErr {
		assert.Equal(t, "retryable", kind, "%d writes failed with a non-retryable error", n)
	}
	t.Logf("%d writes acknowledged, failures by kind %v; write pauses %v %v %v", len(acked), failedErr,
		moves[0].WritePause, moves[1].WritePause, moves[2].WritePause)
	assert.Empty(t, e.leftovers(t, slug))

	// Retired copies hold only writes that are also live (their snapshot).
	copies, err := e.tenants.RetiredCopies(ctx, slug)
	require.NoError(t, err)
	require.Len(t, copies, 3)
	for _, c := range copies {
		if c.WholeDatabase {
			continue // renamed database: closed to connections, checked below via the schema copies
		}
		db, err := e.clusters.Open(ctx, c.Cluster, c.Database)
		require.NoError(t, err)
		rows, err := db.Query(`SELECT full_name FROM ` + pgx.Identifier{c.Schema, "members"}.Sanitize() + ` WHERE full_name LIKE 'w-%'`)
		require.NoError(t, err)
		for rows.Next() {
			var n string
			require.NoError(t, rows.Scan(&n))
			assert.True(t, acked[n], "retired copy %s holds %s, which is not a live acknowledged write", c.Schema, n)
		}
		require.NoError(t, rows.Err())
		rows.Close()
		db.Close()
	}
}

func (e *env) writes(t *testing.T, slug tenant.Slug) []string {
	t.Helper()
	var names []string
	require.NoError(t, e.router.Do(context.Background(), slug, func(b *pgroute.Batch) error {
		names = names[:0]
		b.Queue(`SELECT full_name FROM members WHERE full_name LIKE 'w-%'`).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					return err
				}
				names = append(names, s)
			}
			return rows.Err()
		})
		return nil
	}))
	return names
}
