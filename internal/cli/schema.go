package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func newSchemaCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "schema",
		Short: "Apply, diff and check tenant schemas (and the landlord catalog)",
		Long: `Tenant schemas are schema/tenant/core.hcl plus the files of the modules each
tenant installed, applied in-process with the embedded Atlas library over the
direct admin connection: one transaction per tenant, under the schema's
advisory lock. A converged tenant runs no statement. Drops and column type
changes are refused unless --allow-destructive.`,
	}
	c.AddCommand(newSchemaApplyCmd(e), newSchemaDiffCmd(e), newSchemaDriftCmd(e))
	return c
}

// schemaFlags are shared by the schema subcommands.
type schemaFlags struct {
	tenant      string
	slugPrefix  string
	parallel    int
	lockTimeout time.Duration
	schemaDir   string
	asJSON      bool
}

func (f *schemaFlags) addCommon(c *cobra.Command) {
	c.Flags().DurationVar(&f.lockTimeout, "lock-timeout", 5*time.Second,
		"per tenant: give up waiting for the schema's lock or a table lock after this long (0: wait)")
	c.Flags().StringVar(&f.schemaDir, "schema-dir", "",
		"read the HCL from this folder (laid out like schema/: landlord.hcl, tenant/…) instead of the embedded copy")
	c.Flags().BoolVar(&f.asJSON, "json", false, "print JSON")
}

var slugPrefixPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// check validates the flags before any connection is made (usage errors).
func (f *schemaFlags) check() error {
	if f.tenant != "" {
		if _, err := tenant.ParseSlug(f.tenant); err != nil {
			return usagef("--tenant: %v", err)
		}
	}
	if f.slugPrefix != "" && !slugPrefixPattern.MatchString(f.slugPrefix) {
		return usagef("--slug-prefix %q: must start with a-z and contain only a-z, 0-9 and _", f.slugPrefix)
	}
	if f.parallel < 1 || f.parallel > 64 {
		return usagef("--parallel %d: must be between 1 and 64", f.parallel)
	}
	if f.lockTimeout < 0 {
		return usagef("--lock-timeout %s: must not be negative", f.lockTimeout)
	}
	if f.schemaDir != "" {
		st, err := os.Stat(f.schemaDir)
		if err != nil || !st.IsDir() {
			return usagef("--schema-dir %q: not a folder", f.schemaDir)
		}
	}
	return nil
}

// fleet opens the App and returns its fleet runner; closeFn releases it.
func (e *env) fleet(ctx context.Context, f *schemaFlags) (fl *schemaapply.Fleet, closeFn func(), err error) {
	a, err := app.Open(ctx, e.cfg, e.log, app.Options{})
	if err != nil {
		return nil, nil, err
	}
	if err := a.Admin.PingContext(ctx); err != nil {
		a.Close()
		return nil, nil, fmt.Errorf("admin connection %s: %w", config.Redact(e.cfg.Admin.URL), rootCause(err))
	}
	fl = a.Fleet()
	if f.schemaDir != "" {
		fsys := os.DirFS(f.schemaDir)
		fl.Target = func(spec schemaapply.TenantSpec) (schemaapply.Target, error) {
			return schemaapply.TenantTargetFS(fsys, spec)
		}
	}
	return fl, a.Close, nil
}

