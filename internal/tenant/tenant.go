// Package tenant is the domain vocabulary of the platform's core noun: the
// validated Slug (the only way to a tenant schema or role name), the
// lifecycle Status, where a tenant's data lives (Placement), the catalog row
// (Tenant), the change-notification channel and the tenant error kinds.
// Every other package speaks it; it imports nothing of the project but the
// error vocabulary (internal/apperr).
package tenant

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/apperr"
)

// Status is a tenant's lifecycle state in the landlord catalog.
type Status string

// The tenant statuses, as the catalog stores them.
const (
	// StatusProvisioning: the catalog row exists, the schema may not be complete yet.
	StatusProvisioning Status = "provisioning"
	// StatusActive: serving.
	StatusActive Status = "active"
	// StatusSuspended: data kept, endpoints answer 403.
	StatusSuspended Status = "suspended"
	// StatusMoving: a placement move is in progress (reads go on; writes may wait).
	StatusMoving Status = "moving"
	// StatusDeleted: soft-deleted, data kept until purged.
	StatusDeleted Status = "deleted"
)

// ParseStatus validates a status name.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusProvisioning, StatusActive, StatusSuspended, StatusMoving, StatusDeleted:
		return st, nil
	}
	return "", fmt.Errorf("%w: unknown status %q (want provisioning, active, suspended, moving or deleted)", ErrInvalid, s)
}

// Servable reports whether requests may be served in this status (active,
// or moving: reads go on and writes wait on the mover's locks), and if not,
// the error kind that says why.
func (s Status) Servable() error {
	switch s {
	case StatusActive, StatusMoving:
		return nil
	case StatusSuspended:
		return ErrSuspended
	case StatusProvisioning:
		return ErrNotReady
	}
	return ErrNotFound
}

// PlacementKind says where a tenant's schema lives.
type PlacementKind string

const (
	// PlacementSchema is schema tenant_<slug> in a cluster's shared database.
	PlacementSchema PlacementKind = "schema"
	// PlacementDatabase is a dedicated database tenant_<slug> holding schema tenant_<slug>.
	PlacementDatabase PlacementKind = "database"
)

// Placement is where a tenant's data lives: a cluster (a PostgreSQL server
// from config), a database on it, and the tenant's schema in that database.
type Placement struct {
	Kind     PlacementKind `json:"placement"`
	Cluster  string        `json:"cluster"`
	Database string        `json:"database_name"`
	Schema   string        `json:"schema_name"`
}

// Tenant is one row of the landlord catalog: who the tenant is, its status
// and where its data lives. The router binds requests from it.
type Tenant struct {
	ID     uuid.UUID `json:"id"`
	Slug   Slug      `json:"slug"`
	Name   string    `json:"name"`
	Status Status    `json:"status"`
	Placement
	// SchemaHash identifies the desired schema (core + modules) last applied.
	SchemaHash string `json:"schema_hash,omitempty"`
	// SchemaFingerprint is the catalog fingerprint of the schema after that
	// apply (the fleet runner skips tenants whose live one still matches).
	SchemaFingerprint string `json:"-"`
	// SchemaStamp is the catalog stamp under which the live fingerprint was
	// last found equal to SchemaFingerprint (empty: none since the last apply).
	SchemaStamp string `json:"-"`
	// StatementTimeout overrides the configured default when non-zero.
	StatementTimeout time.Duration `json:"-"`
	// MaxConcurrentRequests overrides the configured cap on the tenant's
	// concurrent API requests when non-zero.
	MaxConcurrentRequests int `json:"-"`
	// Modules are the modules the tenant installed (their routes are live),
	// sorted; filled by the router's lookup (catalog.Resolve) only.
	Modules []string `json:"-"`
	// Version is bumped on every status or placement change.
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DeletedAt *time.Time `json:"deleted_at"`
}

// HasModule reports whether the tenant installed the module (per Modules).
func (t Tenant) HasModule(name string) bool {
	for _, m := range t.Modules {
		if m == name {
			return true
		}
	}
	return false
}

// NotifyChannel is the PostgreSQL channel on which a change to a tenant's
// placement, status or installed modules is announced (payload: the slug),
// so that every server process drops its cached tenant at once
// (pgroute.Router.Listen).
const NotifyChannel = "publicdigit_tenants"

