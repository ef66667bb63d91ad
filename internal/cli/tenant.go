package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// withApp runs fn with the App (pools and services; internal/app) and a
// time limit. The CLI claims spares that a server built, but never builds
// any itself (it runs no background work).
func (e *env) withApp(cmd *cobra.Command, limit time.Duration, fn func(ctx context.Context, a *app.App) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), limit)
	defer cancel()
	a, err := app.Open(ctx, e.cfg, e.log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Admin.PingContext(ctx); err != nil {
		return fmt.Errorf("admin connection %s: %w", config.Redact(e.cfg.Admin.URL), rootCause(err))
	}
	return fn(audit.WithActor(ctx, operator()), a)
}

// operator is the audit trail's actor for tenantctl: the OS user running it.
func operator() audit.Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	return audit.Actor{Name: "tenantctl:" + name}
}

// slugArg validates a slug argument: an invalid one is a usage error.
func slugArg(s string) (tenant.Slug, error) {
	slug, err := tenant.ParseSlug(s)
	if err != nil {
		return tenant.Slug{}, usageError{err}
	}
	return slug, nil
}

func exactlyOneSlug(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s needs exactly one tenant slug (got %d arguments)", cmd.CommandPath(), len(args))
	}
	return nil
}

func newTenantCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "tenant", Short: "Create, list, show, suspend, resume, delete, purge, move, export and import tenants"}
	c.AddCommand(newTenantCreateCmd(e), newTenantListCmd(e), newTenantShowCmd(e),
		newTenantStatusCmd(e, "suspend", "Suspend a tenant (its endpoints answer 403; data kept)"),
		newTenantStatusCmd(e, "resume", "Resume a suspended tenant"),
		newTenantStatusCmd(e, "delete", "Soft-delete a tenant (status deleted, data kept until purge)"),
		newTenantPurgeCmd(e))
	c.AddCommand(newTenantMoveCmd(e), newTenantMovesCmd(e), newTenantPurgeRetiredCmd(e), newTenantLimitsCmd(e),
		newTenantExportCmd(e), newTenantImportCmd(e))
	return c
}

