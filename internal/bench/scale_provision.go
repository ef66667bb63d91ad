package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// provisionStage brings the catalog to n tenants: filled (not measured) up
// to n − 2×sample with -parallel workers, then -sample cold provisionings
// and -sample warm ones, one at a time, measured. All go through the
// Provisioner, as POST /api/v1/platform/tenants and tenantctl do.
func (s *scaleRun) provisionStage(ctx context.Context, n int) error {
	if err := s.completeInterrupted(ctx); err != nil {
		return err
	}
	ts, err := s.tenants(ctx)
	if err != nil {
		return err
	}
	next := nextSlugNumber(ts, s.f.slugPrefix())
	have := len(ts)
	measured := s.f.wants("provision") && !s.res.done("provision", n)
	target := n
	if measured {
		target = n - 2*s.f.sample
	}
	if have < target {
		start := time.Now()
		if err := s.fill(ctx, next, target-have); err != nil {
			return err
		}
		next += target - have
		fmt.Fprintf(s.out, "# stage %d: filled %d → %d tenants in %s (%d workers, load average %s)\n", n, have, target,
			time.Since(start).Round(time.Second), s.f.parallel, loadAverage())
		have = target
	}
	if err := s.adminMemory(ctx, n); err != nil {
		return err
	}
	if !measured {
		return nil
	}
	for _, path := range []provision.Path{provision.Cold, provision.Warm} {
		lat, cpu, err := s.sample(ctx, path, next)
		if err != nil {
			return fmt.Errorf("%s sample: %w", path, err)
		}
		next += len(lat)
		p := "provision_" + string(path)
		for _, m := range []struct {
			name string
			v    float64
		}{
			{p + "_p50_ms", provMS(percentile(lat, 50))},
			{p + "_p95_ms", provMS(percentile(lat, 95))},
			{p + "_cpu_ms", provMS(cpu)},
		} {
			if err := s.res.put(ctx, m.name, n, m.v); err != nil {
				return err
			}
		}
	}
	return s.res.markDone(ctx, "provision", n)
}

func (f scaleFlags) slug(i int) tenant.Slug {
	return tenant.MustSlug(fmt.Sprintf("%s%05d", f.slugPrefix(), i))
}

// nextSlugNumber is one more than the highest number of a slug with prefix in ts.
func nextSlugNumber(ts []tenant.Tenant, prefix string) int {
	next := 1
	for _, t := range ts {
		if i, err := strconv.Atoi(strings.TrimPrefix(t.Slug.String(), prefix)); err == nil && i >= next {
			next = i + 1
		}
	}
	return next
}

// completeInterrupted completes the provisionings an interrupted run left.
func (s *scaleRun) completeInterrupted(ctx context.Context) error {
	ts, err := s.tenants(ctx)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if t.Status != tenant.StatusProvisioning {
			continue
		}
		if _, err := s.cold.Provisioner.Provision(ctx, provision.Request{Slug: t.Slug, Name: t.Name}); err != nil {
			return fmt.Errorf("complete %s: %w", t.Slug, err)
		}
	}
	return nil
}

// fill provisions count tenants numbered from first, cold, with -parallel workers.
func (s *scaleRun) fill(ctx context.Context, first, count int) error {
	var nextI atomic.Int64
	nextI.Store(int64(first))
	last := int64(first + count - 1)
	var done atomic.Int64
	errs := make(chan error, s.f.parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < s.f.parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := nextI.Add(1) - 1
				if i > last {
					return
				}
				slug := s.f.slug(int(i))
				if _, err := s.cold.Provisioner.Provision(ctx, provision.Request{Slug: slug, Name: "Scale " + slug.String()}); err != nil {
					errs <- fmt.Errorf("provision %s: %w", slug, err)
					return
				}
				if d := done.Add(1); d%1000 == 0 {
					fmt.Fprintf(s.out, "#   %d of %d provisioned (%.0f/s, load average %s)\n", d, count,
						float64(d)/time.Since(start).Seconds(), loadAverage())
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// sample provisions -sample tenants one at a time on path and returns
// their latencies and the mean CPU time one cost (this process and the
// scratch database's backends: steadier than latency on a shared machine).
// The warm pool is filled beforehand, not counted.
func (s *scaleRun) sample(ctx context.Context, path provision.Path, first int) ([]time.Duration, time.Duration, error) {
	a := s.cold
	if path == provision.Warm {
		a = s.warm
		start := time.Now()
		built, err := a.Provisioner.FillWarmPool(ctx)
		if err != nil {
			return nil, 0, err
		}
		fmt.Fprintf(s.out, "#   warm pool: %d spares built beforehand in %s\n", built, time.Since(start).Round(time.Millisecond))
	}
	lat := make([]time.Duration, 0, s.f.sample)
	cpu0 := processCPU() + s.dbCPU()
	for i := 0; i < s.f.sample; i++ {
		slug := s.f.slug(first + i)
		d, err := provisionOne(ctx, a, slug)
		if err != nil {
			return nil, 0, err
		}
		lat = append(lat, d)
	}
	cpu := (processCPU() + s.dbCPU() - cpu0) / time.Duration(s.f.sample)
	// A claim leaves the warm pool short; nothing refills it here, and the
	// spares left (none when -sample were claimed) are dropped.
	if _, err := a.Provisioner.DrainWarmPool(ctx); err != nil {
		return nil, 0, err
	}
	return lat, cpu, nil
}

func provisionOne(ctx context.Context, a *app.App, slug tenant.Slug) (time.Duration, error) {
	start := time.Now()
	res, err := a.Provisioner.Provision(ctx, provision.Request{Slug: slug, Name: "Scale " + slug.String()})
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("provision %s: %w", slug, err)
	}
	if a.Config.Tenant.WarmPool > 0 && res.Path != provision.Warm {
		return 0, fmt.Errorf("provision %s: path %s, expected warm", slug, res.Path)
	}
	return d, nil
}

// adminMemory records the largest private memory of the admin role's
// backends on the scratch database after provisioning up to a stage.
func (s *scaleRun) adminMemory(ctx context.Context, n int) error {
	if s.res.done("admin-memory", n) {
		return nil
	}
	if err := s.adminMemoryAs(ctx, "admin_backend_mb_max", n); err != nil {
		return err
	}
	return s.res.markDone(ctx, "admin-memory", n)
}
