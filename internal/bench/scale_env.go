package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// scaleRun is one run of the scale benchmark: its scratch database, the
// configuration that points the App at it, and the results so far.
type scaleRun struct {
	f       scaleFlags
	out     io.Writer
	base    config.Config // as loaded (the platform database)
	cfg     config.Config // landlord, admin and the default cluster on the scratch database
	cl      config.Cluster
	server  *sql.DB // admin connection to the cluster's platform database: CREATE/DROP DATABASE, roles
	admin   *sql.DB // admin connection to the scratch database
	res     *scaleResults
	version string
	// postmaster is the server's postmaster process (0 if not found): its
	// children's CPU time counts the backends that exit during a measure.
	postmaster int
	cold       *app.App // warm pool off: every provisioning applies the schema
	warm       *app.App // warm pool of -sample spares
}

// openScale prepares the scratch database: fresh (after dropping what an
// earlier run left), or as an earlier run kept it with -resume.
func openScale(ctx context.Context, f scaleFlags, out io.Writer) (_ *scaleRun, err error) {
	base, err := config.Load(nil)
	if err != nil {
		return nil, err
	}
	cl, err := base.Cluster(base.DefaultCluster)
	if err != nil {
		return nil, err
	}
	s := &scaleRun{f: f, out: out, base: base, cl: cl}
	if s.server, err = openDB(cl.AdminURL); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	var exists bool
	if err := s.server.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, f.db).Scan(&exists); err != nil {
		return nil, err
	}
	fresh := !f.resume || !exists
	if fresh {
		if err := s.cleanup(ctx); err != nil {
			return nil, fmt.Errorf("clean up an earlier run: %w", err)
		}
		if err := s.createDatabase(ctx); err != nil {
			return nil, err
		}
	}
	if s.cfg, err = scratchConfig(base, f.db); err != nil {
		return nil, err
	}
	if s.admin, err = openDB(s.cfg.Admin.URL); err != nil {
		return nil, err
	}
	var pid int
	if err := s.admin.QueryRowContext(ctx, "SELECT current_setting('server_version'), pg_backend_pid()").Scan(&s.version, &pid); err != nil {
		return nil, err
	}
	s.postmaster = parentPID(pid)
	// On -resume too: a kept catalog gets the columns added since.
	if _, err := schemaapply.Apply(ctx, s.admin, schemaapply.Landlord(base.Tenant.AppRole), schemaapply.Options{}); err != nil {
		return nil, fmt.Errorf("scratch landlord: %w", err)
	}
	// Provisioning records each tenant's modules, which must be registered.
	if _, err := modules.Register(ctx, s.admin); err != nil {
		return nil, fmt.Errorf("scratch landlord: %w", err)
	}
	if s.res, err = openResults(ctx, s.admin); err != nil {
		return nil, err
	}
	if err := s.openApps(ctx); err != nil {
		return nil, err
	}
	if !fresh {
		fmt.Fprintf(out, "# resuming in %s: %d results recorded\n", f.db, len(s.res.values))
	}
	return s, nil
}

// scratchConfig is cfg with the landlord, the admin connection and the
// default cluster on database db (the application role through PgBouncer,
// whose wildcard entry serves any database).
func scratchConfig(cfg config.Config, db string) (config.Config, error) {
	cl, err := cfg.Cluster(cfg.DefaultCluster)
	if err != nil {
		return cfg, err
	}
	if cl.AdminURL, err = withDatabase(cl.AdminURL, db, ""); err != nil {
		return cfg, err
	}
	if cl.URL, err = withDatabase(cl.URL, db, ""); err != nil {
		return cfg, err
	}
	out := cfg
	out.Clusters = map[string]config.Cluster{cfg.DefaultCluster: cl}
	out.Admin.URL, out.Landlord.URL, out.Landlord.ListenURL = cl.AdminURL, cl.URL, ""
	out.Tenant.WarmPool = 0
	return out, nil
}

