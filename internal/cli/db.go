package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

func newDBCmd(e *env) *cobra.Command {
	db := &cobra.Command{Use: "db", Short: "Set up and check the databases"}
	db.AddCommand(newDBInitCmd(e), newDBStatusCmd(e))
	return db
}

func newDBInitCmd(e *env) *cobra.Command {
	var dryRun, allowDestructive bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Create the extensions and apply the landlord catalog (schema/landlord.hcl)",
		Long: `Creates the ltree and btree_gin extensions when missing, then applies
schema/landlord.hcl to the platform database over the direct admin connection:
parse, transaction, advisory lock, inspect, diff, refuse destructive changes
unless --allow-destructive, plan, apply, grant the application role, commit.
Then registers the modules of this build (digital_cards, elections) in the
module catalog, or updates them. Running it again when nothing changed runs
no statement.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			db, err := e.adminDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			res, err := schemaapply.Apply(ctx, db, schemaapply.Landlord(e.cfg.Tenant.AppRole),
				schemaapply.Options{DryRun: dryRun, AllowDestructive: allowDestructive})
			if err != nil {
				return fmt.Errorf("landlord: %w", err)
			}
			if err := printApply(e, "landlord", res, dryRun); err != nil {
				return err
			}
			return e.registerModules(ctx, db, dryRun, true)
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the SQL and change nothing")
	c.Flags().BoolVar(&allowDestructive, "allow-destructive", false, "allow drops and column type changes")
	return c
}

// registerModules writes the built-in modules into the module catalog
// (never in a dry run) and says so when it changed something.
func (e *env) registerModules(ctx context.Context, db *sql.DB, dryRun, print bool) error {
	if dryRun {
		return nil
	}
	n, err := modules.Register(ctx, db)
	if err != nil {
		return err
	}
	if n > 0 && print {
		fmt.Fprintf(e.out, "modules: %d built-in modules registered or updated\n", n)
	}
	return nil
}

func printApply(e *env, what string, res schemaapply.Result, dryRun bool) error {
	switch {
	case !res.Changed():
		fmt.Fprintf(e.out, "%s: up to date\n", what)
	case dryRun:
		fmt.Fprintf(e.out, "-- %s: %d statements would run (dry run, nothing changed)\n", what, len(res.Statements))
		for _, s := range res.Statements {
			fmt.Fprintf(e.out, "%s;\n", s)
		}
	default:
		fmt.Fprintf(e.out, "%s: applied %d statements in %s\n", what, len(res.Statements), res.Duration.Round(time.Millisecond))
	}
	return nil
}

// connStatus is one line of `tenantctl db status`.
type connStatus struct {
	Name      string `json:"name"`
	Host      string `json:"host"`
	Port      uint16 `json:"port"`
	Database  string `json:"database"`
	User      string `json:"user"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	Server    string `json:"server_version,omitempty"`
	PgBouncer string `json:"pgbouncer_version,omitempty"`
}

func newDBStatusCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Check every configured connection: reachable, server and PgBouncer versions",
		RunE: func(cmd *cobra.Command, _ []string) error {
			conns := []struct{ name, url string }{
				{"landlord", e.cfg.Landlord.URL},
				{"admin", e.cfg.Admin.URL},
			}
			names := make([]string, 0, len(e.cfg.Clusters))
			for n := range e.cfg.Clusters {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				cl := e.cfg.Clusters[n]
				conns = append(conns, struct{ name, url string }{"cluster " + n, cl.URL},
					struct{ name, url string }{"cluster " + n + " admin", cl.AdminURL})
			}
			out := make([]connStatus, len(conns))
			for i, c := range conns {
				out[i] = checkConn(cmd.Context(), c.name, c.url)
			}
			failed := 0
			for _, s := range out {
				if !s.Reachable {
					failed++
				}
			}
			if asJSON {
				enc := json.NewEncoder(e.out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CONNECTION\tHOST\tPORT\tDATABASE\tUSER\tREACHABLE\tSERVER\tPGBOUNCER")
				for _, s := range out {
					reach := "yes"
					if !s.Reachable {
						reach = "no: " + s.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Host, s.Port, s.Database, s.User,
						reach, dash(s.Server), dash(s.PgBouncer))
				}
				tw.Flush()
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d connections unreachable", failed, len(out))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// checkConn connects once, reads the server version, and asks the same
// address for PgBouncer's admin console to tell whether PgBouncer is in front.
func checkConn(ctx context.Context, name, raw string) connStatus {
	s := connStatus{Name: name}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		s.Error = "invalid connection string"
		return s
	}
	s.Host, s.Port, s.Database, s.User = cfg.Host, cfg.Port, cfg.Database, cfg.User
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.ConnectTimeout = 3 * time.Second

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		s.Error = rootCause(err).Error()
		return s
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&s.Server); err != nil {
		s.Error = err.Error()
		return s
	}
	s.Reachable = true

	bcfg := cfg.Copy()
	bcfg.Database = "pgbouncer"
	if bconn, err := pgx.ConnectConfig(ctx, bcfg); err == nil {
		defer bconn.Close(ctx)
		var v string
		if err := bconn.QueryRow(ctx, "SHOW VERSION").Scan(&v); err == nil {
			s.PgBouncer = v
		}
	}
	return s
}
