// Package cli is tenantctl, the DBA and operator command line: database
// setup and status, tenant schemas, tenants, modules, elections, tokens and
// the demo seed.
// Commands write to injected writers and are tested end to end.
package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/logging"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// usageError marks errors in how the command was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// env is what every command gets: config, logger and output.
type env struct {
	cfg    config.Config
	log    zerolog.Logger
	out    io.Writer
	errOut io.Writer
}

// Run executes tenantctl with args (without the program name) and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{out: stdout, errOut: stderr, log: zerolog.Nop()}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") ||
		strings.HasPrefix(err.Error(), "unknown flag") || strings.HasPrefix(err.Error(), "unknown shorthand flag") ||
		strings.HasPrefix(err.Error(), "required flag") {
		fmt.Fprintf(stderr, "tenantctl: %v\nRun 'tenantctl --help' for usage.\n", err)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "tenantctl: %v\n", err)
	return ExitFailure
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "tenantctl",
		Short:         "Operate publicdigit: database, tenant schemas, tenants, tokens",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Root().PersistentFlags())
			if err != nil {
				return usageError{err}
			}
			logCfg := cfg.Log
			if !cmd.Root().PersistentFlags().Changed("log.level") && cfg.Log.Level == "info" {
				logCfg.Level = "warn" // a CLI is quiet unless asked
			}
			log, err := logging.New(e.errOut, logCfg)
			if err != nil {
				return usageError{err}
			}
			e.cfg, e.log = cfg, log
			return nil
		},
	}
	config.Flags(root.PersistentFlags())
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newDBCmd(e), newSchemaCmd(e), newTenantCmd(e), newModuleCmd(e), newElectionCmd(e), newTokenCmd(e),
		newGeoCmd(e), newSeedCmd(e), newAuditCmd(e))
	fixGroups(root)
	return root
}

// fixGroups makes every command without its own Run answer a missing or
// unknown subcommand with a usage error, and every leaf refuse stray args.
func fixGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		fixGroups(sub)
	}
	if c.Run == nil && c.RunE == nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return usagef("%s needs a subcommand", cmd.CommandPath())
		}
		return
	}
	if c.Args == nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("%s takes no arguments (got %q)", cmd.CommandPath(), args[0])
			}
			return nil
		}
	}
}

// adminDB opens the direct admin connection as a database/sql handle.
func (e *env) adminDB(ctx context.Context) (*sql.DB, error) {
	return openSQL(ctx, e.cfg.Admin.URL, "admin connection")
}

func openSQL(ctx context.Context, raw, what string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	db := stdlib.OpenDB(*cfg)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s %s:%d/%s: %w", what, cfg.Host, cfg.Port, cfg.Database, rootCause(err))
	}
	return db, nil
}

// rootCause drops pgx's connection preamble and keeps the useful last part.
func rootCause(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": dial error: "); i >= 0 {
		return errors.New(msg[i+len(": dial error: "):])
	}
	return err
}

// flagSet is a shorthand used by commands that add their own flags.
type flagSet = pflag.FlagSet

// CommandPaths lists every command as its argument path (for help tests and docs).
func CommandPaths() [][]string {
	var paths [][]string
	var walk func(c *cobra.Command, prefix []string)
	walk = func(c *cobra.Command, prefix []string) {
		paths = append(paths, prefix)
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			walk(sub, append(append([]string{}, prefix...), sub.Name()))
		}
	}
	walk(newRoot(&env{}), nil)
	return paths
}
