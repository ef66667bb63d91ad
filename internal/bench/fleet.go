package bench

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"runtime"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// fleetSlugPrefix prefixes the bench tenants: their roles (tenant_<slug>)
// are cluster-wide, so the prefix keeps them apart from every real tenant.
const fleetSlugPrefix = "pdbench_fleet_"

// runFleet measures, in one scratch database with its own landlord catalog:
// creating N tenant schemas with the fleet runner, the fleet's no-op check
// (nothing to do), an additive change (a column and an index) rolled to all,
// and the naive loop that inspects every tenant with Atlas.
func runFleet(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	n := fs.Int("tenants", 1000, "tenant schemas to create")
	parallel := fs.Int("parallel", 4, "fleet runner parallelism")
	naive := fs.Int("naive-sample", 100, "tenants the naive loop inspects (0: all); the total is extrapolated")
	dbName := fs.String("db", "publicdigit_bench_fleet", "scratch database (dropped and re-created)")
	keep := fs.Bool("keep", false, "keep the scratch database and roles")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *parallel < 1 || *naive < 0 {
		return errors.New("fleet: -tenants and -parallel must be positive, -naive-sample not negative")
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	cl, ok := cfg.Clusters[cfg.DefaultCluster]
	if !ok {
		return fmt.Errorf("fleet: default cluster %q is not configured", cfg.DefaultCluster)
	}

	server, err := fleetOpen(cl.AdminURL, "")
	if err != nil {
		return err
	}
	defer server.Close()
	ident := pgx.Identifier{*dbName}.Sanitize()
	cleanup := func(ctx context.Context) error {
		var errs []error
		if _, err := server.ExecContext(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("drop database: %w", err))
		}
		dropped, err := fleetDropRoles(ctx, server)
		if err != nil {
			errs = append(errs, err)
		}
		if dropped > 0 {
			fmt.Fprintf(out, "# cleanup: dropped database %s and %d tenant roles\n", *dbName, dropped)
		}
		return errors.Join(errs...)
	}
	// A previous run that crashed may have left its database and roles.
	if err := cleanup(ctx); err != nil {
		return err
	}
	if !*keep {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
			defer cancel()
			if err := cleanup(cctx); err != nil {
				fmt.Fprintf(out, "# cleanup failed: %v\n", err)
			}
		}()
	}
	if _, err := server.ExecContext(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		return fmt.Errorf("create database %s: %w", *dbName, err)
	}
	db, err := fleetOpen(cl.AdminURL, *dbName)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(*parallel + 2)
	db.SetMaxIdleConns(*parallel + 2)

	var version string
	if err := db.QueryRowContext(ctx, "SHOW server_version").Scan(&version); err != nil {
		return err
	}
	fmt.Fprintf(out, "# fleet bench: %d tenants, parallel %d, PostgreSQL %s, %d CPUs, database %s\n",
		*n, *parallel, version, runtime.NumCPU(), *dbName)

	if _, err := schemaapply.Apply(ctx, db, schemaapply.Landlord(cfg.Tenant.AppRole), schemaapply.Options{}); err != nil {
		return fmt.Errorf("landlord: %w", err)
	}
	for g := 1; g <= *n; g++ {
		slug, err := tenant.ParseSlug(fmt.Sprintf("%s%05d", fleetSlugPrefix, g))
		if err != nil {
			return err
		}
		if _, err := registerTenant(ctx, db, slug, cfg.DefaultCluster, *dbName); err != nil {
			return fmt.Errorf("insert tenants: %w", err)
		}
	}

	// The fleet runner as the App wires it, on the bench database.
	fcfg := cfg
	fcl := mustCluster(cfg)
	if fcl.AdminURL, err = withDatabase(fcl.AdminURL, *dbName, ""); err != nil {
		return err
	}
	if fcl.URL, err = withDatabase(fcl.URL, *dbName, ""); err != nil {
		return err
	}
	fcfg.Clusters = map[string]config.Cluster{cfg.DefaultCluster: fcl}
	fcfg.Admin.URL, fcfg.Landlord.URL, fcfg.Landlord.ListenURL = fcl.AdminURL, fcl.URL, ""
	fa, err := app.Open(ctx, fcfg, zerolog.Nop(), app.Options{})
	if err != nil {
		return err
	}
	defer fa.Close()
	fl := fa.Fleet()
	opts := schemaapply.FleetOptions{Parallel: *parallel, Options: schemaapply.Options{LockTimeout: 5 * time.Second}}
	timed := func(what string, want func(schemaapply.FleetResult) bool) (time.Duration, error) {
		start := time.Now()
		res, err := fl.Apply(ctx, opts)
		d := time.Since(start)
		if err != nil {
			return d, fmt.Errorf("%s: %w", what, err)
		}
		if err := res.Err(); err != nil {
			return d, fmt.Errorf("%s: %w", what, err)
		}
		if !want(res) {
			return d, fmt.Errorf("%s: unexpected result: %s", what, res.Describe())
		}
		fmt.Fprintf(out, "# %s: %s\n", what, res.Describe())
		return d, nil
	}
	all := func(count func(schemaapply.FleetResult) int) func(schemaapply.FleetResult) bool {
		return func(r schemaapply.FleetResult) bool { return count(r) == *n }
	}
	applied := all(func(r schemaapply.FleetResult) int { return r.Applied })
	converged := all(func(r schemaapply.FleetResult) int { return r.Converged })

	create, err := timed("create", applied)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
		return err
	}
	noop, err := fleetMedian(3, func() (time.Duration, error) { return timed("no-op", converged) })
	if err != nil {
		return err
	}
	fl.Target = fleetAdditive
	apply, err := timed("additive change", applied)
	if err != nil {
		return err
	}
	if _, err := timed("no-op after the change", converged); err != nil {
		return err
	}

	// The naive loop: inspect + diff every tenant (what a shell loop over
	// `atlas schema apply`, or ApplyTenant per tenant, does), serially.
	sample := *naive
	if sample == 0 || sample > *n {
		sample = *n
	}
	listed, err := catalog.Select(ctx, db, catalog.Selection{Prefix: fleetSlugPrefix})
	if err != nil {
		return err
	}
	var specs []schemaapply.TenantSpec
	for _, t := range listed[:min(sample, len(listed))] {
		specs = append(specs, schemaapply.TenantSpec{Schema: t.Schema, Role: t.Slug.RoleName(), AppRole: cfg.Tenant.AppRole})
	}
	start := time.Now()
	for _, s := range specs {
		t, err := fleetAdditive(s)
		if err != nil {
			return err
		}
		res, err := schemaapply.Apply(ctx, db, t, schemaapply.Options{})
		if err != nil {
			return fmt.Errorf("naive loop %s: %w", s.Schema, err)
		}
		if res.Changed() {
			return fmt.Errorf("naive loop %s: expected no change, got %v", s.Schema, res.Statements)
		}
	}
	naivePer := time.Since(start) / time.Duration(len(specs))
	naiveTotal := naivePer * time.Duration(*n)
	if len(specs) < *n {
		fmt.Fprintf(out, "# naive loop: measured on %d of %d tenants (serial), total extrapolated as %d x %.1f ms\n",
			len(specs), *n, *n, fleetMS(naivePer))
	}

	per := func(d time.Duration) float64 { return fleetMS(d) / float64(*n) }
	fmt.Fprintf(out, "fleet_create_seconds %.3f\n", create.Seconds())
	fmt.Fprintf(out, "fleet_create_ms_per_tenant %.3f\n", per(create))
	fmt.Fprintf(out, "fleet_noop_seconds %.3f\n", noop.Seconds())
	fmt.Fprintf(out, "fleet_noop_ms_per_tenant %.3f\n", per(noop))
	fmt.Fprintf(out, "fleet_apply_seconds %.3f\n", apply.Seconds())
	fmt.Fprintf(out, "fleet_apply_ms_per_tenant %.3f\n", per(apply))
	fmt.Fprintf(out, "naive_noop_seconds %.3f\n", naiveTotal.Seconds())
	fmt.Fprintf(out, "naive_noop_ms_per_tenant %.3f\n", fleetMS(naivePer))
	fmt.Fprintf(out, "naive_over_fleet_noop %.0f\n", naiveTotal.Seconds()/noop.Seconds())
	return nil
}

