package scratch_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/loadtest/modes"
	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
)

func open(t *testing.T) *scratch.Server {
	t.Helper()
	admin, _, err := modes.LocalURLs()
	if err != nil {
		t.Fatal(err)
	}
	s, err := scratch.Open(context.Background(), admin, "pd_app")
	if err != nil {
		t.Fatalf("%v (is the database up? make db-up)", err)
	}
	return s
}

// What a run that ended without cleaning up left (its lock is free) is
// dropped by the next run; what a live run holds is not.
func TestLeftoversOfEndedRunsAreDroppedLiveOnesKept(t *testing.T) {
	ctx := context.Background()
	data := scratch.Data{Members: 2, Cards: 3, StatementTimeout: time.Second}

	dead := open(t)
	deadSet, err := dead.Provision(ctx, "role", scratch.LayoutRole, dead.MakeTenants(2, 1), data, nil)
	if err != nil {
		t.Fatal(err)
	}
	dead.Close(ctx) // as if killed: the connection that held the run's lock is gone

	live := open(t)
	defer live.Close(ctx)
	liveSet, err := live.Provision(ctx, "schema", scratch.LayoutSchema, live.MakeTenants(1, 1), data, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := live.Drop(ctx, liveSet); err != nil {
			t.Error(err)
		}
	}()

	next := open(t)
	defer next.Close(ctx)
	dropped, err := next.DropLeftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Runs of other test packages may have dropped them first: ask the server.
	dead1 := append(slices.Clone(deadSet.Databases), deadSet.Tenants[0].Role, deadSet.Tenants[1].Role)
	if left := existing(t, dead1); len(left) > 0 {
		t.Errorf("%v of the ended run are still there (dropped: %v)", left, dropped)
	}
	if slices.Contains(dropped, liveSet.Databases[0]) || len(existing(t, liveSet.Databases)) != 1 {
		t.Errorf("the live run's database %s was dropped", liveSet.Databases[0])
	}
}

// existing returns which of names are databases or roles on the server.
func existing(t *testing.T, names []string) []string {
	t.Helper()
	admin, _, _ := modes.LocalURLs()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname = ANY($1)
UNION ALL SELECT rolname FROM pg_roles WHERE rolname = ANY($1)`, names)
	if err != nil {
		t.Fatal(err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return found
}
