package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/server"
)

// apiVariant is one configuration of the server under test.
type apiVariant struct {
	name   string // plain, lanes, recycle
	b      *bouncer
	lanes  int
	client *apiClient
	stop   func()
}

// apiTarget is one request: method, URI and body.
type apiTarget struct {
	method string
	uri    string
	body   []byte
	want   int
}

// scaleCase is one measured combination of a variant, an operation and a tenant spread.
type scaleCase struct {
	measure string // api_<op>_rps_<spread>[_variant]
	v       *apiVariant
	targets []apiTarget
	warmup  int           // requests sent before the first round (caches, connections)
	pos     *atomic.Int64 // the next target: rounds go on where the previous one stopped
}

// apiStage serves the tenant API (server.Run, the whole stack) in three
// configurations on PgBouncers of the benchmark's own, on the scratch
// database:
//
//   - plain: one server pool of -pool connections (what a deployment had
//     before lanes), traffic over 10 tenants;
//   - lanes: the same connections split into -lanes lanes, a tenant always
//     on its lane's (config clusters.<name>.lanes), traffic over 10 tenants
//     and over all of them (the bounded configuration: each backend serves
//     1/lanes of the tenants, whatever the traffic);
//   - recycle: one server pool whose connections PgBouncer closes after
//     -recycle (server_lifetime), traffic over all tenants (the other way
//     of bounding a backend's memory); -recycle 0 leaves it out.
//
// Each GET card and POST issue case is measured -rounds times, the cases
// interleaved and their order alternated, with the router's cache misses
// and the WAL written during its rounds; the lane backends' growth during
// the rounds says whether the warm-up reached the steady state (every
// backend holding its lane's catalog entries); then each configuration's
// largest backend (private memory) is recorded. Traffic over all tenants with one
// plain pool is not measured: with N tenants every backend would grow to
// backend_mb_all_tenants (hundreds of MB at 10,000, times the pool).
func (s *scaleRun) apiStage(ctx context.Context, n int) error {
	seeds, err := s.seed(ctx)
	if err != nil {
		return err
	}
	token, _, err := s.cold.Tokens.Create(ctx, access.CreateRequest{Name: fmt.Sprintf("bench-scale-%d-%d", n, time.Now().Unix()), Kind: access.KindPlatform})
	if err != nil {
		return err
	}
	long, err := startBouncer(ctx, bouncerSpec{Name: s.f.db + "-long", AppURL: s.cl.URL, AdminURL: s.cl.AdminURL,
		Database: s.f.db, PoolSize: s.f.pool, Lanes: s.f.lanes, ServerLifetime: time.Hour})
	if err != nil {
		return err
	}
	defer long.stop()
	variants := []*apiVariant{{name: "plain", b: long, lanes: 1}, {name: "lanes", b: long, lanes: s.f.lanes}}
	var short *bouncer
	if s.f.recycle > 0 {
		short, err = startBouncer(ctx, bouncerSpec{Name: s.f.db + "-short", AppURL: s.cl.URL, AdminURL: s.cl.AdminURL,
			Database: s.f.db, PoolSize: s.f.pool, ServerLifetime: s.f.recycle})
		if err != nil {
			return err
		}
		defer short.stop()
		variants = append(variants, &apiVariant{name: "recycle", b: short, lanes: 1})
	}
	for _, v := range variants {
		if err := s.serve(ctx, v, token); err != nil {
			return err
		}
		defer v.stop()
	}
	plain, lanes := variants[0], variants[1]

	rng := rand.New(rand.NewPCG(uint64(n), 14))
	all := append([]scaleSeed(nil), seeds...)
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	ten := all[:min(10, len(all))]
	var cases []scaleCase
	for _, op := range []string{"get", "issue"} {
		cases = append(cases,
			scaleCase{measure: "api_" + op + "_rps_10_plain", v: plain, targets: apiTargets(op, ten, 1000), warmup: 2000},
			scaleCase{measure: "api_" + op + "_rps_10", v: lanes, targets: apiTargets(op, ten, 1000), warmup: 2000},
			scaleCase{measure: "api_" + op + "_rps_all", v: lanes, targets: apiTargets(op, all, 1), warmup: s.f.warmup * len(all)},
		)
		if short != nil {
			cases = append(cases, scaleCase{measure: "api_" + op + "_rps_all_recycle", v: variants[2], targets: apiTargets(op, all, 1), warmup: len(all)})
		}
	}
	for i := range cases {
		cases[i].pos = new(atomic.Int64)
	}
	start := time.Now()
	for _, c := range cases {
		_, unavailable, err := runTargets(ctx, c.v.client, c.targets, c.pos, s.f.conc, 0, c.warmup)
		if err != nil {
			return fmt.Errorf("warm-up %s: %w", c.measure, err)
		}
		if unavailable > 0 {
			fmt.Fprintf(s.out, "#   warm-up %s: %d of %d requests answered 503 (the first: %s)\n", c.measure, unavailable, c.warmup, firstUnavailable.Load())
		}
	}
	fmt.Fprintf(s.out, "#   API warm-up done in %s\n", time.Since(start).Round(time.Second))
	laneMB, err := s.laneBackendMB(ctx, long)
	if err != nil {
		return err
	}
	rps := map[string][]float64{}
	unavailable := map[string]int64{}
	stats := map[string]roundStats{}
	for round := 0; round < s.f.rounds; round++ {
		order := cases
		if round%2 == 1 {
			order = reversedScaleCases(cases)
		}
		for _, c := range order {
			before, err := c.v.client.cacheCount()
			if err != nil {
				return err
			}
			walBefore, err := s.walBytes(ctx)
			if err != nil {
				return err
			}
			r, u, err := runTargets(ctx, c.v.client, c.targets, c.pos, s.f.conc, s.f.duration, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", c.measure, err)
			}
			walAfter, err := s.walBytes(ctx)
			if err != nil {
				return err
			}
			after, err := c.v.client.cacheCount()
			if err != nil {
				return err
			}
			rps[c.measure] = append(rps[c.measure], r)
			unavailable[c.measure] += u
			m := stats[c.measure]
			m.lookups += after.lookups - before.lookups
			m.misses += after.misses - before.misses
			m.wal += walAfter - walBefore
			stats[c.measure] = m
		}
	}
	if err := s.laneGrowth(ctx, long, laneMB); err != nil {
		return err
	}
	for _, c := range cases {
		lo, hi := minMax(rps[c.measure])
		m := stats[c.measure]
		fmt.Fprintf(s.out, "#   %-28s %6.0f req/s (%0.f–%0.f), %d answered 503; tenant cache: %.0f%% of %.0f lookups missed; WAL %.1f KB a request\n",
			c.measure, median(rps[c.measure]), lo, hi, unavailable[c.measure], 100*m.misses/max(m.lookups, 1), m.lookups,
			m.wal/1024/max(m.lookups, 1))
		if err := s.res.put(ctx, c.measure, n, median(rps[c.measure])); err != nil {
			return err
		}
		if err := s.res.put(ctx, c.measure+"_503", n, float64(unavailable[c.measure])); err != nil {
			return err
		}
	}
	return s.variantMemory(ctx, n, long, short)
}

