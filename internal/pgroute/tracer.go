package pgroute

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// tracer logs statements and batches slower than a threshold, with the
// tenant and the duration (never the arguments: they may hold personal data).
type tracer struct {
	log  zerolog.Logger
	slow time.Duration
}

type traceKey struct{}

type traceStart struct {
	at  time.Time
	sql string
	n   int
}

var (
	_ pgx.QueryTracer = (*tracer)(nil)
	_ pgx.BatchTracer = (*tracer)(nil)
)

func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if t.slow <= 0 {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, traceStart{at: time.Now(), sql: d.SQL, n: 1})
}

func (t *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	t.end(ctx, d.Err)
}

func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if t.slow <= 0 {
		return ctx
	}
	s := traceStart{at: time.Now(), n: d.Batch.Len()}
	if q := d.Batch.QueuedQueries; len(q) > 0 {
		s.sql = q[len(q)-1].SQL
	}
	return context.WithValue(ctx, traceKey{}, s)
}

func (t *tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *tracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchEndData) {
	t.end(ctx, d.Err)
}

func (t *tracer) end(ctx context.Context, err error) {
	s, ok := ctx.Value(traceKey{}).(traceStart)
	if !ok {
		return
	}
	took := time.Since(s.at)
	if took < t.slow {
		return
	}
	ev := t.log.Warn().Str("component", "pgroute").Dur("duration", took).Int("statements", s.n).Str("sql", clip(s.sql, 200))
	if t, ok := TenantFromContext(ctx); ok {
		ev = ev.Str("tenant", t.Slug.String())
	}
	if err != nil {
		ev = ev.AnErr("error", err)
	}
	ev.Msg("slow statement")
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
