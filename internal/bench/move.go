package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/move"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func runMove(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("move", flag.ContinueOnError)
	cards := fs.Int("cards", 100_000, "cards in the tenant (one activity each, 10 cards per member)")
	writers := fs.Int("writers", 4, "concurrent writers during the moves")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	sb, err := NewScratch(ctx, cfg, "publicdigit_bench_move")
	if err != nil {
		return err
	}
	slug := tenant.MustSlug("bench_move")
	defer func() {
		ctx := context.WithoutCancel(ctx)
		server, err := openDB(mustCluster(cfg).AdminURL)
		if err == nil {
			_, _ = server.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{slug.DatabaseName()}.Sanitize()+" WITH (FORCE)")
			server.Close()
		}
		sb.Drop(ctx)
	}()
	tenantID, err := sb.Tenant(ctx, slug)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "# move benchmark: a tenant with %d cards, %d members, %d activities; %d writers during each move\n",
		*cards, *cards/10, *cards, *writers)
	start := time.Now()
	schema := pgx.Identifier{slug.SchemaName()}.Sanitize()
	seed := []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO ` + schema + `.members (tenant_id, full_name, email)
		   SELECT $1, 'member ' || g, 'm' || g || '@example.test' FROM generate_series(1, $2) g`, []any{tenantID, *cards / 10}},
		{`INSERT INTO ` + schema + `.digital_cards (tenant_id, member_id, qr_code, status, expires_at)
		   SELECT m.tenant_id, m.id, 'PD1-' || md5(m.id::text || k), 'active', now() + interval '1 year'
		     FROM ` + schema + `.members m CROSS JOIN generate_series(1, 10) k`, nil},
		{`INSERT INTO ` + schema + `.card_activities (tenant_id, card_id, action, actor, detail)
		   SELECT tenant_id, id, 'issued', 'bench', jsonb_build_object('qr', qr_code) FROM ` + schema + `.digital_cards`, nil},
		{`ANALYZE ` + schema + `.members, ` + schema + `.digital_cards, ` + schema + `.card_activities`, nil},
	}
	for _, st := range seed {
		if _, err := sb.Admin.ExecContext(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	fmt.Fprintf(out, "# seeded in %s\n", time.Since(start).Round(time.Millisecond))

	// The services, pointed at the scratch database.
	mcfg := cfg
	cl := mustCluster(cfg)
	cl.URL, cl.AdminURL = sb.AppURL, sb.AdminURL
	mcfg.Clusters = map[string]config.Cluster{cfg.DefaultCluster: cl}
	mcfg.Landlord.URL = sb.AppURL
	mcfg.Landlord.ListenURL = ""
	mcfg.Admin.URL = sb.AdminURL
	ma, err := app.Open(ctx, mcfg, zerolog.Nop(), app.Options{})
	if err != nil {
		return err
	}
	defer ma.Close()
	router, mover := ma.Router, ma.Mover

	var pauses, rates []float64
	for _, to := range []tenant.PlacementKind{tenant.PlacementDatabase, tenant.PlacementSchema} {
		w := startWriters(ctx, router, slug, *writers)
		time.Sleep(300 * time.Millisecond)
		res, err := mover.Move(ctx, move.Request{Slug: slug, To: to})
		time.Sleep(300 * time.Millisecond)
		stats := w.stop()
		if err != nil {
			return fmt.Errorf("move to %s: %w", to, err)
		}
		rate := float64(res.Rows) / res.Copy.Seconds()
		pauses = append(pauses, float64(res.WritePause.Milliseconds()))
		rates = append(rates, rate)
		fmt.Fprintf(out, "# %s → %s: %d rows, copy+verify %s (verify %s), writes paused %s, total %s; writers: %d ok, %d retryable failures, max write latency %s\n",
			res.From.Kind, res.Tenant.Kind, res.Rows, res.Copy.Round(time.Millisecond), res.Verify.Round(time.Millisecond), res.WritePause.Round(time.Millisecond),
			res.Duration.Round(time.Millisecond), stats.ok, stats.failed, stats.maxLatency.Round(time.Millisecond))
		if stats.other > 0 {
			return fmt.Errorf("%d writes failed with a non-retryable error during the move", stats.other)
		}
	}
	fmt.Fprintf(out, "move_write_pause_ms %.0f\n", maxOf(pauses))
	fmt.Fprintf(out, "move_rows_per_second %.0f\n", minOf(rates))
	return nil
}

func mustCluster(cfg config.Config) config.Cluster {
	cl, err := cfg.Cluster(cfg.DefaultCluster)
	if err != nil {
		panic(err)
	}
	return cl
}

type writerStats struct {
	ok, failed, other int64
	maxLatency        time.Duration
}

type writerGroup struct {
	stopCh chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	stats  writerStats
}

// startWriters inserts members at full speed until stopped.
func startWriters(ctx context.Context, r *pgroute.Router, slug tenant.Slug, n int) *writerGroup {
	g := &writerGroup{stopCh: make(chan struct{})}
	var seq atomic.Int64
	for i := 0; i < n; i++ {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			for {
				select {
				case <-g.stopCh:
					return
				default:
				}
				name := fmt.Sprintf("writer-%d", seq.Add(1))
				t0 := time.Now()
				err := r.Do(ctx, slug, func(b *pgroute.Batch) error {
					b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, b.Tenant().ID, name)
					return nil
				})
				took := time.Since(t0)
				g.mu.Lock()
				switch {
				case err == nil:
					g.stats.ok++
				case isRetryable(err):
					g.stats.failed++
				default:
					g.stats.other++
				}
				if took > g.stats.maxLatency {
					g.stats.maxLatency = took
				}
				g.mu.Unlock()
			}
		}()
	}
	return g
}

func (g *writerGroup) stop() writerStats {
	close(g.stopCh)
	g.wg.Wait()
	return g.stats
}

func isRetryable(err error) bool {
	return errors.Is(err, pgroute.ErrRetryable) || errors.Is(err, pgroute.ErrTimeout) || errors.Is(err, pgroute.ErrUnavailable)
}

func maxOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)-1]
}

func minOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[0]
}
