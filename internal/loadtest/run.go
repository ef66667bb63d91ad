package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/loadtest/bouncer"
	"github.com/publicdigit/publicdigit/internal/loadtest/modes"
	"github.com/publicdigit/publicdigit/internal/loadtest/report"
	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
	"github.com/publicdigit/publicdigit/internal/loadtest/workload"
)

// sampleEvery is how often server connections are counted during a cell.
const sampleEvery = 100 * time.Millisecond

// memoryMethod says how backend memory is read (for the report).
const memoryMethod = "private (anonymous) memory of every application-role backend connected to the mode's databases for the path " +
	"(told apart by application_name), read from /proc/<pid>/smaps_rollup right after each round (the last round's reading is reported). It holds the backend's " +
	"memory contexts — CacheMemoryContext with the catalog and relation caches, plan caches, work areas — and not shared buffers. " +
	"pg_backend_memory_contexts would itemise it, but in PostgreSQL 15 it shows only the backend that queries it and needs " +
	"pg_read_all_stats, which the application role does not have; pg_log_backend_memory_contexts writes to the server log, as superuser only."

// Run runs the matrix of o. It returns what was measured — all of it, or
// what was measured until ctx ended (Results.Interrupted) — and an error only
// when it could not start. Scratch databases and roles are dropped before it
// returns, also when interrupted.
func Run(ctx context.Context, o Options, progress io.Writer) (*report.Results, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	admin, app, err := urls(o)
	if err != nil {
		return nil, err
	}
	appCfg, err := pgx.ParseConfig(app)
	if err != nil {
		return nil, errors.New("-app-url: does not parse as a PostgreSQL URL")
	}
	srv, err := scratch.Open(ctx, admin, appCfg.User)
	if err != nil {
		return nil, fmt.Errorf("%w (is PostgreSQL up? make db-up)", err)
	}
	defer srv.Close(context.WithoutCancel(ctx))

	x := &runner{o: o, srv: srv, app: app, bar: newBar(progress, o)}
	x.bcfg = bouncer.Config{Binary: o.PgBouncer, ServerHost: appCfg.Host, ServerPort: int(appCfg.Port),
		User: appCfg.User, Password: appCfg.Password, PoolSize: o.BouncerPool, MaxServer: o.BouncerMaxServer}
	res := &report.Results{RunID: srv.RunID, Started: time.Now(), Machine: machine()}
	x.res = res
	if err := x.describe(ctx); err != nil {
		return nil, err
	}
	dropped, err := srv.DropLeftovers(ctx)
	if err != nil {
		return nil, fmt.Errorf("dropping leftovers of earlier runs: %w", err)
	}
	if len(dropped) > 0 {
		x.note("Dropped %d databases and roles left by an earlier, interrupted run.", len(dropped))
	}
	// Each tenant count's data is dropped before the next is provisioned;
	// the last is dropped once the results are out (dropping thousands of
	// relation files can take minutes).
	var pending []*scratch.Set
	lastN := 0
	for _, n := range o.Tenants {
		if ctx.Err() != nil {
			break
		}
		x.drop(ctx, pending, lastN)
		pending, lastN = x.tenantCount(ctx, n), n
		res.Finished = time.Now()
		x.publish()
	}
	res.Finished = time.Now()
	res.Machine.LoadEnd = loadAverage()
	if ctx.Err() != nil {
		res.Interrupted = true
		x.note("Interrupted by the user at %s; cells not reached are missing.", res.Finished.UTC().Format("15:04:05"))
	}
	x.publish()
	x.drop(ctx, pending, lastN)
	x.bar.finish()
	return res, nil
}

// publish hands the results so far to Options.OnResults.
func (x *runner) publish() {
	if x.o.OnResults == nil {
		return
	}
	if err := x.o.OnResults(x.res); err != nil {
		x.note("Writing the results failed: %v", oneLine(err))
	}
}

// drop removes the scratch data of one tenant count (after BeforeDrop),
// also after an interruption.
func (x *runner) drop(ctx context.Context, sets []*scratch.Set, n int) {
	if len(sets) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Hour)
	defer cancel()
	if x.o.BeforeDrop != nil {
		x.o.BeforeDrop(cctx, x.srv.RunID, n)
	}
	for _, set := range sets {
		x.bar.describe(fmt.Sprintf("%s tenants: dropping %s", comma(n), set.Name))
		if err := x.srv.Drop(cctx, set); err != nil {
			x.note("Could not drop %s at %d tenants (the next run will): %v", set.Name, n, oneLine(err))
		}
	}
}

