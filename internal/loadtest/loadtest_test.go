package loadtest_test

// These tests run the load test for real, small and short, against the local
// PostgreSQL (make db-up) and private PgBouncers. They do not run in parallel
// with each other: a run drops the kept databases of runs that have ended.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/loadtest"
	"github.com/publicdigit/publicdigit/internal/loadtest/modes"
	"github.com/publicdigit/publicdigit/internal/loadtest/report"
	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
)

// small is a short run: one round, brief cells, a PgBouncer server pool of 2.
func small(t *testing.T) loadtest.Options {
	t.Helper()
	o := loadtest.Defaults()
	o.Tenants = []int{4}
	o.Concurrency = 8
	o.Warmup, o.Duration, o.Rounds = 100*time.Millisecond, 400*time.Millisecond, 1
	o.BouncerPool = 2
	o.Out = t.TempDir()
	return o
}

func run(t *testing.T, o loadtest.Options) *report.Results {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := loadtest.Run(ctx, o, nil)
	if err != nil {
		t.Fatalf("run: %v (is the database up? make db-up)", err)
	}
	return res
}

func cellOf(t *testing.T, res *report.Results, n int, mode, path string) report.Cell {
	t.Helper()
	for _, c := range res.Cells {
		if c.Tenants == n && c.Mode == mode && c.Path == path {
			return c
		}
	}
	t.Fatalf("no cell %d/%s/%s", n, mode, path)
	return report.Cell{}
}

