package bench

import (
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/tenant"
	"github.com/publicdigit/publicdigit/internal/transfer"
)

// runExport measures a tenant's export to a file and its import under
// another slug (internal/transfer), with a raw binary COPY of the same
// tables as the baseline of each (no snapshot checksums, compression,
// chunk digests, side schema or verification), and checks after every
// round that the imported rows are the source's.
func runExport(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	rows := fs.Int("rows", 100_000, "rows in the tenant: 10% members, 45% cards, 45% card activities")
	rounds := fs.Int("rounds", 3, "export + import rounds (medians reported)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	sb, err := NewScratch(ctx, cfg, "publicdigit_bench_export")
	if err != nil {
		return err
	}
	defer sb.Drop(context.WithoutCancel(ctx))
	slug := tenant.MustSlug("bench_export")
	tenantID, err := sb.Tenant(ctx, slug)
	if err != nil {
		return err
	}
	members, cards := *rows/10, *rows*45/100
	activities := *rows - members - cards
	start := time.Now()
	if err := seedExport(ctx, sb.Admin, slug, tenantID, members, cards, activities); err != nil {
		return err
	}
	fmt.Fprintf(out, "# export benchmark: a tenant with %d rows (%d members, %d cards, %d card activities); %d rounds; seeded in %s\n",
		*rows, members, cards, activities, *rounds, time.Since(start).Round(time.Millisecond))

	ecfg := cfg
	cl := mustCluster(cfg)
	cl.URL, cl.AdminURL = sb.AppURL, sb.AdminURL
	ecfg.Clusters = map[string]config.Cluster{cfg.DefaultCluster: cl}
	ecfg.Landlord.URL, ecfg.Landlord.ListenURL, ecfg.Admin.URL = sb.AppURL, "", sb.AdminURL
	ecfg.Tenant.WarmPool = 0
	a, err := app.Open(ctx, ecfg, zerolog.Nop(), app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	dir, err := os.MkdirTemp("", "pdbench-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var exp, imp, rawOut, rawIn []float64
	var size int64
	var peak uint64
	for i := 0; i < *rounds; i++ {
		// Baseline: raw binary COPY out of every table, then into an empty
		// copy of the schema with its indexes (what a naive dump and restore does).
		streams, rawOutRate, err := rawCopyOut(ctx, sb.Admin, slug.SchemaName())
		if err != nil {
			return err
		}
		rawInRate, err := rawCopyIn(ctx, sb, slug, streams)
		if err != nil {
			return err
		}

		file := filepath.Join(dir, fmt.Sprintf("round%d.tar.gz", i))
		stopSampler := sampleHeap(&peak)
		t0 := time.Now()
		n, bytes, opened, err := exportTo(ctx, a.Transfer, slug, file)
		exportDur := time.Since(t0)
		if err != nil {
			stopSampler()
			return err
		}
		as := tenant.MustSlug(fmt.Sprintf("bench_import_%d", i))
		t0 = time.Now()
		res, err := importFrom(ctx, a.Transfer, file, as)
		importDur := time.Since(t0)
		stopSampler()
		if err != nil {
			return err
		}
		sb.roles = append(sb.roles, as.RoleName())
		if n != int64(*rows) || res.Rows != int64(*rows) {
			return fmt.Errorf("round %d: %d rows exported, %d imported, want %d", i, n, res.Rows, *rows)
		}
		if err := sameRows(ctx, sb.Admin, slug.SchemaName(), tenantID, res.Tenant.Schema, res.Tenant.ID); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		exp = append(exp, float64(n)/exportDur.Seconds())
		imp = append(imp, float64(res.Rows)/importDur.Seconds())
		rawOut, rawIn = append(rawOut, rawOutRate), append(rawIn, rawInRate)
		size = bytes
		fmt.Fprintf(out, "# round %d: export %s (%.0f rows/s; snapshot and checksums %s), import %s (%.0f rows/s; load %s, keys+verify %s), identical rows; raw COPY out %.0f rows/s, in %.0f rows/s\n",
			i+1, exportDur.Round(time.Millisecond), exp[i], opened.Round(time.Millisecond), importDur.Round(time.Millisecond), imp[i],
			res.Load.Round(time.Millisecond), res.Verify.Round(time.Millisecond), rawOut[i], rawIn[i])
		if err := dropImported(ctx, a, as); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "# archive %s for %d rows (%.0f bytes/row); Go heap in use at most %s during export and import\n",
		humanSize(size), *rows, float64(size)/float64(*rows), humanSize(int64(peak)))
	fmt.Fprintf(out, "# medians [min–max]: export %s, import %s rows/s; raw COPY out %s, in %s rows/s\n",
		spread(exp), spread(imp), spread(rawOut), spread(rawIn))
	fmt.Fprintf(out, "# export / raw COPY out %.2f, import / raw COPY in %.2f (medians of the per-round ratios)\n",
		median(ratios(exp, rawOut)), median(ratios(imp, rawIn)))
	fmt.Fprintf(out, "export_rows_per_second %.0f\n", median(exp))
	fmt.Fprintf(out, "import_rows_per_second %.0f\n", median(imp))
	return nil
}

func seedExport(ctx context.Context, db *sql.DB, slug tenant.Slug, id uuid.UUID, members, cards, activities int) error {
	s := pgx.Identifier{slug.SchemaName()}.Sanitize()
	for _, st := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO ` + s + `.members (tenant_id, full_name, email, phone, geo_unit_id)
		   SELECT $1, 'Member ' || g, 'm' || g || '@example.test', CASE WHEN g % 3 = 0 THEN '+41 79 000 ' || g END,
		          CASE WHEN g % 2 = 0 THEN g END FROM generate_series(1, $2::int) g`, []any{id, members}},
		{`INSERT INTO ` + s + `.digital_cards (tenant_id, member_id, qr_code, status, expires_at)
		   SELECT m.tenant_id, m.id, 'PD1-' || md5(m.id::text || k), 'active', now() + interval '1 year'
		     FROM ` + s + `.members m CROSS JOIN generate_series(1, $1::int) k LIMIT $2`, []any{cards/max(members, 1) + 1, cards}},
		{`INSERT INTO ` + s + `.card_activities (tenant_id, card_id, action, actor, detail)
		   SELECT tenant_id, id, 'issued', 'bench', jsonb_build_object('qr', qr_code)
		     FROM ` + s + `.digital_cards LIMIT $1`, []any{activities}},
		{`ANALYZE ` + s + `.members, ` + s + `.digital_cards, ` + s + `.card_activities`, nil},
	} {
		if _, err := db.ExecContext(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

// exportTo writes the tenant's archive to file; it returns rows, bytes and
// the time the export took to open (snapshot, manifest with checksums).
func exportTo(ctx context.Context, s *transfer.Service, slug tenant.Slug, file string) (int64, int64, time.Duration, error) {
	t0 := time.Now()
	x, err := s.Export(ctx, slug)
	if err != nil {
		return 0, 0, 0, err
	}
	defer x.Close()
	opened := time.Since(t0)
	f, err := os.Create(file)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	n, err := x.WriteTo(ctx, f)
	if err != nil {
		return 0, 0, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	return n, st.Size(), opened, f.Sync()
}

func importFrom(ctx context.Context, s *transfer.Service, file string, as tenant.Slug) (transfer.ImportResult, error) {
	f, err := os.Open(file)
	if err != nil {
		return transfer.ImportResult{}, err
	}
	defer f.Close()
	return s.Import(ctx, f, transfer.ImportRequest{As: as})
}

// dropImported deletes and purges an imported tenant (schema, role, row).
func dropImported(ctx context.Context, a *app.App, slug tenant.Slug) error {
	if _, err := a.Catalog.Delete(ctx, slug); err != nil {
		return err
	}
	return a.Provisioner.Purge(ctx, slug)
}

// benchTables are the tables the benchmark fills, in load order.
var benchTables = []string{"members", "digital_cards", "card_activities"}

// rawCopyOut copies every table with binary COPY into memory, in one
// transaction, and returns the streams and the rows per second.
func rawCopyOut(ctx context.Context, db *sql.DB, schema string) (map[string][]byte, float64, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	out := map[string][]byte{}
	var rows int64
	start := time.Now()
	err = conn.Raw(func(dc any) error {
		pc := rawConn(dc)
		if _, err := pc.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err != nil {
			return err
		}
		defer pc.Exec(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // read only
		for _, tb := range benchTables {
			var buf bytes.Buffer
			tag, err := pc.PgConn().CopyTo(ctx, &buf, "COPY "+pgx.Identifier{schema, tb}.Sanitize()+" TO STDOUT (FORMAT binary)")
			if err != nil {
				return err
			}
			rows += tag.RowsAffected()
			out[tb] = buf.Bytes()
		}
		return nil
	})
	return out, float64(rows) / time.Since(start).Seconds(), err
}

// rawCopyIn loads the streams into a fresh copy of the tenant's schema
// (built by the same schema apply, indexes in place), in one transaction
// that is rolled back, and returns the rows per second.
func rawCopyIn(ctx context.Context, sb *Scratch, slug tenant.Slug, streams map[string][]byte) (float64, error) {
	copySlug := tenant.MustSlug("bench_raw_copy")
	id, err := sb.Tenant(ctx, copySlug)
	if err != nil {
		return 0, err
	}
	defer func() {
		ctx := context.WithoutCancel(ctx)
		_, _ = sb.Admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{copySlug.SchemaName()}.Sanitize()+" CASCADE")
		t := tenant.Tenant{ID: id, Slug: copySlug}
		if catalog.SetStatus(ctx, sb.Admin, t, tenant.StatusActive, tenant.StatusDeleted, "bench") == nil {
			_ = catalog.DeletePurged(ctx, sb.Admin, t)
		}
	}()
	conn, err := sb.Admin.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var rows int64
	start := time.Now()
	err = conn.Raw(func(dc any) error {
		pc := rawConn(dc)
		if _, err := pc.Exec(ctx, "BEGIN"); err != nil {
			return err
		}
		defer pc.Exec(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // a measurement only
		for _, tb := range benchTables {
			tag, err := pc.PgConn().CopyFrom(ctx, bytes.NewReader(streams[tb]),
				"COPY "+pgx.Identifier{copySlug.SchemaName(), tb}.Sanitize()+" FROM STDIN (FORMAT binary)")
			if err != nil {
				return err
			}
			rows += tag.RowsAffected()
		}
		return nil
	})
	return float64(rows) / time.Since(start).Seconds(), err
}

// sameRows compares every table of two tenant schemas row by row (as
// text, the tenant's own id written alike), in SQL.
func sameRows(ctx context.Context, db *sql.DB, fromSchema string, fromID uuid.UUID, toSchema string, toID uuid.UUID) error {
	for _, tb := range benchTables {
		q := func(schema string) string {
			return `SELECT count(*), md5(string_agg(r, E'\n' ORDER BY r)) FROM (SELECT replace(t::text, $1, '<tenant>') AS r FROM ` +
				pgx.Identifier{schema, tb}.Sanitize() + ` t) x`
		}
		var n1, n2 int64
		var s1, s2 sql.NullString
		if err := db.QueryRowContext(ctx, q(fromSchema), fromID.String()).Scan(&n1, &s1); err != nil {
			return err
		}
		if err := db.QueryRowContext(ctx, q(toSchema), toID.String()).Scan(&n2, &s2); err != nil {
			return err
		}
		if n1 != n2 || s1 != s2 {
			return fmt.Errorf("table %s: %d rows (%s) exported, %d (%s) imported", tb, n1, s1.String, n2, s2.String)
		}
	}
	return nil
}

// sampleHeap records the largest HeapInuse seen until the returned func is called.
func sampleHeap(peak *uint64) func() {
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for !stop.Load() {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > *peak {
				*peak = ms.HeapInuse
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() { stop.Store(true); wg.Wait() }
}

func spread(xs []float64) string {
	return fmt.Sprintf("%.0f [%.0f–%.0f]", median(xs), minOf(xs), maxOf(xs))
}

func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] / b[i]
	}
	return out
}

func rawConn(dc any) *pgx.Conn { return dc.(*stdlib.Conn).Conn() }

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), strings.Split("KMGTPE", "")[exp][0])
}
