package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// The scale benchmark's names. Tenant roles are cluster-wide, so its slugs
// (and the warm pool's spares) have prefixes of their own that cleanup
// drops; -tag adds to them, so that two scratch databases (say, 100 and
// 10,000 tenants, measured in turns) can live on one server.
const scaleBaseline = 100 // the stage every measure is compared with

func (f scaleFlags) slugPrefix() string  { return "pdbench_scale" + f.tag + "_" }
func (f scaleFlags) sparePrefix() string { return "pd_bscale" + f.tag + "_" }
func (f scaleFlags) probeRole() string   { return "pdbench_scale" + f.tag + "_probe" }

// scaleFlags are the benchmark's settings.
type scaleFlags struct {
	n             int
	sample        int
	parallel      int
	fleetParallel int
	db            string
	keep, resume  bool
	tag           string
	lastOnly      bool
	duration      time.Duration
	rounds        int
	conc          int
	lanes         int
	pool          int
	recycle       time.Duration
	cacheTTL      time.Duration
	listen        bool
	warmup        int
	members       int
	only          string
	redo          string
	timeout       time.Duration
}

func parseScaleFlags(args []string) (scaleFlags, error) {
	var f scaleFlags
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.IntVar(&f.n, "n", 10_000, "tenants at the last stage (the first is 100)")
	fs.IntVar(&f.sample, "sample", 40, "provisionings measured per path (cold, warm) at each stage")
	fs.IntVar(&f.parallel, "parallel", 2, "provisioning workers while filling up to a stage (not measured)")
	fs.IntVar(&f.fleetParallel, "fleet-parallel", 4, "fleet runner parallelism")
	fs.StringVar(&f.db, "db", "publicdigit_bench_scale", "scratch database (created, and dropped at the end unless -keep)")
	fs.BoolVar(&f.keep, "keep", false, "keep the scratch database, its tenants and roles (for -resume)")
	fs.BoolVar(&f.resume, "resume", false, "continue a run kept with -keep or interrupted: reuse its database, tenants and recorded results")
	fs.DurationVar(&f.duration, "duration", 2*time.Second, "length of one API measurement")
	fs.IntVar(&f.rounds, "rounds", 5, "API measurements per case (interleaved; the median is reported)")
	fs.IntVar(&f.conc, "conc", 32, "concurrent API clients")
	fs.IntVar(&f.lanes, "lanes", 20, "lanes (clusters.<name>.lanes) of the bounded configuration (tenants / 500 at 10,000; equal to -pool: one server connection a lane)")
	fs.IntVar(&f.pool, "pool", 20, "server connections per PgBouncer (shared by the lanes), and the app's pool")
	fs.DurationVar(&f.recycle, "recycle", 10*time.Second, "PgBouncer server_lifetime of the recycling configuration (0: not measured)")
	fs.DurationVar(&f.cacheTTL, "cache-ttl", 0, "tenant.cache_ttl of the servers measured (0: the configuration's)")
	fs.BoolVar(&f.listen, "listen", true, "the servers measured hear tenant changes (landlord.listen_url, as deployed); false: placements are trusted for tenant.cache_ttl only")
	fs.IntVar(&f.warmup, "warmup", 3, "requests per tenant (each op) before the API rounds over all tenants")
	fs.IntVar(&f.members, "members", 4, "members (each with a card) seeded per tenant for the API")
	fs.StringVar(&f.only, "only", "", "comma-separated measure groups to run (provision, fleet, roles, landlord, memory, api; default all)")
	fs.DurationVar(&f.timeout, "timeout", 6*time.Hour, "give up (and clean up, unless -keep) after this long")
	fs.StringVar(&f.tag, "tag", "", "added to the benchmark's slug and role prefixes (lower-case letters and digits): another scratch database beside a kept one")
	fs.BoolVar(&f.lastOnly, "last-only", false, "with -resume: measure only at the last stage (a kept database already past 100; compare with a -tag database of 100)")
	fs.StringVar(&f.redo, "redo", "", "with -resume: comma-separated measure groups to measure again at the last stage")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case f.n < scaleBaseline:
		return f, fmt.Errorf("scale: -n must be at least %d", scaleBaseline)
	case f.sample < 1 || 2*f.sample >= scaleBaseline:
		return f, fmt.Errorf("scale: -sample must be between 1 and %d", scaleBaseline/2-1)
	case f.parallel < 1 || f.fleetParallel < 1 || f.conc < 1 || f.rounds < 1 || f.members < 1:
		return f, errors.New("scale: -parallel, -fleet-parallel, -conc, -rounds and -members must be positive")
	case f.lanes < 1 || f.pool < f.lanes:
		return f, errors.New("scale: -lanes must be positive and -pool at least -lanes")
	case !regexp.MustCompile(`^[a-z0-9]{0,8}$`).MatchString(f.tag):
		return f, errors.New("scale: -tag takes up to 8 lower-case letters and digits")
	case f.recycle != 0 && f.recycle < time.Second:
		return f, errors.New("scale: -recycle must be 0 or at least 1s (PgBouncer counts seconds)")
	case f.warmup < 1 || f.cacheTTL < 0:
		return f, errors.New("scale: -warmup must be positive and -cache-ttl not negative")
	}
	return f, nil
}

