package report

import (
	"bytes"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart is one chart written as SVG and PNG.
type Chart struct {
	Name  string // file name without extension
	Title string
	PNG   []byte // for the HTML, inline
}

// modeColors gives each mode its colour in every chart.
var modeColors = map[string]color.RGBA{
	"schema":      {0x1f, 0x77, 0xb4, 0xff},
	"schema+role": {0x2c, 0xa0, 0x2c, 0xff},
	"database":    {0xd6, 0x27, 0x28, 0xff},
	"rls":         {0x94, 0x67, 0xbd, 0xff},
	"session":     {0xff, 0x7f, 0x0e, 0xff},
}

func colorOf(mode string) color.Color {
	if c, ok := modeColors[mode]; ok {
		return c
	}
	return color.Black
}

const chartW, chartH = 8 * vg.Inch, 4.5 * vg.Inch

// lineCharts plot one value against the tenant count, a line per mode and path.
var lineCharts = []struct {
	name, title, y string
	value          func(Cell) (float64, bool)
}{
	{"throughput", "Throughput vs tenants", "operations per second (median of rounds)",
		func(c Cell) (float64, bool) { return c.Throughput, c.Status == StatusOK && c.Measured }},
	{"p99", "p99 latency vs tenants", "p99 latency, ms",
		func(c Cell) (float64, bool) { return c.P99, c.Status == StatusOK && c.Measured }},
	{"connections", "Server connections vs tenants", "server connections (peak)",
		func(c Cell) (float64, bool) {
			return float64(c.ConnsPeak), c.Status != StatusSkipped && c.Status != StatusFailed
		}},
	{"memory", "Backend memory vs tenants", "private memory of the serving backends, MB",
		func(c Cell) (float64, bool) { return c.BackendMemMB, c.MemoryRead }},
}

func writeCharts(dir string, r *Results) ([]Chart, error) {
	var out []Chart
	for _, lc := range lineCharts {
		p, legend, err := lineChart(r, lc.title, lc.y, lc.value)
		if err != nil {
			return nil, err
		}
		c, err := save(dir, lc.name, lc.title, p, legend)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	p, err := wrongReadsChart(r)
	if err != nil {
		return nil, err
	}
	c, err := save(dir, "wrong_reads", p.Title.Text, p, nil)
	if err != nil {
		return nil, err
	}
	return append(out, c), nil
}

// legendW is the width kept right of a line chart for its legend.
const legendW = 2.1 * vg.Inch

// save writes p as SVG and PNG; a side legend, when given, is drawn right
// of the plot instead of over its lines.
func save(dir, name, title string, p *plot.Plot, side *plot.Legend) (Chart, error) {
	render := func(c vg.CanvasSizer) {
		dc := draw.New(c)
		if side == nil {
			p.Draw(dc)
			return
		}
		p.Draw(draw.Crop(dc, 0, -legendW, 0, 0))
		side.Draw(draw.Crop(dc, chartW-legendW+vg.Points(8), 0, 0, -vg.Points(24)))
	}
	sv := vgsvg.New(chartW, chartH)
	render(sv)
	var svgBuf bytes.Buffer
	if _, err := sv.WriteTo(&svgBuf); err != nil {
		return Chart{}, err
	}
	img := vgimg.NewWith(vgimg.UseWH(chartW, chartH), vgimg.UseDPI(150))
	render(img)
	var pngBuf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&pngBuf); err != nil {
		return Chart{}, err
	}
	for ext, b := range map[string][]byte{".svg": svgBuf.Bytes(), ".png": pngBuf.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name+ext), b, 0o644); err != nil {
			return Chart{}, err
		}
	}
	return Chart{Name: name, Title: title, PNG: pngBuf.Bytes()}, nil
}

