package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
	"github.com/publicdigit/publicdigit/internal/transfer"
)

// The crash test imports in a child process — this test binary, running
// TestImportCrashChild — that kills itself with SIGKILL at one step: no
// deferred cleanup, no rollback sent, the connection just drops. The
// parent then finds nothing of the tenant, and a rerun of the same import
// completes it.

const (
	envStep    = "PD_IMPORT_CRASH_STEP"
	envArchive = "PD_IMPORT_CRASH_ARCHIVE"
	envSlug    = "PD_IMPORT_CRASH_SLUG"
)

// TestImportCrashChild is the child process; it does nothing in a normal run.
func TestImportCrashChild(t *testing.T) {
	step := os.Getenv(envStep)
	if step == "" {
		t.Skip("only runs as the child of a crash test")
	}
	kill := func(s string) {
		if s == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute) // the signal is on its way
		}
	}
	a := apptest.Open(t, apptest.Options{Options: app.Options{
		TransferHook:  func(s transfer.Step) { kill(string(s)) },
		ProvisionHook: func(s provision.Step) { kill(string(s)) },
	}})
	archive, err := os.ReadFile(os.Getenv(envArchive))
	require.NoError(t, err)
	_, err = a.Transfer.Import(context.Background(), bytes.NewReader(archive),
		transfer.ImportRequest{As: tenant.MustSlug(os.Getenv(envSlug))})
	t.Fatalf("the child should have been killed at step %s (err: %v)", step, err)
}

func TestImportCrashLeavesNothingAndARerunCompletes(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 200)
	archive := b.export(t, src.slug)
	file := filepath.Join(t.TempDir(), "tenant.tar.gz")
	require.NoError(t, os.WriteFile(file, archive, 0o600))

	for _, step := range []string{string(transfer.StepCopying), string(transfer.StepVerified), string(provision.StepRestoring)} {
		t.Run(step, func(t *testing.T) {
			as := newSlug(t, "exk")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestImportCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envStep+"="+step, envArchive+"="+file, envSlug+"="+as.String())
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "child: %v\n%s", err, out)
			ws, ok := ee.Sys().(syscall.WaitStatus)
			require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "the child must die by SIGKILL at %s: %v\n%s", step, err, out)

			// Nothing the child did committed (its backend may not have
			// noticed the dropped connection yet: the rerun then waits for
			// the tenant's lock until it does).
			b.assertNothing(t, as)

			res, err := b.importAs(t, archive, as)
			require.NoError(t, err, "a rerun completes the import")
			from, err := b.a.Catalog.Get(ctx, src.slug)
			require.NoError(t, err)
			assert.Equal(t, res.Rows, b.assertSameRows(t, from, res.Tenant))
		})
	}
}
