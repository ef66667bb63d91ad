package scratch_test

import (
	"context"
	"slices"
	"testing"
	"time"

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
	want := append(slices.Clone(deadSet.Databases), deadSet.Tenants[0].Role, deadSet.Tenants[1].Role)
	for _, name := range want {
		if !slices.Contains(dropped, name) {
			t.Errorf("%s of the ended run was not dropped (dropped: %v)", name, dropped)
		}
	}
	if slices.Contains(dropped, liveSet.Databases[0]) {
		t.Errorf("the live run's database %s was dropped", liveSet.Databases[0])
	}
	if size, err := live.Size(ctx, liveSet); err != nil || size == 0 {
		t.Errorf("the live run's database is gone: %v", err)
	}
	if again, err := next.DropLeftovers(ctx); err != nil || slices.Contains(again, deadSet.Databases[0]) {
		t.Errorf("a second pass found %v (%v)", again, err)
	}
}
