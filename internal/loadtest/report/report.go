// Package report holds the load test's results and writes them: results.json
// (everything), results.csv (a row per cell), report.md and a self-contained
// report.html (charts inline), and the charts as SVG and PNG. The CSV, the
// markdown and the HTML tables format every number with the same columns,
// so the three always agree.
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Results is one run.
type Results struct {
	RunID       string    `json:"run_id"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Interrupted bool      `json:"interrupted"`
	Machine     Machine   `json:"machine"`
	Versions    Versions  `json:"versions"`
	Params      Params    `json:"params"`
	Cells       []Cell    `json:"cells"`
	Notes       []string  `json:"notes,omitempty"`
}

// Machine describes where the run ran (client, PgBouncer and PostgreSQL together).
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryMB  int    `json:"memory_mb"`
	OS        string `json:"os"`
	Kernel    string `json:"kernel"`
	LoadStart string `json:"load_start"` // /proc/loadavg at start
	LoadEnd   string `json:"load_end"`
}

// Versions of the software measured.
type Versions struct {
	PostgreSQL string `json:"postgresql"`
	PgBouncer  string `json:"pgbouncer"`
	Go         string `json:"go"`
}

// Params are the run's parameters.
type Params struct {
	Tenants          []int    `json:"tenants"`
	Modes            []string `json:"modes"`
	Paths            []string `json:"paths"`
	Concurrency      int      `json:"concurrency"`
	Warmup           string   `json:"warmup"`
	Duration         string   `json:"duration"`
	Rounds           int      `json:"rounds"`
	Mix              string   `json:"mix"`
	Skew             string   `json:"skew"`
	ZipfS            float64  `json:"zipf_s"`
	Seed             uint64   `json:"seed"`
	Members          int      `json:"members"`
	Cards            int      `json:"cards"`
	PageSize         int      `json:"page_size"`
	StatementTimeout string   `json:"statement_timeout"`
	DBPool           int      `json:"db_pool"`
	MaxDatabases     int      `json:"max_databases"`
	MaxConnections   int      `json:"max_connections"`
	Bouncer          []string `json:"bouncer"` // the private PgBouncer's settings
	MemoryMethod     string   `json:"memory_method"`
}

// Cell statuses.
const (
	StatusOK          = "ok"
	StatusRefused     = "refused"     // the server or PgBouncer refused connections
	StatusFailed      = "failed"      // setup failed
	StatusSkipped     = "skipped"     // not attempted (see Reason)
	StatusInterrupted = "interrupted" // Ctrl-C before it was complete
)

// Cell is one mode × path × tenant count.
type Cell struct {
	Tenants int    `json:"tenants"`
	Mode    string `json:"mode"`
	Path    string `json:"path"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Rounds  int    `json:"rounds"` // rounds measured

	Throughput      float64   `json:"throughput"` // median over rounds, ops/s
	ThroughputMin   float64   `json:"throughput_min"`
	ThroughputMax   float64   `json:"throughput_max"`
	RoundThroughput []float64 `json:"round_throughput"`
	P50             float64   `json:"p50_ms"` // over every successful operation of all rounds
	P95             float64   `json:"p95_ms"`
	P99             float64   `json:"p99_ms"`
	Ops             int64     `json:"ops"`       // successful, in the measured windows
	OpsTotal        int64     `json:"ops_total"` // tried, warm-up included

	Reads       int64            `json:"reads"` // rows read (warm-up included), each checked
	WrongReads  int64            `json:"wrong_reads"`
	Errors      map[string]int64 `json:"errors"`
	ErrorsTotal int64            `json:"errors_total"`

	WritesAcked   int64  `json:"writes_acked"`  // rows acknowledged
	WritesUnsure  int64  `json:"writes_unsure"` // rows of writes with no definite answer
	RowsFound     int64  `json:"rows_found"`    // rows this path wrote, counted in the databases
	RowsMisplaced int64  `json:"rows_misplaced"`
	RowsCheck     string `json:"rows_check"` // ok | mismatch | empty when not counted

	ConnsPeak       int     `json:"conns_peak"` // server connections of the mode's databases
	ConnsActivePeak int     `json:"conns_active_peak"`
	ConnsMean       float64 `json:"conns_mean"`
	Backends        int     `json:"backends"`       // backends whose memory was read
	BackendMemMB    float64 `json:"backend_mem_mb"` // their private memory, summed
	BackendMaxMB    float64 `json:"backend_max_mb"` // the largest one
	ProvisionS      float64 `json:"provision_s"`    // the mode's N tenants (both paths share them)
	SeedS           float64 `json:"seed_s"`         // their seed rows
	RolloutS        float64 `json:"rollout_s"`      // one added column on all N
	SizeMB          float64 `json:"size_mb"`        // the mode's databases on disk, after the run
	Measured        bool    `json:"measured"`       // throughput and latency mean something
	MemoryRead      bool    `json:"memory_read"`    // backend memory was read
	ProvisionRead   bool    `json:"provision_read"` // provisioning, rollout, size were measured
}

