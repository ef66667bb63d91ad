package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/tenant"
	"github.com/publicdigit/publicdigit/internal/transfer"
)

func newTenantExportCmd(e *env) *cobra.Command {
	var output string
	var force bool
	c := &cobra.Command{
		Use:   "export <slug> -o <file>",
		Short: "Write a tenant's data to a portable archive (tar.gz: manifest, rows as binary COPY, checksums)",
		Long: `Writes one tenant to an archive: a manifest (schema hash, installed modules,
each table's columns, row count and checksum), then every table's rows as
PostgreSQL binary COPY data, gzip-compressed tar. All tables are read in one
REPEATABLE READ snapshot: the archive is the tenant at one instant, while
writes go on. The tenant's operation lock is held meanwhile (moves, module
changes and purge wait); a tenant that is moving is refused.

-o - writes the archive to standard output. The file appears only once the
archive is complete (it is written as <file>.partial first).`,
		Args: exactlyOneSlug,
		RunE: func(cmd *cobra.Command, args []string) error {
			slug, err := slugArg(args[0])
			if err != nil {
				return err
			}
			if output == "" {
				return usagef("export needs -o <file> (or -o - for standard output)")
			}
			if output != "-" && !force {
				if _, err := os.Stat(output); err == nil {
					return usagef("%s exists: pass --force to replace it", output)
				}
			}
			return e.withApp(cmd, 6*time.Hour, func(ctx context.Context, a *app.App) error {
				start := time.Now()
				x, err := a.Transfer.Export(ctx, slug)
				if err != nil {
					return err
				}
				defer x.Close()
				rows, size, err := writeArchive(ctx, x, output, cmd.OutOrStdout())
				if err != nil {
					return err
				}
				report := e.out
				if output == "-" {
					report = e.errOut
				}
				fmt.Fprintf(report, "tenant %s: %d rows in %d tables exported to %s (%s, %s)\n", slug, rows,
					len(x.Manifest.Tables), output, humanBytes(size), time.Since(start).Round(time.Millisecond))
				return nil
			})
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "archive file to write (- for standard output)")
	c.Flags().BoolVar(&force, "force", false, "replace an existing file")
	return c
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeArchive writes the export to path (stdout for "-"): to
// <path>.partial, synced, then renamed, so that a file of that name is
// always a complete archive.
func writeArchive(ctx context.Context, x *transfer.Export, path string, stdout io.Writer) (int64, int64, error) {
	if path == "-" {
		bw := bufio.NewWriterSize(stdout, 1<<20)
		cw := &countingWriter{w: bw}
		rows, err := x.WriteTo(ctx, cw)
		if err == nil {
			err = bw.Flush()
		}
		return rows, cw.n, err
	}
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, 0, err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	cw := &countingWriter{w: bw}
	rows, err := x.WriteTo(ctx, cw)
	if err != nil {
		return 0, 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	if err := f.Close(); err != nil {
		return 0, 0, err
	}
	done = true
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, 0, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // the rename itself
		d.Close()
	}
	return rows, cw.n, nil
}

func newTenantImportCmd(e *env) *cobra.Command {
	var as, name string
	var asJSON bool
	c := &cobra.Command{
		Use:   "import <file> [--as <slug>]",
		Short: "Create a tenant from an archive written by 'tenant export', all or nothing",
		Long: `Creates a tenant from an archive (- reads standard input), in one transaction:
the catalog row, a side schema built from the archive's modules as registered
here, every table loaded with COPY (tenant_id becomes the new tenant's id),
row counts and checksums checked against the manifest, then the side schema
swapped in with the tenant's role, grants and module installs. The tenant
goes to the default cluster as a schema ('tenant move' takes it elsewhere).

Refused with nothing changed: a corrupted or truncated archive, one whose
schema cannot be had here (a module not registered, a table or column this
release lacks), a slug already taken. An import killed halfway leaves
nothing; run it again.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s needs exactly one archive file (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var slug tenant.Slug
			if as != "" {
				var err error
				if slug, err = slugArg(as); err != nil {
					return err
				}
			}
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					if errors.Is(err, os.ErrNotExist) {
						return usagef("archive %s does not exist", args[0])
					}
					return err
				}
				defer f.Close()
				in = f
			}
			return e.withApp(cmd, 6*time.Hour, func(ctx context.Context, a *app.App) error {
				res, err := a.Transfer.Import(ctx, bufio.NewReaderSize(in, 1<<20), transfer.ImportRequest{As: slug, Name: name})
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, map[string]any{"tenant": res.Tenant, "rows": res.Rows, "tables": res.Tables,
						"same_schema": res.SameSchema, "duration_ms": res.Duration.Milliseconds()})
				}
				fmt.Fprintf(e.out, "tenant %s: imported %d rows in %d tables (%s)\n", res.Tenant.Slug, res.Rows, res.Tables,
					res.Duration.Round(time.Millisecond))
				if !res.SameSchema {
					fmt.Fprintf(e.out, "  the archive's schema was older than this release's; its rows fit the current schema %s\n",
						res.Tenant.SchemaHash)
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&as, "as", "", "slug of the new tenant (default: the archive's)")
	c.Flags().StringVar(&name, "name", "", "display name of the new tenant (default: the archive's)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
