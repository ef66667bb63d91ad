package scratch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Rollout adds one nullable column to members for every tenant of the set,
// one statement per tenant (one for the shared tables), serially, the way a
// fleet migration runs; it returns the time taken.
func (s *Server) Rollout(ctx context.Context, set *Set) (time.Duration, error) {
	start := time.Now()
	alter := func(conn *pgx.Conn, schema string) error {
		_, err := conn.Exec(ctx, "ALTER TABLE "+pgx.Identifier{schema, "members"}.Sanitize()+" ADD COLUMN note text")
		return err
	}
	switch set.Layout {
	case LayoutDatabase:
		for _, db := range set.Served() {
			conn, err := s.connect(ctx, db)
			if err != nil {
				return 0, err
			}
			err = alter(conn, DatabaseSchema)
			conn.Close(context.WithoutCancel(ctx))
			if err != nil {
				return 0, fmt.Errorf("scratch: rollout %s: %w", db, err)
			}
		}
	default:
		conn, err := s.connect(ctx, set.Databases[0])
		if err != nil {
			return 0, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if set.Layout == LayoutRLS {
			if err := alter(conn, SharedSchema); err != nil {
				return 0, fmt.Errorf("scratch: rollout: %w", err)
			}
			break
		}
		for _, t := range set.Tenants {
			if err := alter(conn, t.Schema); err != nil {
				return 0, fmt.Errorf("scratch: rollout %s: %w", t.Schema, err)
			}
		}
	}
	return time.Since(start), nil
}

// Rows counts rows carrying one marker: "seed" for seed rows, otherwise the
// marker the workload wrote into each card's QR code and each activity's
// actor (its path).
type Rows struct {
	Found int64 // rows with the marker, wherever they are
	// Misplaced rows sit in another tenant's tables than the one named by
	// their tenant_id: a write that went to the wrong tenant.
	Misplaced int64
}

// Count reads every row of the set, grouped by marker.
func (s *Server) Count(ctx context.Context, set *Set) (map[string]Rows, error) {
	out := map[string]Rows{}
	var mu sync.Mutex
	add := func(conn *pgx.Conn, schema string, owner uuid.UUID) error {
		q := func(t string) string { return pgx.Identifier{schema, t}.Sanitize() }
		rows, err := conn.Query(ctx, `SELECT tenant_id, 'seed', count(*) FROM `+q("members")+` GROUP BY 1
UNION ALL SELECT tenant_id, split_part(qr_code, '-', 1), count(*) FROM `+q("digital_cards")+` GROUP BY 1, 2
UNION ALL SELECT tenant_id, actor, count(*) FROM `+q("card_activities")+` GROUP BY 1, 2`)
		if err != nil {
			return err
		}
		var tid uuid.UUID
		var marker string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&tid, &marker, &n}, func() error {
			mu.Lock()
			defer mu.Unlock()
			r := out[marker]
			r.Found += n
			if owner != uuid.Nil && tid != owner {
				r.Misplaced += n
			}
			out[marker] = r
			return nil
		})
		return err
	}
	if set.Layout == LayoutDatabase {
		err := parallel(len(set.Tenants), func(i int) error {
			t := set.Tenants[i]
			conn, err := s.connect(ctx, t.Database)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			if err := add(conn, t.Schema, t.ID); err != nil {
				return fmt.Errorf("scratch: count %s: %w", t.Database, err)
			}
			return nil
		})
		return out, err
	}
	conn, err := s.connect(ctx, set.Databases[0])
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if set.Layout == LayoutRLS {
		// One table for all: a row's tenant is its tenant_id.
		return out, add(conn, SharedSchema, uuid.Nil)
	}
	for _, t := range set.Tenants {
		if err := add(conn, t.Schema, t.ID); err != nil {
			return nil, fmt.Errorf("scratch: count %s: %w", t.Schema, err)
		}
	}
	return out, nil
}

