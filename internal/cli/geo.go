package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/geography"
)

func newGeoCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "geo", Short: "Load the geography catalog (administrative units)"}
	c.AddCommand(newGeoImportCmd(e))
	return c
}

// adminPool opens a pgx pool on the direct admin connection.
func (e *env) adminPool(ctx context.Context) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(e.cfg.Admin.URL)
	if err != nil {
		return nil, fmt.Errorf("admin connection: %w", err)
	}
	pc.MaxConns = 2
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("admin connection: %w", err)
	}
	if err := p.Ping(ctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("admin connection %s: %w", config.Redact(e.cfg.Admin.URL), rootCause(err))
	}
	return p, nil
}

func newGeoImportCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "import <file.csv>",
		Short: "Load administrative units from CSV (code,name,level,parent_code)",
		Long: `Loads a hierarchy of administrative units from a CSV file whose header names
the columns code, name, level and parent_code (empty for a root), e.g.

  code,name,level,parent_code
  NP,Nepal,country,
  NP-P3,Bagmati Province,province,NP

Parents may come anywhere in the file or already be in the catalog. A code
already present updates that unit's name and level. The whole file is checked
first (every problem reported with its line) and loaded in one transaction:
all or nothing. Importing the same file again changes nothing.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("geo import needs exactly one CSV file")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return usageError{fmt.Errorf("geo import: %w", err)}
			}
			defer f.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			pool, err := e.adminPool(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			res, err := geography.New(pool).Import(ctx, f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(e.out, "geo: %d created, %d updated, %d unchanged\n", res.Created, res.Updated, res.Unchanged)
			return nil
		},
	}
}
