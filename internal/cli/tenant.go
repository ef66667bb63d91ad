package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/registry"
	"github.com/publicdigit/publicdigit/internal/tenancy"
	"github.com/publicdigit/publicdigit/internal/tenancy/provision"
)

func init() {
	extraCommands = append(extraCommands, newTenantCmd)
}

// tenantSubcommands lets other files add `tenant` subcommands (e.g. move).
var tenantSubcommands []func(*env) *cobra.Command

// platform is what the tenant, token, geo and seed commands share: the
// landlord pool (through PgBouncer), the direct admin connection and the
// services on them. Close releases everything.
type platform struct {
	landlord *pgxpool.Pool
	admin    *sql.DB
	tenants  *tenancy.Service
	prov     *provision.Provisioner
	reg      *registry.Service
	tokens   *access.Service
}

func (e *env) platform(ctx context.Context) (*platform, error) {
	admin, err := tenancy.OpenAdmin(e.cfg.Admin.URL, e.cfg.Pool)
	if err != nil {
		return nil, err
	}
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		return nil, fmt.Errorf("admin connection %s: %w", config.Redact(e.cfg.Admin.URL), rootCause(err))
	}
	landlord, err := pgroute.NewLandlordPool(ctx, e.cfg, nil)
	if err != nil {
		admin.Close()
		return nil, err
	}
	p := &platform{landlord: landlord, admin: admin}
	p.tenants, err = tenancy.New(tenancy.Options{
		Config: e.cfg, Landlord: landlord, Admin: admin, Log: logging.Component(e.log, "tenancy"),
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	// The CLI claims spares that a server built, but never builds any itself.
	p.prov, err = provision.New(provision.Options{
		Tenants: p.tenants, Log: logging.Component(e.log, "provision"), WarmPool: e.cfg.Tenant.WarmPool,
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	p.reg = registry.New(landlord, p.tenants, p.prov, logging.Component(e.log, "registry"))
	p.tokens = access.New(landlord, access.Options{})
	return p, nil
}

func (p *platform) Close() {
	if p.tenants != nil {
		p.tenants.Close()
	}
	p.landlord.Close()
	_ = p.admin.Close()
}

// withPlatform runs fn with the platform services and a time limit.
func (e *env) withPlatform(cmd *cobra.Command, limit time.Duration, fn func(ctx context.Context, p *platform) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), limit)
	defer cancel()
	p, err := e.platform(ctx)
	if err != nil {
		return err
	}
	defer p.Close()
	return fn(ctx, p)
}

// slugArg validates a slug argument: an invalid one is a usage error.
func slugArg(s string) (tenancy.Slug, error) {
	slug, err := tenancy.ParseSlug(s)
	if err != nil {
		return tenancy.Slug{}, usageError{err}
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
	c := &cobra.Command{Use: "tenant", Short: "Create, list, show, suspend, resume, delete and purge tenants"}
	c.AddCommand(newTenantCreateCmd(e), newTenantListCmd(e), newTenantShowCmd(e),
		newTenantStatusCmd(e, "suspend", "Suspend a tenant (its endpoints answer 403; data kept)"),
		newTenantStatusCmd(e, "resume", "Resume a suspended tenant"),
		newTenantStatusCmd(e, "delete", "Soft-delete a tenant (status deleted, data kept until purge)"),
		newTenantPurgeCmd(e))
	for _, sub := range tenantSubcommands {
		c.AddCommand(sub(e))
	}
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
			return e.withPlatform(cmd, 2*time.Minute, func(ctx context.Context, p *platform) error {
				var pl *tenancy.Placement
				if placement != "" || cluster != "" {
					kind := tenancy.PlacementKind(placement)
					if kind == "" {
						kind = tenancy.PlacementSchema
					}
					pl = &tenancy.Placement{Kind: kind, Cluster: cluster}
				}
				res, err := p.prov.Provision(ctx, provision.Request{Slug: slug, Name: name, Placement: pl})
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
			var st tenancy.Status
			if status != "" {
				var err error
				if st, err = tenancy.ParseStatus(status); err != nil {
					return usageError{err}
				}
			}
			return e.withPlatform(cmd, time.Minute, func(ctx context.Context, p *platform) error {
				all := []tenancy.Tenant{}
				o := tenancy.ListOptions{Limit: tenancy.MaxPage, Status: st}
				for {
					page, err := p.tenants.List(ctx, o)
					if err != nil {
						return err
					}
					all = append(all, page.Tenants...)
					if page.Next.IsZero() {
						break
					}
					o.After = page.Next
				}
				usage, uerr := p.tenants.Usages(ctx, all)
				if uerr != nil {
					e.log.Warn().Err(uerr).Msg("some tenants' sizes are unknown")
				}
				if asJSON {
					type row struct {
						tenancy.Tenant
						*tenancy.Usage
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
			return e.withPlatform(cmd, time.Minute, func(ctx context.Context, p *platform) error {
				t, err := p.tenants.Get(ctx, slug)
				if err != nil {
					return err
				}
				mods, err := p.reg.Installed(ctx, slug)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, struct {
						tenancy.Tenant
						Modules []registry.Install `json:"modules"`
					}{t, append([]registry.Install{}, mods...)})
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
				row("slug", t.Slug.String())
				row("name", t.Name)
				row("id", t.ID)
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
			return e.withPlatform(cmd, time.Minute, func(ctx context.Context, p *platform) error {
				var t tenancy.Tenant
				switch op {
				case "suspend":
					t, err = p.tenants.Suspend(ctx, slug)
				case "resume":
					t, err = p.tenants.Resume(ctx, slug)
				case "delete":
					t, err = p.tenants.Delete(ctx, slug)
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
			return e.withPlatform(cmd, 2*time.Minute, func(ctx context.Context, p *platform) error {
				if err := p.tenants.Purge(ctx, slug); err != nil {
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