// variantMemory records the largest backend of each configuration.
func (s *scaleRun) variantMemory(ctx context.Context, n int, long, short *bouncer) error {
	longPIDs, err := long.serverPIDs(ctx)
	if err != nil {
		return err
	}
	shortPIDs := map[string][]int{}
	if short != nil {
		if shortPIDs, err = short.serverPIDs(ctx); err != nil {
			return err
		}
	}
	largest := func(pids map[string][]int, lanes bool) (float64, int) {
		var most float64
		count := 0
		for db, ps := range pids {
			if strings.HasPrefix(db, s.f.db+"_lane") != lanes {
				continue
			}
			for _, pid := range ps {
				if mb, err := rssAnonMB(pid); err == nil {
					most = max(most, mb)
					count++
				}
			}
		}
		return most, count
	}
	for _, m := range []struct {
		name  string
		pids  map[string][]int
		lanes bool
	}{
		{"backend_mb_plain_max", longPIDs, false},
		{"backend_mb_lanes_max", longPIDs, true},
		{"backend_mb_recycle_max", shortPIDs, false},
	} {
		mb, count := largest(m.pids, m.lanes)
		if count == 0 {
			continue // not measured (-recycle 0)
		}
		fmt.Fprintf(s.out, "#   %s: %.1f MB (largest of %d backends)\n", m.name, mb, count)
		if err := s.res.put(ctx, m.name, n, mb); err != nil {
			return err
		}
	}
	return nil
}

