package access_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func newService(t *testing.T, o access.Options) *access.Service {
	t.Helper()
	dbtest.Landlord(t)
	return access.New(dbtest.AppPool(t, dbtest.Bouncer, 4), dbtest.Catalog(t), o)
}

func create(t *testing.T, s *access.Service, r access.CreateRequest) (string, access.Token) {
	t.Helper()
	secret, tok, err := s.Create(context.Background(), r)
	require.NoError(t, err)
	dbtest.DeleteTokenAtCleanup(t, tok.ID)
	return secret, tok
}

func TestPlatformToken(t *testing.T) {
	t.Parallel()
	s := newService(t, access.Options{})
	ctx := context.Background()
	secret, tok := create(t, s, access.CreateRequest{Name: "ops", Kind: access.KindPlatform})
	assert.True(t, strings.HasPrefix(secret, access.SecretPrefix))
	assert.Len(t, secret, 47)
	assert.True(t, strings.HasPrefix(secret, tok.Prefix))
	assert.Equal(t, access.KindPlatform, tok.Kind)
	assert.Nil(t, tok.LastUsedAt)

	p, err := s.Authenticate(ctx, secret)
	require.NoError(t, err)
	assert.True(t, p.IsPlatform())
	assert.Equal(t, tok.ID, p.TokenID)
	assert.True(t, p.CanActOn(tenant.MustSlug("anyone")))

	got, err := s.Get(ctx, tok.ID)
	require.NoError(t, err)
	require.NotNil(t, got.LastUsedAt, "use is recorded")

	// The catalog holds the hash, never the secret.
	var stored []byte
	var n int
	db := dbtest.AdminDB(t)
	require.NoError(t, db.QueryRowContext(ctx, `SELECT token_hash, (SELECT count(*) FROM landlord.api_tokens WHERE prefix = $2 OR token_hash::text LIKE '%' || $3 || '%')
		FROM landlord.api_tokens WHERE id = $1`, tok.ID, secret, secret[len(access.SecretPrefix):]).Scan(&stored, &n))
	h := access.Hash(secret)
	assert.Equal(t, h[:], stored)
	assert.Zero(t, n)
}

func TestWrongTokensAreUnauthenticated(t *testing.T) {
	t.Parallel()
	s := newService(t, access.Options{})
	ctx := context.Background()
	secret, _ := create(t, s, access.CreateRequest{Name: "x", Kind: access.KindPlatform})
	flipped := []byte(secret)
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	for _, bad := range []string{"", "Bearer", secret[:len(secret)-1], secret + "A", string(flipped),
		strings.ToUpper(secret), "pdt_" + strings.Repeat("!", 43), "'; DROP TABLE landlord.api_tokens; --"} {
		_, err := s.Authenticate(ctx, bad)
		assert.ErrorIs(t, err, access.ErrUnauthenticated, "%q", bad)
	}
}

func TestTenantTokenAndRevocation(t *testing.T) {
	t.Parallel()
	s := newService(t, access.Options{CacheTTL: time.Minute})
	ctx := context.Background()
	tt := dbtest.TenantRow(t, "tok")
	slug := tenant.MustSlug(tt.Slug)

	secret, tok := create(t, s, access.CreateRequest{Name: "app", Kind: access.KindTenant, Tenant: slug})
	assert.Equal(t, slug, tok.Tenant)
	assert.Equal(t, tt.ID.String(), tok.TenantID)
	p, err := s.Authenticate(ctx, secret)
	require.NoError(t, err)
	assert.False(t, p.IsPlatform())
	assert.Equal(t, slug, p.Tenant)
	assert.True(t, p.CanActOn(slug))
	assert.False(t, p.CanActOn(tenant.MustSlug("someone_else")))

	list, err := s.List(ctx, access.ListFilter{Tenant: slug})
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, tok.ID, list[0].ID)

	rev, err := s.Revoke(ctx, tok.ID)
	require.NoError(t, err)
	require.NotNil(t, rev.RevokedAt)
	_, err = s.Authenticate(ctx, secret)
	assert.ErrorIs(t, err, access.ErrUnauthenticated, "revocation beats the cache of the same service")
	again, err := s.Revoke(ctx, tok.ID)
	require.NoError(t, err)
	assert.Equal(t, rev.RevokedAt.UnixMicro(), again.RevokedAt.UnixMicro(), "revoking twice keeps the first time")

	list, err = s.List(ctx, access.ListFilter{Tenant: slug})
	require.NoError(t, err)
	assert.Empty(t, list)
	list, err = s.List(ctx, access.ListFilter{Tenant: slug, IncludeRevoked: true})
	require.NoError(t, err)
	assert.Len(t, list, 1)
}

func TestExpiredToken(t *testing.T) {
	t.Parallel()
	s := newService(t, access.Options{CacheTTL: time.Hour})
	exp := time.Now().Add(time.Second)
	secret, _ := create(t, s, access.CreateRequest{Name: "short", Kind: access.KindPlatform, ExpiresAt: &exp})
	_, err := s.Authenticate(context.Background(), secret)
	require.NoError(t, err)
	time.Sleep(time.Until(exp) + 50*time.Millisecond) // the cached entry honours the token's expiry
	_, err = s.Authenticate(context.Background(), secret)
	assert.ErrorIs(t, err, access.ErrUnauthenticated)
}

func TestCreateRefusesBadRequests(t *testing.T) {
	t.Parallel()
	s := newService(t, access.Options{})
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	for name, r := range map[string]access.CreateRequest{
		"no name":         {Kind: access.KindPlatform},
		"control":         {Name: "a\tb", Kind: access.KindPlatform},
		"no kind":         {Name: "x"},
		"platform+tenant": {Name: "x", Kind: access.KindPlatform, Tenant: tenant.MustSlug("acme")},
		"tenant alone":    {Name: "x", Kind: access.KindTenant},
		"expired":         {Name: "x", Kind: access.KindPlatform, ExpiresAt: &past},
	} {
		_, _, err := s.Create(ctx, r)
		assert.ErrorIs(t, err, access.ErrInvalidToken, name)
	}
	_, _, err := s.Create(ctx, access.CreateRequest{Name: "x", Kind: access.KindTenant, Tenant: tenant.MustSlug(dbtest.Name("nobody"))})
	assert.ErrorIs(t, err, tenant.ErrNotFound)

	_, err = s.Revoke(ctx, "not-a-uuid")
	assert.ErrorIs(t, err, access.ErrTokenNotFound)
	_, err = s.Revoke(ctx, "00000000-0000-0000-0000-000000000000")
	assert.ErrorIs(t, err, access.ErrTokenNotFound)
}

// TestFullCacheEvictsTheLeastRecentlyUsed: past CacheSize active tokens the
// cache keeps the recently used ones instead of starting over empty.
func TestFullCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	s := newService(t, access.Options{CacheTTL: time.Hour, CacheSize: 3})
	ctx := context.Background()
	secrets := make([]string, 4)
	for i := range secrets {
		secrets[i], _ = create(t, s, access.CreateRequest{Name: fmt.Sprintf("lru-%d", i), Kind: access.KindPlatform})
	}
	for _, secret := range secrets[:3] {
		_, err := s.Authenticate(ctx, secret)
		require.NoError(t, err)
	}
	_, ok := s.Cached(secrets[0]) // now the most recently used
	require.True(t, ok)
	_, err := s.Authenticate(ctx, secrets[3])
	require.NoError(t, err)
	for i, want := range []bool{true, false, true, true} {
		_, ok := s.Cached(secrets[i])
		assert.Equal(t, want, ok, "token %d cached", i)
	}
}
