package move

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// loadParallel is the logical mode's copy: workers pairs of sessions copy
// tables at once, each source session in the slot's snapshot (any number of
// sessions may import it), each table loaded without its keys and indexes
// and rebuilt in its own target transaction, largest tables first. The
// foreign keys are dropped before (one transaction that also empties the
// target) and added after all tables are in. A target left half loaded by
// a crash is dropped by the rerun before it starts over.
func (m *Mover) loadParallel(ctx context.Context, rec record, tbls []table, sl slot, workers int) (loadResult, error) {
	var out loadResult
	dst, err := m.connect(ctx, rec.To.Cluster, rec.To.Database)
	if err != nil {
		return out, err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	dstTables, err := tables(ctx, dst, rec.To.Schema)
	if err != nil {
		return out, err
	}
	if err := sameShape(tbls, dstTables); err != nil {
		return out, fmt.Errorf("move: target schema differs from the source (is the source converged? tenantctl schema drift): %w", err)
	}
	items, err := indexItems(ctx, dst, rec.To.Schema)
	if err != nil {
		return out, fmt.Errorf("move: prepare target: %w", err)
	}
	var fks, keys []indexItem
	for _, it := range items {
		if it.phase == 1 {
			fks = append(fks, it)
		} else {
			keys = append(keys, it)
		}
	}
	start := time.Now()
	// Each table is emptied in its own load transaction (so that COPY
	// loads it frozen), once no foreign key refers to it.
	if _, err := dst.Exec(ctx, "BEGIN"); err != nil {
		return out, err
	}
	_, err = dropItems(ctx, dst, fks)
	if err == nil {
		_, err = dst.Exec(ctx, "COMMIT")
	}
	if err != nil {
		_, _ = dst.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		return out, fmt.Errorf("move: prepare target: %w", err)
	}

	// The sessions; the snapshot is imported before any table is copied.
	workers = max(1, min(workers, len(tbls)))
	pairs := make([]pair, 0, workers)
	defer func() {
		for _, p := range pairs {
			p.src.Close(context.WithoutCancel(ctx))
			p.dst.Close(context.WithoutCancel(ctx))
		}
	}()
	for range workers {
		src, err := m.connect(ctx, rec.From.Cluster, rec.From.Database)
		if err != nil {
			return out, err
		}
		d, err := m.connect(ctx, rec.To.Cluster, rec.To.Database)
		if err != nil {
			src.Close(context.WithoutCancel(ctx))
			return out, err
		}
		pairs = append(pairs, pair{src, d})
		if err := importSnapshot(ctx, src, sl); err != nil {
			return out, err
		}
	}
	order, err := bySize(ctx, pairs[0].src, tbls, rec.From.Schema)
	if err != nil {
		return out, err
	}
	queue := make(chan table, len(order))
	for _, tb := range order {
		queue <- tb
	}
	close(queue)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		rows     atomic.Int64
		first    sync.Once
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for _, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tb := range queue {
				n, err := loadTable(wctx, p.src, p.dst, tb, rec.From.Schema, rec.To.Schema, keys)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("move: copy %s: %w", tb.name, err) })
					cancel()
					return
				}
				rows.Add(n)
				first.Do(func() { m.hook(StepMidCopy) })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return out, firstErr
	}
	if err := addForeignKeys(ctx, dst, pairDsts(pairs), fks); err != nil {
		return out, err
	}
	out.rows, out.copy = rows.Load(), time.Since(start)
	m.hook(StepLoaded)
	// Fresh tables have no statistics until autovacuum gets to them.
	if _, err := dst.Exec(ctx, "ANALYZE "+idents(tbls, rec.To.Schema)); err != nil {
		return out, fmt.Errorf("move: analyze target: %w", err)
	}
	return out, nil
}

// pair is a copy worker's sessions: the source's, in the slot's snapshot,
// and the target's.
type pair struct{ src, dst *pgx.Conn }

func pairDsts(pairs []pair) []*pgx.Conn {
	out := make([]*pgx.Conn, len(pairs))
	for i, p := range pairs {
		out[i] = p.dst
	}
	return out
}