func (s *scaleRun) createDatabase(ctx context.Context) error {
	db := pgx.Identifier{s.f.db}.Sanitize()
	for _, stmt := range []string{
		"CREATE DATABASE " + db + " TEMPLATE template0 ENCODING 'UTF8'",
		"GRANT CONNECT ON DATABASE " + db + " TO " + pgx.Identifier{s.base.Tenant.AppRole}.Sanitize(),
	} {
		if _, err := s.server.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("scratch database %s: %w", s.f.db, err)
		}
	}
	return nil
}

// openApps opens the two Apps that provision: one without a warm pool
// (cold) and one whose pool holds -sample spares (warm).
func (s *scaleRun) openApps(ctx context.Context) error {
	var err error
	if s.cold, err = app.Open(ctx, s.cfg, zerolog.Nop(), app.Options{}); err != nil {
		return err
	}
	wcfg := s.cfg
	wcfg.Tenant.WarmPool = s.f.sample
	s.warm, err = app.Open(ctx, wcfg, zerolog.Nop(), app.Options{SparePrefix: s.f.sparePrefix()})
	return err
}

// close releases everything and, unless -keep, drops the database and roles.
func (s *scaleRun) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for _, a := range []*app.App{s.cold, s.warm} {
		if a != nil {
			a.Close()
		}
	}
	if s.admin != nil {
		s.admin.Close()
	}
	if s.server == nil {
		return
	}
	defer s.server.Close()
	if s.f.keep {
		fmt.Fprintf(s.out, "# kept database %s and its roles (-resume continues; drop with a run without -keep)\n", s.f.db)
		return
	}
	start := time.Now()
	if err := s.cleanup(ctx); err != nil {
		fmt.Fprintf(s.out, "# cleanup failed: %v\n", err)
		return
	}
	fmt.Fprintf(s.out, "# cleanup: dropped database %s and the bench roles in %s\n", s.f.db, time.Since(start).Round(time.Second))
}

// cleanup drops the scratch database, then every role the benchmark made
// (tenants', spares', the probe's), then any PgBouncer it left running.
func (s *scaleRun) cleanup(ctx context.Context) error {
	if _, err := s.server.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.f.db}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database: %w", err)
	}
	if err := dropRolesLike(ctx, s.server, "tenant_"+s.f.slugPrefix(), s.f.sparePrefix(), s.f.probeRole()); err != nil {
		return err
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pdbench-bouncer-"+s.f.db+"*"))
	for _, d := range dirs {
		stopBouncerIn(d)
		_ = os.RemoveAll(d)
	}
	return nil
}

// dropRolesLike drops the roles whose names start with one of prefixes, a
// few hundred per statement.
func dropRolesLike(ctx context.Context, server *sql.DB, prefixes ...string) error {
	rows, err := server.QueryContext(ctx, `SELECT rolname FROM pg_roles WHERE EXISTS (SELECT FROM unnest($1::text[]) p WHERE starts_with(rolname, p)) ORDER BY 1`, prefixes)
	if err != nil {
		return fmt.Errorf("list bench roles: %w", err)
	}
	var roles []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return err
		}
		roles = append(roles, pgx.Identifier{r}.Sanitize())
	}
	rows.Close()
	for len(roles) > 0 {
		k := min(len(roles), 500)
		if _, err := server.ExecContext(ctx, "DROP ROLE IF EXISTS "+strings.Join(roles[:k], ", ")); err != nil {
			return fmt.Errorf("drop bench roles: %w", err)
		}
		roles = roles[k:]
	}
	return nil
}

// tenants lists the bench's live tenants in slug order.
func (s *scaleRun) tenants(ctx context.Context) ([]tenant.Tenant, error) {
	return catalog.Select(ctx, s.admin, catalog.Selection{Prefix: s.f.slugPrefix()})
}

// scaleResults are the measures recorded in the scratch database.
type scaleResults struct {
	db     *sql.DB
	values map[resultKey]float64
	groups map[resultKey]bool
	order  []string // measures in the order first recorded
}

type resultKey struct {
	name string
	n    int
}

