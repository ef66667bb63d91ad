package move_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// A logical move whose change stream fails after the copy (here: its
// walsender terminated while it streams, as PostgreSQL's decoder does by
// itself when it cannot map a table's file) starts over from a fresh slot
// and a rebuilt target instead of failing; writers at full speed meanwhile
// find every acknowledged write in the target exactly once.
func TestMoveStartsOverWhenItsStreamFails(t *testing.T) {
	var (
		e        *env
		slug     tenant.Slug
		killed   atomic.Int32
		killedAt atomic.Int32 // walsenders terminated
	)
	e = newEnv(t, envOptions{hook: func(s move.Step) {
		if s != move.StepStreaming || killed.Add(1) != 1 {
			return
		}
		var names []string
		for _, id := range movesOf(t, slug) {
			names = append(names, "pd_move_"+stripDashes(id))
		}
		server, err := e.clusters.Admin("main")
		require.NoError(t, err)
		var n int32
		require.NoError(t, server.QueryRow(`SELECT count(*) FILTER (WHERE pg_terminate_backend(active_pid))
			FROM pg_replication_slots WHERE slot_name = ANY($1) AND active_pid IS NOT NULL`, names).Scan(&n))
		killedAt.Store(n)
	}})
	slug = e.tenant(t, 500)
	ctx := context.Background()
	before := e.snapshot(t, slug)

	stopWriters := e.startMemberWriters(slug, 2)
	time.Sleep(100 * time.Millisecond)
	res, err := e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	time.Sleep(100 * time.Millisecond)
	acked, failed := stopWriters()
	require.NoError(t, err)
	require.EqualValues(t, 1, killedAt.Load(), "the move's walsender was terminated once")
	assert.Equal(t, 1, res.Restarts, "the move started over once")
	assert.Equal(t, "b", res.Tenant.Cluster)

	e.router.InvalidateAll()
	live := e.writes(t, slug)
	require.NotEmpty(t, acked)
	seen := map[string]int{}
	for _, n := range live {
		seen[n]++
	}
	for n, c := range seen {
		assert.Equal(t, 1, c, "write %s present once", n)
		assert.True(t, acked[n], "write %s present but never acknowledged", n)
	}
	for n := range acked {
		assert.Equal(t, 1, seen[n], "acknowledged write %s is present", n)
	}
	for kind, n := range failed {
		assert.Equal(t, "retryable", kind, "%d writes failed with a non-retryable error", n)
	}
	// The rows copied before the writers are all there too (members,
	// cards, activities joined).
	assert.Subset(t, e.snapshot(t, slug), before)
	assert.Empty(t, e.leftovers(t, slug))
	t.Logf("%d writes acknowledged, failures %v, write pause %v", len(acked), failed, res.WritePause)
}
