package httpapi

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCursors(t *testing.T) {
	t.Parallel()
	cs, err := NewCursors([]byte("0123456789abcdef0123456789abcdef"))
	require.NoError(t, err)
	id := uuid.Must(uuid.NewV7())
	scope := cursorScope("members", "acme", "status=active", "geo_unit_id=")
	c := cs.Sign(scope, id)
	assert.Len(t, c, 44)
	got, err := cs.Open(scope, c)
	require.NoError(t, err)
	assert.Equal(t, id, got)

	// Another tenant, filter, listing or key: refused.
	other, err := NewCursors([]byte("another secret, 32 bytes long..."))
	require.NoError(t, err)
	for name, s := range map[string]string{
		"tenant":  cursorScope("members", "acmf", "status=active", "geo_unit_id="),
		"filter":  cursorScope("members", "acme", "status=", "geo_unit_id="),
		"listing": cursorScope("cards", "acme", "status=active", "geo_unit_id="),
		// Parts cannot be shifted from one field to the next.
		"shifted": cursorScope("members", "acme", "status=activegeo_unit_id=", ""),
	} {
		_, err := cs.Open(s, c)
		assert.ErrorIs(t, err, ErrInvalidCursor, name)
	}
	_, err = other.Open(scope, c)
	assert.ErrorIs(t, err, ErrInvalidCursor, "another key")
	for _, bad := range []string{"", "x", c[:43], c + "A", c[:43] + "=", "!" + c[1:]} {
		_, err := cs.Open(scope, bad)
		assert.ErrorIs(t, err, ErrInvalidCursor, bad)
	}
	assert.NotEqual(t, cursorScope("a", "b", "c\x00"), cursorScope("a", "b", "c", ""))

	// An empty secret makes a random one per signer.
	r1, err := NewCursors(nil)
	require.NoError(t, err)
	r2, err := NewCursors(nil)
	require.NoError(t, err)
	_, err = r2.Open(scope, r1.Sign(scope, id))
	assert.ErrorIs(t, err, ErrInvalidCursor)
}