// Size is the size on disk of the set's databases, in bytes.
func (s *Server) Size(ctx context.Context, set *Set) (int64, error) {
	var n int64
	err := s.admin.QueryRow(ctx, `SELECT coalesce(sum(pg_database_size(d)), 0)::bigint FROM unnest($1::text[]) d`, set.Databases).Scan(&n)
	return n, err
}

// Conns counts the application role's backends on the set's databases.
type Conns struct {
	Total  int // connected
	Active int // running a statement or inside a transaction
}

// Connections reads pg_stat_activity once: the backends of the
// application role on the set's databases, with application_name app.
func (s *Server) Connections(ctx context.Context, set *Set, app string) (Conns, error) {
	var c Conns
	err := s.admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state <> 'idle')
  FROM pg_stat_activity WHERE usename = $1 AND datname = ANY($2) AND application_name = $3`,
		s.AppUser, set.Served(), app).Scan(&c.Total, &c.Active)
	return c, err
}

// Memory is the private memory of the backends serving a set.
type Memory struct {
	Backends int
	TotalKB  int64 // sum over the backends
	MaxKB    int64 // the largest backend
}

// ErrNoProc means backend memory cannot be read from here: the harness does
// not run on the database's machine or may not read its processes.
var ErrNoProc = errors.New("backend memory: /proc of the server's processes is not readable")

// BackendMemory reads, for every application-role backend connected to the
// set's databases with application_name app, the anonymous (private, non-shared) memory from
// /proc/<pid>/smaps_rollup: the backend's heap, where its memory contexts —
// catalog and relation caches (CacheMemoryContext), plan caches, work areas —
// live. Shared buffers are shared memory and not counted. It needs the
// harness on the database's machine, as root or as the server's user.
func (s *Server) BackendMemory(ctx context.Context, set *Set, app string) (Memory, error) {
	rows, err := s.admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE usename = $1 AND datname = ANY($2) AND application_name = $3`,
		s.AppUser, set.Served(), app)
	if err != nil {
		return Memory{}, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	var lastErr error
	for _, pid := range pids {
		kb, err := anonymousKB(int(pid))
		if errors.Is(err, os.ErrNotExist) {
			continue // ended meanwhile
		}
		if err != nil {
			lastErr = err
			continue
		}
		m.Backends++
		m.TotalKB += kb
		m.MaxKB = max(m.MaxKB, kb)
	}
	if m.Backends == 0 && lastErr != nil {
		return m, fmt.Errorf("%w (%v)", ErrNoProc, lastErr)
	}
	return m, nil
}

func anonymousKB(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Anonymous:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("pid %d: no Anonymous line", pid)
}

// Sampler reads the set's connection counts at a fixed interval.
type Sampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	peak Conns
	sum  int
	n    int
	err  error
}

// Sample is what a Sampler saw.
type Sample struct {
	Peak       Conns   // the largest counts seen (each on its own)
	MeanTotal  float64 // mean of the connected counts
	Samples    int
	FirstError error
}

// StartSampler samples Connections every interval until Stop.
func (s *Server) StartSampler(ctx context.Context, set *Set, app string, every time.Duration) *Sampler {
	sm := &Sampler{stop: make(chan struct{})}
	sm.wg.Add(1)
	go func() {
		defer sm.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			c, err := s.Connections(ctx, set, app)
			sm.mu.Lock()
			if err != nil && sm.err == nil {
				sm.err = err
			} else if err == nil {
				sm.peak.Total, sm.peak.Active = max(sm.peak.Total, c.Total), max(sm.peak.Active, c.Active)
				sm.sum += c.Total
				sm.n++
			}
			sm.mu.Unlock()
			select {
			case <-sm.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return sm
}

// Stop ends sampling and returns what was seen.
func (sm *Sampler) Stop() Sample {
	close(sm.stop)
	sm.wg.Wait()
	sm.mu.Lock()
	defer sm.mu.Unlock()
	out := Sample{Peak: sm.peak, Samples: sm.n, FirstError: sm.err}
	if sm.n > 0 {
		out.MeanTotal = float64(sm.sum) / float64(sm.n)
	}
	return out
}
