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
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/publicdigit/publicdigit/internal/apperr"
	"github.com/publicdigit/publicdigit/internal/audit"

	"github.com/publicdigit/publicdigit/internal/tenant"
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
	ErrUnauthenticated = apperr.New("unauthorized", "invalid or revoked token")
	// ErrTokenNotFound is returned for an unknown token id.
	ErrTokenNotFound = apperr.New("token_not_found", "token not found")
	// ErrInvalidToken is wrapped by every validation error of a token request.
	ErrInvalidToken = apperr.New("invalid_token", "invalid token request")
)

// Token is what the catalog knows about a token (never its secret).
type Token struct {
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	Kind       Kind        `json:"kind"`
	TenantID   string      `json:"tenant_id,omitempty"`
	Tenant     tenant.Slug `json:"tenant,omitzero"`
	Prefix     string      `json:"prefix"`
	CreatedAt  time.Time   `json:"created_at"`
	ExpiresAt  *time.Time  `json:"expires_at"`
	RevokedAt  *time.Time  `json:"revoked_at"`
	LastUsedAt *time.Time  `json:"last_used_at"`
}

// Principal is who a request acts as, once its token is authenticated.
type Principal struct {
	TokenID string
	Name    string
	Kind    Kind
	// TenantID, Tenant and TenantStatus are set for tenant tokens only: the
	// token's tenant by id, its slug and status at authentication (a
	// deleted tenant's token does not authenticate; a suspended one's does,
	// and the API refuses it with tenant_suspended).
	TenantID     string
	Tenant       tenant.Slug
	TenantStatus tenant.Status
}

// IsPlatform reports whether the principal is a platform administrator.
func (p Principal) IsPlatform() bool { return p.Kind == KindPlatform }

// CanActOn reports whether the principal may act on the tenant: a platform
// token on any, a tenant token on its own only.
func (p Principal) CanActOn(slug tenant.Slug) bool {
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
	Tenant tenant.Slug
	// ExpiresAt, when set, must be in the future.
	ExpiresAt *time.Time
}

// Options configure a Service.
type Options struct {
	// CacheTTL keeps authentications in memory this long (0: no cache):
	// successful ones, and failed ones, so that a bad token repeated costs
	// one lookup per CacheTTL. A token revoked through this Service stops
	// working at once; one revoked elsewhere (another process, the CLI), or
	// whose tenant was suspended or deleted elsewhere, within CacheTTL.
	CacheTTL time.Duration
	// CacheSize bounds the cache (default 10,000 entries).
	CacheSize int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Audit records failed token actions (successful ones are recorded in
	// their own transaction). May be nil.
	Audit *audit.Log
}

// Tenants is what tokens need of the tenant catalog (catalog.Catalog).
type Tenants interface {
	Get(ctx context.Context, slug tenant.Slug) (tenant.Tenant, error)
	GetByID(ctx context.Context, id uuid.UUID) (tenant.Tenant, error)
	Slugs(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]tenant.Slug, error)
}

// Service creates, authenticates, lists and revokes tokens in the landlord
// catalog (landlord.api_tokens), through the landlord pool.
type Service struct {
	db      *pgxpool.Pool
	tenants Tenants
	opts    Options

	// cache holds successful authentications, least recently used evicted
	// first: past CacheSize active tokens the busiest stay cached.
	cache *lru.Cache[[sha256.Size]byte, cached]
	// refused remembers secrets that failed (unknown, revoked, expired, of a
	// deleted tenant) until the time kept: none of these ever becomes valid.
	refused *lru.Cache[[sha256.Size]byte, time.Time]
}

type cached struct {
	p       Principal
	expires time.Time // cache entry expiry
	tokenEx *time.Time
}

