package tenancy

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Status is a tenant's lifecycle state in the landlord catalog.
type Status string

// The tenant statuses (landlord.tenants.status).
const (
	// StatusProvisioning: the catalog row exists, the schema may not be complete yet.
	StatusProvisioning Status = "provisioning"
	// StatusActive: serving.
	StatusActive Status = "active"
	// StatusSuspended: data kept, endpoints answer 403.
	StatusSuspended Status = "suspended"
	// StatusMoving: a placement move is in progress.
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
	return "", fmt.Errorf("%w: unknown status %q (want provisioning, active, suspended, moving or deleted)", ErrInvalidTenant, s)
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

// Tenant is one row of the landlord catalog.
type Tenant struct {
	ID     string `json:"id"`
	Slug   Slug   `json:"slug"`
	Name   string `json:"name"`
	Status Status `json:"status"`
	Placement
	// SchemaHash identifies the desired schema (core + modules) last applied.
	SchemaHash string `json:"schema_hash,omitempty"`
	// StatementTimeout overrides the configured default when non-zero.
	StatementTimeout time.Duration `json:"-"`
	// Version is bumped on every status or placement change.
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DeletedAt *time.Time `json:"deleted_at"`

	raw *scanned // scan buffer, nil outside scanning
}

var (
	// ErrTenantNotFound: no tenant with that slug in the catalog.
	ErrTenantNotFound = errors.New("tenant not found")
	// ErrTenantExists: the slug is taken (by a live, suspended or deleted tenant).
	ErrTenantExists = errors.New("tenant already exists")
	// ErrWrongStatus is wrapped by *StatusError: the tenant's status does not
	// allow the operation.
	ErrWrongStatus = errors.New("operation not allowed in the tenant's status")
	// ErrInvalidTenant is wrapped by validation errors of tenant requests
	// (name, status, placement).
	ErrInvalidTenant = errors.New("invalid tenant request")
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

// MaxNameLen bounds a tenant's display name, in characters.
const MaxNameLen = 200

// ValidateName checks a tenant display name: not blank, no leading or
// trailing space, no control characters, at most MaxNameLen characters.
func ValidateName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: name must not be empty", ErrInvalidTenant)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: name must not start or end with spaces", ErrInvalidTenant)
	case utf8.RuneCountInString(name) > MaxNameLen:
		return fmt.Errorf("%w: name must be at most %d characters", ErrInvalidTenant, MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name must be valid UTF-8", ErrInvalidTenant)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: name must not contain control characters", ErrInvalidTenant)
		}
	}
	return nil
}
