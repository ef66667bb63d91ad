// Package loadtest is the isolation-mode load test behind cmd/pdload: five
// ways to isolate tenants (modes), each direct to PostgreSQL and through
// PgBouncer, at several tenant counts, with the same data and workload,
// measured side by side and written up as a report with charts.
//
// The work is split by concern: scratch prepares and observes the databases,
// bouncer runs a private PgBouncer, modes binds tenants, workload drives and
// counts, report writes the outputs. This package parses the flags and runs
// the matrix.
package loadtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/publicdigit/publicdigit/internal/loadtest/modes"
	"github.com/publicdigit/publicdigit/internal/loadtest/report"
	"github.com/publicdigit/publicdigit/internal/loadtest/workload"
)

// Options are a run's parameters.
type Options struct {
	Tenants          []int // tenant counts, ascending
	Modes            []modes.Mode
	Paths            []modes.Path
	Concurrency      int
	Warmup, Duration time.Duration // per cell and round
	Rounds           int
	Mix              workload.Mix
	Skew             workload.Skew
	ZipfS            float64
	Seed             uint64
	Members, Cards   int // per tenant
	PageSize         int
	StatementTimeout time.Duration
	OpTimeout        time.Duration // client-side bound of one operation
	BouncerPool      int           // PgBouncer default_pool_size
	BouncerMaxServer int           // PgBouncer max_user_connections
	DBPool           int           // client pool size per tenant database
	MaxDatabases     int           // database mode is not attempted above this many tenants
	AdminURL         string        // the admin role, direct (any database)
	AppURL           string        // the application role, direct to PostgreSQL (any database)
	PgBouncer        string        // the pgbouncer executable
	Out              string        // output folder
	// OnResults, if set, gets the results so far after each tenant count and
	// once more at the end, before the last scratch data is dropped (Main
	// writes the report with it).
	OnResults func(*report.Results) error
	// BeforeDrop, if set, is called at each tenant count once the rows are
	// counted and before the scratch databases are dropped, while the run
	// still holds them (tests count rows with their own SQL).
	BeforeDrop func(ctx context.Context, runID string, tenants int)
}

// Defaults is the full matrix.
func Defaults() Options {
	return Options{
		Tenants: []int{10, 100, 1000}, Modes: slices.Clone(modes.All), Paths: slices.Clone(modes.Paths),
		Concurrency: 16, Warmup: 2 * time.Second, Duration: 5 * time.Second, Rounds: 3,
		Mix: workload.DefaultMix, Skew: workload.Uniform, ZipfS: 1.1, Seed: 1,
		Members: 20, Cards: 100, PageSize: 20,
		StatementTimeout: 5 * time.Second, OpTimeout: 10 * time.Second,
		BouncerPool: 20, BouncerMaxServer: 100, DBPool: 2, MaxDatabases: 1000,
	}
}

// quick is the -quick preset: 10 and 100 tenants, short cells (make loadtest-quick).
func quick(o *Options) {
	o.Tenants = []int{10, 100}
	o.Warmup, o.Duration, o.Rounds = 300*time.Millisecond, time.Second, 2
}

