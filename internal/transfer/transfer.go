// Package transfer exports one tenant to a portable archive and imports
// such an archive as a tenant — on the same platform under another slug, or
// on another platform.
//
// Export reads the tenant in one REPEATABLE READ snapshot on a direct
// connection, holding the tenant's operation lock (no move, module change or
// purge starts meanwhile) and a shared hold on its schema lock (no schema
// apply runs meanwhile); a tenant that is moving is refused. The archive
// (archive.go) holds the manifest — schema hash, installed modules, each
// table's columns, row count and checksum, computed in the same snapshot —
// then every table's rows as binary COPY data (pgcopy.go says why binary),
// in chunks that carry their SHA-256, gzip-compressed and streamed: memory
// use does not grow with the tenant.
//
// Import reads the archive in one pass, inside one transaction on the
// platform database (provision.Provisioner.Restore): the tenant's catalog
// row, a side schema built by the schema applier from the archive's modules
// as registered here, the rows loaded with COPY (tenant_id rewritten to the
// new tenant's id on the way), counts and checksums verified against the
// manifest, the side schema renamed to the tenant's, module installs
// recorded, commit. A bad archive, an unreachable schema or a taken slug is
// refused with nothing changed; a crash leaves nothing behind.
package transfer

import (
	"errors"

	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/apperr"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/requestid"
)

// The error kinds of exports and imports.
var (
	// ErrInvalidArchive: not a tenant archive, or one that is corrupted or
	// truncated, or whose rows do not match its manifest.
	ErrInvalidArchive = apperr.New("invalid_archive", "invalid tenant archive")
	// ErrSchemaUnreachable: the archive's schema cannot be had here (a
	// module not registered, a table or column this release lacks, a newer
	// archive format).
	ErrSchemaUnreachable = apperr.New("archive_schema_unreachable", "the archive's schema cannot be reached here")
)

// Step names a point of an import where tests kill the process.
type Step string

// The points.
const (
	// StepCopying: the first table is loaded into the side schema (not committed).
	StepCopying Step = "copying"
	// StepVerified: every table is loaded and verified, before the swap.
	StepVerified Step = "verified"
)

// Options configure a Service.
type Options struct {
	// Catalog, Clusters, Provisioner and Modules are required.
	Catalog     *catalog.Catalog
	Clusters    *clusters.Clusters
	Provisioner *provision.Provisioner
	Modules     *modules.Service
	Log         zerolog.Logger
	// Hook, when set, is called at each Step (fault injection in tests).
	Hook func(Step)
}

// Service exports and imports tenants. Safe for concurrent use.
type Service struct {
	o   Options
	log zerolog.Logger
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Catalog == nil || o.Clusters == nil || o.Provisioner == nil || o.Modules == nil {
		return nil, errors.New("transfer: Catalog, Clusters, Provisioner and Modules are required")
	}
	return &Service{o: o, log: o.Log.Hook(requestid.Hook)}, nil
}

func (s *Service) hook(st Step) {
	if s.o.Hook != nil {
		s.o.Hook(st)
	}
}