// fleetAdditive is the tenant target plus a column and an index on members,
// built in memory (the real HCL files are not touched).
func fleetAdditive(spec schemaapply.TenantSpec) (schemaapply.Target, error) {
	t, err := schemaapply.TenantTarget(spec)
	if err != nil {
		return t, err
	}
	anchor := []byte(`  index "members_tenant_status_idx" {`)
	if !bytes.Contains(t.HCL[0], anchor) {
		return t, errors.New("fleet: members_tenant_status_idx not found in core.hcl")
	}
	extra := []byte("  column \"bench_nickname\" {\n    type = text\n    null = true\n  }\n" +
		"  index \"members_tenant_bench_nickname_idx\" {\n    columns = [column.tenant_id, column.bench_nickname]\n  }\n")
	hcl := append([][]byte{bytes.Replace(t.HCL[0], anchor, append(extra, anchor...), 1)}, t.HCL[1:]...)
	t.HCL = hcl
	return t, nil
}

// fleetDropRoles drops the roles of bench tenants (tenant_pdbench_fleet_*).
func fleetDropRoles(ctx context.Context, server *sql.DB) (int, error) {
	rows, err := server.QueryContext(ctx, `SELECT rolname FROM pg_roles WHERE left(rolname, length($1)) = $1`,
		"tenant_"+fleetSlugPrefix)
	if err != nil {
		return 0, fmt.Errorf("list bench roles: %w", err)
	}
	var roles []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return 0, err
		}
		roles = append(roles, r)
	}
	rows.Close()
	for _, r := range roles {
		if _, err := server.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			return 0, fmt.Errorf("drop role %s: %w", r, err)
		}
	}
	return len(roles), nil
}

// fleetOpen opens a database/sql handle on raw, with its database replaced when db is set.
func fleetOpen(raw, db string) (*sql.DB, error) {
	if db != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("admin url: %w", err)
		}
		u.Path = "/" + db
		raw = u.String()
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("admin url: %w", err)
	}
	return stdlib.OpenDB(*cfg), nil
}

// fleetMedian runs f k times and returns the median duration.
func fleetMedian(k int, f func() (time.Duration, error)) (time.Duration, error) {
	ds := make([]time.Duration, 0, k)
	for range k {
		d, err := f()
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[k/2], nil
}

func fleetMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
