package membership_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/membership"
)

// countingGeo knows units 1 and 2 (and fails for 99), counting its lookups.
type countingGeo struct{ calls atomic.Int64 }

func (g *countingGeo) Exists(_ context.Context, id int64) (bool, error) {
	g.calls.Add(1)
	if id == 99 {
		return false, errors.New("catalog down")
	}
	return id == 1 || id == 2, nil
}

func TestCachedGeoRemembersKnownUnitsOnly(t *testing.T) {
	t.Parallel()
	inner := &countingGeo{}
	g := membership.CachedGeo(inner, 50*time.Millisecond, 1)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		ok, err := g.Exists(ctx, 1)
		require.NoError(t, err)
		assert.True(t, ok)
	}
	assert.Equal(t, int64(1), inner.calls.Load(), "a known unit is looked up once")
	for i := 0; i < 2; i++ {
		ok, err := g.Exists(ctx, 5)
		require.NoError(t, err)
		assert.False(t, ok)
	}
	assert.Equal(t, int64(3), inner.calls.Load(), "an unknown unit is looked up every time")
	_, err := g.Exists(ctx, 99)
	assert.Error(t, err, "errors pass through")

	// Bounded: a second unit replaces the first (max 1 entry); entries expire.
	ok, err := g.Exists(ctx, 2)
	require.NoError(t, err)
	assert.True(t, ok)
	before := inner.calls.Load()
	_, _ = g.Exists(ctx, 1)
	assert.Equal(t, before+1, inner.calls.Load())
	time.Sleep(60 * time.Millisecond)
	_, _ = g.Exists(ctx, 1)
	assert.Equal(t, before+2, inner.calls.Load(), "expired")
}
