package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// machineRows describe the machine and the versions.
func machineRows(r *Results) [][2]string {
	return [][2]string{
		{"CPU", fmt.Sprintf("%s, %d cores", r.Machine.CPU, r.Machine.Cores)},
		{"memory", fmt.Sprintf("%s MB", Comma(int64(r.Machine.MemoryMB)))},
		{"OS", r.Machine.OS + ", Linux " + r.Machine.Kernel},
		{"load average (1, 5, 15 min)", "start " + r.Machine.LoadStart + "; end " + r.Machine.LoadEnd},
		{"PostgreSQL", fmt.Sprintf("%s (max_connections %d), same machine", r.Versions.PostgreSQL, r.Params.MaxConnections)},
		{"PgBouncer", r.Versions.PgBouncer + ", private instance per cell, same machine"},
		{"Go", r.Versions.Go},
	}
}

// paramRows describe the run's parameters.
func paramRows(r *Results) [][2]string {
	p := r.Params
	ns := make([]string, len(p.Tenants))
	for i, n := range p.Tenants {
		ns[i] = Comma(int64(n))
	}
	skew := p.Skew
	if skew == "zipf" {
		skew += fmt.Sprintf(" (s = %g: tenant k weighs 1/(1+k)^s)", p.ZipfS)
	}
	return [][2]string{
		{"tenant counts", strings.Join(ns, ", ")},
		{"modes", strings.Join(p.Modes, ", ")},
		{"paths", strings.Join(p.Paths, ", ")},
		{"concurrency", fmt.Sprintf("%d workers; shared pools of %d connections; %d per tenant database (database mode)", p.Concurrency, p.Concurrency, p.DBPool)},
		{"rounds", fmt.Sprintf("%d; each cell %s warm-up + %s measured per round; the shared-pool modes interleaved, their order rotated every round; the database mode alone afterwards, one path at a time", p.Rounds, p.Warmup, p.Duration)},
		{"workload mix (weights)", p.Mix},
		{"tenant skew", skew},
		{"seed", strconv.FormatUint(p.Seed, 10)},
		{"data per tenant", fmt.Sprintf("%d members, %d cards, %d card activities (pages of %d cards)", p.Members, p.Cards, p.Cards, p.PageSize)},
		{"statement timeout", p.StatementTimeout},
		{"private PgBouncer", strings.Join(p.Bouncer, "; ")},
		{"database mode limit", fmt.Sprintf("at most %s databases (-max-databases)", Comma(int64(p.MaxDatabases)))},
		{"backend memory", p.MemoryMethod},
	}
}

// methodNotes explain what the modes do and what the columns mean.
var methodNotes = []string{
	"schema: the product's router (internal/pgroute) with tenant.roles off: a schema per tenant in one database, one shared pool, SET LOCAL search_path and statement_timeout sent with each unit of work (one round trip; a read-decide-write transaction two).",
	"schema+role: the same router with tenant.roles on: each transaction also runs SET LOCAL ROLE to the tenant's own role, which alone holds the grants on its schema.",
	"database: a database per tenant (cloned from a template), a pool per database on the client; the application role's search_path and statement_timeout are set per database (ALTER ROLE … IN DATABASE), so nothing is bound per transaction. Through PgBouncer each database is its own server pool.",
	"rls: one set of tables with tenant_id leading every key, ENABLE ROW LEVEL SECURITY and a policy tenant_id = current_setting('app.tenant_id'); each unit of work binds search_path, statement_timeout and set_config('app.tenant_id', $1, true) like the router does.",
	"session: SET search_path on each connection checkout, outside any transaction, then the statements — the pattern of most tenancy libraries. Behind PgBouncer in transaction mode the SET and the statements can run on different server connections.",
	"The same SQL runs in every mode (read a card by number, list a page of cards, issue a card with its activity in one statement, change a card's state in a read-decide-write transaction); no statement filters on tenant_id, so isolation rests on the mode alone. Every row read carries its tenant_id and is checked against the tenant asked for.",
	"Throughput and latency are of successful operations in the measured windows; throughput is the median over rounds (min and max beside it), latency percentiles are over every successful operation of all rounds. Rows read, wrong-tenant reads, errors and writes cover warm-up too.",
	"Writes: each issued card and each activity carries the path in its QR code or actor. After the run the rows of each path are counted in the databases (rows found) and compared with the acknowledged writes (rows check); rows sitting in another tenant's tables than their tenant_id names are wrong-tenant writes.",
	"Pools: a cell's pools open at its first round and stay open until its last, so later rounds run on warm backends (catalog caches filled), as a running service's do; one private PgBouncer serves all PgBouncer cells of a phase. The modes on one shared pool (schema, schema+role, rls, session) run interleaved; the database mode, which holds a server connection per tenant, runs alone afterwards, one path at a time, with its pools warmed first (one connection each).",
	"Server connections: the application role's backends on the mode's databases for the path (told apart by application_name) in pg_stat_activity, sampled every 100 ms during each round. A cell whose connections the server (or PgBouncer) refused is reported as refused, with what it measured until then.",
	"Provision: creating the N tenants (schemas, tables, indexes, grants, roles, databases; seed rows not included, they are the seed column of results.csv). Rollout: ALTER TABLE members ADD COLUMN on every tenant, serially, one statement each (one for rls). Size: pg_database_size of the mode's databases after the run.",
}

