// Package access is API tokens: platform-admin tokens and tenant-scoped
// tokens. A token is 32 random bytes shown once at creation; the catalog
// keeps only its SHA-256, compared in constant time. Tokens can be revoked,
// may expire, and record when they were last used.
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/tenancy"
)

// Kind says what a token may act on.
type Kind string

const (
	// KindPlatform tokens administer the platform and may act on any tenant.
	KindPlatform Kind = "platform"
	// KindTenant tokens act on their own tenant only.
	KindTenant Kind = "tenant"
)

// SecretPrefix starts every token secret, so leaked tokens are easy to find.
const SecretPrefix = "pdt_"

// secretBytes is the amount of randomness in a token.
const secretBytes = 32

// secretLen is len(SecretPrefix) + base64url(32 bytes) without padding.
var secretLen = len(SecretPrefix) + base64.RawURLEncoding.EncodedLen(secretBytes)

// displayPrefixLen is how much of a secret the catalog keeps in clear, to
// recognise a token in listings: the prefix and 8 characters (48 bits).
var displayPrefixLen = len(SecretPrefix) + 8

var (
	// ErrUnauthenticated is returned for a missing, malformed, unknown,
	// revoked or expired token; callers must not tell these apart to clients.
	ErrUnauthenticated = errors.New("invalid or revoked token")
	// ErrTokenNotFound is returned for an unknown token id.
	ErrTokenNotFound = errors.New("token not found")
	// ErrInvalidToken is wrapped by every validation error of a token request.
	ErrInvalidToken = errors.New("invalid token request")
)

// Token is what the catalog knows about a token (never its secret).
type Token struct {
	ID         string       `json:"id"`
	Name       string       `json:"name"`
	Kind       Kind         `json:"kind"`
	TenantID   string       `json:"tenant_id,omitempty"`
	Tenant     tenancy.Slug `json:"tenant,omitzero"`
	Prefix     string       `json:"prefix"`
	CreatedAt  time.Time    `json:"created_at"`
	ExpiresAt  *time.Time   `json:"expires_at"`
	RevokedAt  *time.Time   `json:"revoked_at"`
	LastUsedAt *time.Time   `json:"last_used_at"`
}

// Principal is who a request acts as, once its token is authenticated.
type Principal struct {
	TokenID string
	Name    string
	Kind    Kind
	// TenantID and Tenant are set for tenant tokens only.
	TenantID string
	Tenant   tenancy.Slug
}

// IsPlatform reports whether the principal is a platform administrator.
func (p Principal) IsPlatform() bool { return p.Kind == KindPlatform }

// CanActOn reports whether the principal may act on the tenant: a platform
// token on any, a tenant token on its own only.
func (p Principal) CanActOn(slug tenancy.Slug) bool {
	if p.Kind == KindPlatform {
		return true
	}
	return p.Kind == KindTenant && !p.Tenant.IsZero() && p.Tenant == slug
}

// CreateRequest describes a new token.
type CreateRequest struct {
	Name string
	Kind Kind
	// Tenant is required for KindTenant and must be zero for KindPlatform.
	Tenant tenancy.Slug
	// ExpiresAt, when set, must be in the future.
	ExpiresAt *time.Time
}