const resultsSchema = `
CREATE SCHEMA IF NOT EXISTS pdbench;
CREATE TABLE IF NOT EXISTS pdbench.results (measure text, n int, value float8, at timestamptz DEFAULT now(), PRIMARY KEY (measure, n));
CREATE TABLE IF NOT EXISTS pdbench.done (grp text, n int, PRIMARY KEY (grp, n));
CREATE TABLE IF NOT EXISTS pdbench.seeds (slug text PRIMARY KEY, members uuid[] NOT NULL, cards uuid[] NOT NULL)`

func openResults(ctx context.Context, db *sql.DB) (*scaleResults, error) {
	if _, err := db.ExecContext(ctx, resultsSchema, pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, fmt.Errorf("results tables: %w", err)
	}
	r := &scaleResults{db: db, values: map[resultKey]float64{}, groups: map[resultKey]bool{}}
	rows, err := db.QueryContext(ctx, `SELECT measure, n, value FROM pdbench.results ORDER BY at, measure`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k resultKey
		var v float64
		if err := rows.Scan(&k.name, &k.n, &v); err != nil {
			return nil, err
		}
		r.add(k, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	grows, err := db.QueryContext(ctx, `SELECT grp, n FROM pdbench.done`)
	if err != nil {
		return nil, err
	}
	defer grows.Close()
	for grows.Next() {
		var k resultKey
		if err := grows.Scan(&k.name, &k.n); err != nil {
			return nil, err
		}
		r.groups[k] = true
	}
	return r, grows.Err()
}

func (r *scaleResults) add(k resultKey, v float64) {
	if _, ok := r.values[k]; !ok && !contains(r.order, k.name) {
		r.order = append(r.order, k.name)
	}
	r.values[k] = v
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// put records a measure at stage n.
func (r *scaleResults) put(ctx context.Context, measure string, n int, v float64) error {
	_, err := r.db.ExecContext(ctx, `INSERT INTO pdbench.results (measure, n, value) VALUES ($1, $2, $3)
		ON CONFLICT (measure, n) DO UPDATE SET value = excluded.value, at = now()`, measure, n, v)
	if err != nil {
		return fmt.Errorf("record %s: %w", measure, err)
	}
	r.add(resultKey{measure, n}, v)
	return nil
}

func (r *scaleResults) get(measure string, n int) (float64, bool) {
	v, ok := r.values[resultKey{measure, n}]
	return v, ok
}

// value is a recorded measure, or 0.
func (r *scaleResults) value(measure string, n int) float64 { return r.values[resultKey{measure, n}] }

func (r *scaleResults) done(group string, n int) bool { return r.groups[resultKey{group, n}] }

// forget drops the done marks of groups at stage n, so that they run again.
func (r *scaleResults) forget(ctx context.Context, groups []string, n int) error {
	for _, g := range groups {
		g = strings.TrimSpace(g)
		if _, err := r.db.ExecContext(ctx, `DELETE FROM pdbench.done WHERE grp = $1 AND n = $2`, g, n); err != nil {
			return err
		}
		delete(r.groups, resultKey{g, n})
	}
	return nil
}

func (r *scaleResults) markDone(ctx context.Context, group string, n int) error {
	if _, err := r.db.ExecContext(ctx, `INSERT INTO pdbench.done VALUES ($1, $2) ON CONFLICT DO NOTHING`, group, n); err != nil {
		return err
	}
	r.groups[resultKey{group, n}] = true
	return nil
}

// report prints every measure at every stage with its ratio to stage 100,
// then the limits checked against the last stage.
func (s *scaleRun) report(out io.Writer) error {
	stages := s.f.stages()
	last := stages[len(stages)-1]
	fmt.Fprintln(out, "\n# scale <measure> <n> <value> <ratio_vs_100>")
	for _, m := range s.res.order {
		if m == "fleet_state" {
			continue
		}
		base, hasBase := s.res.get(m, scaleBaseline)
		for _, n := range stages {
			v, ok := s.res.get(m, n)
			if !ok {
				continue
			}
			ratio := "-"
			if hasBase && base != 0 {
				ratio = fmt.Sprintf("%.3f", v/base)
			}
			fmt.Fprintf(out, "scale %s %d %s %s\n", m, n, formatValue(v), ratio)
		}
	}
	fmt.Fprintf(out, "\n# limits at %d tenants\n", last)
	var failed []string
	for _, c := range scaleChecks {
		verdict, ok := c.eval(s.res, last)
		fmt.Fprintf(out, "# %-58s %s\n", c.what, verdict)
		if !ok {
			failed = append(failed, c.what)
		}
	}
	sort.Strings(failed)
	if len(failed) > 0 {
		fmt.Fprintf(out, "# NOT HELD: %s\n", strings.Join(failed, "; "))
	}
	return nil
}

func formatValue(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1 || v <= -1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.4f", v)
	}
}

// scaleCheck is one limit of issue 14 checked on the recorded results.
type scaleCheck struct {
	what string
	eval func(r *scaleResults, n int) (string, bool)
}

// atMost and ratioAtLeast build checks; a measure not recorded is "not measured" (held: nothing to say).
func atMost(measure string, limit float64, unit string) func(*scaleResults, int) (string, bool) {
	return func(r *scaleResults, n int) (string, bool) {
		v, ok := r.get(measure, n)
		if !ok {
			return "not measured", true
		}
		return fmt.Sprintf("%s %s (limit %s): %s", formatValue(v), unit, formatValue(limit), verdict(v <= limit)), v <= limit
	}
}

func ratioAtMost(measure string, baseN int, limit float64) func(*scaleResults, int) (string, bool) {
	return func(r *scaleResults, n int) (string, bool) {
		v, ok1 := r.get(measure, n)
		b, ok2 := r.get(measure, baseN)
		if !ok1 || !ok2 || b == 0 {
			return "not measured", true
		}
		return fmt.Sprintf("%.2f× its value at %d (limit %.2f×): %s", v/b, baseN, limit, verdict(v/b <= limit)), v/b <= limit
	}
}

func ratioOfAtLeast(num, den string, limit float64) func(*scaleResults, int) (string, bool) {
	return func(r *scaleResults, n int) (string, bool) {
		a, ok1 := r.get(num, n)
		b, ok2 := r.get(den, n)
		if !ok1 || !ok2 || b == 0 {
			return "not measured", true
		}
		return fmt.Sprintf("%.2f× (limit %.2f×): %s", a/b, limit, verdict(a/b >= limit)), a/b >= limit
	}
}

func verdict(ok bool) string {
	if ok {
		return "held"
	}
	return "NOT HELD"
}

var scaleChecks = []scaleCheck{
	{"fleet no-op check ≤ 2 s", atMost("fleet_noop_s", 2, "s")},
	{"additive change to every tenant ≤ 5 min", atMost("fleet_additive_s", 300, "s")},
	{"cold provisioning p50 ≤ 1.5× at 100", ratioAtMost("provision_cold_p50_ms", scaleBaseline, 1.5)},
	{"warm provisioning p50 ≤ 1.5× at 100", ratioAtMost("provision_warm_p50_ms", scaleBaseline, 1.5)},
	{"GET card req/s over all tenants ≥ 0.7× over 10", ratioOfAtLeast("api_get_rps_all", "api_get_rps_10", 0.7)},
	{"POST issue req/s over all tenants ≥ 0.7× over 10", ratioOfAtLeast("api_issue_rps_all", "api_issue_rps_10", 0.7)},
	{"GET card, lanes over all ≥ 0.7× one plain pool over 10", ratioOfAtLeast("api_get_rps_all", "api_get_rps_10_plain", 0.7)},
	{"POST issue, lanes over all ≥ 0.7× one plain pool over 10", ratioOfAtLeast("api_issue_rps_all", "api_issue_rps_10_plain", 0.7)},
	{"backend memory with lanes, after traffic over all ≤ 64 MB", atMost("backend_mb_lanes_max", 64, "MB")},
	{"admin backend memory after provisioning ≤ 64 MB", atMost("admin_backend_mb_max", 64, "MB")},
}