// serve starts server.Run for v on the scratch database: its tenant pool
// through v's PgBouncer, in v.lanes lanes; the landlord through the
// deployment's PgBouncer.
func (s *scaleRun) serve(ctx context.Context, v *apiVariant, token string) error {
	cfg := s.cfg
	cl := cfg.Clusters[cfg.DefaultCluster]
	cl.URL, cl.Lanes = v.b.URL, v.lanes
	cfg.Clusters = map[string]config.Cluster{cfg.DefaultCluster: cl}
	cfg.Pool.MaxConns = int32(s.f.pool)
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.CursorSecret = strings.Repeat("bench-scale-cursor-secret", 2)
	cfg.Tenant.WarmPool = 0
	if s.f.cacheTTL > 0 {
		cfg.Tenant.CacheTTL = s.f.cacheTTL
	}
	if s.f.listen && s.base.Landlord.ListenURL != "" {
		// As deployed: the server hears tenant changes on a direct
		// connection to its landlord (here the scratch database's).
		u, err := withDatabase(s.base.Landlord.ListenURL, s.f.db, "")
		if err != nil {
			return err
		}
		cfg.Landlord.ListenURL = u
	}
	srvCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	addrCh, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- server.Run(srvCtx, cfg, zerolog.New(io.Discard), server.Options{OnListen: func(a string) { addrCh <- a }})
	}()
	select {
	case addr := <-addrCh:
		v.client = newAPIClient(addr, s.f.conc, "Bearer "+token)
		v.stop = func() {
			stop()
			<-done
		}
		return nil
	case err := <-done:
		stop()
		return fmt.Errorf("%s server: %w", v.name, err)
	}
}

// apiTargets are the requests of op over the tenants of seeds: per tenant,
// k of them, cycling over its cards (get) or members (issue).
func apiTargets(op string, seeds []scaleSeed, k int) []apiTarget {
	out := make([]apiTarget, 0, len(seeds)*k)
	for i := 0; i < k; i++ {
		for _, sd := range seeds {
			prefix := "/" + sd.t.Slug.String() + "/api/v1/cards"
			if op == "get" {
				out = append(out, apiTarget{method: fasthttp.MethodGet, uri: prefix + "/" + sd.cards[i%len(sd.cards)].String(), want: fasthttp.StatusOK})
			} else {
				out = append(out, apiTarget{method: fasthttp.MethodPost, uri: prefix, want: fasthttp.StatusCreated,
					body: []byte(`{"member_id":"` + sd.members[i%len(sd.members)].String() + `"}`)})
			}
		}
	}
	return out
}

