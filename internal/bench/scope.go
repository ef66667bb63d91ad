package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// scopeCase is one way of running the same primary-key lookup.
type scopeCase struct {
	name string
	run  func(ctx context.Context, id uuid.UUID) error
}

func runScope(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("scope", flag.ContinueOnError)
	dur := fs.Duration("duration", time.Second, "length of one measurement")
	rounds := fs.Int("rounds", 5, "measurements per case (the median is reported)")
	rows := fs.Int("rows", 1000, "members in the bench tenant")
	only := fs.String("only", "", "run only this case (with -profile, for tuning)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the -only case to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	sb, err := NewScratch(ctx, cfg, "publicdigit_bench_scope")
	if err != nil {
		return err
	}
	defer sb.Drop(context.WithoutCancel(ctx))

	slug := tenant.MustSlug("bench_scope")
	tenantID, err := sb.Tenant(ctx, slug)
	if err != nil {
		return err
	}
	ids, err := sb.Members(ctx, slug, tenantID, *rows)
	if err != nil {
		return err
	}
	// The plain and no-roles cases read the tenant's table as the application role itself.
	if err := sb.GrantAppDirect(ctx, slug); err != nil {
		return err
	}

	if *only != "" {
		return profileCase(ctx, cfg, sb, *only, *profile, slug, tenantID, ids, *dur, out)
	}
	fmt.Fprintf(out, "# scope benchmark: PK lookup on %d members, %s × %d rounds per case (median), 2-core machine shared by client and server\n", *rows, *dur, *rounds)
	type result struct {
		path        string
		conc        int
		qps         map[string]float64
		cpu         map[string]float64
		srv         map[string]float64
		cases       []string
		scopedRatio float64
	}
	var results []result
	for _, path := range []string{"direct", "pgbouncer"} {
		for _, conc := range []int{1, 8} {
			cases, closeAll, err := scopeCases(ctx, cfg, sb, path, conc, slug, tenantID)
			if err != nil {
				return err
			}
			qps, cpus, srvs := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
			for round := 0; round < *rounds; round++ {
				order := cases
				if round%2 == 1 { // alternate the order against drift
					order = reversed(cases)
				}
				for _, c := range order {
					n, cpu, srv, err := measureAll(ctx, c.run, ids, conc, *dur, sb.Name)
					if err != nil {
						closeAll()
						return fmt.Errorf("%s %s c=%d: %w", c.name, path, conc, err)
					}
					qps[c.name] = append(qps[c.name], n)
					cpus[c.name] = append(cpus[c.name], float64(cpu.Nanoseconds())/1e3)
					srvs[c.name] = append(srvs[c.name], float64(srv.Nanoseconds())/1e3)
				}
			}
			closeAll()
			res := result{path: path, conc: conc, qps: map[string]float64{}, cpu: map[string]float64{}, srv: map[string]float64{}}
			for _, c := range cases {
				res.qps[c.name] = median(qps[c.name])
				res.cpu[c.name] = median(cpus[c.name])
				res.srv[c.name] = median(srvs[c.name])
				res.cases = append(res.cases, c.name)
			}
			res.scopedRatio = res.qps["plain"] / res.qps["scoped"]
			results = append(results, res)
			fmt.Fprintf(out, "scope_overhead %s %d %.3f\n", path, conc, res.scopedRatio)
			fmt.Fprintf(out, "scope_cpu_overhead %s %d %.3f\n", path, conc,
				(res.cpu["scoped"]+res.srv["scoped"])/(res.cpu["plain"]+res.srv["plain"]))
		}
	}

	fmt.Fprintln(out, "\n# throughput (requests/s, median) with ratio plain/case; CPU µs per request: client + server (PostgreSQL backends + PgBouncer) with ratio case/plain")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "path\tconc")
	for _, c := range results[0].cases {
		fmt.Fprintf(tw, "\t%s", c)
	}
	fmt.Fprintln(tw)
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d", r.path, r.conc)
		for _, c := range r.cases {
			total, plainTotal := r.cpu[c]+r.srv[c], r.cpu["plain"]+r.srv["plain"]
			fmt.Fprintf(tw, "\t%.0f/s %.2fx | %.0f+%.0fµs %.2fx", r.qps[c], r.qps["plain"]/r.qps[c], r.cpu[c], r.srv[c], total/plainTotal)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// scopeCases builds the cases for one path and concurrency, each on its own pool.
func scopeCases(ctx context.Context, cfg config.Config, sb *Scratch, path string, conc int, slug tenant.Slug, tenantID uuid.UUID) ([]scopeCase, func(), error) {
	url := sb.AppURL
	if path == "direct" {
		url = sb.DirectAppURL
	}
	pc := app.PoolConfig(cfg.Pool)
	pc.MaxConns = int32(conc)
	pc.MinConns = int32(conc)
	plainPool, err := pgroute.NewPool(ctx, url, pc, pgx.QueryExecModeExec, nil)
	if err != nil {
		return nil, nil, err
	}
	var closers []func()
	closers = append(closers, plainPool.Close)
	landlord, err := pgroute.NewPool(ctx, sb.AppURL, app.PoolConfig(cfg.Pool), pgx.QueryExecModeExec, nil)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, landlord.Close)
	cat, err := catalog.New(catalog.Options{Pool: landlord, Admin: sb.Admin})
	if err != nil {
		return nil, nil, err
	}
	rcfg := cfg
	rcfg.Tenant.SlowStatement = 0
	rcfg.Clusters = map[string]config.Cluster{"main": {URL: url, AdminURL: sb.AdminURL, PgBouncer: "1.18"}}
	router := func(roles bool, mode pgx.QueryExecMode) (*pgroute.Router, error) {
		ro := app.RouterOptions(rcfg, cat, zerolog.Nop())
		ro.Pool = pc
		ro.Roles, ro.ExecMode = roles, mode
		r, err := pgroute.New(ctx, ro)
		if err == nil {
			closers = append(closers, r.Close)
		}
		return r, err
	}
	scoped, err := router(true, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, nil, err
	}
	scopedExt, err := router(true, pgx.QueryExecModeExec)
	if err != nil {
		return nil, nil, err
	}
	scopedNoRoles, err := router(false, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, nil, err
	}
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}

	qualified := `SELECT full_name, status FROM ` + pgx.Identifier{slug.SchemaName(), "members"}.Sanitize() + ` WHERE tenant_id = $1 AND id = $2`
	const scopedSQL = `SELECT full_name, status FROM members WHERE tenant_id = $1 AND id = $2`
	viaRouter := func(r *pgroute.Router) func(ctx context.Context, id uuid.UUID) error {
		return func(ctx context.Context, id uuid.UUID) error {
			var name, status string
			return r.Do(ctx, slug, func(b *pgroute.Batch) error {
				b.Queue(scopedSQL, b.Tenant().ID, id).QueryRow(func(row pgx.Row) error { return row.Scan(&name, &status) })
				return nil
			})
		}
	}
	schemaPath := pgx.Identifier{slug.SchemaName()}.Sanitize()
	cases := []scopeCase{
		{"plain", func(ctx context.Context, id uuid.UUID) error {
			var name, status string
			return plainPool.QueryRow(ctx, qualified, tenantID, id).Scan(&name, &status)
		}},
		{"scoped", viaRouter(scoped)},
		{"scoped-extended", viaRouter(scopedExt)},
		{"scoped-noroles", viaRouter(scopedNoRoles)},
		{"naive-4rt", func(ctx context.Context, id uuid.UUID) error {
			return naive(ctx, plainPool, schemaPath, slug.RoleName(), tenantID, id)
		}},
	}
	return cases, closeAll, nil
}

