package bench

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
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

// runMove seeds a tenant of each size in a scratch database and moves it
// schema → dedicated database → schema, rounds times, with writers at full
// speed through the router during each move. Logical and lock moves
// alternate (interleaved rounds) up to -lock-max-cards; above it the lock
// mode is skipped (its pause grows with the tenant: minutes at 1M).
func runMove(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("move", flag.ContinueOnError)
	cardsFlag := fs.String("cards", "100000", "tenant sizes in cards, comma-separated (one activity per card, 10 cards per member)")
	writers := fs.Int("writers", 4, "concurrent writers during the moves")
	rounds := fs.Int("rounds", 2, "rounds per size; a round is a move to a dedicated database and back, per mode")
	lockMax := fs.Int("lock-max-cards", 100_000, "measure the lock mode (baseline) for tenants up to this size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var sizes []int
	for _, f := range strings.Split(*cardsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 10 {
			return fmt.Errorf("-cards: %q is not a size of at least 10 cards", f)
		}
		sizes = append(sizes, n)
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	sb, err := NewScratch(ctx, cfg, "publicdigit_bench_move")
	if err != nil {
		return err
	}
	var slugs []tenant.Slug
	defer func() {
		ctx := context.WithoutCancel(ctx)
		if server, err := openDB(mustCluster(cfg).AdminURL); err == nil {
			for _, slug := range slugs {
				_, _ = server.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{slug.DatabaseName()}.Sanitize()+" WITH (FORCE)")
			}
			server.Close()
		}
		sb.Drop(ctx)
	}()

	// The services, pointed at the scratch database.
	mcfg := cfg
	cl := mustCluster(cfg)
	cl.URL, cl.AdminURL = sb.AppURL, sb.AdminURL
	mcfg.Clusters = map[string]config.Cluster{cfg.DefaultCluster: cl}
	mcfg.Landlord.URL = sb.AppURL
	mcfg.Landlord.ListenURL = ""
	mcfg.Admin.URL = sb.AdminURL
	// Server CPU spent copying (logical mode: from the slot's snapshot to
	// the committed target): on a shared machine, rows per CPU-second say
	// what the copy costs, rows per second what this machine gave it.
	var cpu copyCPU
	if cpu.server, err = openDB(sb.AdminURL); err != nil {
		return err
	}
	defer cpu.server.Close()
	ma, err := app.Open(ctx, mcfg, zerolog.Nop(), app.Options{MoveHook: cpu.hook})
	if err != nil {
		return err
	}
	defer ma.Close()

	fmt.Fprintf(out, "# move benchmark: %d writers at full speed through the router (PgBouncer) during each move; %d rounds per size\n",
		*writers, *rounds)
	fmt.Fprintln(out, "# rows/s: rows ÷ (COPY + index builds); pause: source locked for writes until released (lock: the whole copy; logical: the switch)")
	type key struct {
		cards int
		mode  move.Mode
	}
	pauses, rates, cpuRates, allRates := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}, map[key][]float64{}
	for _, cards := range sizes {
		slug := tenant.MustSlug(fmt.Sprintf("bench_move_%d", cards))
		slugs = append(slugs, slug)
		if err := seedMoveTenant(ctx, sb, slug, cards, out); err != nil {
			return err
		}
		modes := []move.Mode{move.ModeLogical}
		if cards <= *lockMax {
			modes = append(modes, move.ModeLock)
		}
		for r := 0; r < *rounds; r++ {
			for _, mode := range modes {
				for _, to := range []tenant.PlacementKind{tenant.PlacementDatabase, tenant.PlacementSchema} {
					res, stats, err := moveUnderLoad(ctx, ma, slug, to, mode, *writers)
					if err != nil {
						return err
					}
					k := key{cards, mode}
					pauses[k] = append(pauses[k], float64(res.WritePause.Microseconds())/1000)
					rates[k] = append(rates[k], float64(res.Rows)/res.Copy.Seconds())
					if c, p := cpu.spent(); mode == move.ModeLogical && c > 0 {
						cpuRates[k] = append(cpuRates[k], float64(res.Rows)/c.Seconds())
						allRates[k] = append(allRates[k], float64(res.Rows)/(c+p).Seconds())
					}
					fmt.Fprintf(out, "# %d cards, %s mode, %s → %s: %d rows, copy %s, catch-up %s, verify %s, writes paused %s, total %s; "+
						"writers: %d ok, %d told to retry, max write latency %s\n",
						cards, mode, res.From.Kind, res.Tenant.Kind, res.Rows, res.Copy.Round(time.Millisecond),
						res.CatchUp.Round(time.Millisecond), res.Verify.Round(time.Millisecond), res.WritePause.Round(time.Millisecond),
						res.Duration.Round(time.Millisecond), stats.ok, stats.failed, stats.maxLatency.Round(time.Millisecond))
					if res.Restarts > 0 {
						fmt.Fprintf(out, "#   started over %d times from a fresh slot (the change stream failed)\n", res.Restarts)
					}
					sw := res.Switch
					fmt.Fprintf(out, "#   pause: lock %s, catch-up %s, check %s (%d changed keys), retire %s, flip %s, release %s\n",
						ms(sw.Lock), ms(sw.CatchUp), ms(sw.Check), sw.Keys, ms(sw.Retire), ms(sw.Flip), ms(sw.Release))
				}
			}
		}
	}
	for _, cards := range sizes {
		for _, mode := range []move.Mode{move.ModeLogical, move.ModeLock} {
			k := key{cards, mode}
			if len(pauses[k]) == 0 {
				continue
			}
			p, r := pauses[k], rates[k]
			fmt.Fprintf(out, "move_write_pause_ms{cards=\"%d\",mode=\"%s\"} %.0f\n", cards, mode, median(p))
			fmt.Fprintf(out, "# spread %.0f–%.0f ms over %d moves\n", minOf(p), maxOf(p), len(p))
			fmt.Fprintf(out, "move_rows_per_second{cards=\"%d\",mode=\"%s\"} %.0f\n", cards, mode, median(r))
			fmt.Fprintf(out, "# spread %.0f–%.0f rows/s\n", minOf(r), maxOf(r))
			if c := cpuRates[k]; len(c) > 0 {
				fmt.Fprintf(out, "move_copy_rows_per_server_cpu_second{cards=\"%d\",mode=\"%s\"} %.0f\n", cards, mode, median(c))
				fmt.Fprintf(out, "# spread %.0f–%.0f: rows per CPU-second of the mover's server sessions, source and target (load average %s when done)\n",
					minOf(c), maxOf(c), loadAverage())
				a := allRates[k]
				fmt.Fprintf(out, "move_copy_rows_per_cpu_second{cards=\"%d\",mode=\"%s\"} %.0f\n", cards, mode, median(a))
				fmt.Fprintf(out, "# spread %.0f–%.0f: rows per CPU-second of those sessions and this whole process (the mover, but also the writers)\n",
					minOf(a), maxOf(a))
			}
		}
		if l, b := pauses[key{cards, move.ModeLogical}], pauses[key{cards, move.ModeLock}]; len(l) > 0 && len(b) > 0 {
			fmt.Fprintf(out, "# %d cards: the logical mode's write pause is %.3f× the lock mode's (medians)\n", cards, median(l)/median(b))
		}
	}
	return nil
}

