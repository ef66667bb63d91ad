package move_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// A move killed with SIGKILL at each step leaves the tenant served from one
// complete placement, and running the move again finishes it (or starts it
// over); afterwards no publication, subscription, replication slot or
// prepared transaction of the move is left on either server.
func TestMoveKilledAtEachStep(t *testing.T) {
	if os.Getenv("PD_MOVE_CHILD") != "" {
		t.Skip("child process")
	}
	cases := map[move.Mode][]move.Step{
		move.ModeLogical: {move.StepSlot, move.StepMidCopy, move.StepLoaded, move.StepCopied, move.StepStreaming, move.StepLocked,
			move.StepPrepared, move.StepFlipped},
		move.ModeLock: {move.StepLocked, move.StepCopied, move.StepPrepared},
	}
	for _, mode := range []move.Mode{move.ModeLogical, move.ModeLock} {
		for _, step := range cases[mode] {
			t.Run(string(mode)+"/"+string(step), func(t *testing.T) { killedAt(t, mode, step) })
		}
	}
}

func killedAt(t *testing.T, mode move.Mode, step move.Step) {
	e := newEnv(t, envOptions{})
	slug := e.tenant(t, 100)
	ctx := context.Background()
	before := e.snapshot(t, slug)

	cmd := exec.Command(os.Args[0], "-test.run=^TestMoveChild$", "-test.v")
	cmd.Env = append(os.Environ(), "PD_MOVE_CHILD=1", "PD_MOVE_SLUG="+slug.String(), "PD_MOVE_KILL_AT="+string(step),
		"PD_MOVE_MODE="+string(mode))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "child must be killed, got %v: %s", err, out)
	assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "%s", out)

	// Served from one complete placement, whatever the step. Once the
	// source is retired in the prepared transaction (locked for readers
	// too: they must not read a copy that may be stale), reads wait for the
	// rerun and are told to retry.
	e.router.InvalidateAll()
	got, err := e.read(slug)
	if step == move.StepPrepared || step == move.StepFlipped {
		if err != nil {
			assert.ErrorIs(t, err, pgroute.ErrRetryable, "killed at %s", step)
		} else {
			assert.Equal(t, before, got, "killed at %s: data complete", step)
		}
	} else {
		require.NoError(t, err, "killed at %s: readable", step)
		assert.Equal(t, before, got, "killed at %s: data complete and readable", step)
	}

	// The rerun (in the default mode) finishes the move.
	res, err := e.mover.Move(ctx, move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b"})
	require.NoError(t, err, "rerun after a kill at %s", step)
	assert.True(t, res.Resumed)
	assert.Equal(t, "b", res.Tenant.Cluster)
	assert.Equal(t, tenant.StatusActive, res.Tenant.Status)
	e.router.InvalidateAll()
	assert.Equal(t, before, e.snapshot(t, slug))
	// And the tenant takes writes again.
	require.NoError(t, e.router.Do(ctx, slug, func(b *pgroute.Batch) error {
		b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, 'after')`, b.Tenant().ID)
		return nil
	}))
	assert.Empty(t, e.leftovers(t, slug), "killed at %s, then rerun", step)
	exists, grants := e.roleOn(t, "main", slug)
	assert.False(t, exists, "no role left on main")
	assert.Zero(t, grants)
}

// TestMoveChild runs in the child process of TestMoveKilledAtEachStep: it
// moves the tenant and SIGKILLs itself at the named step.
func TestMoveChild(t *testing.T) {
	if os.Getenv("PD_MOVE_CHILD") == "" {
		t.Skip("only as a child process")
	}
	killAt := move.Step(os.Getenv("PD_MOVE_KILL_AT"))
	e := newEnv(t, envOptions{hook: func(s move.Step) {
		if s == killAt {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
	}})
	slug := tenant.MustSlug(os.Getenv("PD_MOVE_SLUG"))
	_, err := e.mover.Move(context.Background(), move.Request{Slug: slug, To: tenant.PlacementDatabase, Cluster: "b",
		Mode: move.Mode(os.Getenv("PD_MOVE_MODE"))})
	t.Fatalf("the move should have been killed at %s, got %v", killAt, err)
}