// Markdown renders the report.
func Markdown(r *Results, charts []Chart) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Tenant isolation modes under load\n\n")
	w("%s\n\n", summaryLine(r))
	w("## Machine and versions\n\n")
	mdPairs(&b, machineRows(r))
	w("\n## Parameters\n\n")
	mdPairs(&b, paramRows(r))
	w("\n## Conclusions\n\n")
	for _, c := range Conclusions(r) {
		w("- %s\n", c)
	}
	w("\n## Charts\n\n")
	for _, c := range charts {
		w("![%s](charts/%s.png)\n\n", c.Title, c.Name)
	}
	w("SVG versions: ")
	for i, c := range charts {
		if i > 0 {
			w(", ")
		}
		w("[%s](charts/%s.svg)", c.Name, c.Name)
	}
	w(".\n\n## Results\n\n### Throughput and isolation\n\n")
	mdTable(&b, PerfColumns, r.Cells)
	w("\n### Cost\n\n")
	mdTable(&b, CostColumns, r.Cells)
	w("\n### Errors and reasons\n\n")
	var odd []Cell
	for _, c := range r.Cells {
		if c.ErrorsTotal > 0 || c.Reason != "" {
			odd = append(odd, c)
		}
	}
	if len(odd) == 0 {
		w("No errors.\n")
	} else {
		mdTable(&b, []string{"tenants", "mode", "path", "status", "error_kinds", "reason"}, odd)
	}
	w("\n## How it was measured\n\n")
	for _, n := range methodNotes {
		w("- %s\n", n)
	}
	if len(r.Notes) > 0 {
		w("\n## Notes\n\n")
		for _, n := range r.Notes {
			w("- %s\n", n)
		}
	}
	return b.String()
}

func summaryLine(r *Results) string {
	s := fmt.Sprintf("Run %s, %s UTC, %s.", r.RunID, r.Started.UTC().Format("2006-01-02 15:04"),
		r.Finished.Sub(r.Started).Round(time.Second))
	if r.Interrupted {
		s += " Interrupted: the results are what was measured until then."
	}
	return s + " Client, PgBouncer and PostgreSQL share the machine; numbers on it swing by ±15% from run to run."
}

func mdPairs(b *strings.Builder, rows [][2]string) {
	b.WriteString("| | |\n|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s |\n", mdEscape(r[0]), mdEscape(r[1]))
	}
}

func mdTable(b *strings.Builder, names []string, cells []Cell) {
	cols := columnsNamed(names)
	heads := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.head
	}
	fmt.Fprintf(b, "| %s |\n|%s\n", strings.Join(heads, " | "), strings.Repeat("---|", len(cols)))
	for _, c := range cells {
		row := Row(c, names)
		for i := range row {
			row[i] = mdEscape(row[i])
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(row, " | "))
	}
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Comma formats n with thousands separators.
func Comma(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}
