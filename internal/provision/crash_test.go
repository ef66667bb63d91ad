package provision_test

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

	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The crash tests run provisioning (or a warm-pool refill, or a purge) in a
// child process — this test binary, running TestCrashChild — that kills
// itself with SIGKILL at one step: no deferred cleanup, no rollback sent,
// the connections just drop. The parent then reruns the same operation and
// checks that exactly one healthy tenant exists and no schema or role is
// left without its catalog row.

const (
	envStep   = "PD_CRASH_STEP"
	envSlug   = "PD_CRASH_SLUG"
	envPrefix = "PD_CRASH_SPARE_PREFIX"
	envWarm   = "PD_CRASH_WARM"
	envOp     = "PD_CRASH_OP"
)

// TestCrashChild is the child process; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	step := os.Getenv(envStep)
	if step == "" {
		t.Skip("only runs as the child of a crash test")
	}
	warm := 0
	if os.Getenv(envWarm) != "" {
		warm = 1
	}
	kill := func(s provision.Step) {
		if string(s) == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute) // the signal is on its way
		}
	}
	b := newChildBundle(t, warm, os.Getenv(envPrefix), kill)
	ctx := context.Background()
	slug := tenant.MustSlug(os.Getenv(envSlug))
	var err error
	switch os.Getenv(envOp) {
	case "provision":
		_, err = b.prov.Provision(ctx, provision.Request{Slug: slug, Name: "Crash"})
	case "fill":
		_, err = b.prov.FillWarmPool(ctx)
	case "purge":
		err = b.prov.Purge(ctx, slug)
	}
	t.Fatalf("the child should have been killed at step %s (err: %v)", step, err)
}

// crashAt runs op in a child that dies at step; it fails the test unless the child was killed.
func crashAt(t *testing.T, op string, step provision.Step, slug tenant.Slug, sparePrefix string, warm bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envStep+"="+string(step), envSlug+"="+slug.String(), envPrefix+"="+sparePrefix, envOp+"="+op)
	if warm {
		cmd.Env = append(cmd.Env, envWarm+"=1")
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "child: %v\n%s", err, out)
	ws, ok := ee.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "the child must die by SIGKILL at %s: %v\n%s", step, err, out)
}

func TestCrashDuringColdProvisioning(t *testing.T) {
	t.Parallel()
	for _, step := range []provision.Step{provision.StepInserted, provision.StepApplied, provision.StepActivated} {
		t.Run(string(step), func(t *testing.T) {
			t.Parallel()
			b := newBundle(t, setup{})
			s := b.slug(t, "crc")
			crashAt(t, "provision", step, s, b.prefix, false)
			assertNoOrphans(t, b, s)

			res, err := b.prov.Provision(context.Background(), provision.Request{Slug: s, Name: "Crash"})
			if step == provision.StepActivated {
				assert.ErrorIs(t, err, tenant.ErrExists, "the child finished before dying")
			} else {
				require.NoError(t, err)
				assert.True(t, res.Resumed, "the rerun completes the same tenant")
			}
			assertHealthy(t, b, s)
			assertNoOrphans(t, b, s)
		})
	}
}

func TestCrashDuringWarmClaim(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{warm: 1})
	ctx := context.Background()
	_, err := b.prov.FillWarmPool(ctx)
	require.NoError(t, err)
	s := b.slug(t, "crw")
	crashAt(t, "provision", provision.StepClaiming, s, b.prefix, true)
	assertNoOrphans(t, b, s)
	st, err := b.prov.WarmPoolStats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Ready, "the interrupted claim rolled back: the spare is still there")

	_, err = b.tenants.Get(ctx, s)
	assert.ErrorIs(t, err, tenant.ErrNotFound, "the claim, row included, is one transaction")

	res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Crash"})
	require.NoError(t, err)
	assert.False(t, res.Resumed)
	assert.Equal(t, provision.Warm, res.Path)
	assertHealthy(t, b, s)
	assertNoOrphans(t, b, s)
}

// A cold provisioning killed after its row was committed is completed from
// the warm pool when a spare is ready.
func TestWarmPoolCompletesAnInterruptedProvisioning(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{warm: 1})
	ctx := context.Background()
	_, err := b.prov.FillWarmPool(ctx)
	require.NoError(t, err)
	s := b.slug(t, "crr")
	crashAt(t, "provision", provision.StepInserted, s, b.prefix, false)
	ten, err := b.tenants.Get(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, tenant.StatusProvisioning, ten.Status)

	res, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Crash"})
	require.NoError(t, err)
	assert.True(t, res.Resumed)
	assert.Equal(t, provision.Warm, res.Path)
	assert.Equal(t, ten.ID, res.Tenant.ID)
	assertHealthy(t, b, s)
	assertNoOrphans(t, b, s)
}

func TestCrashDuringSpareBuild(t *testing.T) {
	t.Parallel()
	for _, step := range []provision.Step{provision.StepSpareInserted, provision.StepSpareBuilt} {
		t.Run(string(step), func(t *testing.T) {
			t.Parallel()
			b := newBundle(t, setup{warm: 1})
			ctx := context.Background()
			s := b.slug(t, "crs") // unused tenant: keeps the orphan check honest
			crashAt(t, "fill", step, s, b.prefix, true)

			// The dead builder's row (status building) is reaped by the next refill.
			built, err := b.prov.FillWarmPool(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, built)
			st, err := b.prov.WarmPoolStats(ctx)
			require.NoError(t, err)
			assert.Equal(t, provision.WarmPoolStats{Ready: 1}, st)
			assertNoOrphans(t, b, s)
		})
	}
}

func TestCrashDuringPurge(t *testing.T) {
	t.Parallel()
	b := newBundle(t, setup{})
	ctx := context.Background()
	s := b.slug(t, "crp")
	_, err := b.prov.Provision(ctx, provision.Request{Slug: s, Name: "Crash"})
	require.NoError(t, err)
	_, err = b.tenants.Delete(ctx, s)
	require.NoError(t, err)

	crashAt(t, "purge", provision.StepDropped, s, b.prefix, false)
	ten, err := b.tenants.Get(ctx, s)
	require.NoError(t, err, "the purge rolled back as a whole")
	assert.Equal(t, tenant.StatusDeleted, ten.Status)
	var schemaLeft bool
	require.NoError(t, b.admin.QueryRowContext(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, s.SchemaName()).Scan(&schemaLeft))
	assert.True(t, schemaLeft)

	require.NoError(t, b.prov.Purge(ctx, s))
	assertNoOrphans(t, b, s)
}
