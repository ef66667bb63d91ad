package report

import (
	"encoding/base64"
	"html/template"
	"os"
)

type htmlTable struct {
	Heads []string
	Rows  [][]string
}

type htmlChart struct {
	Title, Name string
	Src         template.URL // data: URI
}

func table(names []string, cells []Cell) htmlTable {
	var t htmlTable
	for _, c := range columnsNamed(names) {
		t.Heads = append(t.Heads, c.head)
	}
	for _, c := range cells {
		t.Rows = append(t.Rows, Row(c, names))
	}
	return t
}

// writeHTML writes report.html: the report of Markdown, self-contained (the
// charts are inline PNGs), viewable without network.
func writeHTML(path string, r *Results, charts []Chart) error {
	var odd []Cell
	for _, c := range r.Cells {
		if c.ErrorsTotal > 0 || c.Reason != "" {
			odd = append(odd, c)
		}
	}
	var hc []htmlChart
	for _, c := range charts {
		hc = append(hc, htmlChart{Title: c.Title, Name: c.Name,
			Src: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(c.PNG))})
	}
	data := map[string]any{
		"Summary":     summaryLine(r),
		"Machine":     machineRows(r),
		"Params":      paramRows(r),
		"Conclusions": Conclusions(r),
		"Charts":      hc,
		"Perf":        table(PerfColumns, r.Cells),
		"Cost":        table(CostColumns, r.Cells),
		"Odd":         table([]string{"tenants", "mode", "path", "status", "error_kinds", "reason"}, odd),
		"HasOdd":      len(odd) > 0,
		"Method":      methodNotes,
		"Notes":       r.Notes,
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := page.Execute(f, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tenant isolation modes under load</title>
<style>
body { font-family: system-ui, -apple-system, "DejaVu Sans", sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; } td:nth-child(-n+3) { text-align: left; }
table.pairs td { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.charts figure { margin: 0; } .charts img { width: 560px; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
li { margin: 0.3em 0; }
</style>
</head>
<body>
<h1>Tenant isolation modes under load</h1>
<p>{{.Summary}}</p>
<h2>Conclusions</h2>
<ul>{{range .Conclusions}}<li>{{.}}</li>{{end}}</ul>
<h2>Charts</h2>
<div class="charts">{{range .Charts}}<figure><img src="{{.Src}}" alt="{{.Title}}"><figcaption>{{.Title}} (charts/{{.Name}}.svg)</figcaption></figure>{{end}}</div>
<h2>Machine and versions</h2>
<table class="pairs">{{range .Machine}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>
<h2>Parameters</h2>
<table class="pairs">{{range .Params}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>
<h2>Results</h2>
<h3>Throughput and isolation</h3>
<table><tr>{{range .Perf.Heads}}<th>{{.}}</th>{{end}}</tr>{{range .Perf.Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table>
<h3>Cost</h3>
<table><tr>{{range .Cost.Heads}}<th>{{.}}</th>{{end}}</tr>{{range .Cost.Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table>
<h3>Errors and reasons</h3>
{{if .HasOdd}}<table><tr>{{range .Odd.Heads}}<th>{{.}}</th>{{end}}</tr>{{range .Odd.Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table>{{else}}<p>No errors.</p>{{end}}
<h2>How it was measured</h2>
<ul>{{range .Method}}<li>{{.}}</li>{{end}}</ul>
{{if .Notes}}<h2>Notes</h2><ul>{{range .Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}
</body>
</html>
`))
