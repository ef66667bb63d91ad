package workload

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/loadtest/modes"
	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
)

// The workload's SQL, the same in every mode. No statement repeats the
// tenant in its WHERE clause: isolation is left to the mode alone, and the
// tenant_id each row carries tells whether it held. (The product's own
// statements also filter on tenant_id, a second guard this test leaves out.)
const (
	readSQL = `SELECT tenant_id, status FROM digital_cards WHERE card_no = $1`
	listSQL = `SELECT tenant_id, card_no, status FROM digital_cards WHERE card_no > $1 ORDER BY card_no LIMIT $2`
	// issueSQL writes a card and its activity in one statement, as the product
	// does, and returns the tenant of the member it read.
	issueSQL = `WITH m AS (SELECT id, tenant_id FROM members WHERE member_no = $1),
c AS (INSERT INTO digital_cards (tenant_id, member_id, qr_code, expires_at)
      SELECT $2::uuid, m.id, $3, now() + interval '1 year' FROM m RETURNING id, tenant_id)
INSERT INTO card_activities (tenant_id, card_id, action, actor)
SELECT c.tenant_id, c.id, 'issued', $4 FROM c
RETURNING (SELECT tenant_id FROM m)`
	lockCardSQL   = `SELECT id, tenant_id, status FROM digital_cards WHERE card_no = $1 FOR UPDATE`
	updateCardSQL = `UPDATE digital_cards SET status = $2, updated_at = now() WHERE id = $1::uuid`
	activitySQL   = `INSERT INTO card_activities (tenant_id, card_id, action, actor) VALUES ($1::uuid, $2::uuid, $3, $4)`
)

// transitions is the state machine the workload walks (a revoked card is
// reissued, so it never runs out of changes): status → new status, action.
var transitions = map[string][2]string{
	"issued":  {"active", "activated"},
	"active":  {"revoked", "revoked"},
	"revoked": {"issued", "issued"},
	"expired": {"issued", "issued"},
}

// result is one operation's outcome. writes are the rows it writes when it succeeds.
type result struct {
	reads, wrong, writes int64
	err                  error
}

// check counts a row read for tenant t.
func (r *result) check(t *scratch.Tenant, got uuid.UUID) {
	r.reads++
	if got != t.ID {
		r.wrong++
	}
}

func (w *worker) run(ctx context.Context, op Op, t *scratch.Tenant) result {
	var res result
	switch op {
	case Read:
		res.err = w.b.Do(ctx, t, func(q modes.Queue) {
			res = result{} // the router may run fn twice
			q.Queue(readSQL, 1+w.r.IntN(w.cfg.Cards)).QueryRow(func(row pgx.Row) error {
				var tid uuid.UUID
				var status string
				if err := row.Scan(&tid, &status); err != nil {
					return err
				}
				res.check(t, tid)
				return nil
			})
		})
	case List:
		after := w.r.IntN(max(w.cfg.Cards-w.cfg.PageSize, 0) + 1)
		res.err = w.b.Do(ctx, t, func(q modes.Queue) {
			res = result{}
			q.Queue(listSQL, after, w.cfg.PageSize).Query(func(rows pgx.Rows) error {
				var tid uuid.UUID
				var no int
				var status string
				_, err := pgx.ForEachRow(rows, []any{&tid, &no, &status}, func() error {
					res.check(t, tid)
					return nil
				})
				return err
			})
		})
	case Issue:
		w.seq++
		qr := fmt.Sprintf("%s-r%dw%dn%d", w.cfg.Marker, w.cfg.Round, w.id, w.seq)
		member := 1 + w.r.IntN(w.cfg.Members)
		res.err = w.b.Do(ctx, t, func(q modes.Queue) {
			res = result{writes: 2}
			q.Queue(issueSQL, member, t.ID.String(), qr, w.cfg.Marker).QueryRow(func(row pgx.Row) error {
				var tid uuid.UUID
				if err := row.Scan(&tid); err != nil {
					return err
				}
				res.check(t, tid)
				return nil
			})
		})
	case Change:
		no := 1 + w.r.IntN(w.cfg.Cards)
		res.err = w.b.Tx(ctx, t, func(ctx context.Context, tx modes.Tx) error {
			res = result{writes: 1}
			var id, tid uuid.UUID
			var status string
			tx.Queue(lockCardSQL, no).QueryRow(func(row pgx.Row) error { return row.Scan(&id, &tid, &status) })
			if err := tx.Flush(ctx); err != nil {
				return err
			}
			res.check(t, tid)
			next, ok := transitions[status]
			if !ok {
				return fmt.Errorf("card %d: unknown status %q", no, status)
			}
			// Like the product, the activity carries the tenant the work is for.
			tx.Queue(updateCardSQL, id.String(), next[0])
			tx.Queue(activitySQL, t.ID.String(), id.String(), next[1], w.cfg.Marker)
			return nil
		})
	}
	return res
}
