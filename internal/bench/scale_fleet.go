package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

// fleetStage measures the fleet runner as tenantctl schema apply --all runs
// it: the no-op check (median of 3) and an additive change (a column and an
// index on members) rolled to every tenant, then reverted before the next
// stage (not measured). It records the largest admin backend after the
// rollout too: the runner's connections touch every tenant. Each time comes
// with the CPU it cost (this process and the scratch database's backends):
// on a shared machine the wall time waits for cores, CPU time does not.
func (s *scaleRun) fleetStage(ctx context.Context, n int) error {
	fl := s.cold.Fleet()
	opts := schemaapply.FleetOptions{Parallel: s.f.fleetParallel,
		Options: schemaapply.Options{LockTimeout: 5 * time.Second}, Selection: schemaapply.Selection{SlugPrefix: scaleSlugPrefix}}
	// Converge first: an interrupted run may have left the additive change.
	revert := opts
	revert.AllowDestructive = true
	if res, err := fl.Apply(ctx, revert); err != nil {
		return err
	} else if err := res.Err(); err != nil {
		return fmt.Errorf("converge: %w", err)
	} else if res.Applied > 0 {
		fmt.Fprintf(s.out, "#   converged first: %s\n", res.Describe())
	}
	var cpu time.Duration // of the last run: this process and the scratch database's backends
	run := func(what string, o schemaapply.FleetOptions, want func(schemaapply.FleetResult) bool) (time.Duration, error) {
		start, cpu0 := time.Now(), processCPU()+backendCPU(s.f.db)
		res, err := fl.Apply(ctx, o)
		d := time.Since(start)
		cpu = processCPU() + backendCPU(s.f.db) - cpu0
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			return d, fmt.Errorf("%s: %w", what, err)
		}
		if !want(res) {
			return d, fmt.Errorf("%s: unexpected result: %s", what, res.Describe())
		}
		fmt.Fprintf(s.out, "#   %s: %s\n", what, res.Describe())
		return d, nil
	}
	converged := func(r schemaapply.FleetResult) bool { return r.Converged == r.Total && r.Total > 0 }
	applied := func(r schemaapply.FleetResult) bool { return r.Applied == r.Total && r.Total > 0 }
	var cpus []float64
	noop, err := fleetMedian(3, func() (time.Duration, error) {
		d, err := run("no-op", opts, converged)
		cpus = append(cpus, cpu.Seconds())
		return d, err
	})
	if err != nil {
		return err
	}
	if err := s.res.put(ctx, "fleet_noop_s", n, noop.Seconds()); err != nil {
		return err
	}
	if err := s.res.put(ctx, "fleet_noop_cpu_s", n, median(cpus)); err != nil {
		return err
	}
	fl.Target = fleetAdditive
	add, err := run("additive change", opts, applied)
	if err != nil {
		return err
	}
	if err := s.res.put(ctx, "fleet_additive_s", n, add.Seconds()); err != nil {
		return err
	}
	if err := s.res.put(ctx, "fleet_additive_cpu_s", n, cpu.Seconds()); err != nil {
		return err
	}
	if err := s.adminMemoryAs(ctx, "fleet_backend_mb_max", n); err != nil {
		return err
	}
	if n != s.f.stages()[len(s.f.stages())-1] {
		fl.Target = nil
		if _, err := run("revert (not measured)", revert, applied); err != nil {
			return err
		}
	}
	return nil
}

// adminMemoryAs records the largest private memory of the admin role's
// backends on the scratch database as measure.
func (s *scaleRun) adminMemoryAs(ctx context.Context, measure string, n int) error {
	admin, err := userOf(s.cfg.Admin.URL)
	if err != nil {
		return err
	}
	pids, err := backendPIDs(ctx, s.admin, s.f.db, admin)
	if err != nil {
		return err
	}
	var most float64
	for _, pid := range pids {
		if mb, err := rssAnonMB(pid); err == nil {
			most = max(most, mb)
		}
	}
	return s.res.put(ctx, measure, n, most)
}