func lineChart(r *Results, title, ylabel string, value func(Cell) (float64, bool)) (*plot.Plot, *plot.Legend, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "tenants (log scale)"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	var ticks plot.ConstantTicks
	for _, n := range r.Params.Tenants {
		ticks = append(ticks, plot.Tick{Value: float64(n), Label: Comma(int64(n))})
	}
	p.X.Tick.Marker = ticks
	p.Y.Min = 0
	p.Y.Tick.Marker = plainTicks{}
	legend := plot.NewLegend()
	legend.Top = true
	legend.Left = true
	legend.TextStyle.Font.Size = vg.Points(9)
	p.Add(plotter.NewGrid())
	minN, maxN := 0, 0
	for _, mode := range r.Params.Modes {
		for _, path := range r.Params.Paths {
			var xys plotter.XYs
			for _, c := range r.Cells {
				if c.Mode != mode || c.Path != path {
					continue
				}
				if v, ok := value(c); ok {
					xys = append(xys, plotter.XY{X: float64(c.Tenants), Y: v})
					p.Y.Max = max(p.Y.Max, v)
				}
				if minN == 0 || c.Tenants < minN {
					minN = c.Tenants
				}
				maxN = max(maxN, c.Tenants)
			}
			if len(xys) == 0 {
				continue
			}
			l, s, err := plotter.NewLinePoints(xys)
			if err != nil {
				return nil, nil, err
			}
			l.Color, s.Color = colorOf(mode), colorOf(mode)
			l.Width = vg.Points(1.5)
			s.Shape = draw.CircleGlyph{}
			if path != "direct" {
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
				s.Shape = draw.BoxGlyph{}
			}
			p.Add(l, s)
			legend.Add(mode+" · "+path, l, s)
		}
	}
	if minN == 0 {
		minN, maxN = 1, 10
	}
	p.X.Min, p.X.Max = float64(minN)/1.5, float64(maxN)*1.5
	p.Y.Max *= 1.1
	if p.Y.Max == 0 {
		p.Y.Max = 1
	}
	return p, &legend, nil
}

// wrongReadsChart: for each mode a bar per path, the share of rows read that
// belonged to another tenant, over every tenant count.
func wrongReadsChart(r *Results) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Wrong-tenant reads per mode (all tenant counts)"
	p.Y.Label.Text = "% of rows read that belong to another tenant"
	p.Y.Tick.Marker = plainTicks{}
	p.Y.Min, p.Y.Max = 0, 100
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	modes := r.Params.Modes
	w := vg.Points(26)
	for i, path := range r.Params.Paths {
		vals := make(plotter.Values, len(modes))
		var labels plotter.XYLabels
		for j, mode := range modes {
			var reads, wrong int64
			for _, c := range r.Cells {
				if c.Mode == mode && c.Path == path {
					reads += c.Reads
					wrong += c.WrongReads
				}
			}
			pct := 0.0
			if reads > 0 {
				pct = 100 * float64(wrong) / float64(reads)
			}
			vals[j] = pct
			labels.XYs = append(labels.XYs, plotter.XY{X: float64(j), Y: pct + 2})
			labels.Labels = append(labels.Labels, pctText(pct))
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		b.Color = pathColor(i)
		b.LineStyle.Width = 0
		b.Offset = vg.Length(float64(i)-float64(len(r.Params.Paths)-1)/2) * (w + vg.Points(6))
		p.Add(b)
		p.Legend.Add(path, b)
		l, err := plotter.NewLabels(labels)
		if err != nil {
			return nil, err
		}
		for k := range l.TextStyle {
			l.TextStyle[k].XAlign = draw.XCenter
			l.TextStyle[k].Font.Size = vg.Points(8)
		}
		l.Offset = vg.Point{X: b.Offset}
		p.Add(l)
	}
	p.NominalX(slices.Clone(modes)...)
	return p, nil
}

func pathColor(i int) color.Color {
	return []color.Color{color.RGBA{0x44, 0x72, 0xc4, 0xff}, color.RGBA{0xed, 0x7d, 0x31, 0xff}}[i%2]
}

func pctText(v float64) string {
	if v == 0 {
		return "0"
	}
	if v < 0.1 {
		return "<0.1%"
	}
	return fmt.Sprintf("%.1f%%", v)
}

// plainTicks are the default ticks labelled without trailing zeros.
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', -1, 64)
		}
	}
	return ts
}