func newSchemaApplyCmd(e *env) *cobra.Command {
	var (
		f                                     schemaFlags
		all, landlord, dryRun, allowDestr, ia bool
		canary                                int
	)
	c := &cobra.Command{
		Use:   "apply (--tenant <slug> | --all | --landlord)",
		Short: "Apply one tenant's schema, every tenant's, or the landlord catalog",
		Long: `--tenant <slug>  inspects and applies that tenant's schema (core + its modules),
                 records the applied hash, and prints what ran.
--all            the fleet runner: lists the tenants from the landlord catalog,
                 skips without inspection those whose recorded hash and catalog
                 fingerprint both match (so manual drift is still noticed), and
                 applies the rest --parallel at a time, --canary first (if a
                 canary fails the rest are not started). Each tenant has its own
                 transaction and --lock-timeout; a failing tenant is recorded and
                 the others go on; a rerun touches only what is not converged.
                 Exit code 1 if any tenant failed.
--landlord       applies schema/landlord.hcl, like 'tenantctl db init'.

Repairing drift that added a column or table is a drop: it needs --allow-destructive.`,
		Example: `  tenantctl schema apply --tenant acme --dry-run
  tenantctl schema apply --all --parallel 4 --canary 5
  tenantctl schema apply --all --json > rollout.json
  tenantctl schema apply --landlord`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			targets := 0
			for _, set := range []bool{f.tenant != "", all, landlord} {
				if set {
					targets++
				}
			}
			if targets != 1 {
				return usagef("schema apply needs exactly one of --tenant <slug>, --all, --landlord")
			}
			if !all {
				for _, name := range []string{"parallel", "canary", "slug-prefix", "inspect-all"} {
					if cmd.Flags().Changed(name) {
						return usagef("--%s goes with --all", name)
					}
				}
			}
			if canary < 0 {
				return usagef("--canary %d: must not be negative", canary)
			}
			if err := f.check(); err != nil {
				return err
			}
			opts := schemaapply.Options{DryRun: dryRun, AllowDestructive: allowDestr, LockTimeout: f.lockTimeout}
			if landlord {
				return e.applyLandlord(cmd.Context(), &f, opts)
			}
			ctx := cmd.Context()
			fl, closeFn, err := e.fleet(ctx, &f)
			if err != nil {
				return err
			}
			defer closeFn()
			fo := schemaapply.FleetOptions{Options: opts, Parallel: f.parallel, Canary: canary, InspectAll: ia}
			if f.tenant != "" {
				fo.Slugs = []string{f.tenant}
				fo.InspectAll = true // one tenant asked for by name: always inspect it
				return e.applyOne(ctx, fl, fo, f.asJSON)
			}
			fo.SlugPrefix = f.slugPrefix
			return e.applyAll(ctx, fl, fo, f.asJSON)
		},
	}
	c.Flags().StringVar(&f.tenant, "tenant", "", "the tenant's slug")
	c.Flags().BoolVar(&all, "all", false, "every tenant in the landlord catalog (the fleet runner)")
	c.Flags().BoolVar(&landlord, "landlord", false, "the landlord catalog (schema/landlord.hcl)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the SQL and change nothing")
	c.Flags().BoolVar(&allowDestr, "allow-destructive", false, "allow drops of tables and columns and column type changes")
	c.Flags().IntVar(&f.parallel, "parallel", 4, "with --all: tenants applied at once")
	c.Flags().IntVar(&canary, "canary", 0, "with --all: apply this many tenants first; stop if one fails")
	c.Flags().StringVar(&f.slugPrefix, "slug-prefix", "", "with --all: only tenants whose slug starts with this")
	c.Flags().BoolVar(&ia, "inspect-all", false, "with --all: inspect every tenant with Atlas, even converged ones (slow)")
	f.addCommon(c)
	return c
}

func (e *env) applyLandlord(ctx context.Context, f *schemaFlags, o schemaapply.Options) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	target := schemaapply.Landlord(e.cfg.Tenant.AppRole)
	if f.schemaDir != "" {
		var err error
		if target, err = schemaapply.LandlordFS(os.DirFS(f.schemaDir), e.cfg.Tenant.AppRole); err != nil {
			return err
		}
	}
	db, err := e.adminDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := schemaapply.Apply(ctx, db, target, o)
	if err != nil {
		return fmt.Errorf("landlord: %w", err)
	}
	if f.asJSON {
		if err := e.registerModules(ctx, db, o.DryRun, false); err != nil {
			return err
		}
		return writeJSON(e.out, res)
	}
	if err := printApply(e, "landlord", res, o.DryRun); err != nil {
		return err
	}
	return e.registerModules(ctx, db, o.DryRun, true)
}