// DropLeftovers drops the databases and roles that ended runs left behind.
func DropLeftovers(ctx context.Context, o Options) ([]string, error) {
	admin, app, err := urls(o)
	if err != nil {
		return nil, err
	}
	appCfg, err := pgx.ParseConfig(app)
	if err != nil {
		return nil, errors.New("-app-url: does not parse as a PostgreSQL URL")
	}
	srv, err := scratch.Open(ctx, admin, appCfg.User)
	if err != nil {
		return nil, err
	}
	defer srv.Close(context.WithoutCancel(ctx))
	return srv.DropLeftovers(ctx)
}

// urls returns the admin URL and the application role's direct URL.
func urls(o Options) (admin, app string, err error) {
	admin, app = o.AdminURL, o.AppURL
	if admin == "" || app == "" {
		a, p, err := modes.LocalURLs()
		if err != nil {
			return "", "", fmt.Errorf("project config: %w", err)
		}
		if admin == "" {
			admin = a
		}
		if app == "" {
			// The configured application URL goes through the project's
			// PgBouncer: take its role to the admin URL's server instead.
			ac, err1 := pgx.ParseConfig(admin)
			pc, err2 := pgx.ParseConfig(p)
			if err1 != nil || err2 != nil {
				return "", "", errors.New("project config: a database URL does not parse")
			}
			app = fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", urlUser(pc.User, pc.Password),
				net.JoinHostPort(ac.Host, strconv.Itoa(int(ac.Port))), pc.Database)
		}
	}
	return admin, app, nil
}

type runner struct {
	o    Options
	srv  *scratch.Server
	app  string // application role, direct
	bcfg bouncer.Config
	res  *report.Results
	bar  *bar

	memNoted bool
}

func (x *runner) note(format string, a ...any) {
	x.res.Notes = append(x.res.Notes, fmt.Sprintf(format, a...))
}

// describe fills the versions and parameters.
func (x *runner) describe(ctx context.Context) error {
	o, res := x.o, x.res
	var err error
	if res.Versions.PostgreSQL, err = x.srv.ServerVersion(ctx); err != nil {
		return err
	}
	maxConns, err := x.srv.MaxConnections(ctx)
	if err != nil {
		return err
	}
	res.Versions.Go = runtime.Version()
	if slices.Contains(o.Paths, modes.Bouncer) {
		if res.Versions.PgBouncer, err = x.bcfg.Version(); err != nil {
			return err
		}
	}
	ms := make([]string, len(o.Modes))
	for i, m := range o.Modes {
		ms[i] = string(m)
	}
	ps := make([]string, len(o.Paths))
	for i, p := range o.Paths {
		ps[i] = string(p)
	}
	res.Params = report.Params{
		Tenants: o.Tenants, Modes: ms, Paths: ps, Concurrency: o.Concurrency,
		Warmup: o.Warmup.String(), Duration: o.Duration.String(), Rounds: o.Rounds,
		Mix: o.Mix.String(), Skew: string(o.Skew), ZipfS: o.ZipfS, Seed: o.Seed,
		Members: o.Members, Cards: o.Cards, PageSize: pageSize, StatementTimeout: o.StatementTimeout.String(),
		DBPool: o.DBPool, MaxDatabases: o.MaxDatabases, MaxConnections: maxConns,
		Bouncer: x.bcfg.Settings(), MemoryMethod: memoryMethod,
	}
	return nil
}

const pageSize = 20

// cellKey names a cell at one tenant count.
type cellKey struct {
	mode modes.Mode
	path modes.Path
}