// column is one formatted field of a cell.
type column struct {
	name string // CSV header
	head string // table header
	get  func(c Cell) string
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func d(v int64) string    { return strconv.FormatInt(v, 10) }

// ifMeasured shows a number only where it was measured.
func ifMeasured(ok bool, s string) string {
	if !ok {
		return ""
	}
	return s
}

// ErrorKinds formats errors as kind=n;kind=n, sorted.
func ErrorKinds(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+d(m[k]))
	}
	return strings.Join(parts, ";")
}

// columns are the CSV's columns, in order; tables use a subset.
var columns = []column{
	{"tenants", "tenants", func(c Cell) string { return strconv.Itoa(c.Tenants) }},
	{"mode", "mode", func(c Cell) string { return c.Mode }},
	{"path", "path", func(c Cell) string { return c.Path }},
	{"status", "status", func(c Cell) string { return c.Status }},
	{"reason", "reason", func(c Cell) string { return c.Reason }},
	{"rounds", "rounds", func(c Cell) string { return strconv.Itoa(c.Rounds) }},
	{"throughput", "ops/s", func(c Cell) string { return ifMeasured(c.Measured, f0(c.Throughput)) }},
	{"throughput_min", "min", func(c Cell) string { return ifMeasured(c.Measured, f0(c.ThroughputMin)) }},
	{"throughput_max", "max", func(c Cell) string { return ifMeasured(c.Measured, f0(c.ThroughputMax)) }},
	{"p50_ms", "p50 ms", func(c Cell) string { return ifMeasured(c.Measured, f2(c.P50)) }},
	{"p95_ms", "p95 ms", func(c Cell) string { return ifMeasured(c.Measured, f2(c.P95)) }},
	{"p99_ms", "p99 ms", func(c Cell) string { return ifMeasured(c.Measured, f2(c.P99)) }},
	{"ops", "ops", func(c Cell) string { return d(c.Ops) }},
	{"ops_total", "ops tried", func(c Cell) string { return d(c.OpsTotal) }},
	{"reads", "rows read", func(c Cell) string { return d(c.Reads) }},
	{"wrong_reads", "wrong-tenant reads", func(c Cell) string { return d(c.WrongReads) }},
	{"errors", "errors", func(c Cell) string { return d(c.ErrorsTotal) }},
	{"error_kinds", "errors by kind", func(c Cell) string { return ErrorKinds(c.Errors) }},
	{"writes_acked", "writes acked", func(c Cell) string { return d(c.WritesAcked) }},
	{"writes_unsure", "writes unsure", func(c Cell) string { return d(c.WritesUnsure) }},
	{"rows_found", "rows found", func(c Cell) string { return ifMeasured(c.RowsCheck != "", d(c.RowsFound)) }},
	{"rows_misplaced", "wrong-tenant writes", func(c Cell) string { return ifMeasured(c.RowsCheck != "", d(c.RowsMisplaced)) }},
	{"rows_check", "rows check", func(c Cell) string { return c.RowsCheck }},
	{"conns_peak", "server conns (peak)", func(c Cell) string { return strconv.Itoa(c.ConnsPeak) }},
	{"conns_active_peak", "active (peak)", func(c Cell) string { return strconv.Itoa(c.ConnsActivePeak) }},
	{"conns_mean", "conns (mean)", func(c Cell) string { return f1(c.ConnsMean) }},
	{"backends", "backends", func(c Cell) string { return ifMeasured(c.MemoryRead, strconv.Itoa(c.Backends)) }},
	{"backend_mem_mb", "backend MB", func(c Cell) string { return ifMeasured(c.MemoryRead, f1(c.BackendMemMB)) }},
	{"backend_max_mb", "largest MB", func(c Cell) string { return ifMeasured(c.MemoryRead, f1(c.BackendMaxMB)) }},
	{"provision_s", "provision s", func(c Cell) string { return ifMeasured(c.ProvisionRead, f2(c.ProvisionS)) }},
	{"seed_s", "seed s", func(c Cell) string { return ifMeasured(c.ProvisionRead, f2(c.SeedS)) }},
	{"rollout_s", "rollout s", func(c Cell) string { return ifMeasured(c.RolloutS > 0, f2(c.RolloutS)) }},
	{"size_mb", "size MB", func(c Cell) string { return ifMeasured(c.SizeMB > 0, f1(c.SizeMB)) }},
}