// naive is what hand-rolled code often does: BEGIN, SET LOCAL, the query,
// COMMIT — four round trips.
func naive(ctx context.Context, pool *pgxpool.Pool, schemaPath, role string, tenantID, id uuid.UUID) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true), set_config('statement_timeout', '5000', true), set_config('role', $2, true)`, schemaPath, role); err != nil {
		return err
	}
	var name, status string
	if err := tx.QueryRow(ctx, `SELECT full_name, status FROM members WHERE tenant_id = $1 AND id = $2`, tenantID, id).Scan(&name, &status); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// measure runs fn from conc goroutines for d and returns operations per second.
func measure(ctx context.Context, fn func(context.Context, uuid.UUID) error, ids []uuid.UUID, conc int, d time.Duration) (float64, error) {
	qps, _, err := measureCPU(ctx, fn, ids, conc, d)
	return qps, err
}

// measureCPU also returns this process's CPU time per operation (client cost).
func measureCPU(ctx context.Context, fn func(context.Context, uuid.UUID) error, ids []uuid.UUID, conc int, d time.Duration) (float64, time.Duration, error) {
	qps, client, _, err := measureAll(ctx, fn, ids, conc, d, "")
	return qps, client, err
}

// measureAll returns operations per second, this process's CPU per
// operation, and (when db is set) the CPU per operation of the PostgreSQL
// backends serving db plus PgBouncer.
func measureAll(ctx context.Context, fn func(context.Context, uuid.UUID) error, ids []uuid.UUID, conc int, d time.Duration, db string) (float64, time.Duration, time.Duration, error) {
	cpu0 := processCPU()
	var srv0 time.Duration
	if db != "" {
		srv0 = serverCPU(db)
	}
	var n atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i += conc {
				if err := fn(ctx, ids[i%len(ids)]); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return 0, 0, 0, err
	}
	ops := n.Load()
	if ops == 0 {
		return 0, 0, 0, fmt.Errorf("no operation completed")
	}
	var srv time.Duration
	if db != "" {
		srv = (serverCPU(db) - srv0) / time.Duration(ops)
	}
	return float64(ops) / elapsed.Seconds(), (processCPU() - cpu0) / time.Duration(ops), srv, nil
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func reversed(cs []scopeCase) []scopeCase {
	out := make([]scopeCase, len(cs))
	for i, c := range cs {
		out[len(cs)-1-i] = c
	}
	return out
}

// profileCase runs one case at concurrency 8 on the direct path, optionally
// under the CPU profiler.
func profileCase(ctx context.Context, cfg config.Config, sb *Scratch, name, profile string, slug tenant.Slug, tenantID uuid.UUID, ids []uuid.UUID, d time.Duration, out io.Writer) error {
	cases, closeAll, err := scopeCases(ctx, cfg, sb, "direct", 8, slug, tenantID)
	if err != nil {
		return err
	}
	defer closeAll()
	for _, c := range cases {
		if c.name != name {
			continue
		}
		if profile != "" {
			f, err := os.Create(profile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		qps, cpu, err := measureCPU(ctx, c.run, ids, 8, d)
		fmt.Fprintf(out, "%s direct c=8: %.0f/s, client CPU %s per request\n", name, qps, cpu)
		return err
	}
	return fmt.Errorf("no case %q", name)
}