// Options configure a Service.
type Options struct {
	// CacheTTL keeps successful authentications in memory this long (0: no
	// cache). A token revoked through this Service stops working at once; one
	// revoked elsewhere (another process, the CLI) within CacheTTL.
	CacheTTL time.Duration
	// CacheSize bounds the cache (default 10,000 entries).
	CacheSize int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Service creates, authenticates, lists and revokes tokens in the landlord
// catalog (landlord.api_tokens), through the landlord pool.
type Service struct {
	db   *pgxpool.Pool
	opts Options

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cached
}

type cached struct {
	p       Principal
	expires time.Time // cache entry expiry
	tokenEx *time.Time
}

// New returns a Service on the landlord pool.
func New(db *pgxpool.Pool, o Options) *Service {
	if o.CacheSize <= 0 {
		o.CacheSize = 10_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{db: db, opts: o, cache: map[[sha256.Size]byte]cached{}}
}

// Hash is the SHA-256 digest that the catalog stores for a secret.
func Hash(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// newSecret returns a fresh token secret.
func newSecret() (string, error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("token: random: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// wellFormed reports whether s looks like a token secret, so garbage never
// reaches the database.
func wellFormed(s string) bool {
	if len(s) != secretLen || !strings.HasPrefix(s, SecretPrefix) {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s[len(SecretPrefix):])
	return err == nil && len(b) == secretBytes
}

func validName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: name must not be empty", ErrInvalidToken)
	case utf8.RuneCountInString(name) > 100:
		return fmt.Errorf("%w: name must be at most 100 characters", ErrInvalidToken)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: name must not start or end with spaces", ErrInvalidToken)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: name must not contain control characters", ErrInvalidToken)
		}
	}
	return nil
}

const tokenCols = `t.id::text, t.name, t.kind, coalesce(t.tenant_id::text, ''), coalesce(ten.slug, ''),
	t.prefix, t.created_at, t.expires_at, t.revoked_at, t.last_used_at`

func scanToken(row pgx.Row) (Token, error) {
	var t Token
	var kind, slug string
	if err := row.Scan(&t.ID, &t.Name, &kind, &t.TenantID, &slug, &t.Prefix, &t.CreatedAt,
		&t.ExpiresAt, &t.RevokedAt, &t.LastUsedAt); err != nil {
		return Token{}, err
	}
	t.Kind = Kind(kind)
	if slug != "" {
		s, err := tenancy.ParseSlug(slug)
		if err != nil {
			return Token{}, fmt.Errorf("token %s: catalog slug: %w", t.ID, err)
		}
		t.Tenant = s
	}
	return t, nil
}

// Create makes a token and returns its secret, which is shown only this once.
func (s *Service) Create(ctx context.Context, r CreateRequest) (string, Token, error) {
	if err := validName(r.Name); err != nil {
		return "", Token{}, err
	}
	switch r.Kind {
	case KindPlatform:
		if !r.Tenant.IsZero() {
			return "", Token{}, fmt.Errorf("%w: a platform token has no tenant", ErrInvalidToken)
		}
	case KindTenant:
		if r.Tenant.IsZero() {
			return "", Token{}, fmt.Errorf("%w: a tenant token needs its tenant", ErrInvalidToken)
		}
	default:
		return "", Token{}, fmt.Errorf("%w: kind must be %q or %q", ErrInvalidToken, KindPlatform, KindTenant)
	}
	if r.ExpiresAt != nil && !r.ExpiresAt.After(s.opts.Now()) {
		return "", Token{}, fmt.Errorf("%w: expires_at must be in the future", ErrInvalidToken)
	}
	secret, err := newSecret()
	if err != nil {
		return "", Token{}, err
	}
	h := Hash(secret)
	// The tenant is looked up in the same statement; a deleted tenant gets no new token.
	row := s.db.QueryRow(ctx, `
		WITH ten AS (
			SELECT id, slug FROM landlord.tenants
			 WHERE slug = $4 AND status NOT IN ('deleted', 'provisioning')),
		ins AS (
			INSERT INTO landlord.api_tokens (name, kind, tenant_id, token_hash, prefix, expires_at)
			SELECT $1, $2, ten.id, $3, $5, $6 FROM (SELECT 1) one LEFT JOIN ten ON true
			 WHERE $2 = 'platform' OR ten.id IS NOT NULL
			RETURNING *)
		SELECT `+tokenCols+` FROM ins t LEFT JOIN ten ON ten.id = t.tenant_id`,
		r.Name, string(r.Kind), h[:], r.Tenant.String(), secret[:displayPrefixLen], r.ExpiresAt)
	t, err := scanToken(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", Token{}, fmt.Errorf("token for tenant %s: %w", r.Tenant, tenancy.ErrTenantNotFound)
	}
	if err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	return secret, t, nil
}

// Authenticate returns the principal of a secret, or ErrUnauthenticated.
// It records last_used_at at most once a minute per token, in the same
// round trip as the lookup.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if !wellFormed(secret) {
		return Principal{}, ErrUnauthenticated
	}
	h := Hash(secret)
	now := s.opts.Now()
	if p, ok := s.fromCache(h, now); ok {
		return p, nil
	}
	var (
		p                Principal
		kind, slug       string
		stored           []byte
		revoked, expired bool
		expiresAt        *time.Time
	)
	err := s.db.QueryRow(ctx, `
		WITH hit AS (
			SELECT t.id, t.name, t.kind, t.tenant_id, t.token_hash, t.revoked_at, t.expires_at, t.last_used_at
			  FROM landlord.api_tokens t WHERE t.token_hash = $1),
		touch AS (
			UPDATE landlord.api_tokens a SET last_used_at = now() FROM hit
			 WHERE a.id = hit.id AND hit.revoked_at IS NULL
			   AND (hit.expires_at IS NULL OR hit.expires_at > now())
			   AND (hit.last_used_at IS NULL OR hit.last_used_at < now() - interval '1 minute'))
		SELECT hit.id::text, hit.name, hit.kind, coalesce(hit.tenant_id::text, ''), coalesce(ten.slug, ''),
		       hit.token_hash, hit.revoked_at IS NOT NULL, hit.expires_at IS NOT NULL AND hit.expires_at <= now(),
		       hit.expires_at
		  FROM hit LEFT JOIN landlord.tenants ten ON ten.id = hit.tenant_id`, h[:]).
		Scan(&p.TokenID, &p.Name, &kind, &p.TenantID, &slug, &stored, &revoked, &expired, &expiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, h[:]) != 1 || revoked || expired {
		return Principal{}, ErrUnauthenticated
	}
	p.Kind = Kind(kind)
	switch p.Kind {
	case KindPlatform:
	case KindTenant:
		sl, err := tenancy.ParseSlug(slug)
		if err != nil {
			return Principal{}, ErrUnauthenticated
		}
		p.Tenant = sl
	default:
		return Principal{}, ErrUnauthenticated
	}
	s.toCache(h, p, now, expiresAt)
	return p, nil
}