// addForeignKeys adds back the foreign keys of the loaded target: all NOT
// VALID in one transaction on ctl (no scan), then, for those valid on the
// target before, VALIDATE CONSTRAINT on the sessions at once. A
// validation takes SHARE UPDATE EXCLUSIVE on its table and ROW SHARE on
// the referenced one, so those of a chain (activities → cards → members)
// do not wait for each other, as ADD CONSTRAINT's scans would (SHARE ROW
// EXCLUSIVE on both). The result is the same constraints, validated.
func addForeignKeys(ctx context.Context, ctl *pgx.Conn, sessions []*pgx.Conn, fks []indexItem) error {
	if len(fks) == 0 {
		return nil
	}
	var add, validate []string
	for _, fk := range fks {
		if fk.validate == "" {
			add = append(add, fk.create) // not valid on the target before: added as it was
			continue
		}
		add = append(add, fk.create+" NOT VALID")
		validate = append(validate, fk.validate)
	}
	if _, err := ctl.Exec(ctx, strings.Join(add, "; ")); err != nil { // one implicit transaction
		return fmt.Errorf("move: rebuild target foreign key: %w", err)
	}
	queue := make(chan string, len(validate))
	for _, v := range validate {
		queue <- v
	}
	close(queue)
	errs := make(chan error, len(sessions))
	for _, conn := range sessions {
		go func() {
			for stmt := range queue {
				if _, err := conn.Exec(ctx, stmt); err != nil {
					errs <- fmt.Errorf("move: validate target foreign key: %w", err)
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range sessions {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// loadTable copies one table in one target transaction: its keys and
// indexes dropped, the rows streamed, the keys and indexes rebuilt.
func loadTable(ctx context.Context, src, dst *pgx.Conn, tb table, fromSchema, toSchema string, items []indexItem) (_ int64, err error) {
	var mine []indexItem
	for _, it := range items {
		if it.table == tb.name {
			mine = append(mine, it)
		}
	}
	// synchronous_commit off: the ANALYZE after the load commits
	// synchronously on the same server, which flushes this commit too,
	// long before the flip; a server that loses it crashes the move, whose
	// rerun rebuilds the target.
	if _, err := dst.Exec(ctx, "BEGIN; "+sessionFormats+"; SET LOCAL maintenance_work_mem = '256MB'; SET LOCAL synchronous_commit = off"); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil { // the session may be gone too (cancelled): closed with the worker
			_, _ = dst.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	rebuild, err := dropItems(ctx, dst, mine)
	if err != nil {
		return 0, err
	}
	// Emptied here (no foreign key refers to it any more): COPY FREEZE
	// writes the rows frozen and their pages all-visible, so that nothing
	// (the verification's scans, vacuum) rewrites them later.
	if _, err := dst.Exec(ctx, "TRUNCATE "+tb.ident(toSchema)); err != nil {
		return 0, fmt.Errorf("clear target: %w", err)
	}
	n, err := copyTable(ctx, src, dst, tb, fromSchema, toSchema, !tb.partitioned)
	if err != nil {
		return 0, err
	}
	for _, stmt := range rebuild {
		if _, err := dst.Exec(ctx, stmt); err != nil {
			return 0, fmt.Errorf("rebuild target index: %w", err)
		}
	}
	if _, err := dst.Exec(ctx, "COMMIT"); err != nil {
		return 0, err
	}
	return n, nil
}

// bySize orders tables largest first (as the source's snapshot sees them).
func bySize(ctx context.Context, src *pgx.Conn, tbls []table, schema string) ([]table, error) {
	rows, err := src.Query(ctx, `SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_class c
		WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p')`, schema)
	if err != nil {
		return nil, fmt.Errorf("move: table sizes: %w", err)
	}
	size := map[string]int64{}
	for rows.Next() {
		var n string
		var s int64
		if err := rows.Scan(&n, &s); err != nil {
			rows.Close()
			return nil, err
		}
		size[n] = s
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := append([]table(nil), tbls...)
	sort.SliceStable(out, func(i, j int) bool { return size[out[i].name] > size[out[j].name] })
	return out, nil
}
