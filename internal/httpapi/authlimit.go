package httpapi

import (
	"sync"
	"time"
)

// failureLimiter counts failed authentications (a well-formed bearer token
// that the catalog does not accept) per client address in fixed windows.
// Past the limit, the address gets 429 for the rest of its window without a
// catalog lookup, so random tokens cannot make the server query the
// landlord at will; tokens already authenticated (the cache) still pass.
type failureLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu sync.Mutex
	m  map[string]failWindow
}

type failWindow struct {
	start time.Time
	n     int
}

// maxTrackedAddresses bounds the limiter's memory.
const maxTrackedAddresses = 100_000

// newFailureLimiter allows limit failures per address per window; a limit
// of 0 or less turns it off (nil).
func newFailureLimiter(limit int, window time.Duration) *failureLimiter {
	if limit <= 0 {
		return nil
	}
	return &failureLimiter{limit: limit, window: window, now: time.Now, m: map[string]failWindow{}}
}

// blocked reports whether addr used up its failures, and for how long.
func (l *failureLimiter) blocked(addr string) (time.Duration, bool) {
	if l == nil {
		return 0, false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.m[addr]
	if !ok {
		return 0, false
	}
	left := w.start.Add(l.window).Sub(now)
	if left <= 0 {
		delete(l.m, addr)
		return 0, false
	}
	return left, w.n >= l.limit
}

// fail counts one failed authentication of addr.
func (l *failureLimiter) fail(addr string) {
	if l == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.m[addr]
	if !ok || !now.Before(w.start.Add(l.window)) {
		if len(l.m) >= maxTrackedAddresses {
			l.sweep(now)
		}
		w = failWindow{start: now}
	}
	w.n++
	l.m[addr] = w
}

// sweep drops ended windows; if every window is live, all of them (bounded
// memory matters more than a few forgiven failures).
func (l *failureLimiter) sweep(now time.Time) {
	for a, w := range l.m {
		if !now.Before(w.start.Add(l.window)) {
			delete(l.m, a)
		}
	}
	if len(l.m) >= maxTrackedAddresses {
		clear(l.m)
	}
}
