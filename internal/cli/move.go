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
	var to, cluster, modeFlag string
	var asJSON bool
	c := &cobra.Command{
		Use:   "move <slug> --to schema|database [--cluster <name>] [--mode logical|lock]",
		Short: "Move a tenant online to a schema or a dedicated database, on its cluster or another",
		Long: `Moves a tenant online: the target is built and the schema applied, the rows
are copied and verified by row counts and checksums, the catalog flips, and the
source is renamed to a retired name, closed to the tenant's role, and kept
until 'tenantctl tenant purge-retired'.

--mode logical (the default) copies under a replication slot's snapshot while
writes go on, streams the changes made meanwhile, and blocks writes only for
the final switch (a fraction of a second, whatever the tenant's size). It needs
wal_level = logical on the source server and the REPLICATION attribute on the
admin role (docs/MOVES.md); without them the move says so and changes nothing.
--mode lock blocks the source's writes for the whole copy; it needs neither.

'tenantctl tenant moves' lists moves in progress with their replication lag.
A move that was interrupted (crash, kill) is finished, or started over, by
running the same command again. A failed move leaves the tenant on its
source, intact.`,
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
			mode, err := move.ParseMode(modeFlag)
			if err != nil {
				return usagef("--mode must be logical or lock (got %q)", modeFlag)
			}
			if cluster != "" {
				if _, err := e.cfg.Cluster(cluster); err != nil {
					return usageError{err}
				}
			}
			return e.withApp(cmd, 6*time.Hour, func(ctx context.Context, a *app.App) error {
				res, err := a.Mover.Move(ctx, move.Request{Slug: slug, To: kind, Cluster: cluster, Mode: mode})
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, map[string]any{
						"tenant": res.Tenant, "from": res.From, "mode": res.Mode, "retired_name": res.Retired, "rows": res.Rows,
						"write_pause_ms": res.WritePause.Milliseconds(), "copy_ms": res.Copy.Milliseconds(),
						"catch_up_ms": res.CatchUp.Milliseconds(), "verify_ms": res.Verify.Milliseconds(),
						"duration_ms": res.Duration.Milliseconds(), "resumed": res.Resumed,
					})
				}
				resumed := ""
				if res.Resumed {
					resumed = " (finished an interrupted move)"
				}
				fmt.Fprintf(e.out, "tenant %s: %s on %s → %s on %s (%s mode)%s\n", slug, res.From.Kind, res.From.Cluster,
					res.Tenant.Kind, res.Tenant.Cluster, res.Mode, resumed)
				fmt.Fprintf(e.out, "  %d rows copied in %s, verified in %s, writes paused %s, total %s\n", res.Rows,
					res.Copy.Round(time.Millisecond), res.Verify.Round(time.Millisecond), res.WritePause.Round(time.Millisecond),
					res.Duration.Round(time.Millisecond))
				fmt.Fprintf(e.out, "  old copy kept as %s on %s (tenantctl tenant purge-retired)\n", res.Retired, res.From.Cluster)
				return nil
			})
		},
	}
	c.Flags().StringVar(&to, "to", "", "target placement: schema or database (required)")
	c.Flags().StringVar(&cluster, "cluster", "", "target cluster (default: the tenant's)")
	c.Flags().StringVar(&modeFlag, "mode", "logical", "logical: writes wait only for the switch; lock: writes wait for the whole copy")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	_ = c.MarkFlagRequired("to")
	return c
}

func newTenantMovesCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "moves",
		Short: "List the moves in progress (or interrupted) with their replication lag",
		Long: `Lists the unfinished moves: tenant, mode, from → to, state, rows copied, and for a
logical move its lag — the source's WAL its slot has not confirmed yet (measured
now) and the age of the newest change applied while more waited (as the mover
last recorded it). A move listed here whose mover is gone was interrupted: run
'tenantctl tenant move' for it again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				moves, err := a.Mover.InProgress(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, append([]move.Progress{}, moves...))
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TENANT\tMODE\tFROM\tTO\tSTATE\tROWS\tLAG\tLAG BYTES\tSTARTED\tUPDATED")
				for _, m := range moves {
					lag, bytes := "-", "-"
					if m.Lag != nil {
						lag = m.Lag.Round(time.Millisecond).String()
					}
					if m.LagBytes != nil {
						bytes = humanBytes(*m.LagBytes)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s on %s\t%s on %s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.Slug, m.Mode,
						m.From.Kind, m.From.Cluster, m.To.Kind, m.To.Cluster, m.State, m.RowsCopied, lag, bytes,
						m.StartedAt.UTC().Format(time.DateTime), m.UpdatedAt.UTC().Format(time.DateTime))
				}
				fmt.Fprintf(tw, "%d moves in progress\n", len(moves))
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
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
