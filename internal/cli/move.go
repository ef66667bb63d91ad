package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func newTenantMoveCmd(e *env) *cobra.Command {
	var to, cluster string
	var asJSON bool
	c := &cobra.Command{
		Use:   "move <slug> --to schema|database [--cluster <name>]",
		Short: "Move a tenant online to a schema or a dedicated database, on its cluster or another",
		Long: `Moves a tenant online: the target is built and the schema applied; writes
wait (table locks on the source) while every table is streamed with COPY and
verified by row counts and checksums; the catalog flips; the source is renamed
to a retired name, closed to the tenant's role, and kept until
'tenantctl tenant purge-retired'. Reads go on throughout.

A move that was interrupted (crash, kill) is finished by running the same
command again. A failed move leaves the tenant on its source, intact.`,
		Args: exactlyOneSlug,
		RunE: func(cmd *cobra.Command, args []string) error {
			slug, err := slugArg(args[0])
			if err != nil {
				return err
			}
			kind := tenant.PlacementKind(to)
			if kind != tenant.PlacementSchema && kind != tenant.PlacementDatabase {
				return usagef("--to must be schema or database (got %q)", to)
			}
			if cluster != "" {
				if _, err := e.cfg.Cluster(cluster); err != nil {
					return usageError{err}
				}
			}
			return e.withApp(cmd, 6*time.Hour, func(ctx context.Context, a *app.App) error {
				res, err := a.Mover.Move(ctx, move.Request{Slug: slug, To: kind, Cluster: cluster})
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, map[string]any{
						"tenant": res.Tenant, "from": res.From, "retired_name": res.Retired, "rows": res.Rows,
						"write_pause_ms": res.WritePause.Milliseconds(), "copy_ms": res.Copy.Milliseconds(),
						"duration_ms": res.Duration.Milliseconds(), "resumed": res.Resumed,
					})
				}
				resumed := ""
				if res.Resumed {
					resumed = " (finished an interrupted move)"
				}
				fmt.Fprintf(e.out, "tenant %s: %s on %s → %s on %s%s\n", slug, res.From.Kind, res.From.Cluster,
					res.Tenant.Kind, res.Tenant.Cluster, resumed)
				fmt.Fprintf(e.out, "  %d rows copied in %s, writes paused %s, total %s\n", res.Rows,
					res.Copy.Round(time.Millisecond), res.WritePause.Round(time.Millisecond), res.Duration.Round(time.Millisecond))
				fmt.Fprintf(e.out, "  old copy kept as %s on %s (tenantctl tenant purge-retired)\n", res.Retired, res.From.Cluster)
				return nil
			})
		},
	}
	c.Flags().StringVar(&to, "to", "", "target placement: schema or database (required)")
	c.Flags().StringVar(&cluster, "cluster", "", "target cluster (default: the tenant's)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	_ = c.MarkFlagRequired("to")
	return c
}

func newTenantPurgeRetiredCmd(e *env) *cobra.Command {
	var grace time.Duration
	var tenantFlag string
	var dryRun, asJSON bool
	c := &cobra.Command{
		Use:   "purge-retired [--older-than 24h] [--tenant <slug>] [--dry-run]",
		Short: "Drop the copies that moves left behind, after a grace period",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if grace < 0 {
				return usagef("--older-than must not be negative")
			}
			var slug tenant.Slug
			if tenantFlag != "" {
				var err error
				if slug, err = slugArg(tenantFlag); err != nil {
					return err
				}
			}
			return e.withApp(cmd, time.Hour, func(ctx context.Context, a *app.App) error {
				var copies []catalog.RetiredCopy
				var err error
				if dryRun {
					all, err := a.Catalog.RetiredCopies(ctx, slug)
					if err != nil {
						return err
					}
					for _, c := range all {
						if grace == 0 || c.RetiredAt.Before(time.Now().Add(-grace)) {
							copies = append(copies, c)
						}
					}
				} else if copies, err = a.Provisioner.PurgeRetired(ctx, grace, slug); err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, append([]catalog.RetiredCopy{}, copies...))
				}
				verb := "dropped"
				if dryRun {
					verb = "would drop"
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				for _, c := range copies {
					what := "schema " + c.Schema + " in " + c.Database
					if c.WholeDatabase {
						what = "database " + c.Database
					}
					fmt.Fprintf(tw, "%s\t%s\t%s on %s\tretired %s\n", verb, c.Slug, what, c.Cluster, c.RetiredAt.UTC().Format(time.DateTime))
				}
				fmt.Fprintf(tw, "%d retired copies %s\n", len(copies), verb)
				return tw.Flush()
			})
		},
	}
	c.Flags().DurationVar(&grace, "older-than", 24*time.Hour, "grace period: only copies retired longer ago (0: all)")
	c.Flags().StringVar(&tenantFlag, "tenant", "", "only this tenant's copies")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be dropped")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// humanBytes renders a size for tables: 1.5 MB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "KMGTPE"[exp])
}