// wants reports whether a measure group runs (-only).
func (f scaleFlags) wants(group string) bool {
	if f.only == "" {
		return true
	}
	for _, g := range strings.Split(f.only, ",") {
		if strings.TrimSpace(g) == group {
			return true
		}
	}
	return false
}

// stages are the tenant counts measured: 100, then N.
func (f scaleFlags) stages() []int {
	if f.n == scaleBaseline {
		return []int{scaleBaseline}
	}
	if f.lastOnly {
		return []int{f.n}
	}
	return []int{scaleBaseline, f.n}
}

// runScale builds a scratch database with its own landlord catalog, fills
// it with tenants through the Provisioner, and at 100 tenants and at N
// measures each group; every result is recorded in the scratch database
// (so that -resume goes on where an interrupted run stopped) and printed
// as "scale <measure> <n> <value> <ratio_vs_100>".
func runScale(ctx context.Context, args []string, out io.Writer) error {
	f, err := parseScaleFlags(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	s, err := openScale(ctx, f, out)
	if err != nil {
		return err
	}
	defer s.close()
	if f.redo != "" {
		if err := s.res.forget(ctx, strings.Split(f.redo, ","), f.stages()[len(f.stages())-1]); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "# scale bench: stages %v, PostgreSQL %s, %d CPUs, load average %s at start, database %s\n",
		f.stages(), s.version, runtime.NumCPU(), loadAverage(), f.db)
	for _, n := range f.stages() {
		if err := s.stage(ctx, n); err != nil {
			return fmt.Errorf("stage %d: %w", n, err)
		}
	}
	fmt.Fprintf(out, "# load average at the end: %s\n", loadAverage())
	return s.report(out)
}

// stage brings the catalog to n tenants and measures every group at n.
func (s *scaleRun) stage(ctx context.Context, n int) error {
	start := time.Now()
	if err := s.provisionStage(ctx, n); err != nil {
		return err
	}
	groups := []struct {
		name string
		run  func(context.Context, int) error
	}{
		{"landlord", s.landlordStage}, // first: drift on converged tenants
		{"roles", s.rolesStage},
		{"fleet", s.fleetStage},
		{"memory", s.memoryStage},
		{"api", s.apiStage},
	}
	for _, g := range groups {
		if !s.f.wants(g.name) || s.res.done(g.name, n) {
			continue
		}
		gs := time.Now()
		if err := g.run(ctx, n); err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		if err := s.res.markDone(ctx, g.name, n); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "# stage %d: %s measured in %s (load average %s)\n", n, g.name,
			time.Since(gs).Round(time.Second), loadAverage())
	}
	fmt.Fprintf(s.out, "# stage %d done in %s\n", n, time.Since(start).Round(time.Second))
	return nil
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