// The tenant error kinds (codes are part of the API).
var (
	// ErrInvalidSlug is wrapped by every ParseSlug error.
	ErrInvalidSlug = apperr.New("invalid_slug", "invalid tenant slug")
	// ErrInvalid is wrapped by validation errors of tenant requests (name,
	// status, placement).
	ErrInvalid = apperr.New("invalid_tenant", "invalid tenant request")
	// ErrNotFound: no tenant with that slug (or it is deleted, where serving).
	ErrNotFound = apperr.New("tenant_not_found", "tenant not found")
	// ErrExists: the slug is taken (by a live, suspended or deleted tenant).
	ErrExists = apperr.New("tenant_exists", "tenant already exists")
	// ErrWrongStatus is wrapped by *StatusError: the tenant's status does not
	// allow the operation.
	ErrWrongStatus = apperr.New("wrong_tenant_status", "operation not allowed in the tenant's status")
	// ErrSuspended: the tenant exists but is suspended (not served).
	ErrSuspended = apperr.New("tenant_suspended", "tenant suspended")
	// ErrNotReady: the tenant is still being provisioned (not served yet).
	ErrNotReady = apperr.New("tenant_not_ready", "tenant not ready")
	// ErrBusy: another operation on the tenant (provisioning, a module
	// change, a move, a purge) held its lock too long; retry shortly.
	ErrBusy = apperr.New("tenant_busy", "another operation on the tenant is running")
)

// StatusError says which operation a tenant's status refused.
type StatusError struct {
	Slug   Slug
	Status Status
	Op     string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("tenant %s is %s: cannot %s", e.Slug, e.Status, e.Op)
}

// Unwrap makes errors.Is(err, ErrWrongStatus) true.
func (e *StatusError) Unwrap() error { return ErrWrongStatus }

// Limits are a tenant's own limits (the catalog's overrides); a zero field
// means the configured default.
type Limits struct {
	// MaxConcurrentRequests caps the tenant's API requests in flight in
	// each server process (more wait briefly, then get 429).
	MaxConcurrentRequests int
	// StatementTimeout is set in every transaction of the tenant.
	StatementTimeout time.Duration
}

// The bounds of a tenant's own limits (the tenant catalog checks them too).
const (
	MaxConcurrentRequestsLimit = 10_000
	MaxStatementTimeout        = 10 * time.Minute
)

// Validate checks the bounds: concurrency 0 (default) or 1 to
// MaxConcurrentRequestsLimit; statement timeout 0 (default) or a whole
// number of milliseconds from 1ms to MaxStatementTimeout.
func (l Limits) Validate() error {
	if l.MaxConcurrentRequests < 0 || l.MaxConcurrentRequests > MaxConcurrentRequestsLimit {
		return fmt.Errorf("%w: max_concurrent_requests must be between 1 and %d, or null for the default",
			ErrInvalid, MaxConcurrentRequestsLimit)
	}
	if l.StatementTimeout < 0 || l.StatementTimeout > MaxStatementTimeout || l.StatementTimeout%time.Millisecond != 0 {
		return fmt.Errorf("%w: statement_timeout_ms must be between 1 and %d, or null for the default",
			ErrInvalid, MaxStatementTimeout.Milliseconds())
	}
	return nil
}

// Limits returns the tenant's own limits.
func (t Tenant) Limits() Limits {
	return Limits{MaxConcurrentRequests: t.MaxConcurrentRequests, StatementTimeout: t.StatementTimeout}
}

// MaxNameLen bounds a tenant's display name, in characters.
const MaxNameLen = 200

// ValidateName checks a tenant display name: not blank, no leading or
// trailing space, no control characters, at most MaxNameLen characters.
func ValidateName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: name must not be empty", ErrInvalid)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: name must not start or end with spaces", ErrInvalid)
	case utf8.RuneCountInString(name) > MaxNameLen:
		return fmt.Errorf("%w: name must be at most %d characters", ErrInvalid, MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name must be valid UTF-8", ErrInvalid)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: name must not contain control characters", ErrInvalid)
		}
	}
	return nil
}