// runTargets sends targets with conc workers, each taking the next target
// (from pos on) in turn, for d (or, when d is 0, count requests) and
// returns the requests served per second and how many were answered 503
// (a timeout: counted, not served; any other unexpected answer stops it).
func runTargets(ctx context.Context, c *apiClient, targets []apiTarget, pos *atomic.Int64, conc int, d time.Duration, count int) (float64, int64, error) {
	var sent, ok, unavailable atomic.Int64
	var firstErr atomic.Value
	firstUnavailable.Store("")
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if d > 0 && time.Now().After(deadline) || d == 0 && sent.Add(1) > int64(count) {
					return
				}
				t := targets[(pos.Add(1)-1)%int64(len(targets))]
				if err := c.do(t.method, t.uri, t.body, t.want); errors.Is(err, errUnavailable) {
					if unavailable.Add(1) == 1 { // answered, not served: counted, not in the rate
						firstUnavailable.Store(err.Error())
					}
					continue
				} else if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, isErr := firstErr.Load().(error); isErr {
		return 0, 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return float64(ok.Load()) / time.Since(start).Seconds(), unavailable.Load(), nil
}

// firstUnavailable is the first 503 answer of the latest runTargets, to
// tell what made the server unavailable.
var firstUnavailable atomic.Value

func reversedScaleCases(cs []scaleCase) []scaleCase {
	out := make([]scaleCase, len(cs))
	for i, c := range cs {
		out[len(cs)-1-i] = c
	}
	return out
}

// roundStats is what a case cost beyond its rate: the router's tenant cache
// lookups and misses (publicdigit_tenant_cache_{lookups,misses}_total on a
// server's /metrics, read by cacheCount) and the WAL written.
type roundStats struct{ lookups, misses, wal float64 }

// walBytes is the server's WAL position in bytes: the difference across a
// round is the WAL it wrote meanwhile (every database's; the scratch
// database's traffic, on a server without other writers).
func (s *scaleRun) walBytes(ctx context.Context) (float64, error) {
	var b float64
	err := s.admin.QueryRowContext(ctx, `SELECT pg_current_wal_lsn() - '0/0'::pg_lsn`).Scan(&b)
	return b, err
}

func (ac *apiClient) cacheCount() (roundStats, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("/metrics")
	req.Header.SetHost(ac.hc.Addr)
	if err := ac.hc.Do(req, resp); err != nil {
		return roundStats{}, err
	}
	var c roundStats
	for _, line := range strings.Split(string(resp.Body()), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch name {
		case "publicdigit_tenant_cache_lookups_total":
			c.lookups, _ = strconv.ParseFloat(v, 64)
		case "publicdigit_tenant_cache_misses_total":
			c.misses, _ = strconv.ParseFloat(v, 64)
		}
	}
	return c, nil
}

// laneBackendMB is the private memory of every lane backend of b, by pid.
func (s *scaleRun) laneBackendMB(ctx context.Context, b *bouncer) (map[int]float64, error) {
	pids, err := b.serverPIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := map[int]float64{}
	for db, ps := range pids {
		if !strings.HasPrefix(db, s.f.db+"_lane") {
			continue
		}
		for _, pid := range ps {
			if mb, err := rssAnonMB(pid); err == nil {
				out[pid] = mb
			}
		}
	}
	return out, nil
}

// laneGrowth prints how much the lane backends grew during the measured
// rounds (catalog entries loaded then, not in the warm-up) and how many
// lane backends there are.
func (s *scaleRun) laneGrowth(ctx context.Context, b *bouncer, before map[int]float64) error {
	after, err := s.laneBackendMB(ctx, b)
	if err != nil {
		return err
	}
	var grew, total float64
	fresh := 0
	for pid, mb := range after {
		total += mb
		if was, ok := before[pid]; ok {
			grew += mb - was
		} else {
			fresh++
		}
	}
	fmt.Fprintf(s.out, "#   lane backends: %d after the warm-up, %d after the rounds (%d new), %.0f MB in all; the ones kept grew %.1f MB during the rounds\n",
		len(before), len(after), fresh, total, grew)
	if fresh > 0 || grew > 0.01*total {
		fmt.Fprintf(s.out, "#   NOTE: the lane backends loaded catalog entries during the rounds: the warm-up did not reach the steady state (more -warmup, or -lanes equal to -pool)\n")
	}
	return nil
}
