package report

import (
	"fmt"
	"slices"
	"strings"
)

// noise is the run-to-run spread of this kind of machine: ratios within it
// are reported as no difference.
const noise = 0.15

// Conclusions states what the numbers of r support, one finding per line.
func Conclusions(r *Results) []string {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
		}
	}
	add(productIsolation(r))
	add(sessionLeak(r))
	add(databaseConnections(r))
	add(ratioFinding(r, "rls", "schema", "Row-level security vs schema-per-tenant"))
	add(ratioFinding(r, "schema+role", "schema", "The tenant role per transaction (schema+role vs schema)"))
	add(memoryFinding(r))
	add(fleetFinding(r))
	add(rowsFinding(r))
	if len(out) == 0 {
		out = append(out, "No cell completed: nothing to conclude.")
	}
	return out
}

func (r *Results) cell(n int, mode, path string) *Cell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Tenants == n && c.Mode == mode && c.Path == path {
			return c
		}
	}
	return nil
}

func (r *Results) has(mode string) bool { return slices.Contains(r.Params.Modes, mode) }

func pct(part, whole int64) string {
	if whole == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

// productIsolation: wrong reads of the modes that bind per transaction.
func productIsolation(r *Results) string {
	var parts []string
	for _, mode := range []string{"schema", "schema+role", "rls", "database"} {
		if !r.has(mode) {
			continue
		}
		var reads, wrong, misplaced int64
		for _, c := range r.Cells {
			if c.Mode == mode {
				reads, wrong, misplaced = reads+c.Reads, wrong+c.WrongReads, misplaced+c.RowsMisplaced
			}
		}
		if reads == 0 {
			continue
		}
		s := fmt.Sprintf("%s %s of %s", mode, Comma(wrong), Comma(reads))
		if wrong > 0 || misplaced > 0 {
			s = fmt.Sprintf("%s — WRONG: %s of %s rows read, %s rows written to another tenant", mode, Comma(wrong), Comma(reads), Comma(misplaced))
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return ""
	}
	return "Wrong-tenant reads of the modes that bind the tenant per transaction (or per database), direct and through PgBouncer: " +
		strings.Join(parts, "; ") + "."
}

// sessionLeak: the session pattern behind PgBouncer.
func sessionLeak(r *Results) string {
	if !r.has("session") {
		return ""
	}
	var per []string
	var reads, wrong, misplaced, undefined int64
	for _, n := range r.Params.Tenants {
		c := r.cell(n, "session", "pgbouncer")
		if c == nil || c.Reads == 0 {
			continue
		}
		per = append(per, fmt.Sprintf("%s at %s tenants", pct(c.WrongReads, c.Reads), Comma(int64(n))))
		reads, wrong, misplaced = reads+c.Reads, wrong+c.WrongReads, misplaced+c.RowsMisplaced
		undefined += c.Errors["undefined_table"]
	}
	var directReads, directWrong int64
	for _, c := range r.Cells {
		if c.Mode == "session" && c.Path == "direct" {
			directReads, directWrong = directReads+c.Reads, directWrong+c.WrongReads
		}
	}
	if reads == 0 {
		return ""
	}
	s := fmt.Sprintf("The session pattern (SET search_path per checkout) behind PgBouncer in transaction mode read another tenant's rows: %s of %s rows (%s); it wrote %s rows into other tenants' tables, and %s statements found no tenant bound at all (undefined_table).",
		Comma(wrong), Comma(reads), strings.Join(per, ", "), Comma(misplaced), Comma(undefined))
	if directReads > 0 {
		s += fmt.Sprintf(" Direct to PostgreSQL the same code read %s wrong rows of %s.", Comma(directWrong), Comma(directReads))
	}
	return s
}

// databaseConnections: where a pool per database runs out.
func databaseConnections(r *Results) string {
	if !r.has("database") {
		return ""
	}
	var s []string
	for _, path := range r.Params.Paths {
		var ran, refused, skipped []string
		peak := 0
		for _, n := range r.Params.Tenants {
			c := r.cell(n, "database", path)
			if c == nil {
				continue
			}
			switch c.Status {
			case StatusOK:
				ran = append(ran, Comma(int64(n)))
				peak = max(peak, c.ConnsPeak)
			case StatusRefused:
				refused = append(refused, fmt.Sprintf("%s (peak %d server connections)", Comma(int64(n)), c.ConnsPeak))
			case StatusSkipped:
				skipped = append(skipped, Comma(int64(n)))
			}
		}
		line := fmt.Sprintf("%s: ran at %s tenants (at most %d server connections)", path, orNone(ran), peak)
		if len(refused) > 0 {
			line += fmt.Sprintf("; refused at %s: too many connections for max_connections = %d", strings.Join(refused, ", "), r.Params.MaxConnections)
		}
		if len(skipped) > 0 {
			line += "; not attempted at " + strings.Join(skipped, ", ") + " (more databases than -max-databases)"
		}
		s = append(s, line)
	}
	return "Database per tenant — " + strings.Join(s, ". ") + "."
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no count"
	}
	return strings.Join(s, ", ")
}

// ratioFinding compares the throughput (and p99) of mode a with mode b.
func ratioFinding(r *Results, a, b, title string) string {
	if !r.has(a) || !r.has(b) {
		return ""
	}
	var parts []string
	var lo, hi float64
	first := true
	for _, path := range r.Params.Paths {
		var per []string
		for _, n := range r.Params.Tenants {
			ca, cb := r.cell(n, a, path), r.cell(n, b, path)
			if ca == nil || cb == nil || ca.Status != StatusOK || cb.Status != StatusOK || !ca.Measured || !cb.Measured || cb.Throughput == 0 || cb.P99 == 0 {
				continue
			}
			ratio := ca.Throughput / cb.Throughput
			per = append(per, fmt.Sprintf("%.2f× at %s (p99 %.2f×)", ratio, Comma(int64(n)), ca.P99/cb.P99))
			if first || ratio < lo {
				lo = ratio
			}
			if first || ratio > hi {
				hi = ratio
			}
			first = false
		}
		if len(per) > 0 {
			parts = append(parts, path+" "+strings.Join(per, ", "))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	verdict := fmt.Sprintf("within the ±%.0f%% noise of this machine: no difference these runs can claim", noise*100)
	switch {
	case hi < 1-noise:
		verdict = fmt.Sprintf("%s is slower at every count, by %.0f–%.0f%%", a, (1-hi)*100, (1-lo)*100)
	case lo > 1+noise:
		verdict = fmt.Sprintf("%s is faster at every count, by %.0f–%.0f%%", a, (lo-1)*100, (hi-1)*100)
	case lo < 1-noise || hi > 1+noise:
		verdict = fmt.Sprintf("the ratio ranges %.2f–%.2f: beyond the noise at some counts only", lo, hi)
	}
	return fmt.Sprintf("%s, throughput ratio (median of rounds): %s — %s.", title, strings.Join(parts, "; "), verdict)
}

// memoryFinding: the largest backend per mode at the smallest and largest count.
func memoryFinding(r *Results) string {
	if len(r.Params.Tenants) == 0 {
		return ""
	}
	lo, hi := slices.Min(r.Params.Tenants), slices.Max(r.Params.Tenants)
	var parts []string
	for _, mode := range r.Params.Modes {
		a, b := r.cell(lo, mode, "direct"), r.cell(hi, mode, "direct")
		if a == nil || b == nil || !a.MemoryRead || !b.MemoryRead || lo == hi {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f → %.1f MB (all %d backends: %.0f MB)", mode, a.BackendMaxMB, b.BackendMaxMB, b.Backends, b.BackendMemMB))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("Backend memory, direct path, largest backend from %s to %s tenants (catalog and relation caches grow with the tables a backend has touched): %s.",
		Comma(int64(lo)), Comma(int64(hi)), strings.Join(parts, "; "))
}

// fleetFinding: provisioning, rollout and size at the largest count.
func fleetFinding(r *Results) string {
	if len(r.Params.Tenants) == 0 {
		return ""
	}
	n := slices.Max(r.Params.Tenants)
	var parts []string
	for _, mode := range r.Params.Modes {
		var c *Cell
		for _, path := range r.Params.Paths {
			if x := r.cell(n, mode, path); x != nil && x.ProvisionRead {
				c = x
				break
			}
		}
		if c == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f s / %.1f s / %.0f MB", mode, c.ProvisionS, c.RolloutS, c.SizeMB))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("At %s tenants — provisioning / rolling one added column to all / size on disk: %s.", Comma(int64(n)), strings.Join(parts, "; "))
}

// rowsFinding: did every acknowledged write land?
func rowsFinding(r *Results) string {
	var ok, total int
	var bad []string
	for _, c := range r.Cells {
		if c.RowsCheck == "" {
			continue
		}
		total++
		if c.RowsCheck == "ok" {
			ok++
		} else {
			bad = append(bad, fmt.Sprintf("%s/%s at %s (acked %d, found %d, unsure %d)", c.Mode, c.Path, Comma(int64(c.Tenants)), c.WritesAcked, c.RowsFound, c.WritesUnsure))
		}
	}
	if total == 0 {
		return ""
	}
	s := fmt.Sprintf("Acknowledged writes counted back in the databases: %d of %d cells match", ok, total)
	if len(bad) > 0 {
		s += "; MISMATCH in " + strings.Join(bad, ", ")
	}
	return s + "."
}
