package loadtest

import (
	"fmt"
	"slices"
	"time"

	"github.com/publicdigit/publicdigit/internal/loadtest/report"
	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
	"github.com/publicdigit/publicdigit/internal/loadtest/workload"
)

// acc gathers the rounds of one cell.
type acc struct {
	cell        report.Cell
	stopped     bool // no more rounds: refused, failed or skipped
	throughputs []float64
	latencies   []time.Duration
	connsMean   float64 // summed over rounds
	connRounds  int
}

func (a *acc) stop(status, reason string) {
	a.stopped, a.cell.Status, a.cell.Reason = true, status, reason
}

// add records one round. An interrupted round's counts are kept (its writes
// must be found) but not its throughput and latency.
func (a *acc) add(st workload.Stats, s scratch.Sample, mem scratch.Memory, memOK bool, maxConns int) {
	c := &a.cell
	c.OpsTotal += st.OpsTotal
	c.Reads += st.Reads
	c.WrongReads += st.WrongReads
	c.WritesAcked += st.WritesAcked
	c.WritesUnsure += st.WritesUnsure
	for k, v := range st.Errors {
		c.Errors[k] += v
	}
	c.ConnsPeak = max(c.ConnsPeak, s.Peak.Total)
	c.ConnsActivePeak = max(c.ConnsActivePeak, s.Peak.Active)
	if s.Samples > 0 {
		a.connsMean += s.MeanTotal
		a.connRounds++
	}
	if memOK && mem.Backends > 0 {
		c.MemoryRead, c.Backends = true, mem.Backends
		c.BackendMemMB, c.BackendMaxMB = float64(mem.TotalKB)/1024, float64(mem.MaxKB)/1024
	}
	if !st.Interrupted {
		c.Rounds++
		c.Ops += st.Ops
		a.throughputs = append(a.throughputs, st.Throughput())
		a.latencies = append(a.latencies, st.Latencies...)
	}
	if refused := st.Errors["too_many_connections"] + st.Errors["pgbouncer_no_more_connections"]; refused > 0 {
		a.stop(report.StatusRefused, fmt.Sprintf("refused at %s tenants: too many connections (%d of %d operations refused a connection; server max_connections = %d)",
			comma(c.Tenants), refused, st.OpsTotal, maxConns))
	}
}

// check compares the rows found for the cell's path with its writes.
func (a *acc) check(r scratch.Rows) {
	c := &a.cell
	c.RowsFound, c.RowsMisplaced = r.Found, r.Misplaced
	c.RowsCheck = "mismatch"
	if c.WritesAcked <= r.Found && r.Found <= c.WritesAcked+c.WritesUnsure {
		c.RowsCheck = "ok"
	}
}

// result is the finished cell.
func (a *acc) result() report.Cell {
	c := a.cell
	if c.Status == "" {
		c.Status = report.StatusOK
		if c.Rounds == 0 {
			c.Status, c.Reason = report.StatusInterrupted, "not measured: the run was interrupted"
		}
	}
	for _, v := range c.Errors {
		c.ErrorsTotal += v
	}
	if a.connRounds > 0 {
		c.ConnsMean = a.connsMean / float64(a.connRounds)
	}
	if c.Rounds == 0 {
		return c
	}
	c.Measured = true
	c.RoundThroughput = a.throughputs
	sorted := slices.Sorted(slices.Values(a.throughputs))
	c.ThroughputMin, c.ThroughputMax = sorted[0], sorted[len(sorted)-1]
	c.Throughput = sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		c.Throughput = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	st := workload.Stats{Latencies: a.latencies}
	slices.Sort(st.Latencies)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	c.P50, c.P95, c.P99 = ms(st.Percentile(0.50)), ms(st.Percentile(0.95)), ms(st.Percentile(0.99))
	return c
}