// tenantCount provisions every mode for n tenants, runs the rounds, counts
// and measures, adds the cells to the results and returns the scratch data
// for the caller to drop.
func (x *runner) tenantCount(ctx context.Context, n int) []*scratch.Set {
	o := x.o
	data := scratch.Data{Members: o.Members, Cards: o.Cards, StatementTimeout: o.StatementTimeout}
	base := x.srv.MakeTenants(n, o.Seed)
	accs := map[cellKey]*acc{}
	var keys []cellKey
	for _, m := range o.Modes {
		for _, p := range o.Paths {
			k := cellKey{m, p}
			keys = append(keys, k)
			accs[k] = &acc{cell: report.Cell{Tenants: n, Mode: string(m), Path: string(p), Errors: map[string]int64{}}}
		}
	}
	forMode := func(m modes.Mode, f func(a *acc)) {
		for _, p := range o.Paths {
			f(accs[cellKey{m, p}])
		}
	}
	sets := map[modes.Mode]*scratch.Set{}

	usable := map[modes.Mode]bool{}
	for _, m := range o.Modes {
		if ctx.Err() != nil {
			break
		}
		if m == modes.Database && n > o.MaxDatabases {
			forMode(m, func(a *acc) {
				a.stop(report.StatusSkipped, fmt.Sprintf("not attempted: %s databases exceed -max-databases %d", comma(n), o.MaxDatabases))
			})
			x.bar.add(1)
			continue
		}
		done := 0
		tick := func() {
			done++
			if done%max(n/50, 1) == 0 {
				x.bar.describe(fmt.Sprintf("%s tenants: provisioning %s %d/%d", comma(n), m, done, n))
			}
		}
		x.bar.describe(fmt.Sprintf("%s tenants: provisioning %s", comma(n), m))
		set, err := x.srv.Provision(ctx, m.SetName(), m.Layout(), base, data, tick)
		if set != nil {
			sets[m] = set
		}
		x.bar.add(1)
		if err != nil {
			status := report.StatusFailed
			if ctx.Err() != nil {
				status = report.StatusInterrupted
			}
			forMode(m, func(a *acc) { a.stop(status, "provisioning: "+oneLine(err)) })
			continue
		}
		usable[m] = true
		forMode(m, func(a *acc) {
			a.cell.ProvisionRead, a.cell.ProvisionS, a.cell.SeedS = true, set.Provision.Seconds(), set.Seed.Seconds()
		})
	}

	// The modes on one shared pool run interleaved, round after round, their
	// pools (and backends) kept open across rounds. The database mode holds a
	// server connection per tenant, so it runs alone afterwards, one path at
	// a time, with nothing else connected.
	var shared, perDB [][]cellKey
	var together []cellKey
	for _, k := range keys {
		if k.mode == modes.Database {
			perDB = append(perDB, []cellKey{k})
		} else {
			together = append(together, k)
		}
	}
	if len(together) > 0 {
		shared = append(shared, together)
	}
	for _, group := range append(shared, perDB...) {
		x.phase(ctx, n, group, accs, sets, usable)
	}

	// Count, roll out, measure: bounded, and done also after an interruption
	// (except the rollout), so that what was measured can be checked.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Minute)
	defer cancel()
	for _, m := range o.Modes {
		set := sets[m]
		if !usable[m] {
			continue
		}
		x.bar.describe(fmt.Sprintf("%s tenants: counting %s", comma(n), m))
		x.finish(fctx, ctx.Err() == nil, set, n, func(f func(a *acc)) { forMode(m, f) })
		x.bar.add(1)
	}
	for _, k := range keys {
		x.res.Cells = append(x.res.Cells, accs[k].result())
	}
	var out []*scratch.Set
	for _, m := range o.Modes {
		if sets[m] != nil {
			out = append(out, sets[m])
		}
	}
	return out
}

// finish counts the rows each path wrote, rolls a column out and measures
// the size of one mode's set.
func (x *runner) finish(ctx context.Context, rollout bool, set *scratch.Set, n int, each func(func(a *acc))) {
	counts, err := x.srv.Count(ctx, set)
	if err != nil {
		x.note("Counting the rows of %s at %d tenants failed: %v", set.Name, n, oneLine(err))
	} else {
		want := int64(n) * (scratch.Data{Members: x.o.Members, Cards: x.o.Cards}).SeedRows()
		if seed := counts["seed"]; seed.Found != want || seed.Misplaced != 0 {
			x.note("Seed rows of %s at %d tenants: %d found, %d misplaced — not as seeded.", set.Name, n, seed.Found, seed.Misplaced)
		}
		each(func(a *acc) { a.check(counts[a.cell.Path]) })
	}
	if rollout {
		d, err := x.srv.Rollout(ctx, set)
		if err != nil {
			x.note("Rollout on %s at %d tenants failed: %v", set.Name, n, oneLine(err))
		} else {
			each(func(a *acc) { a.cell.RolloutS = d.Seconds() })
		}
	}
	size, err := x.srv.Size(ctx, set)
	if err == nil {
		each(func(a *acc) { a.cell.SizeMB = float64(size) / (1 << 20) })
	}
}