// seedMoveTenant creates a tenant with cards cards, cards/10 members and one
// activity per card.
func seedMoveTenant(ctx context.Context, sb *Scratch, slug tenant.Slug, cards int, out io.Writer) error {
	start := time.Now()
	tenantID, err := sb.Tenant(ctx, slug)
	if err != nil {
		return err
	}
	schema := pgx.Identifier{slug.SchemaName()}.Sanitize()
	for _, st := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO ` + schema + `.members (tenant_id, full_name, email)
		   SELECT $1, 'member ' || g, 'm' || g || '@example.test' FROM generate_series(1, $2) g`, []any{tenantID, cards / 10}},
		{`INSERT INTO ` + schema + `.digital_cards (tenant_id, member_id, qr_code, status, expires_at)
		   SELECT m.tenant_id, m.id, 'PD1-' || md5(m.id::text || k), 'active', now() + interval '1 year'
		     FROM ` + schema + `.members m CROSS JOIN generate_series(1, 10) k`, nil},
		{`INSERT INTO ` + schema + `.card_activities (tenant_id, card_id, action, actor, detail)
		   SELECT tenant_id, id, 'issued', 'bench', jsonb_build_object('qr', qr_code) FROM ` + schema + `.digital_cards`, nil},
		{`VACUUM ANALYZE ` + schema + `.members, ` + schema + `.digital_cards, ` + schema + `.card_activities`, nil},
	} {
		if _, err := sb.Admin.ExecContext(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	fmt.Fprintf(out, "# a tenant with %d cards, %d members, %d activities seeded in %s\n", cards, cards/10, cards,
		time.Since(start).Round(time.Millisecond))
	return nil
}

// moveUnderLoad moves a tenant with writers at full speed from 300ms before
// until 300ms after.
func moveUnderLoad(ctx context.Context, a *app.App, slug tenant.Slug, to tenant.PlacementKind, mode move.Mode, writers int) (move.Result, writerStats, error) {
	w := startWriters(ctx, a.Router, slug, writers)
	time.Sleep(300 * time.Millisecond)
	res, err := a.Mover.Move(ctx, move.Request{Slug: slug, To: to, Mode: mode})
	time.Sleep(300 * time.Millisecond)
	stats := w.stop()
	if err != nil {
		return res, stats, fmt.Errorf("%s move to %s: %w", mode, to, err)
	}
	if stats.other > 0 {
		return res, stats, fmt.Errorf("%d writes failed with a non-retryable error during the move", stats.other)
	}
	return res, stats, nil
}

// copyCPU measures the CPU a logical move's copy used, through the mover's
// hook, from the slot (StepSlot: nothing copied yet) to every table loaded
// with its keys and indexes (StepLoaded): the server sessions of the mover
// (application_name publicdigit-move: the copy's sessions on both sides,
// created for it, and the guard and slot sessions, idle meanwhile; source
// and target are on the same server here), and this whole process (the
// mover's COPY pipes, but also the writers: an upper bound on the mover's).
type copyCPU struct {
	mu     sync.Mutex
	server *sql.DB
	base   map[int]time.Duration // session CPU at StepSlot
	proc0  time.Duration
	cpu    time.Duration // server sessions
	proc   time.Duration // this process
}

func (c *copyCPU) hook(s move.Step) {
	if s != move.StepSlot && s != move.StepLoaded {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil {
		return
	}
	rows, err := c.server.Query(`SELECT pid FROM pg_stat_activity WHERE application_name = 'publicdigit-move'`)
	if err != nil {
		return
	}
	defer rows.Close()
	now := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			now[pid] = pidCPU(pid)
		}
	}
	if s == move.StepSlot {
		c.base, c.proc0 = now, processCPU()
		return
	}
	var total time.Duration
	for pid, d := range now {
		total += d - c.base[pid]
	}
	c.cpu, c.proc = total, processCPU()-c.proc0
}

// spent returns the CPU of the last copy measured (server sessions, this
// process), once.
func (c *copyCPU) spent() (time.Duration, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, p := c.cpu, c.proc
	c.cpu, c.proc = 0, 0
	return d, p
}

// pidCPU is the CPU time a local process used so far.
func pidCPU(pid int) time.Duration {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTick
}

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

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
