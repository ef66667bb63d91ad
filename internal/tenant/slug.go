package tenant

import (
	"fmt"
	"strings"
)

// Slug is a validated tenant slug: ^[a-z][a-z0-9_]*$, short enough that
// "tenant_" + slug fits PostgreSQL's 63-byte identifier limit, and not a
// reserved name. A Slug can only be made by ParseSlug, so every schema and
// role name derived from one is safe to quote as an identifier.
type Slug struct{ s string }

// SchemaPrefix prefixes every tenant schema, role and dedicated database.
const SchemaPrefix = "tenant_"

// MaxSlugLen keeps SchemaPrefix + slug within PostgreSQL's 63-byte identifiers.
const MaxSlugLen = 63 - len(SchemaPrefix)

// reserved slugs collide with routes, roles, schemas or databases of the platform.
var reserved = map[string]bool{
	"api": true, "admin": true, "platform": true, "landlord": true, "public": true,
	"healthz": true, "readyz": true, "metrics": true, "openapi": true, "docs": true,
	"pg": true, "postgres": true, "pgbouncer": true, "template0": true, "template1": true,
	"information_schema": true, "shared": true, "system": true, "root": true, "www": true,
	"default": true, "none": true, "null": true, "spare": true, "retired": true, "test": true,
}

// ParseSlug validates s. Nothing is trimmed or lower-cased: a slug is either
// exactly right or refused. Errors wrap ErrInvalidSlug.
func ParseSlug(s string) (Slug, error) {
	switch {
	case s == "":
		return Slug{}, fmt.Errorf("%w: empty", ErrInvalidSlug)
	case len(s) > MaxSlugLen:
		return Slug{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidSlug, MaxSlugLen)
	case !slugShaped(s):
		return Slug{}, fmt.Errorf("%w: %q must start with a-z and contain only a-z, 0-9 and _", ErrInvalidSlug, s)
	case reserved[s]:
		return Slug{}, fmt.Errorf("%w: %q is reserved", ErrInvalidSlug, s)
	}
	// A copy: callers may pass strings backed by reused buffers (Fiber's
	// path parameters), and a Slug outlives the request (cache keys).
	return Slug{s: strings.Clone(s)}, nil
}

// slugShaped reports whether s matches ^[a-z][a-z0-9_]*$.
func slugShaped(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// MustSlug is ParseSlug for constants and tests; it panics on an invalid slug.
func MustSlug(s string) Slug {
	slug, err := ParseSlug(s)
	if err != nil {
		panic(err)
	}
	return slug
}

// String returns the slug itself.
func (s Slug) String() string { return s.s }

// IsZero reports whether s is the zero Slug (never a valid tenant).
func (s Slug) IsZero() bool { return s.s == "" }

// SchemaName is the tenant's schema: tenant_<slug>.
func (s Slug) SchemaName() string { return SchemaPrefix + s.s }

// RoleName is the tenant's own PostgreSQL role (defense in depth): tenant_<slug>.
func (s Slug) RoleName() string { return SchemaPrefix + s.s }

// DatabaseName is the tenant's dedicated database, when placed in one: tenant_<slug>.
func (s Slug) DatabaseName() string { return SchemaPrefix + s.s }

// MarshalText implements encoding.TextMarshaler.
func (s Slug) MarshalText() ([]byte, error) { return []byte(s.s), nil }

// UnmarshalText implements encoding.TextUnmarshaler with validation.
func (s *Slug) UnmarshalText(b []byte) error {
	v, err := ParseSlug(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