// applyOne applies the one tenant of fo.Slugs and prints what it did.
func (e *env) applyOne(ctx context.Context, fl *schemaapply.Fleet, fo schemaapply.FleetOptions, asJSON bool) error {
	res, err := fl.Apply(ctx, fo)
	if err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(e.out, res); err != nil {
			return err
		}
		return res.Err()
	}
	for _, t := range res.Tenants {
		if t.Status == schemaapply.StatusFailed || t.Status == schemaapply.StatusNotStarted {
			return errors.New(t.Error)
		}
		what := fmt.Sprintf("tenant %s (%s)", t.Slug, t.Schema)
		r := schemaapply.Result{Statements: t.Statements, Duration: time.Duration(t.DurationMS * float64(time.Millisecond))}
		if err := printApply(e, what, r, fo.DryRun); err != nil {
			return err
		}
		printDestructive(e.out, t, fo.AllowDestructive)
	}
	return nil
}

func printDestructive(w io.Writer, t schemaapply.TenantResult, allowed bool) {
	if len(t.Destructive) == 0 {
		return
	}
	note := "needs --allow-destructive"
	if allowed {
		note = "allowed by --allow-destructive"
	}
	fmt.Fprintf(w, "-- destructive (%s): %s\n", note, strings.Join(t.Destructive, "; "))
}

// applyAll runs the fleet with a progress bar on a terminal.
func (e *env) applyAll(ctx context.Context, fl *schemaapply.Fleet, fo schemaapply.FleetOptions, asJSON bool) error {
	bar := e.progress("schema apply", &fo)
	res, err := fl.Apply(ctx, fo)
	bar.finish()
	if err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(e.out, res); err != nil {
			return err
		}
		return res.Err()
	}
	destructive := 0
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	for _, t := range res.Tenants {
		switch t.Status {
		case schemaapply.StatusFailed, schemaapply.StatusNotStarted:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToUpper(t.Status), t.Slug, t.Schema, t.Error)
			if len(t.Destructive) > 0 && !fo.AllowDestructive {
				destructive++
			}
		case schemaapply.StatusApplied:
			fmt.Fprintf(tw, "applied\t%s\t%s\t%d statements, %.0f ms (%s)\n", t.Slug, t.Schema, len(t.Statements), t.DurationMS, t.Reason)
		case schemaapply.StatusUnchanged:
			fmt.Fprintf(tw, "unchanged\t%s\t%s\tinspected, nothing to do (%s)\n", t.Slug, t.Schema, t.Reason)
		}
	}
	tw.Flush()
	if fo.DryRun {
		for _, t := range res.Tenants {
			if t.Status != schemaapply.StatusPlanned {
				continue
			}
			fmt.Fprintf(e.out, "-- tenant %s (%s): %d statements would run (%s)\n", t.Slug, t.Schema, len(t.Statements), t.Reason)
			printDestructive(e.out, t, fo.AllowDestructive)
			for _, s := range t.Statements {
				fmt.Fprintf(e.out, "%s;\n", s)
			}
		}
	}
	fmt.Fprintf(e.out, "fleet: %s\n", res.Describe())
	if destructive > 0 {
		fmt.Fprintf(e.out, "hint: %d tenants need destructive changes (drop table or column, type change; repairing an "+
			"added column is a drop): review with 'tenantctl schema diff --tenant <slug>', then rerun with --allow-destructive\n",
			destructive)
	}
	return res.Err()
}