func (s *Service) fromCache(h [sha256.Size]byte, now time.Time) (Principal, bool) {
	if s.opts.CacheTTL <= 0 {
		return Principal{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cache[h]
	if !ok || !now.Before(c.expires) || (c.tokenEx != nil && !now.Before(*c.tokenEx)) {
		if ok {
			delete(s.cache, h)
		}
		return Principal{}, false
	}
	return c.p, true
}

func (s *Service) toCache(h [sha256.Size]byte, p Principal, now time.Time, tokenEx *time.Time) {
	if s.opts.CacheTTL <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= s.opts.CacheSize {
		clear(s.cache) // simple and bounded; the next requests refill it
	}
	s.cache[h] = cached{p: p, expires: now.Add(s.opts.CacheTTL), tokenEx: tokenEx}
}

// forget drops cached authentications of a token.
func (s *Service) forget(tokenID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, c := range s.cache {
		if c.p.TokenID == tokenID {
			delete(s.cache, h)
		}
	}
}

// ListFilter narrows List.
type ListFilter struct {
	// Tenant, when set, lists that tenant's tokens only.
	Tenant tenancy.Slug
	// IncludeRevoked lists revoked tokens too.
	IncludeRevoked bool
}

// List returns tokens, newest first (at most 1,000).
func (s *Service) List(ctx context.Context, f ListFilter) ([]Token, error) {
	rows, err := s.db.Query(ctx, `
		SELECT `+tokenCols+`
		  FROM landlord.api_tokens t LEFT JOIN landlord.tenants ten ON ten.id = t.tenant_id
		 WHERE ($1 = '' OR ten.slug = $1) AND ($2 OR t.revoked_at IS NULL)
		 ORDER BY t.created_at DESC, t.id
		 LIMIT 1000`, f.Tenant.String(), f.IncludeRevoked)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// Get returns one token by id.
func (s *Service) Get(ctx context.Context, id string) (Token, error) {
	if !validUUID(id) {
		return Token{}, fmt.Errorf("token %q: %w", id, ErrTokenNotFound)
	}
	t, err := scanToken(s.db.QueryRow(ctx, `
		SELECT `+tokenCols+`
		  FROM landlord.api_tokens t LEFT JOIN landlord.tenants ten ON ten.id = t.tenant_id
		 WHERE t.id = $1::text::uuid`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("token %s: %w", id, ErrTokenNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("get token: %w", err)
	}
	return t, nil
}

// Revoke revokes a token by id; revoking a revoked token is a no-op that
// returns it unchanged.
func (s *Service) Revoke(ctx context.Context, id string) (Token, error) {
	if !validUUID(id) {
		return Token{}, fmt.Errorf("token %q: %w", id, ErrTokenNotFound)
	}
	t, err := scanToken(s.db.QueryRow(ctx, `
		WITH upd AS (
			UPDATE landlord.api_tokens SET revoked_at = coalesce(revoked_at, now())
			 WHERE id = $1::text::uuid RETURNING *)
		SELECT `+tokenCols+` FROM upd t LEFT JOIN landlord.tenants ten ON ten.id = t.tenant_id`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("token %s: %w", id, ErrTokenNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	s.forget(t.ID)
	return t, nil
}

// Delete removes a token from the catalog for good (tests and cleanup).
func (s *Service) Delete(ctx context.Context, id string) error {
	if !validUUID(id) {
		return fmt.Errorf("token %q: %w", id, ErrTokenNotFound)
	}
	tag, err := s.db.Exec(ctx, `DELETE FROM landlord.api_tokens WHERE id = $1::text::uuid`, id)
	if err != nil {
		return fmt.Errorf("delete token: %w", err)
	}
	s.forget(id)
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("token %s: %w", id, ErrTokenNotFound)
	}
	return nil
}

// validUUID accepts the canonical 8-4-4-4-12 hex form only.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
				return false
			}
		}
	}
	return true
}
