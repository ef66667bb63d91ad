package limits_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/limits"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func tenantWith(slug string, max int) tenant.Tenant {
	return tenant.Tenant{ID: uuid.New(), Slug: tenant.MustSlug(slug), MaxConcurrentRequests: max}
}

// At most the limit in flight, whatever the number of callers; the others
// wait their turn and all get through.
func TestLimitHoldsUnderLoad(t *testing.T) {
	l := limits.New(limits.Options{MaxConcurrent: 3, QueueWait: 5 * time.Second, MaxQueued: 100})
	ten := tenantWith("acme", 0)
	var inFlight, peak atomic.Int64
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := l.Acquire(context.Background(), ten)
			if !assert.NoError(t, err) {
				return
			}
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			inFlight.Add(-1)
			release()
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(3), peak.Load())
	st := l.Stats()
	assert.Zero(t, st.Limited)
	assert.Positive(t, st.Waited)
}

// A tenant's own limit overrides the default; other tenants are not
// affected by one tenant's load.
func TestLimitsArePerTenant(t *testing.T) {
	l := limits.New(limits.Options{MaxConcurrent: 2})
	busy, quiet := tenantWith("busy", 1), tenantWith("quiet", 0)
	r1, err := l.Acquire(context.Background(), busy)
	require.NoError(t, err)
	_, err = l.Acquire(context.Background(), busy)
	assert.ErrorIs(t, err, limits.ErrLimited, "its own limit of 1, no queue")
	q1, err := l.Acquire(context.Background(), quiet)
	require.NoError(t, err)
	q2, err := l.Acquire(context.Background(), quiet)
	require.NoError(t, err, "the default limit of 2")
	_, err = l.Acquire(context.Background(), quiet)
	assert.ErrorIs(t, err, limits.ErrLimited)
	r1()
	q1()
	q2()
	r2, err := l.Acquire(context.Background(), busy)
	require.NoError(t, err)
	r2()
}

// Over the limit a request waits at most QueueWait; the queue is bounded.
func TestQueueWaitAndLength(t *testing.T) {
	l := limits.New(limits.Options{MaxConcurrent: 1, QueueWait: 50 * time.Millisecond, MaxQueued: 1})
	ten := tenantWith("acme", 0)
	release, err := l.Acquire(context.Background(), ten)
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() {
		_, err := l.Acquire(context.Background(), ten)
		waited <- err
	}()
	require.Eventually(t, func() bool { return l.Stats().Tenants[0].Waiting == 1 }, time.Second, time.Millisecond)
	start := time.Now()
	_, err = l.Acquire(context.Background(), ten)
	assert.ErrorIs(t, err, limits.ErrLimited, "queue full: refused at once")
	assert.Less(t, time.Since(start), 40*time.Millisecond)
	assert.ErrorIs(t, <-waited, limits.ErrLimited, "the wait ran out")
	release()
	assert.Equal(t, uint64(2), l.Stats().Limited)
}

// A changed limit applies to the next request; a raised one lets waiting
// requests in as soon as a slot frees.
func TestChangedLimitAppliesAtOnce(t *testing.T) {
	l := limits.New(limits.Options{MaxConcurrent: 1, QueueWait: 5 * time.Second})
	ten := tenantWith("acme", 0)
	r1, err := l.Acquire(context.Background(), ten)
	require.NoError(t, err)
	ten.MaxConcurrentRequests = 3
	r2, err := l.Acquire(context.Background(), ten)
	require.NoError(t, err, "the new limit")
	r3, err := l.Acquire(context.Background(), ten)
	require.NoError(t, err)
	st := l.Stats().Tenants[0]
	assert.Equal(t, 3, st.MaxConcurrent)
	assert.Equal(t, 3, st.InFlight)
	r1()
	r2()
	r3()
	assert.Equal(t, 0, l.Stats().Tenants[0].InFlight)
}