// New returns a Service on the landlord pool.
func New(db *pgxpool.Pool, tenants Tenants, o Options) *Service {
	if o.CacheSize <= 0 {
		o.CacheSize = 10_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cache, err := lru.New[[sha256.Size]byte, cached](o.CacheSize)
	if err != nil {
		panic(err) // only for a size ≤ 0, excluded above
	}
	refused, err := lru.New[[sha256.Size]byte, time.Time](o.CacheSize)
	if err != nil {
		panic(err)
	}
	return &Service{db: db, tenants: tenants, opts: o, cache: cache, refused: refused}
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
	// Unpadded base64url of secretBytes bytes, checked in place (this runs
	// on every request) as DecodeString would accept it.
	body := s[len(SecretPrefix):]
	for i := 0; i < len(body); i++ {
		if !isBase64URL(body[i]) {
			return false
		}
	}
	return base64.RawURLEncoding.DecodedLen(len(body)) == secretBytes
}

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
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

const tokenCols = `t.id::text, t.name, t.kind, coalesce(t.tenant_id::text, ''),
	t.prefix, t.created_at, t.expires_at, t.revoked_at, t.last_used_at`

func scanToken(row pgx.Row, extra ...any) (Token, error) {
	var t Token
	var kind string
	if err := row.Scan(append([]any{&t.ID, &t.Name, &kind, &t.TenantID, &t.Prefix, &t.CreatedAt,
		&t.ExpiresAt, &t.RevokedAt, &t.LastUsedAt}, extra...)...); err != nil {
		return Token{}, err
	}
	t.Kind = Kind(kind)
	return t, nil
}

// withSlugs fills the tenant slug of tenant tokens from the catalog.
func (s *Service) withSlugs(ctx context.Context, ts []Token) ([]Token, error) {
	var ids []uuid.UUID
	for _, t := range ts {
		if id, err := uuid.Parse(t.TenantID); err == nil {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return ts, nil
	}
	slugs, err := s.tenants.Slugs(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i, t := range ts {
		if id, err := uuid.Parse(t.TenantID); err == nil {
			ts[i].Tenant = slugs[id]
		}
	}
	return ts, nil
}

// withSlug is withSlugs for one token.
func (s *Service) withSlug(ctx context.Context, t Token) (Token, error) {
	ts, err := s.withSlugs(ctx, []Token{t})
	if err != nil {
		return Token{}, err
	}
	return ts[0], nil
}

// Create makes a token and returns its secret, which is shown only this
// once; recorded in the audit trail in the same transaction.
func (s *Service) Create(ctx context.Context, r CreateRequest) (string, Token, error) {
	ev := audit.Event{Action: audit.TokenCreate, Tenant: r.Tenant.String(),
		Detail: map[string]any{"name": r.Name, "kind": string(r.Kind)}}
	secret, t, err := s.create(ctx, r, &ev)
	if err != nil {
		s.opts.Audit.Failed(ctx, ev, err)
	}
	return secret, t, err
}

func (s *Service) create(ctx context.Context, r CreateRequest, ev *audit.Event) (string, Token, error) {
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
	var tenantID *uuid.UUID
	if r.Kind == KindTenant {
		// A deleted (or not yet provisioned) tenant gets no new token; one
		// purged meanwhile fails the foreign key.
		ten, err := s.tenants.Get(ctx, r.Tenant)
		if err != nil {
			return "", Token{}, err
		}
		if ten.Status == tenant.StatusDeleted || ten.Status == tenant.StatusProvisioning {
			return "", Token{}, fmt.Errorf("token for tenant %s: %w", r.Tenant, tenant.ErrNotFound)
		}
		tenantID = &ten.ID
		ev.TenantID = ten.ID
	}
	var t Token
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		t, err = scanToken(tx.QueryRow(ctx, `
			INSERT INTO landlord.api_tokens AS t (name, kind, tenant_id, token_hash, prefix, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			RETURNING `+tokenCols, r.Name, string(r.Kind), tenantID, h[:], secret[:displayPrefixLen], r.ExpiresAt))
		if err != nil {
			return err
		}
		ev.Target = t.ID
		return audit.RecordTx(ctx, tx, *ev)
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" {
		return "", Token{}, fmt.Errorf("token for tenant %s: %w", r.Tenant, tenant.ErrNotFound)
	}
	if err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	t.Tenant = r.Tenant
	return secret, t, nil
}

// Authenticate returns the principal of a secret, or ErrUnauthenticated.
// It records last_used_at at most once a minute per token, in the same
// round trip as the lookup. A tenant token authenticates while its tenant
// exists and is not deleted (compared by id: a token of a purged tenant
// never acts on a new tenant of the same slug).
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if !wellFormed(secret) {
		return Principal{}, ErrUnauthenticated
	}
	h := Hash(secret)
	now := s.opts.Now()
	if p, ok := s.fromCache(h, now); ok {
		return p, nil
	}
	if s.wasRefused(h, now) {
		return Principal{}, ErrUnauthenticated
	}
	p, expiresAt, err := s.lookup(ctx, h)
	if errors.Is(err, ErrUnauthenticated) {
		s.refuse(h, now)
		return Principal{}, err
	}
	if err != nil {
		return Principal{}, err
	}
	s.toCache(h, p, now, expiresAt)
	return p, nil
}

// lookup authenticates a secret's hash against the catalog.
func (s *Service) lookup(ctx context.Context, h [sha256.Size]byte) (Principal, *time.Time, error) {
	var (
		p                Principal
		kind             string
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
		SELECT hit.id::text, hit.name, hit.kind, coalesce(hit.tenant_id::text, ''),
		       hit.token_hash, hit.revoked_at IS NOT NULL, hit.expires_at IS NOT NULL AND hit.expires_at <= now(),
		       hit.expires_at
		  FROM hit`, h[:]).
		Scan(&p.TokenID, &p.Name, &kind, &p.TenantID, &stored, &revoked, &expired, &expiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, nil, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, nil, fmt.Errorf("authenticate: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, h[:]) != 1 || revoked || expired {
		return Principal{}, nil, ErrUnauthenticated
	}
	p.Kind = Kind(kind)
	switch p.Kind {
	case KindPlatform:
	case KindTenant:
		id, err := uuid.Parse(p.TenantID)
		if err != nil {
			return Principal{}, nil, ErrUnauthenticated
		}
		ten, err := s.tenants.GetByID(ctx, id)
		if errors.Is(err, tenant.ErrNotFound) {
			return Principal{}, nil, ErrUnauthenticated
		}
		if err != nil {
			return Principal{}, nil, fmt.Errorf("authenticate: %w", err)
		}
		if ten.Status == tenant.StatusDeleted || ten.DeletedAt != nil {
			return Principal{}, nil, ErrUnauthenticated
		}
		p.Tenant, p.TenantStatus = ten.Slug, ten.Status
	default:
		return Principal{}, nil, ErrUnauthenticated
	}
	return p, expiresAt, nil
}

// Cached returns the principal of a secret if a successful authentication
// of it is cached, without any lookup.
func (s *Service) Cached(secret string) (Principal, bool) {
	if !wellFormed(secret) {
		return Principal{}, false
	}
	return s.fromCache(Hash(secret), s.opts.Now())
}

func (s *Service) fromCache(h [sha256.Size]byte, now time.Time) (Principal, bool) {
	if s.opts.CacheTTL <= 0 {
		return Principal{}, false
	}
	c, ok := s.cache.Get(h)
	if !ok {
		return Principal{}, false
	}
	if !now.Before(c.expires) || (c.tokenEx != nil && !now.Before(*c.tokenEx)) {
		s.cache.Remove(h)
		return Principal{}, false
	}
	return c.p, true
}

func (s *Service) toCache(h [sha256.Size]byte, p Principal, now time.Time, tokenEx *time.Time) {
	if s.opts.CacheTTL <= 0 {
		return
	}
	s.cache.Add(h, cached{p: p, expires: now.Add(s.opts.CacheTTL), tokenEx: tokenEx})
}

func (s *Service) wasRefused(h [sha256.Size]byte, now time.Time) bool {
	if s.opts.CacheTTL <= 0 {
		return false
	}
	until, ok := s.refused.Get(h)
	if ok && !now.Before(until) {
		s.refused.Remove(h)
		return false
	}
	return ok
}

func (s *Service) refuse(h [sha256.Size]byte, now time.Time) {
	if s.opts.CacheTTL <= 0 {
		return
	}
	s.refused.Add(h, now.Add(s.opts.CacheTTL))
}

// ForgetTenant drops the cached authentications of a tenant's tokens (of
// every tenant's, for the zero slug), so that a change of the tenant
// (suspended, deleted) reaches them at once.
func (s *Service) ForgetTenant(slug tenant.Slug) {
	s.forgetWhere(func(p Principal) bool {
		return p.Kind == KindTenant && (slug.IsZero() || p.Tenant == slug)
	})
}

// forget drops cached authentications of a token.
func (s *Service) forget(tokenID string) {
	s.forgetWhere(func(p Principal) bool { return p.TokenID == tokenID })
}

// forgetWhere drops every cached authentication whose principal matches.
func (s *Service) forgetWhere(match func(Principal) bool) {
	for _, h := range s.cache.Keys() {
		if c, ok := s.cache.Peek(h); ok && match(c.p) {
			s.cache.Remove(h)
		}
	}
}

// ListFilter narrows List.
type ListFilter struct {
	// Tenant, when set, lists that tenant's tokens only.
	Tenant tenant.Slug
	// IncludeRevoked lists revoked tokens too.
	IncludeRevoked bool
}

// List returns tokens, newest first (at most 1,000).
func (s *Service) List(ctx context.Context, f ListFilter) ([]Token, error) {
	var tenantID *uuid.UUID
	if !f.Tenant.IsZero() {
		ten, err := s.tenants.Get(ctx, f.Tenant)
		if errors.Is(err, tenant.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		tenantID = &ten.ID
	}
	rows, err := s.db.Query(ctx, `
		SELECT `+tokenCols+`
		  FROM landlord.api_tokens t
		 WHERE ($1::uuid IS NULL OR t.tenant_id = $1) AND ($2 OR t.revoked_at IS NULL)
		 ORDER BY t.created_at DESC, t.id
		 LIMIT 1000`, tenantID, f.IncludeRevoked)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return s.withSlugs(ctx, out)
}

// Get returns one token by id.
func (s *Service) Get(ctx context.Context, id string) (Token, error) {
	if !validUUID(id) {
		return Token{}, fmt.Errorf("token %q: %w", id, ErrTokenNotFound)
	}
	t, err := scanToken(s.db.QueryRow(ctx, `
		SELECT `+tokenCols+`
		  FROM landlord.api_tokens t WHERE t.id = $1::text::uuid`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("token %s: %w", id, ErrTokenNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("get token: %w", err)
	}
	return s.withSlug(ctx, t)
}

// Revoke revokes a token by id; revoking a revoked token is a no-op that
// returns it unchanged. Recorded in the audit trail in the same transaction.
func (s *Service) Revoke(ctx context.Context, id string) (Token, error) {
	ev := audit.Event{Action: audit.TokenRevoke, Target: id}
	t, err := s.revoke(ctx, id, &ev)
	if err != nil {
		s.opts.Audit.Failed(ctx, ev, err)
		return Token{}, err
	}
	s.forget(t.ID)
	return s.withSlug(ctx, t)
}

func (s *Service) revoke(ctx context.Context, id string, ev *audit.Event) (Token, error) {
	// The token's tenant, for the trail (a token never changes tenant).
	cur, err := s.Get(ctx, id)
	if err != nil {
		return Token{}, err
	}
	ev.Tenant = cur.Tenant.String()
	var t Token
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var wasRevoked bool
		var err error
		t, err = scanToken(tx.QueryRow(ctx, `
			WITH cur AS (SELECT id, revoked_at IS NOT NULL AS was FROM landlord.api_tokens WHERE id = $1::text::uuid FOR UPDATE),
			upd AS (
				UPDATE landlord.api_tokens a SET revoked_at = coalesce(a.revoked_at, now())
				  FROM cur WHERE a.id = cur.id RETURNING a.*, cur.was)
			SELECT `+tokenCols+`, t.was FROM upd t`, id), &wasRevoked)
		if err != nil {
			return err
		}
		if id, err := uuid.Parse(t.TenantID); err == nil {
			ev.TenantID = id
		}
		ev.Detail = map[string]any{"name": t.Name, "kind": string(t.Kind), "changed": !wasRevoked}
		return audit.RecordTx(ctx, tx, *ev)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("token %s: %w", id, ErrTokenNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	return t, nil
}

// Delete removes a token from the catalog for good, on an admin connection
// (cleanup of test and chaos runs): the application role may create and
// revoke tokens, never delete them.
func Delete(ctx context.Context, admin *sql.DB, id string) error {
	if !validUUID(id) {
		return fmt.Errorf("token %q: %w", id, ErrTokenNotFound)
	}
	res, err := admin.ExecContext(ctx, `DELETE FROM landlord.api_tokens WHERE id = $1::text::uuid`, id)
	if err != nil {
		return fmt.Errorf("delete token: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
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
