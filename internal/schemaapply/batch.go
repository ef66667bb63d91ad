package schemaapply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultBatch is FleetOptions.Batch when it is 0.
const DefaultBatch = 32

// errBatchStale means a tenant of a batch was not as the run had read it
// (its catalog stamp changed): the batch was rolled back, and its tenants
// are applied one by one.
var errBatchStale = errors.New("a tenant's catalog changed since it was read")

// runRest applies the tenants after the canaries. Tenants that share a
// database, a desired hash and a live fingerprint (a twin key) have the same
// schema up to its name: the first of each is applied alone, inspected with
// Atlas; if its plan can be renamed (twin.changes), the others are applied
// from it in batches of o.Batch, each batch in one transaction (applyBatch),
// which costs a tenant neither an inspection nor a plan, nor round trips of
// its own. A batch that fails in any way is rolled back whole and its
// tenants are applied one by one, as without batches: a tenant that fails
// fails alone, and none is ever half-applied. With a BeforeExecute hook
// (a check in each tenant's own transaction), nothing is batched.
func (f *Fleet) runRest(ctx context.Context, workers []*worker, tenants []*fleetTenant, o FleetOptions, report func(*fleetTenant)) {
	size := o.Batch
	if size == 0 {
		size = DefaultBatch
	}
	// A batch's stamps are read through indexes (stampFewSQL): more would
	// scan whole catalogs for every batch.
	size = min(size, stampFew)
	if o.DryRun || o.InspectAll || size <= 1 || o.BeforeExecute != nil {
		f.runPhase(ctx, workers, tenants, o, report)
		return
	}
	var keys []string
	groups := map[string][]*fleetTenant{}
	for _, ft := range tenants {
		k := ft.twinKey()
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], ft)
	}
	// A twin a worker already holds (from the canaries) serves at once.
	twinOf := func(k string) *twin {
		for _, w := range workers {
			if tw := w.twins[k]; tw != nil && tw.changes != nil {
				return tw
			}
		}
		return nil
	}
	var leaders []*fleetTenant
	for _, k := range keys {
		if twinOf(k) == nil {
			leaders = append(leaders, groups[k][0])
			groups[k] = groups[k][1:]
		}
	}
	f.runPhase(ctx, workers, leaders, o, report)

	type unit struct {
		tw  *twin
		fts []*fleetTenant
	}
	var units []unit
	for _, k := range keys {
		tw := twinOf(k)
		for rest := groups[k]; len(rest) > 0; {
			n := min(len(rest), size)
			if tw == nil {
				n = 1
			}
			units = append(units, unit{tw, rest[:n]})
			rest = rest[n:]
		}
	}
	next := make(chan unit)
	var wg sync.WaitGroup
	for _, w := range workers[:min(len(workers), len(units))] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				alone := u.fts
				if ctx.Err() == nil && len(u.fts) > 1 {
					err := f.applyBatch(ctx, u.tw, u.fts, o)
					// Tenants whose result differs from the twin's (the same
					// catalog before, but not the same physical layout: a
					// column dropped earlier) go alone; the rest again as a batch.
					var mm *batchMismatchError
					if errors.As(err, &mm) && len(u.fts)-len(mm.tenants) > 1 {
						f.Log.Debug().Err(err).Int("tenants", len(u.fts)).Int("differ", len(mm.tenants)).Msg("batch rolled back; again without the tenants that differ")
						alone = mm.tenants
						err = f.applyBatch(ctx, u.tw, without(u.fts, mm.tenants), o)
						if err != nil {
							alone = u.fts
						}
					}
					if err == nil {
						done := without(u.fts, alone)
						if len(alone) == len(u.fts) {
							done, alone = u.fts, nil
						}
						w.fromTwin += len(done)
						w.batched += len(done)
						for _, ft := range done {
							report(ft)
						}
					} else {
						f.Log.Debug().Err(err).Int("tenants", len(u.fts)).Msg("batch rolled back; applying its tenants one by one")
					}
				}
				for _, ft := range alone {
					f.applyAndReport(ctx, w, ft, o, report)
				}
			}
		}()
	}
	for _, u := range units {
		next <- u
	}
	close(next)
	wg.Wait()
}

// batchMismatchError lists the tenants of a batch whose fingerprint after
// the twin's statements was not the twin's (the batch was rolled back).
type batchMismatchError struct{ tenants []*fleetTenant }

func (e *batchMismatchError) Error() string {
	return fmt.Sprintf("%d tenants: %s", len(e.tenants), errTwinMismatch)
}

func (e *batchMismatchError) Unwrap() error { return errTwinMismatch }

// without is fts less the tenants in drop.
func without(fts, drop []*fleetTenant) []*fleetTenant {
	out := make([]*fleetTenant, 0, len(fts))
	for _, ft := range fts {
		if !slices.Contains(drop, ft) {
			out = append(out, ft)
		}
	}
	return out
}