// phase runs o.Rounds rounds over the cells of keys, in an order rotated
// every round. Each cell's pools are opened on first use and kept open
// until the phase ends, so later rounds run on warm backends; one private
// PgBouncer serves the phase's PgBouncer cells.
func (x *runner) phase(ctx context.Context, n int, keys []cellKey, accs map[cellKey]*acc, sets map[modes.Mode]*scratch.Set, usable map[modes.Mode]bool) {
	o := x.o
	var bnc *bouncer.Bouncer
	binders := map[cellKey]modes.Binder{}
	defer func() {
		for _, b := range binders {
			b.Close()
		}
		if bnc != nil {
			bnc.Stop()
		}
	}()
	for r := 0; r < o.Rounds; r++ {
		for i := range keys {
			if ctx.Err() != nil {
				return
			}
			k := keys[(i+r*(len(o.Paths)+1))%len(keys)] // rotated: each round starts elsewhere
			a := accs[k]
			if usable[k.mode] && !a.stopped {
				x.bar.describe(fmt.Sprintf("%s tenants: %s · %s, round %d/%d", comma(n), k.mode, k.path, r+1, o.Rounds))
				b, ok := binders[k]
				if !ok {
					var err error
					if b, err = x.open(ctx, k, sets[k.mode], &bnc); err != nil {
						x.refusedOrFailed(ctx, a, err)
						x.bar.add(1)
						continue
					}
					binders[k] = b
				}
				x.measure(ctx, a, b, sets[k.mode], k, r)
			}
			x.bar.add(1)
		}
	}
}

// open opens the binder of one cell, starting the phase's PgBouncer first
// when the cell needs it.
func (x *runner) open(ctx context.Context, k cellKey, set *scratch.Set, bnc **bouncer.Bouncer) (modes.Binder, error) {
	o := x.o
	tgt := modes.Target{URL: x.app, Conns: int32(o.Concurrency), StatementTimeout: o.StatementTimeout, AppName: appName(k.path)}
	if k.mode == modes.Database {
		tgt.Conns = int32(o.DBPool)
	}
	if k.path == modes.Bouncer {
		if *bnc == nil {
			b, err := bouncer.Start(ctx, x.bcfg)
			if err != nil {
				return nil, err
			}
			*bnc = b
		}
		var err error
		if tgt.URL, err = (*bnc).URL(x.app); err != nil {
			return nil, err
		}
		tgt.Bouncer = true
	}
	return modes.Open(ctx, k.mode, set, tgt)
}

// refusedOrFailed records why a cell could not start: the server refusing
// connections (while a pool per database warmed up) is a result, not a failure.
func (x *runner) refusedOrFailed(ctx context.Context, a *acc, err error) {
	var warm *modes.WarmError
	if errors.As(err, &warm) && workload.Kind(err) == "too_many_connections" {
		a.cell.ConnsPeak = warm.Warmed
		a.cell.Errors["too_many_connections"]++
		a.stop(report.StatusRefused, fmt.Sprintf("refused at %s tenants: too many connections — the server refused one after %s of %s tenant pools held a connection (max_connections = %d)",
			comma(a.cell.Tenants), comma(warm.Warmed), comma(warm.Pools), x.res.Params.MaxConnections))
		return
	}
	status := report.StatusFailed
	if ctx.Err() != nil {
		status = report.StatusInterrupted
	}
	a.stop(status, oneLine(err))
}

// measure runs one round of a cell: warm-up and measurement, then the
// connections seen and the backends' memory.
func (x *runner) measure(ctx context.Context, a *acc, b modes.Binder, set *scratch.Set, k cellKey, r int) {
	o := x.o
	sm := x.srv.StartSampler(ctx, set, appName(k.path), sampleEvery)
	st := workload.Run(ctx, b, set.Tenants, workload.Config{
		Concurrency: o.Concurrency, Warmup: o.Warmup, Duration: o.Duration, Mix: o.Mix, Skew: o.Skew, ZipfS: o.ZipfS,
		Seed: o.Seed, Marker: string(k.path), Round: r, Members: o.Members, Cards: o.Cards, PageSize: pageSize,
		OpTimeout: o.OpTimeout,
	})
	sample := sm.Stop()
	mem, memErr := x.srv.BackendMemory(context.WithoutCancel(ctx), set, appName(k.path))
	if memErr != nil && !x.memNoted {
		x.memNoted = true
		x.note("Backend memory not measured: %v", oneLine(memErr))
	}
	a.add(st, sample, mem, memErr == nil, x.res.Params.MaxConnections)
}

// appName is the application_name of a path's connections.
func appName[P ~string](path P) string { return "pdload_" + string(path) }

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// comma formats n with thousands separators.
func comma(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