// ParseFlags reads the command line. Errors name the flag, on one line.
func ParseFlags(args []string, stdout io.Writer) (Options, error) {
	o := Defaults()
	fs := flag.NewFlagSet("pdload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	isQuick := fs.Bool("quick", false, "the quick preset: 10 and 100 tenants, 2 rounds of 0.3 s warm-up + 1 s (other flags override it)")
	tenants := fs.String("tenants", "10,100,1000", "tenant counts, comma-separated (add 10000 on request)")
	modeList := fs.String("modes", joinModes(modes.All), "modes: schema, schema+role, database, rls, session")
	pathList := fs.String("paths", "direct,pgbouncer", "paths: direct, pgbouncer")
	mix := fs.String("mix", workload.DefaultMix.String(), "workload weights: read, list, issue, change")
	skew := fs.String("skew", string(o.Skew), "tenant skew: uniform or zipf")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "concurrent workers (and connections per shared pool)")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "warm-up per cell and round, not measured")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "measured time per cell and round")
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "rounds: every cell runs once per round, in rotated order")
	fs.Float64Var(&o.ZipfS, "zipf-s", o.ZipfS, "zipf exponent (> 1)")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "random seed (tenant ids, tenant and operation choices)")
	fs.IntVar(&o.Members, "members", o.Members, "members per tenant")
	fs.IntVar(&o.Cards, "cards", o.Cards, "seeded cards per tenant")
	fs.DurationVar(&o.StatementTimeout, "statement-timeout", o.StatementTimeout, "statement_timeout bound in every mode")
	fs.IntVar(&o.BouncerPool, "bouncer-pool", o.BouncerPool, "PgBouncer server pool size per database (default_pool_size)")
	fs.IntVar(&o.BouncerMaxServer, "bouncer-max-server", o.BouncerMaxServer, "PgBouncer server connections across all databases (max_user_connections)")
	fs.IntVar(&o.DBPool, "db-pool", o.DBPool, "database mode: client connections per tenant database")
	fs.IntVar(&o.MaxDatabases, "max-databases", o.MaxDatabases, "database mode: not attempted above this many tenants")
	fs.StringVar(&o.AdminURL, "admin-url", "", "admin role URL, direct (default: the project's config, PD_ADMIN__URL)")
	fs.StringVar(&o.AppURL, "app-url", "", "application role URL direct to PostgreSQL (default: the project's config, at the admin URL's host and port)")
	fs.StringVar(&o.PgBouncer, "pgbouncer", "", "pgbouncer executable (default: on PATH, or /usr/sbin/pgbouncer)")
	fs.StringVar(&o.Out, "out", "", "output folder (default: reports/loadtest/<date>-<time>)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprintln(stdout, "Usage: pdload [flags]\n       pdload screenshot <report.html> <out.png>\n       pdload render <results.json> <out-dir>\n       pdload cleanup\n\nFlags:")
			fs.PrintDefaults()
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	var err error
	if o.Tenants, err = parseInts(*tenants); err != nil {
		return o, fmt.Errorf("-tenants: %w", err)
	}
	if *isQuick { // the preset, except where a flag says otherwise
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		q := o
		quick(&q)
		if !set["tenants"] {
			o.Tenants = q.Tenants
		}
		if !set["warmup"] {
			o.Warmup = q.Warmup
		}
		if !set["duration"] {
			o.Duration = q.Duration
		}
		if !set["rounds"] {
			o.Rounds = q.Rounds
		}
	}
	if o.Modes, err = parseList(*modeList, modes.All); err != nil {
		return o, fmt.Errorf("-modes: %w", err)
	}
	if o.Paths, err = parseList(*pathList, modes.Paths); err != nil {
		return o, fmt.Errorf("-paths: %w", err)
	}
	if o.Mix, err = workload.ParseMix(*mix); err != nil {
		return o, fmt.Errorf("-mix: %w", err)
	}
	o.Skew = workload.Skew(*skew)
	return o, o.Validate()
}

// Validate checks every parameter; the error names the flag.
func (o Options) Validate() error {
	type rule struct {
		flag string
		ok   bool
		want string
	}
	for _, r := range []rule{
		{"-tenants", len(o.Tenants) > 0 && slices.Min(o.Tenants) >= 1 && slices.Max(o.Tenants) <= 100_000, "counts between 1 and 100000"},
		{"-modes", len(o.Modes) > 0, "at least one mode"},
		{"-paths", len(o.Paths) > 0, "at least one path"},
		{"-concurrency", o.Concurrency >= 1 && o.Concurrency <= 1024, "between 1 and 1024"},
		{"-warmup", o.Warmup >= 0 && o.Warmup <= 10*time.Minute, "between 0 and 10m"},
		{"-duration", o.Duration >= 100*time.Millisecond && o.Duration <= 10*time.Minute, "between 100ms and 10m"},
		{"-rounds", o.Rounds >= 1 && o.Rounds <= 20, "between 1 and 20"},
		{"-skew", o.Skew == workload.Uniform || o.Skew == workload.Zipf, "uniform or zipf"},
		{"-zipf-s", o.ZipfS > 1 && o.ZipfS <= 10, "above 1 and at most 10"},
		{"-members", o.Members >= 1 && o.Members <= 100_000, "between 1 and 100000"},
		{"-cards", o.Cards >= 1 && o.Cards <= 100_000, "between 1 and 100000"},
		{"-statement-timeout", o.StatementTimeout >= time.Millisecond && o.StatementTimeout <= time.Hour, "between 1ms and 1h"},
		{"-bouncer-pool", o.BouncerPool >= 1 && o.BouncerPool <= 1000, "between 1 and 1000"},
		{"-bouncer-max-server", o.BouncerMaxServer >= 0 && o.BouncerMaxServer <= 10_000, "between 0 (no cap) and 10000"},
		{"-db-pool", o.DBPool >= 1 && o.DBPool <= 100, "between 1 and 100"},
		{"-max-databases", o.MaxDatabases >= 0, "0 or more"},
	} {
		if !r.ok {
			return fmt.Errorf("%s: must be %s", r.flag, r.want)
		}
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(p), "_", ""))
		if err != nil || n < 1 || n > 100_000 {
			return nil, fmt.Errorf("%q is not a count between 1 and 100000", p)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func parseList[T ~string](s string, known []T) ([]T, error) {
	var out []T
	for _, p := range strings.Split(s, ",") {
		v := T(strings.TrimSpace(p))
		if !slices.Contains(known, v) {
			return nil, fmt.Errorf("unknown %q (known: %s)", p, joinModes(known))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	// Report order, whatever the command line's.
	slices.SortFunc(out, func(a, b T) int { return slices.Index(known, a) - slices.Index(known, b) })
	return out, nil
}

func joinModes[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}
