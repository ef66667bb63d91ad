package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/app"
)

// args checks that a command got exactly the named positional arguments.
func args(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		if len(got) != len(names) {
			return usagef("%s needs %d arguments: %s (got %d)", cmd.CommandPath(), len(names),
				strings.Join(names, " "), len(got))
		}
		return nil
	}
}

func newModuleCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "module", Short: "List modules; install and uninstall them for a tenant"}
	c.AddCommand(newModuleListCmd(e), newModuleInstallCmd(e), newModuleUninstallCmd(e))
	return c
}

func newModuleListCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "The module catalog: built-in modules, defaults, requirements, schema files",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				ms, err := a.Modules.List(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, ms)
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "MODULE\tVERSION\tBUILTIN\tDEFAULT\tREQUIRES\tSCHEMA FILES")
				for _, m := range ms {
					fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\t%s\n", m.Name, m.Version, m.Builtin, m.Default,
						dash(strings.Join(m.Requires, ",")), dash(strings.Join(m.SchemaFiles, ",")))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newModuleInstallCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "install <tenant> <module>",
		Short: "Install a module for a tenant (its tables, then its routes on every server)",
		Args:  args("<tenant>", "<module>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, err := slugArg(argv[0])
			if err != nil {
				return err
			}
			return e.withApp(cmd, 2*time.Minute, func(ctx context.Context, a *app.App) error {
				in, err := a.Modules.Install(ctx, slug, argv[1])
				if err != nil {
					return err
				}
				fmt.Fprintf(e.out, "tenant %s: module %s %s\n", slug, in.Module, in.Status)
				return nil
			})
		},
	}
}

func newModuleUninstallCmd(e *env) *cobra.Command {
	var purge bool
	c := &cobra.Command{
		Use:   "uninstall <tenant> <module> [--purge]",
		Short: "Uninstall a module: its routes stop, its tables are dropped (refused while they hold rows, unless --purge)",
		Args:  args("<tenant>", "<module>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, err := slugArg(argv[0])
			if err != nil {
				return err
			}
			return e.withApp(cmd, 2*time.Minute, func(ctx context.Context, a *app.App) error {
				if err := a.Modules.Uninstall(ctx, slug, argv[1], purge); err != nil {
					return err
				}
				fmt.Fprintf(e.out, "tenant %s: module %s uninstalled\n", slug, argv[1])
				return nil
			})
		},
	}
	c.Flags().BoolVar(&purge, "purge", false, "drop the module's tables even when they hold rows")
	return c
}