// The report's tables, by CSV column name: throughput and isolation, and cost.
var (
	PerfColumns = []string{"tenants", "mode", "path", "status", "throughput", "throughput_min", "throughput_max",
		"p50_ms", "p95_ms", "p99_ms", "reads", "wrong_reads", "errors", "writes_acked", "rows_found", "rows_misplaced", "rows_check"}
	CostColumns = []string{"tenants", "mode", "path", "conns_peak", "conns_active_peak", "backends", "backend_mem_mb",
		"backend_max_mb", "provision_s", "rollout_s", "size_mb"}
)

func columnsNamed(names []string) []column {
	var out []column
	for _, n := range names {
		for _, c := range columns {
			if c.name == n {
				out = append(out, c)
			}
		}
	}
	return out
}

// Row formats a cell for the named columns (CSV names).
func Row(c Cell, names []string) []string {
	var out []string
	for _, col := range columnsNamed(names) {
		out = append(out, col.get(c))
	}
	return out
}

// CSVHeader is the CSV's header row.
func CSVHeader() []string {
	out := make([]string, len(columns))
	for i, c := range columns {
		out[i] = c.name
	}
	return out
}

// Write writes every output into dir (created if missing).
func Write(dir string, r *Results) error {
	if err := os.MkdirAll(filepath.Join(dir, "charts"), 0o755); err != nil {
		return err
	}
	charts, err := writeCharts(filepath.Join(dir, "charts"), r)
	if err != nil {
		return fmt.Errorf("report: charts: %w", err)
	}
	for name, write := range map[string]func(string) error{
		"results.json": func(p string) error { return writeJSON(p, r) },
		"results.csv":  func(p string) error { return writeCSV(p, r) },
		"report.md":    func(p string) error { return os.WriteFile(p, []byte(Markdown(r, charts)), 0o644) },
		"report.html":  func(p string) error { return writeHTML(p, r, charts) },
	} {
		if err := write(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("report: %s: %w", name, err)
		}
	}
	return nil
}

func writeJSON(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func writeCSV(path string, r *Results) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(CSVHeader())
	names := CSVHeader()
	for _, c := range r.Cells {
		_ = w.Write(Row(c, names))
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Load reads a results.json back.
func Load(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return &r, nil
}
