package bench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

// fleetStage measures the fleet runner as tenantctl schema apply --all runs
// it: the no-op check (median of 3) and an additive change rolled to every
// tenant. Changes accumulate (scaleTarget): the stage converges the tenants
// to the last change recorded (pdbench "fleet_state"; an interrupted
// rollout is completed, not undone), measures the no-op check there, then
// rolls the next change; a stage that is not the last reverts it (its
// 100 tenants; not measured), since the tenants provisioned later have the
// core schema. It records the largest admin backend after the rollout too:
// the runner's connections touch every tenant. Each time comes with the CPU
// it cost (this process and the scratch database's backends): on a shared
// machine the wall time waits for cores, CPU time does not.
func (s *scaleRun) fleetStage(ctx context.Context, n int) error {
	fl := s.cold.Fleet()
	opts := schemaapply.FleetOptions{Parallel: s.f.fleetParallel,
		Options: schemaapply.Options{LockTimeout: 5 * time.Second}, Selection: schemaapply.Selection{SlugPrefix: s.f.slugPrefix()}}
	var cpu time.Duration // of the last run: this process and the scratch database's backends
	run := func(what string, k int, o schemaapply.FleetOptions, want func(schemaapply.FleetResult) bool) (time.Duration, error) {
		fl.Target = scaleTarget(k)
		start, cpu0 := time.Now(), processCPU()+s.dbCPU()
		res, err := fl.Apply(ctx, o)
		d := time.Since(start)
		cpu = processCPU() + s.dbCPU() - cpu0
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			return d, fmt.Errorf("%s: %w", what, err)
		}
		if !want(res) {
			return d, fmt.Errorf("%s: unexpected result: %s", what, res.Describe())
		}
		fmt.Fprintf(s.out, "#   %s: %s (CPU %s)\n", what, res.Describe(), cpu.Round(10*time.Millisecond))
		return d, nil
	}
	anyResult := func(schemaapply.FleetResult) bool { return true }
	converged := func(r schemaapply.FleetResult) bool { return r.Converged == r.Total && r.Total > 0 }
	applied := func(r schemaapply.FleetResult) bool { return r.Applied == r.Total && r.Total > 0 }

	revert := opts
	revert.AllowDestructive = true
	k := int(s.res.value("fleet_state", 0))
	if _, err := run(fmt.Sprintf("converge to change %d (not measured)", k), k, revert, anyResult); err != nil {
		return err
	}
	var cpus []float64
	noop, err := fleetMedian(3, func() (time.Duration, error) {
		d, err := run("no-op", k, opts, converged)
		cpus = append(cpus, cpu.Seconds())
		return d, err
	})
	if err != nil {
		return err
	}
	for _, m := range []struct {
		name string
		v    float64
	}{{"fleet_noop_s", noop.Seconds()}, {"fleet_noop_cpu_s", median(cpus)}} {
		if err := s.res.put(ctx, m.name, n, m.v); err != nil {
			return err
		}
	}
	// Recorded first: a rerun completes an interrupted rollout.
	if err := s.res.put(ctx, "fleet_state", 0, float64(k+1)); err != nil {
		return err
	}
	add, err := run(fmt.Sprintf("additive change %d", k+1), k+1, opts, applied)
	if err != nil {
		return err
	}
	for _, m := range []struct {
		name string
		v    float64
	}{{"fleet_additive_s", add.Seconds()}, {"fleet_additive_cpu_s", cpu.Seconds()}} {
		if err := s.res.put(ctx, m.name, n, m.v); err != nil {
			return err
		}
	}
	if err := s.adminMemoryAs(ctx, "fleet_backend_mb_max", n); err != nil {
		return err
	}
	if n == s.f.stages()[len(s.f.stages())-1] {
		return nil
	}
	if _, err := run(fmt.Sprintf("revert to change %d (not measured)", k), k, revert, applied); err != nil {
		return err
	}
	return s.res.put(ctx, "fleet_state", 0, float64(k))
}

// scaleTarget is the tenant target plus k additive changes to members, in
// memory (the HCL files are not touched): change 1 is fleetAdditive's
// column and index, change i > 1 a column bench_c<i> and an index on it.
func scaleTarget(k int) func(schemaapply.TenantSpec) (schemaapply.Target, error) {
	return func(spec schemaapply.TenantSpec) (schemaapply.Target, error) {
		if k == 0 {
			return schemaapply.TenantTarget(spec)
		}
		t, err := fleetAdditive(spec)
		if err != nil || k == 1 {
			return t, err
		}
		anchor := []byte(`  index "members_tenant_status_idx" {`)
		var extra []byte
		for i := 2; i <= k; i++ {
			extra = append(extra, fmt.Sprintf("  column \"bench_c%d\" {\n    type = text\n    null = true\n  }\n"+
				"  index \"members_tenant_bench_c%d_idx\" {\n    columns = [column.tenant_id, column.bench_c%d]\n  }\n", i, i, i)...)
		}
		t.HCL = append([][]byte{bytes.Replace(t.HCL[0], anchor, append(extra, anchor...), 1)}, t.HCL[1:]...)
		return t, nil
	}
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
