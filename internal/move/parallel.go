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

// loadParallel is the logical mode's copy: workers pairs of sessions load
// tables at once, each source session in the slot's snapshot (any number of
// sessions may import it), largest tables first, each table emptied and
// loaded without its keys and indexes in its own target transaction. Then
// the same sessions build the keys and indexes, several at a time even on
// one table (the largest tables' first): a table with many indexes no longer
// keeps one worker busy while the others wait. The foreign keys are dropped
// before (one transaction that also empties the target) and, once every
// build is done, added back in one transaction with the keys attached to
// their indexes. A target left half loaded by a crash is dropped by the
// rerun before it starts over.
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
	workers = max(1, workers)
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
		// synchronous_commit off: the ANALYZE after the load commits
		// synchronously on the same server, which flushes these commits
		// too, long before the flip; a server that loses them crashes the
		// move, whose rerun rebuilds the target.
		if _, err := d.Exec(ctx, "SET maintenance_work_mem = '256MB'; SET synchronous_commit = off"); err != nil {
			return out, err
		}
	}
	sizes, err := tableSizes(ctx, pairs[0].src, rec.From.Schema)
	if err != nil {
		return out, err
	}
	w := newWork(tbls, keys, sizes)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		rows     atomic.Int64
		first    sync.Once
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel()
		w.fail()
	}
	for _, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t, ok := w.next()
				if !ok {
					return
				}
				if t.build != nil {
					if _, err := p.dst.Exec(wctx, t.build.index); err != nil {
						fail(fmt.Errorf("move: rebuild target index: %w", err))
						return
					}
					continue
				}
				n, err := loadTable(wctx, p.src, p.dst, *t.load, rec.From.Schema, rec.To.Schema, keys)
				if err != nil {
					fail(fmt.Errorf("move: copy %s: %w", t.load.name, err))
					return
				}
				rows.Add(n)
				w.loaded(t.load.name)
				first.Do(func() { m.hook(StepMidCopy) })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return out, firstErr
	}
	if err := addKeys(ctx, dst, pairDsts(pairs), keys, fks); err != nil {
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

// task is one piece of a parallel copy: a table to load, or an index to
// build once its table is loaded.
type task struct {
	load  *table
	build *indexItem
}

// work hands out the tasks of a parallel copy: loads first, largest table
// first; then the builds of the loaded tables, the costliest first (the
// largest table's, with the most key columns), so that the longest ones do
// not start last.
type work struct {
	mu      sync.Mutex
	cond    *sync.Cond
	loads   []table
	builds  []indexItem // ready: their table is loaded
	waiting map[string][]indexItem
	size    map[string]int64
	running int // loads in progress (they make builds ready)
	failed  bool
}

func newWork(tbls []table, items []indexItem, size map[string]int64) *work {
	w := &work{loads: append([]table(nil), tbls...), waiting: map[string][]indexItem{}, size: size}
	w.cond = sync.NewCond(&w.mu)
	sort.SliceStable(w.loads, func(i, j int) bool { return size[w.loads[i].name] > size[w.loads[j].name] })
	for _, it := range items {
		w.waiting[it.table] = append(w.waiting[it.table], it)
	}
	return w
}

// next returns the next task, waiting while none is ready but loads are in
// progress; false when there is nothing left to do or the copy failed.
func (w *work) next() (task, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		switch {
		case w.failed:
			return task{}, false
		case len(w.loads) > 0:
			tb := w.loads[0]
			w.loads = w.loads[1:]
			w.running++
			return task{load: &tb}, true
		case len(w.builds) > 0:
			it := w.builds[0]
			w.builds = w.builds[1:]
			return task{build: &it}, true
		case w.running == 0:
			return task{}, false
		}
		w.cond.Wait()
	}
}

// loaded makes the builds of a loaded table ready.
func (w *work) loaded(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running--
	w.builds = append(w.builds, w.waiting[name]...)
	cost := func(it indexItem) int64 { return w.size[it.table] * int64(1+it.columns) }
	sort.SliceStable(w.builds, func(i, j int) bool { return cost(w.builds[i]) > cost(w.builds[j]) })
	w.cond.Broadcast()
}

// fail stops handing out tasks.
func (w *work) fail() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failed = true
	w.cond.Broadcast()
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

// addKeys attaches the keys to their indexes and adds back the foreign keys
// of the loaded target: all in one transaction on ctl (no scan; foreign
// keys NOT VALID), then, for the foreign keys valid on the target before,
// VALIDATE CONSTRAINT on the sessions at once. A validation takes SHARE
// UPDATE EXCLUSIVE on its table and ROW SHARE on the referenced one, so
// those of a chain (activities → cards → members) do not wait for each
// other, as ADD CONSTRAINT's scans would (SHARE ROW EXCLUSIVE on both). The
// result is the same constraints, validated.
func addKeys(ctx context.Context, ctl *pgx.Conn, sessions []*pgx.Conn, keys, fks []indexItem) error {
	var add, validate []string
	for _, k := range keys {
		if k.attach != "" {
			add = append(add, k.attach)
		}
	}
	for _, fk := range fks {
		if fk.validate == "" {
			add = append(add, fk.create) // not valid on the target before: added as it was
			continue
		}
		add = append(add, fk.create+" NOT VALID")
		validate = append(validate, fk.validate)
	}
	if len(add) == 0 {
		return nil
	}
	if _, err := ctl.Exec(ctx, strings.Join(add, "; ")); err != nil { // one implicit transaction
		return fmt.Errorf("move: rebuild target keys: %w", err)
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
// indexes dropped (rebuilt after it commits), the table emptied, the rows
// streamed.
func loadTable(ctx context.Context, src, dst *pgx.Conn, tb table, fromSchema, toSchema string, items []indexItem) (_ int64, err error) {
	var mine []indexItem
	for _, it := range items {
		if it.table == tb.name {
			mine = append(mine, it)
		}
	}
	if _, err := dst.Exec(ctx, "BEGIN; "+sessionFormats); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil { // the session may be gone too (cancelled): closed with the worker
			_, _ = dst.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if _, err := dropItems(ctx, dst, mine); err != nil {
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
	if _, err := dst.Exec(ctx, "COMMIT"); err != nil {
		return 0, err
	}
	return n, nil
}

// tableSizes returns the size of a schema's tables (as the source's
// snapshot sees them), the copy's estimate of their cost.
func tableSizes(ctx context.Context, src *pgx.Conn, schema string) (map[string]int64, error) {
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
		return nil, fmt.Errorf("move: table sizes: %w", err)
	}
	return size, nil
}