// The CSV, the JSON and the markdown of one run carry the same numbers, and
// they are the numbers the run returned.
func TestOutputsOfOneRunAgree(t *testing.T) {
	o := small(t)
	o.Modes = []modes.Mode{modes.Schema, modes.Session}
	res := run(t, o)
	if err := report.Write(o.Out, res); err != nil {
		t.Fatal(err)
	}

	// JSON: exactly the run's results.
	fromJSON, err := report.Load(filepath.Join(o.Out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(res)
	got, _ := json.Marshal(fromJSON)
	if !bytes.Equal(want, got) {
		t.Fatalf("results.json differs from the run's results")
	}
	if len(res.Cells) != 4 {
		t.Fatalf("want 4 cells, got %d", len(res.Cells))
	}

	// CSV: one row per cell, each field as the JSON's value formats.
	f, err := os.Open(filepath.Join(o.Out, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[0], report.CSVHeader()) || len(rows) != len(fromJSON.Cells)+1 {
		t.Fatalf("csv: header %v, %d rows", rows[0], len(rows))
	}
	for i, c := range fromJSON.Cells {
		if want := report.Row(c, report.CSVHeader()); !slices.Equal(rows[i+1], want) {
			t.Errorf("csv row %d:\n got %v\nwant %v", i+1, rows[i+1], want)
		}
	}

	// Markdown: the results tables hold the same fields.
	md, err := os.ReadFile(filepath.Join(o.Out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range fromJSON.Cells {
		for _, cols := range [][]string{report.PerfColumns, report.CostColumns} {
			line := "| " + strings.Join(report.Row(c, cols), " | ") + " |"
			if !strings.Contains(string(md), line+"\n") {
				t.Errorf("report.md lacks the row %s", line)
			}
		}
	}
	// The numbers are the run's own: reads happened, and the conclusions
	// quote the session leak from these cells.
	s := cellOf(t, fromJSON, 4, "session", "pgbouncer")
	if s.Reads == 0 || !strings.Contains(string(md), report.Comma(s.WrongReads)+" of "+report.Comma(s.Reads)+" rows") {
		t.Errorf("report.md does not quote the session cell's %d wrong of %d reads", s.WrongReads, s.Reads)
	}
	html, err := os.ReadFile(filepath.Join(o.Out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(html), `src="data:image/png;base64,`); n != 5 {
		t.Errorf("report.html has %d inline charts, want 5", n)
	}
	if strings.Contains(string(html), "http://") || strings.Contains(string(html), "https://") {
		t.Errorf("report.html refers to the network")
	}
	for _, name := range []string{"throughput", "p99", "connections", "memory", "wrong_reads"} {
		for _, ext := range []string{".svg", ".png"} {
			if st, err := os.Stat(filepath.Join(o.Out, "charts", name+ext)); err != nil || st.Size() < 1000 {
				t.Errorf("chart %s%s missing or empty", name, ext)
			}
		}
	}
}

// Every acknowledged write is in the databases: counted here with our own
// SQL in the databases the run kept.
func TestAcknowledgedWritesAreTheRowsInTheDatabases(t *testing.T) {
	o := small(t)
	admin, _, err := modes.LocalURLs()
	if err != nil {
		t.Fatal(err)
	}
	written := map[modes.Mode]map[string]int64{}
	o.BeforeDrop = func(ctx context.Context, run string, n int) {
		for _, m := range o.Modes {
			var dbs []string
			if m == modes.Database {
				for i := 1; i <= n; i++ {
					dbs = append(dbs, fmt.Sprintf("%s%s_database_%05d", scratch.DBPrefix, run, i))
				}
			} else {
				dbs = []string{scratch.DBPrefix + run + "_" + m.SetName()}
			}
			written[m] = countByMarker(t, ctx, admin, dbs)
		}
	}
	o.Tenants = []int{3}
	o.Duration = 800 * time.Millisecond
	res := run(t, o)
	n := o.Tenants[0]
	var acked int64
	for _, m := range o.Modes {
		for _, p := range o.Paths {
			c := cellOf(t, res, n, string(m), string(p))
			got := written[m][string(p)]
			acked += c.WritesAcked
			if got < c.WritesAcked || got > c.WritesAcked+c.WritesUnsure {
				t.Errorf("%s/%s: %d rows in the databases, %d writes acknowledged (%d unsure)", m, p, got, c.WritesAcked, c.WritesUnsure)
			}
			if c.RowsCheck != "ok" || c.RowsFound != got {
				t.Errorf("%s/%s: the run says %d rows found (%s), we count %d", m, p, c.RowsFound, c.RowsCheck, got)
			}
		}
		if want := int64(n * 2 * o.Cards); written[m]["seed"] != want {
			t.Errorf("%s: %d seeded cards and activities, want %d", m, written[m]["seed"], want)
		}
	}
	// A crowded machine gets few writes done in the short cells; a few
	// dozen across the modes still exercise every check above.
	if acked < 20 {
		t.Errorf("only %d writes acknowledged in all: too few to judge", acked)
	}
}

// countByMarker counts the cards (by the marker in their QR code) and the
// activities (by their actor) in every schema of dbs.
func countByMarker(t *testing.T, ctx context.Context, admin string, dbs []string) map[string]int64 {
	t.Helper()
	written := map[string]int64{}
	for _, db := range dbs {
		u, _ := scratch.WithDatabase(admin, db)
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Errorf("%s: %v", db, err)
			return nil
		}
		rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relname IN ('digital_cards', 'card_activities') AND n.nspname NOT IN ('pg_catalog', 'information_schema')`)
		if err != nil {
			t.Fatal(err)
		}
		tables, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Schema, Table string }])
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			marker := "split_part(qr_code, '-', 1)"
			if tb.Table == "card_activities" {
				marker = "actor"
			}
			rows, err := conn.Query(ctx, "SELECT "+marker+", count(*) FROM "+pgx.Identifier{tb.Schema, tb.Table}.Sanitize()+" GROUP BY 1")
			if err != nil {
				t.Fatal(err)
			}
			var k string
			var c int64
			if _, err := pgx.ForEachRow(rows, []any{&k, &c}, func() error { written[k] += c; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		conn.Close(ctx)
	}
	return written
}

// Through a PgBouncer server pool of 2, the product's modes (and rls) read
// no row of another tenant, while the session pattern does. (The database
// mode cannot mix tenants on a connection; the other tests cover it.)
func TestOnlyTheSessionPatternLeaksThroughPgBouncer(t *testing.T) {
	o := small(t)
	o.Tenants = []int{10}
	o.Concurrency = 16
	o.Warmup, o.Duration = 300*time.Millisecond, 2*time.Second
	o.Modes = []modes.Mode{modes.Schema, modes.SchemaRole, modes.RLS, modes.Session}
	o.Paths = []modes.Path{modes.Bouncer}
	res := run(t, o)
	// 16 workers on 10 tenants share 2 server connections: a binding that
	// leaked would show within a few dozen reads (the session pattern's
	// reads are mostly wrong), so 50 suffice even on a crowded machine.
	for _, m := range []string{"schema", "schema+role", "rls"} {
		c := cellOf(t, res, 10, m, "pgbouncer")
		if c.Status != report.StatusOK || c.Reads < 50 {
			t.Errorf("%s: status %s, %d rows read: too little to judge (%v)", m, c.Status, c.Reads, c.Errors)
		}
		if c.WrongReads != 0 || c.RowsMisplaced != 0 {
			t.Errorf("%s: %d wrong-tenant reads of %d, %d rows written to another tenant", m, c.WrongReads, c.Reads, c.RowsMisplaced)
		}
	}
	s := cellOf(t, res, 10, "session", "pgbouncer")
	if s.WrongReads == 0 {
		t.Errorf("session: 0 wrong-tenant reads of %d through a server pool of 2; the leak went unseen", s.Reads)
	}
	t.Logf("session through PgBouncer: %d of %d rows read belonged to another tenant; %d rows written to another tenant",
		s.WrongReads, s.Reads, s.RowsMisplaced)
}

// Bad parameters: one line naming the flag, exit code 2.
func TestBadParameters(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"-tenants", "0"}, "-tenants"},
		{[]string{"-tenants", "ten"}, "-tenants"},
		{[]string{"-modes", "schema,tenantless"}, "-modes"},
		{[]string{"-paths", "carrier-pigeon"}, "-paths"},
		{[]string{"-concurrency", "0"}, "-concurrency"},
		{[]string{"-duration", "1ms"}, "-duration"},
		{[]string{"-duration", "soon"}, "-duration"},
		{[]string{"-rounds", "0"}, "-rounds"},
		{[]string{"-mix", "read=1,write=2"}, "-mix"},
		{[]string{"-mix", "read=0"}, "-mix"},
		{[]string{"-skew", "pareto"}, "-skew"},
		{[]string{"-zipf-s", "1"}, "-zipf-s"},
		{[]string{"-bouncer-pool", "0"}, "-bouncer-pool"},
		{[]string{"-nonsense"}, "-nonsense"},
		{[]string{"extra"}, "extra"},
	} {
		var out, errOut bytes.Buffer
		code := loadtest.Main(context.Background(), tc.args, &out, &errOut)
		msg := errOut.String()
		if code != loadtest.ExitUsage || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tc.flag) || out.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want exit 2 and one line naming %s", tc.args, code, msg, out.String(), tc.flag)
		}
	}
}

// Ctrl-C stops the run: it writes what it measured, prints the output folder
// last, and leaves no database or role behind.
func TestInterruptedRunWritesWhatItMeasuredAndLeavesNothing(t *testing.T) {
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Ctrl-C as soon as the progress shows the second round: some cells
	// are measured by then, whatever the machine's speed.
	progress := &watch{seen: "round 2/", then: cancel}
	safety := time.AfterFunc(3*time.Minute, cancel)
	defer safety.Stop()
	var stdout bytes.Buffer
	code := loadtest.Main(ctx, []string{"-tenants", "3", "-modes", "schema,rls", "-rounds", "20", "-warmup", "0",
		"-duration", "400ms", "-concurrency", "4", "-out", out}, &stdout, progress)
	if code != loadtest.ExitInterrupted {
		t.Fatalf("exit %d, want %d; stderr %s", code, loadtest.ExitInterrupted, progress.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if abs, _ := filepath.Abs(out); lines[len(lines)-1] != abs {
		t.Errorf("last line %q, want the output folder %s", lines[len(lines)-1], abs)
	}
	res, err := report.Load(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	measured, rounds := 0, 0
	for _, c := range res.Cells {
		if c.Measured {
			measured++
		}
		rounds += c.Rounds
	}
	if !res.Interrupted || measured == 0 || rounds >= 20*len(res.Cells) {
		t.Errorf("interrupted %v, %d cells measured in %d rounds in all", res.Interrupted, measured, rounds)
	}
	admin, _, _ := modes.LocalURLs()
	if left := leftovers(t, admin, res.RunID); len(left) > 0 {
		t.Errorf("the interrupted run left %v", left)
	}
}

// watch is a writer that calls then once it has seen the text seen.
type watch struct {
	mu   sync.Mutex
	buf  strings.Builder
	seen string
	then func()
	done bool
}

func (w *watch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done && strings.Contains(w.buf.String(), w.seen) {
		w.done = true
		w.then()
	}
	return len(p), nil
}

func (w *watch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// leftovers lists the databases, then the roles, of run.
func leftovers(t *testing.T, admin, run string) []string {
	t.Helper()
	ctx := context.Background()
	u, _ := scratch.WithDatabase(admin, "postgres")
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)
UNION ALL SELECT rolname FROM pg_roles WHERE starts_with(rolname, $2)`, scratch.DBPrefix+run+"_", scratch.RolePrefix+run+"_")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}
