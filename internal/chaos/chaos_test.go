package chaos_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/chaos"
)

// TestMain doubles as the server of TestChaos: the test binary started
// with PDCHAOS_SERVE=1 serves the API (chaos.Serve) instead of testing.
func TestMain(m *testing.M) {
	if os.Getenv("PDCHAOS_SERVE") == "1" {
		if err := chaos.Serve(); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The short version of make chaos: while writers and readers use the API
// over several tenants, PgBouncer restarts, PostgreSQL restarts (fast
// shutdown), the server is killed (SIGKILL) and started again, the network
// to the databases stalls, and backends are terminated every few hundred
// milliseconds. Every acknowledged write is then present exactly once, no
// request saw another tenant's data, every failure was a 503 with
// Retry-After (or no answer while the server was down), nothing hung past
// its deadline, and /readyz went down with each fault and came back by
// itself. It runs on the "chaos" instance (ports 15434/16434) in its test
// database, whose PgBouncer pool has 2 server connections, and stops that
// instance again if it was not running before.
func TestChaos(t *testing.T) {
	in := chaos.ChaosInstance("../..")
	if !in.Running() {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			assert.NoError(t, in.Down(ctx))
		})
	}
	var out strings.Builder
	rep, err := chaos.Run(context.Background(), chaos.Options{
		Root: "../..", Instance: &in, Database: "publicdigit_test",
		Duration: 20 * time.Second, Tenants: 6, Writers: 4, Readers: 4, Pace: 10 * time.Millisecond,
		// PostgreSQL stays down longer than /readyz waits (2 s): a probe
		// that PgBouncer holds through a shorter restart may end in 200.
		FaultGap: time.Second, StallFor: 3 * time.Second, PostgresDown: 3 * time.Second, Terminate: true,
		LogDir: t.TempDir(), Out: &out,
		ServerCommand: func() *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = []string{"PDCHAOS_SERVE=1"}
			return cmd
		},
	})
	rep.Write(&out, "chaos")
	t.Log("\n" + out.String())
	require.NoError(t, err)

	assert.Zero(t, rep.Lost, "every acknowledged write is present")
	assert.Zero(t, rep.Dup, "and only once")
	assert.Zero(t, rep.Leaks, "no request saw another tenant's data")
	assert.Zero(t, rep.Bad, "every failure was a 503 with Retry-After")
	assert.Zero(t, rep.Hung, "no request hung past its deadline")
	assert.True(t, rep.Ready, "ready at the end")
	assert.Positive(t, rep.Acked)
	assert.Positive(t, rep.Retryable, "the faults were felt")
	seen := map[chaos.Fault]bool{}
	for _, f := range rep.Faults {
		seen[f.Fault] = true
		assert.NoError(t, f.Err, f.Fault)
		assert.True(t, f.Recovered, "%s: /readyz came back with no hands", f.Fault)
		if f.Fault != chaos.RestartPgBouncer { // a PgBouncer restart may fall between two probes
			assert.True(t, f.NotReady, "%s: /readyz reflected the outage", f.Fault)
		}
	}
	for _, f := range chaos.AllFaults {
		assert.True(t, seen[f], "fault %s injected", f)
	}
	for k := range rep.ServerFailures {
		assert.True(t, strings.HasPrefix(k, "503 "), "the server answered %s", k)
	}
	assert.True(t, in.Running(), "PostgreSQL and PgBouncer run again after the run")
	assert.True(t, rep.OK())
}