func printJSON(e *env, v any) error {
	enc := json.NewEncoder(e.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTenantCreateCmd(e *env) *cobra.Command {
	var name, placement, cluster string
	var asJSON bool
	c := &cobra.Command{
		Use:   "create <slug>",
		Short: "Provision a tenant: catalog row, role, schema (warm spare or schema apply), active",
		Long: `Provisions a tenant (default: schema placement on the default cluster): the catalog
row (status provisioning), then the tenant's role and schema — a spare from the
warm pool when a server built one, else a schema apply — then status active.
Running it again after a failure or crash completes the same tenant; a slug
already taken fails.`,
		Args: exactlyOneSlug,
		RunE: func(cmd *cobra.Command, args []string) error {
			slug, err := slugArg(args[0])
			if err != nil {
				return err
			}
			if name == "" {
				name = slug.String()
			}
			return e.withApp(cmd, 2*time.Minute, func(ctx context.Context, a *app.App) error {
				var pl *tenant.Placement
				if placement != "" || cluster != "" {
					kind := tenant.PlacementKind(placement)
					if kind == "" {
						kind = tenant.PlacementSchema
					}
					pl = &tenant.Placement{Kind: kind, Cluster: cluster}
				}
				res, err := a.Provisioner.Provision(ctx, provision.Request{Slug: slug, Name: name, Placement: pl})
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, res.Tenant)
				}
				resumed := ""
				if res.Resumed {
					resumed = ", completed an interrupted provisioning"
				}
				fmt.Fprintf(e.out, "tenant %s: %s (%s, %s%s)\n", slug, res.Tenant.Status, res.Path,
					res.Duration.Round(time.Millisecond), resumed)
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", "", "display name (default: the slug)")
	c.Flags().StringVar(&placement, "placement", "", "schema (default) or database (a dedicated database tenant_<slug>)")
	c.Flags().StringVar(&cluster, "cluster", "", "cluster from the config (default: default_cluster)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the tenant as JSON")
	return c
}

func newTenantListCmd(e *env) *cobra.Command {
	var status string
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List tenants with their status, placement, size and (estimated) rows",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st tenant.Status
			if status != "" {
				var err error
				if st, err = tenant.ParseStatus(status); err != nil {
					return usageError{err}
				}
			}
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				all := []tenant.Tenant{}
				o := catalog.ListOptions{Limit: catalog.MaxPage, Status: st}
				for {
					page, err := a.Catalog.List(ctx, o)
					if err != nil {
						return err
					}
					all = append(all, page.Tenants...)
					if page.Next.IsZero() {
						break
					}
					o.After = page.Next
				}
				usage, uerr := a.Clusters.Usages(ctx, all)
				if uerr != nil {
					e.log.Warn().Err(uerr).Msg("some tenants' sizes are unknown")
				}
				if asJSON {
					type row struct {
						tenant.Tenant
						*clusters.Usage
					}
					rows := make([]row, len(all))
					for i, t := range all {
						rows[i] = row{Tenant: t}
						if u, ok := usage[t.Slug.String()]; ok {
							rows[i].Usage = &u
						}
					}
					return printJSON(e, rows)
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SLUG\tNAME\tSTATUS\tPLACEMENT\tCLUSTER\tDATABASE\tSCHEMA\tSIZE\tROWS\tVERSION\tCREATED")
				for _, t := range all {
					size, rows := "-", "-"
					if u, ok := usage[t.Slug.String()]; ok {
						size, rows = humanBytes(u.SizeBytes), fmt.Sprint(u.Rows)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.Slug, t.Name, t.Status, t.Kind, t.Cluster,
						t.Database, t.Schema, size, rows, t.Version, t.CreatedAt.UTC().Format(time.DateTime))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&status, "status", "", "only tenants in this status")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newTenantShowCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "show <slug>",
		Short: "Show one tenant: status, placement, schema hash, installed modules",
		Args:  exactlyOneSlug,
		RunE: func(cmd *cobra.Command, args []string) error {
			slug, err := slugArg(args[0])
			if err != nil {
				return err
			}
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				t, err := a.Catalog.Get(ctx, slug)
				if err != nil {
					return err
				}
				mods, err := a.Modules.Installed(ctx, slug)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, struct {
						tenant.Tenant
						Modules []modules.Install `json:"modules"`
					}{t, append([]modules.Install{}, mods...)})
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
				row("slug", t.Slug.String())
				row("name", t.Name)
				row("id", t.ID.String())
				row("status", string(t.Status))
				row("placement", string(t.Kind))
				row("cluster", t.Cluster)
				row("database", t.Database)
				row("schema", t.Schema)
				row("schema hash", dash(t.SchemaHash))
				row("version", fmt.Sprint(t.Version))
				row("created", t.CreatedAt.UTC().Format(time.RFC3339))
				row("updated", t.UpdatedAt.UTC().Format(time.RFC3339))
				if t.DeletedAt != nil {
					row("deleted", t.DeletedAt.UTC().Format(time.RFC3339))
				}
				names := "-"
				for i, m := range mods {
					if i == 0 {
						names = m.Module
					} else {
						names += ", " + m.Module
					}
				}
				row("modules", names)
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newTenantStatusCmd(e *env, op, short string) *cobra.Command {
	return &cobra.Command{
		Use:   op + " <slug>",
		Short: short,
		Args:  exactlyOneSlug,
		RunE: func(cmd *cobra.Command, args []string) error {
			slug, err := slugArg(args[0])
			if err != nil {
				return err
			}
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				var t tenant.Tenant
				switch op {
				case "suspend":
					t, err = a.Catalog.Suspend(ctx, slug)
				case "resume":
					t, err = a.Catalog.Resume(ctx, slug)
				case "delete":
					t, err = a.Catalog.Delete(ctx, slug)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(e.out, "tenant %s: %s\n", slug, t.Status)
				return nil
			})
		},
	}
}

func newTenantPurgeCmd(e *env) *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "purge <slug> --yes",
		Short: "Drop a deleted tenant for good: schema with all its data, role, catalog row",
		Long: `Drops a tenant that was deleted (tenantctl tenant delete): its schema with
all its data, its role, its catalog row, module installs and tokens. There is
no undo, so it needs --yes.`,
		Args: exactlyOneSlug,
		RunE: func(cmd *cobra.Command, args []string) error {
			slug, err := slugArg(args[0])
			if err != nil {
				return err
			}
			if !yes {
				return usagef("purge drops tenant %s's schema and all its data for good: pass --yes", slug)
			}
			return e.withApp(cmd, 2*time.Minute, func(ctx context.Context, a *app.App) error {
				if err := a.Provisioner.Purge(ctx, slug); err != nil {
					return err
				}
				fmt.Fprintf(e.out, "tenant %s: purged\n", slug)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&yes, "yes", false, "really drop the tenant's data")
	return c
}