func newSchemaDiffCmd(e *env) *cobra.Command {
	var f schemaFlags
	c := &cobra.Command{
		Use:   "diff --tenant <slug>",
		Short: "Print the SQL that 'schema apply --tenant' would run (destructive statements included, marked)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.parallel = 1
			if f.tenant == "" {
				return usagef("schema diff needs --tenant <slug>")
			}
			if err := f.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			fl, closeFn, err := e.fleet(ctx, &f)
			if err != nil {
				return err
			}
			defer closeFn()
			res, err := fl.Apply(ctx, schemaapply.FleetOptions{
				Options:   schemaapply.Options{DryRun: true, AllowDestructive: true, LockTimeout: f.lockTimeout},
				Selection: schemaapply.Selection{Slugs: []string{f.tenant}}, Parallel: 1, InspectAll: true,
			})
			if err != nil {
				return err
			}
			if f.asJSON {
				if err := writeJSON(e.out, res.Tenants); err != nil {
					return err
				}
				return res.Err()
			}
			for _, t := range res.Tenants {
				if t.Status == schemaapply.StatusFailed {
					return errors.New(t.Error)
				}
				if len(t.Statements) == 0 {
					fmt.Fprintf(e.out, "tenant %s (%s): up to date\n", t.Slug, t.Schema)
					continue
				}
				fmt.Fprintf(e.out, "-- tenant %s (%s): %d statements\n", t.Slug, t.Schema, len(t.Statements))
				printDestructive(e.out, t, false)
				for _, s := range t.Statements {
					fmt.Fprintf(e.out, "%s;\n", s)
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&f.tenant, "tenant", "", "the tenant's slug")
	f.addCommon(c)
	return c
}

func newSchemaDriftCmd(e *env) *cobra.Command {
	var f schemaFlags
	c := &cobra.Command{
		Use:   "drift",
		Short: "List every tenant whose live schema differs from its desired one, in one pass",
		Long: `Compares every tenant's recorded schema hash with its desired one and its
recorded catalog fingerprint with the live one (one query for all schemas);
tenants where both match are in sync without inspection, the others are
inspected and planned (nothing changes). Reasons: drift (changed by hand),
changed (the desired schema changed), new, missing. 'tenantctl schema apply
--all' repairs them; a column or table added by hand is a drop and needs
--allow-destructive. Exit code 1 if a tenant could not be checked.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			fl, closeFn, err := e.fleet(ctx, &f)
			if err != nil {
				return err
			}
			defer closeFn()
			fo := schemaapply.FleetOptions{
				Options:   schemaapply.Options{LockTimeout: f.lockTimeout},
				Selection: schemaapply.Selection{SlugPrefix: f.slugPrefix}, Parallel: f.parallel,
			}
			bar := e.progress("schema drift", &fo)
			r, err := fl.Drift(ctx, fo)
			bar.finish()
			if err != nil {
				return err
			}
			var failed error
			if len(r.Failed) > 0 {
				failed = fmt.Errorf("%d of %d tenants could not be checked", len(r.Failed), r.Total)
			}
			if f.asJSON {
				if err := writeJSON(e.out, r); err != nil {
					return err
				}
				return failed
			}
			if len(r.Drifted)+len(r.Failed) > 0 {
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TENANT\tSCHEMA\tREASON\tSTATEMENTS\tDESTRUCTIVE")
				for _, t := range r.Drifted {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", t.Slug, t.Schema, t.Reason, len(t.Statements), dash(strings.Join(t.Destructive, "; ")))
				}
				for _, t := range r.Failed {
					fmt.Fprintf(tw, "%s\t%s\tcheck failed\t-\t%s\n", t.Slug, t.Schema, t.Error)
				}
				tw.Flush()
			}
			fmt.Fprintf(e.out, "drift: %d tenants: %d converged (not inspected), %d in sync, %d drifted, %d failed\n",
				r.Total, r.Converged, r.InSync, len(r.Drifted), len(r.Failed))
			if len(r.Drifted) > 0 {
				fmt.Fprintln(e.out, "repair with 'tenantctl schema apply --all' (or --tenant <slug>); dropping what was added by hand needs --allow-destructive")
			}
			return failed
		},
	}
	c.Flags().StringVar(&f.slugPrefix, "slug-prefix", "", "only tenants whose slug starts with this")
	c.Flags().IntVar(&f.parallel, "parallel", 4, "tenants inspected at once")
	f.addCommon(c)
	return c
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress is a progress bar on stderr when stderr is a terminal, else nothing.
type progress struct{ bar *progressbar.ProgressBar }

func (e *env) progress(what string, fo *schemaapply.FleetOptions) *progress {
	p := &progress{}
	file, ok := e.errOut.(*os.File)
	if !ok || !(isatty.IsTerminal(file.Fd()) || isatty.IsCygwinTerminal(file.Fd())) {
		return p
	}
	fo.OnStart = func(n int) {
		if n == 0 {
			return
		}
		p.bar = progressbar.NewOptions(n,
			progressbar.OptionSetWriter(file),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("tenants"),
			progressbar.OptionShowIts(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	fo.OnTenant = func(schemaapply.TenantResult) {
		if p.bar != nil {
			_ = p.bar.Add(1)
		}
	}
	return p
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
