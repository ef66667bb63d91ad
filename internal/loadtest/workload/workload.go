// Package workload drives one isolation mode with the load test's four
// operations — read a card, list a page, issue a card, change a card's state
// — from concurrent workers for a bounded time. Every row it reads carries a
// tenant_id, checked against the tenant the operation asked for; it counts
// throughput, latency, errors by kind, wrong-tenant reads and acknowledged
// writes.
package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/publicdigit/publicdigit/internal/loadtest/modes"
	"github.com/publicdigit/publicdigit/internal/loadtest/scratch"
)

// Op is one kind of operation.
type Op int

// The operations.
const (
	Read   Op = iota // read a card by its number: one round trip
	List             // list a page of cards (keyset on the number): one round trip
	Issue            // issue a card to a member, with its activity: one statement, one round trip
	Change           // change a card's state: read FOR UPDATE, decide, update + activity: a transaction, two round trips
)

var opNames = [...]string{"read", "list", "issue", "change"}

func (o Op) String() string { return opNames[o] }

// Mix weighs the operations.
type Mix [4]int

// DefaultMix is mostly reads, as a card service is.
var DefaultMix = Mix{60, 20, 10, 10}

// ParseMix reads "read=60,list=20,issue=10,change=10"; an operation left out weighs 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	sum := 0
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		i := slices.Index(opNames[:], name)
		n, err := strconv.Atoi(val)
		if !ok || i < 0 || err != nil || n < 0 {
			return m, fmt.Errorf("%q is not op=weight (ops: read, list, issue, change; weights ≥ 0)", part)
		}
		m[i] = n
		sum += n
	}
	if sum == 0 {
		return m, fmt.Errorf("%q: the weights sum to 0", s)
	}
	return m, nil
}

func (m Mix) String() string {
	parts := make([]string, len(m))
	for i, w := range m {
		parts[i] = opNames[i] + "=" + strconv.Itoa(w)
	}
	return strings.Join(parts, ",")
}

func (m Mix) pick(r *rand.Rand) Op {
	n := r.IntN(m[0] + m[1] + m[2] + m[3])
	for i, w := range m {
		if n < w {
			return Op(i)
		}
		n -= w
	}
	return Read
}

// Skew is how tenants are chosen.
type Skew string

// The skews.
const (
	Uniform Skew = "uniform" // every tenant alike
	Zipf    Skew = "zipf"    // a few hot tenants: tenant k with weight 1/(1+k)^s
)

// Config is one cell's workload.
type Config struct {
	Concurrency int           // workers, each one operation at a time
	Warmup      time.Duration // run but not measured
	Duration    time.Duration // measured
	Mix         Mix
	Skew        Skew
	ZipfS       float64 // the zipf exponent (> 1)
	Seed        uint64
	// Marker is written into every card's QR code and every activity's actor
	// (the path), so rows can be told apart by the cell that wrote them.
	Marker string
	// Round makes QR codes unique across the cells of one marker.
	Round     int
	Members   int // members per tenant, numbered from 1
	Cards     int // seeded cards per tenant, numbered from 1
	PageSize  int
	OpTimeout time.Duration // bounds each operation
}

// Stats is what one cell measured. Throughput and latency are of the
// measured window; the counts cover warm-up too, since every read is checked
// and every write must be found.
type Stats struct {
	Elapsed   time.Duration   // the measured window
	Ops       int64           // operations that succeeded in the window
	Latencies []time.Duration // of those operations, sorted
	OpsTotal  int64           // every operation tried
	Reads     int64           // rows read
	// WrongReads are rows read whose tenant_id is not the tenant asked for.
	WrongReads int64
	Errors     map[string]int64 // by Kind
	// WritesAcked are rows whose write was acknowledged (committed).
	WritesAcked int64
	// WritesUnsure are rows of writes that failed after being sent without
	// a definite answer (e.g. a client timeout): committed or not.
	WritesUnsure int64
	Interrupted  bool // stopped early by ctx
}

// Throughput is successful operations per second of the measured window.
func (s Stats) Throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Ops) / s.Elapsed.Seconds()
}

// Percentile is the latency at p (0..1), nearest rank; 0 without operations.
func (s Stats) Percentile(p float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(s.Latencies))*p+0.999999) - 1
	return s.Latencies[min(max(i, 0), len(s.Latencies)-1)]
}

// ErrorCount sums the errors.
func (s Stats) ErrorCount() int64 {
	var n int64
	for _, v := range s.Errors {
		n += v
	}
	return n
}

// Run drives b for cfg.Warmup + cfg.Duration, or until ctx ends. An
// operation under way when ctx ends is finished (bounded by OpTimeout), so
// every write is either counted or known unsure.
func Run(ctx context.Context, b modes.Binder, tenants []scratch.Tenant, cfg Config) Stats {
	start := time.Now()
	from, until := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Duration)
	ws := make([]worker, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		w.id, w.cfg, w.b, w.tenants = i, cfg, b, tenants
		w.r = rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.Round)<<32|uint64(i)))
		if cfg.Skew == Zipf && len(tenants) > 1 {
			w.zipf = rand.NewZipf(w.r, cfg.ZipfS, 1, uint64(len(tenants)-1))
		}
		w.stats.Errors = map[string]int64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, from, until)
		}()
	}
	wg.Wait()
	end := time.Now()
	if end.After(until) {
		end = until
	}
	out := Stats{Errors: map[string]int64{}, Interrupted: ctx.Err() != nil}
	if end.After(from) {
		out.Elapsed = end.Sub(from)
	}
	for i := range ws {
		s := &ws[i].stats
		out.Ops += s.Ops
		out.OpsTotal += s.OpsTotal
		out.Reads += s.Reads
		out.WrongReads += s.WrongReads
		out.WritesAcked += s.WritesAcked
		out.WritesUnsure += s.WritesUnsure
		out.Latencies = append(out.Latencies, s.Latencies...)
		for k, v := range s.Errors {
			out.Errors[k] += v
		}
	}
	slices.Sort(out.Latencies)
	return out
}

type worker struct {
	id      int
	cfg     Config
	b       modes.Binder
	tenants []scratch.Tenant
	r       *rand.Rand
	zipf    *rand.Zipf
	seq     int
	stats   Stats
}

func (w *worker) loop(ctx context.Context, from, until time.Time) {
	for ctx.Err() == nil {
		began := time.Now()
		if !began.Before(until) {
			return
		}
		t := &w.tenants[w.tenant()]
		op := w.cfg.Mix.pick(w.r)
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.OpTimeout)
		res := w.run(octx, op, t)
		cancel()
		took := time.Since(began)

		s := &w.stats
		s.OpsTotal++
		s.Reads += res.reads
		s.WrongReads += res.wrong
		if res.err == nil {
			s.WritesAcked += res.writes
			if !began.Before(from) {
				s.Ops++
				s.Latencies = append(s.Latencies, took)
			}
			continue
		}
		s.Errors[Kind(res.err)]++
		if unsure(res.err) {
			s.WritesUnsure += res.writes
		}
	}
}

func (w *worker) tenant() int {
	if w.zipf != nil {
		return int(w.zipf.Uint64())
	}
	return w.r.IntN(len(w.tenants))
}
