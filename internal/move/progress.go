package move

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Progress is one unfinished move as the mover records it, with its
// replication lag measured on the source now.
type Progress struct {
	ID         string           `json:"id"`
	Slug       string           `json:"slug"`
	Mode       Mode             `json:"mode"`
	State      string           `json:"state"`
	From       tenant.Placement `json:"from"`
	To         tenant.Placement `json:"to"`
	RowsCopied int64            `json:"rows_copied"`
	StartedAt  time.Time        `json:"started_at"`
	UpdatedAt  time.Time        `json:"updated_at"`
	// LagBytes is how much of the source's WAL the slot has not confirmed
	// (nil: no slot, i.e. lock mode or not streaming yet/any more).
	LagBytes *int64 `json:"lag_bytes,omitempty"`
	// Lag is the age of the newest change applied while more waited, as
	// last recorded by the mover (nil: not streaming).
	Lag *time.Duration `json:"lag_ns,omitempty"`
}

// InProgress lists the unfinished moves, oldest first. An interrupted move
// stays listed until it is run again.
func (m *Mover) InProgress(ctx context.Context) ([]Progress, error) {
	rows, err := m.cat.Admin().QueryContext(ctx, `SELECT id::text, tenant_id, mode, state,
			from_placement, from_cluster, from_database, from_schema, to_placement, to_cluster, to_database, to_schema,
			rows_copied, started_at, updated_at, lag_ms
		  FROM landlord.tenant_moves WHERE state NOT IN ('done', 'failed') ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("moves in progress: %w", err)
	}
	var out []Progress
	var ids []uuid.UUID
	for rows.Next() {
		var p Progress
		var id uuid.UUID
		var lagMs *int64
		if err := rows.Scan(&p.ID, &id, &p.Mode, &p.State, &p.From.Kind, &p.From.Cluster, &p.From.Database, &p.From.Schema,
			&p.To.Kind, &p.To.Cluster, &p.To.Database, &p.To.Schema, &p.RowsCopied, &p.StartedAt, &p.UpdatedAt, &lagMs); err != nil {
			rows.Close()
			return nil, fmt.Errorf("moves in progress: %w", err)
		}
		if lagMs != nil {
			d := time.Duration(*lagMs) * time.Millisecond
			p.Lag = &d
		}
		p.Slug = id.String()
		out = append(out, p)
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slugs, err := m.cat.Slugs(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if s, ok := slugs[ids[i]]; ok {
			out[i].Slug = s.String()
		}
		if out[i].Mode != ModeLogical {
			continue
		}
		rec := record{ID: out[i].ID}
		server, err := m.cl.Admin(out[i].From.Cluster)
		if err != nil {
			continue // a cluster no longer configured: no live lag
		}
		var lag *int64
		if err := server.QueryRowContext(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
			FROM pg_replication_slots WHERE slot_name = $1`, rec.slotName()).Scan(&lag); err == nil {
			out[i].LagBytes = lag
		}
	}
	return out, nil
}