// twinKey groups the tenants whose schemas are the same up to their names.
func (ft *fleetTenant) twinKey() string { return ft.dbKey + "|" + ft.hash + "|" + ft.liveFP }

// applyBatch applies tw's plan, renamed, to tenants of tw's twin key, all in
// one transaction on their database: the lock timeout and every tenant's
// advisory lock (in name order); their catalog stamps, each of which must
// still be the one the run read (so their fingerprint before is the
// twin's); every tenant's statements, and the After steps the twin ran, in
// one round trip; then their fingerprints after, which must all be the
// twin's, and their stamps, set-based; the records (BeforeCommit, in the
// transaction when the catalog is in this database); commit. On any error
// nothing is changed or recorded and the error is returned: the caller
// applies the tenants one by one.
func (f *Fleet) applyBatch(ctx context.Context, tw *twin, fts []*fleetTenant, o FleetOptions) error {
	start := time.Now()
	db, sameDB := fts[0].db, fts[0].sameDB
	items := make([]SchemaRole, len(fts))
	for i, ft := range fts {
		if ft.liveStamp == "" || ft.db != db || ft.target == nil {
			return errBatchStale
		}
		items[i] = SchemaRole{Schema: ft.res.Schema, Role: ft.role}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if o.LockTimeout > 0 {
		if _, err := tx.ExecContext(ctx, "SELECT set_config('lock_timeout', $1, true)",
			fmt.Sprintf("%dms", o.LockTimeout.Milliseconds())); err != nil {
			return fmt.Errorf("set lock_timeout: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, catalogScanSettings); err != nil {
		return err
	}
	names := make([]string, len(fts))
	for i, ft := range fts {
		names[i] = ft.res.Schema
	}
	sort.Strings(names)
	if _, err := tx.ExecContext(ctx, `SELECT count(pg_advisory_xact_lock(hashtext('schema:' || s)))
		FROM (SELECT s FROM unnest($1::text[]) AS s ORDER BY s) AS o`, names); err != nil {
		return fmt.Errorf("lock schemas: %w", err)
	}
	live := make([]string, len(fts))
	for i, ft := range fts {
		live[i] = ft.liveStamp
	}
	changed, err := ChangedStamps(ctx, tx, items, live)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		return errBatchStale
	}
	stmts := make([][]string, len(fts))
	var all []string
	for i, ft := range fts {
		stmts[i] = renamePlan(tw.changes, ft.res.Schema)
		for j, step := range ft.target.After {
			if j < len(tw.ranAfter) && tw.ranAfter[j] == '1' {
				stmts[i] = append(stmts[i], step.SQL...)
			}
		}
		all = append(all, stmts[i]...)
	}
	if err := execBatch(ctx, tx, all); err != nil {
		return err
	}
	// The stamps first, then the fingerprints (see applier.fingerprint).
	st, err := Stamps(ctx, tx, items)
	if err != nil {
		return err
	}
	fps, err := Fingerprints(ctx, tx, items)
	if err != nil {
		return err
	}
	var differ []*fleetTenant
	for _, ft := range fts {
		if fps[ft.res.Schema] != tw.after {
			differ = append(differ, ft)
		}
	}
	if len(differ) > 0 {
		return &batchMismatchError{tenants: differ}
	}
	results := make([]Result, len(fts))
	for i, ft := range fts {
		results[i] = Result{Statements: stmts[i], Hash: ft.hash, Destructive: tw.destructive,
			Fingerprint: tw.after, Stamp: st[ft.res.Schema]}
		if o.BeforeCommit != nil {
			if err := o.BeforeCommit(ctx, tx, results[i]); err != nil {
				return fmt.Errorf("tenant %s: before commit: %w", ft.res.Slug, err)
			}
		}
		if sameDB {
			if err := f.Catalog.RecordApplied(ctx, tx, ft.id, results[i].Hash, results[i].Fingerprint, results[i].Stamp); err != nil {
				return fmt.Errorf("tenant %s: %w", ft.res.Slug, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	d := ms(time.Since(start))
	for i, ft := range fts {
		r := results[i]
		ft.res.Statements, ft.res.Destructive, ft.res.Twin, ft.res.DurationMS = r.Statements, r.Destructive, true, d
		ft.res.Status = StatusApplied
		if !r.Changed() {
			ft.res.Status = StatusUnchanged
		}
		if !sameDB {
			if err := f.Catalog.RecordApplied(ctx, nil, ft.id, r.Hash, r.Fingerprint, r.Stamp); err != nil {
				ft.fail(fmt.Errorf("tenant %s: applied, but not recorded (the next run will inspect it again): %w", ft.res.Slug, err))
			}
		}
	}
	f.Log.Debug().Int("tenants", len(fts)).Float64("ms", d).Str("statements", strings.Join(tw.changes, "; ")).Msg("batch applied from a twin's plan")
	return nil
}
