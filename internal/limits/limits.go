// Package limits keeps one tenant from crowding out the others in a server
// process: each tenant may have at most its concurrency limit of API
// requests in flight (its own, from the catalog, or the configured
// default); a request over the limit waits in the tenant's short queue for a
// slot, and is refused with ErrLimited (429, retryable) when the queue is
// full or the wait runs out. Waiting costs no database connection: a
// flooding tenant holds at most its limit of the shared pool's connections
// (and of PgBouncer's), whatever its clients send.
//
// The other per-tenant limit, statement time, is enforced by PostgreSQL:
// the router binds each transaction's statement_timeout from the catalog
// row (internal/pgroute). Both come from the catalog and change without a
// restart (the change notice drops the cached tenant).
package limits

import (
	"context"
	"sync"
	"time"

	"github.com/publicdigit/publicdigit/internal/apperr"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// ErrLimited: the tenant has too many requests in flight; retry shortly.
var ErrLimited = apperr.New("tenant_limited", "too many concurrent requests for this tenant")

// Options configure a Limiter.
type Options struct {
	// MaxConcurrent is the default concurrency limit of a tenant (one
	// without its own). Required (> 0).
	MaxConcurrent int
	// StatementTimeout is the default statement timeout, for Stats only
	// (the router enforces it).
	StatementTimeout time.Duration
	// QueueWait bounds how long a request over the limit waits for a slot
	// (0: it is refused at once).
	QueueWait time.Duration
	// MaxQueued bounds the requests of one tenant waiting at once; more are
	// refused at once. Default 4 × the tenant's limit.
	MaxQueued int
	// IdleForget drops a tenant that had nothing in flight for this long
	// (its counts go; its next request starts afresh). Default 10 minutes.
	IdleForget time.Duration
}

// Limiter admits tenant requests. Safe for concurrent use.
type Limiter struct {
	o Options

	mu      sync.Mutex
	tenants map[string]*state
	swept   time.Time

	limited, waited uint64 // totals, for metrics
}

// state is one tenant's, keyed by slug (a tenant purged and created again
// under its slug shares it: harmless, and one metrics series per slug).
type state struct {
	limit    int
	timeout  time.Duration
	inFlight int
	queue    []chan struct{}
	limited  uint64
	lastUsed time.Time
}

// New returns a Limiter.
func New(o Options) *Limiter {
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 1
	}
	if o.IdleForget <= 0 {
		o.IdleForget = 10 * time.Minute
	}
	return &Limiter{o: o, tenants: map[string]*state{}}
}

// Defaults returns the configured defaults.
func (l *Limiter) Defaults() tenant.Limits {
	return tenant.Limits{MaxConcurrentRequests: l.o.MaxConcurrent, StatementTimeout: l.o.StatementTimeout}
}

// Effective is t's limits with the defaults filled in.
func (l *Limiter) Effective(t tenant.Tenant) tenant.Limits {
	e := t.Limits()
	if e.MaxConcurrentRequests == 0 {
		e.MaxConcurrentRequests = l.o.MaxConcurrent
	}
	if e.StatementTimeout == 0 {
		e.StatementTimeout = l.o.StatementTimeout
	}
	return e
}

func (l *Limiter) maxQueued(limit int) int {
	if l.o.MaxQueued > 0 {
		return l.o.MaxQueued
	}
	return 4 * limit
}

// Acquire admits one request of t (as resolved for this request, so a
// changed limit applies at once) and returns the function that ends it; it
// waits for a slot at most Options.QueueWait, or until ctx ends. Over the
// limit with a full queue or past the wait: ErrLimited.
func (l *Limiter) Acquire(ctx context.Context, t tenant.Tenant) (func(), error) {
	eff := l.Effective(t)
	now := time.Now()
	l.mu.Lock()
	key := t.Slug.String()
	s := l.tenants[key]
	if s == nil {
		l.sweepLocked(now)
		s = &state{}
		l.tenants[key] = s
	}
	s.limit, s.timeout, s.lastUsed = eff.MaxConcurrentRequests, eff.StatementTimeout, now
	release := func() { l.release(key) }
	if s.inFlight < s.limit && len(s.queue) == 0 {
		s.inFlight++
		l.mu.Unlock()
		return release, nil
	}
	if l.o.QueueWait <= 0 || len(s.queue) >= l.maxQueued(s.limit) {
		s.limited++
		l.limited++
		l.mu.Unlock()
		return nil, ErrLimited
	}
	ch := make(chan struct{})
	s.queue = append(s.queue, ch)
	l.waited++
	l.mu.Unlock()

	timer := time.NewTimer(l.o.QueueWait)
	defer timer.Stop()
	select {
	case <-ch:
		return release, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, q := range s.queue {
		if q == ch {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.limited++
			l.limited++
			return nil, ErrLimited
		}
	}
	// Handed a slot while giving up: take it.
	return release, nil
}

// release ends a request and hands its slot to the longest waiting one.
func (l *Limiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.tenants[key]
	if s == nil {
		return
	}
	s.inFlight--
	s.lastUsed = time.Now()
	for s.inFlight < s.limit && len(s.queue) > 0 {
		ch := s.queue[0]
		s.queue = s.queue[1:]
		s.inFlight++
		close(ch)
	}
}

// sweepLocked forgets idle tenants, at most once a minute.
func (l *Limiter) sweepLocked(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for key, s := range l.tenants {
		if s.inFlight == 0 && len(s.queue) == 0 && now.Sub(s.lastUsed) > l.o.IdleForget {
			delete(l.tenants, key)
		}
	}
}

// TenantStat is one tenant's limits and load, for metrics.
type TenantStat struct {
	Tenant           string
	MaxConcurrent    int
	StatementTimeout time.Duration
	InFlight         int
	Waiting          int
	// Limited counts the tenant's refused requests since it was last idle.
	Limited uint64
}

// Stats describes the tenants with recent requests.
type Stats struct {
	Tenants []TenantStat
	// Limited and Waited count every refused request, and every request
	// that had to wait, since start.
	Limited, Waited uint64
}

// Stats returns the current limits and load of the tenants seen recently.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{Limited: l.limited, Waited: l.waited, Tenants: make([]TenantStat, 0, len(l.tenants))}
	for key, s := range l.tenants {
		st.Tenants = append(st.Tenants, TenantStat{Tenant: key, MaxConcurrent: s.limit, StatementTimeout: s.timeout,
			InFlight: s.inFlight, Waiting: len(s.queue), Limited: s.limited})
	}
	return st
}
