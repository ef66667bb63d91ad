package transfer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// ImportRequest says how to import an archive.
type ImportRequest struct {
	// As is the new tenant's slug (zero: the archive's).
	As tenant.Slug
	// Name replaces the archive's display name when set.
	Name string
}

// ImportResult describes a finished import.
type ImportResult struct {
	Tenant tenant.Tenant
	// Rows and Tables loaded.
	Rows   int64
	Tables int
	// SameSchema: the schema built here has the archive's hash. When false,
	// the archive's tables and columns were all found here (an archive of an
	// older release, or of another application role).
	SameSchema bool
	// Load is the time spent reading the archive into the side schema
	// (COPY); Verify rebuilding its keys and indexes and checking the row
	// counts and checksums; Duration the whole import. (The new tables are
	// not analyzed in the import's transaction: autovacuum does it within
	// a minute, as after any bulk load.)
	Load, Verify time.Duration
	Duration     time.Duration
}

// Import reads an archive from r and creates its tenant, all or nothing
// (see the package comment). r is read once, front to back.
func (s *Service) Import(ctx context.Context, r io.Reader, req ImportRequest) (ImportResult, error) {
	start := time.Now()
	ar, err := openArchive(r)
	if err != nil {
		return ImportResult{}, err
	}
	m := ar.manifest
	slug := req.As
	if slug.IsZero() {
		if slug, err = tenant.ParseSlug(m.Tenant.Slug); err != nil {
			return ImportResult{}, err
		}
	}
	name := req.Name
	if name == "" {
		name = m.Tenant.Name
	}
	// A refusal from here on is in the audit trail as a failed create
	// (Restore records its own outcome).
	refused := func(err error) (ImportResult, error) {
		s.o.Catalog.Audit().Failed(ctx, audit.Event{Action: audit.TenantCreate, Tenant: slug.String(),
			Detail: map[string]any{"name": name, "path": string(provision.PathImport)}}, err)
		return ImportResult{}, err
	}
	mods, err := s.moduleFiles(ctx, m)
	if err != nil {
		return refused(ar.trusted(err))
	}
	// Refused early when taken; Restore checks again under the lock.
	if t, err := s.o.Catalog.Get(ctx, slug); err == nil {
		return refused(fmt.Errorf("tenant %s (%s): %w", slug, t.Status, tenant.ErrExists))
	} else if !errors.Is(err, tenant.ErrNotFound) {
		return refused(err)
	}
	res := ImportResult{Tables: len(m.Tables), Rows: m.Rows()}
	t, err := s.o.Provisioner.Restore(ctx, provision.RestoreRequest{
		Slug: slug, Name: name, ModuleFiles: mods.files,
		Fill: func(ctx context.Context, side provision.Side) error {
			res.SameSchema = side.Applied.Hash == m.SchemaHash
			return s.fill(ctx, ar, side, &res)
		},
		BeforeCommit: func(ctx context.Context, tx *sql.Tx, t tenant.Tenant) error {
			return modules.RecordRestored(ctx, tx, t, mods.installed, mods.removed)
		},
	})
	if err != nil {
		return ImportResult{}, ar.trusted(err)
	}
	res.Tenant, res.Duration = t, time.Since(start)
	s.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("from", m.Tenant.Slug).Int64("rows", res.Rows).
		Bool("same_schema", res.SameSchema).Dur("duration", res.Duration).Msg("tenant imported")
	return res, nil
}

// moduleSet is what an import gives the new tenant of the modules.
type moduleSet struct {
	installed, removed, files []string
}

// moduleFiles resolves the archive's modules in this platform's registry:
// each installed one must be registered here; a removed default stays
// removed; a default module of this release that the archive does not
// mention (an archive from before it became a default, when its tables may
// have been in the core schema) is installed, as provisioning and the
// fleet runner give it to every tenant that never had it.
func (s *Service) moduleFiles(ctx context.Context, m *Manifest) (moduleSet, error) {
	var set moduleSet
	add := func(name string) error {
		reg, err := s.o.Modules.Get(ctx, name)
		if err != nil {
			return err
		}
		set.installed = append(set.installed, reg.Name)
		set.files = append(set.files, reg.SchemaFiles...)
		return nil
	}
	mentioned := map[string]bool{}
	for _, mod := range m.Modules {
		mentioned[mod.Name] = true
		if mod.Status == modules.StatusRemoved {
			if _, err := s.o.Modules.Get(ctx, mod.Name); err == nil {
				set.removed = append(set.removed, mod.Name)
			}
			continue
		}
		err := add(mod.Name)
		if errors.Is(err, modules.ErrModuleNotFound) {
			return set, fmt.Errorf("%w: the archive's tenant has module %s (version %s), which is not registered here: register it, then import again",
				ErrSchemaUnreachable, mod.Name, clip(mod.Version, 50))
		}
		if err != nil {
			return set, err
		}
	}
	for _, name := range modules.DefaultNames() {
		if !mentioned[name] {
			if err := add(name); err != nil {
				return set, err
			}
		}
	}
	slices.Sort(set.files)
	set.files = slices.Compact(set.files)
	return set, nil
}

// fill checks that the side schema can take the archive's tables, loads
// them, verifies them and reads the archive to its seal.
func (s *Service) fill(ctx context.Context, ar *archiveReader, side provision.Side, res *ImportResult) error {
	return side.Conn.Raw(func(dc any) error {
		conn := dc.(*stdlib.Conn).Conn()
		live, err := liveTables(ctx, conn, side.Schema)
		if err != nil {
			return err
		}
		if err := reachable(ar.manifest, live); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, sessionFormats); err != nil {
			return err
		}
		rebuild, err := dropIndexes(ctx, conn, side.Schema)
		if err != nil {
			return fmt.Errorf("import: prepare tables: %w", err)
		}
		partitioned := map[string]bool{}
		for _, lt := range live {
			partitioned[lt.name] = lt.partitioned
		}
		loadStart := time.Now()
		ends := make([]TableEnd, 0, len(ar.manifest.Tables))
		for i, mt := range ar.manifest.Tables {
			end, err := s.load(ctx, conn, ar, side, mt, partitioned[mt.Name])
			if err != nil {
				return err
			}
			ends = append(ends, end)
			if i == 0 {
				s.hook(StepCopying)
			}
		}
		if err := ar.end(ends); err != nil {
			return err
		}
		verifyStart := time.Now()
		res.Load = verifyStart.Sub(loadStart)
		for _, stmt := range rebuild {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return refused("rebuilding the keys and indexes", err)
			}
		}
		for _, mt := range ar.manifest.Tables {
			n, sum, err := checksum(ctx, conn, mt.ChecksumMethod, side.Schema, mt.Name, mt.Columns, side.Tenant.ID)
			if err != nil {
				return err
			}
			if n != mt.Rows || sum != mt.Checksum {
				return fmt.Errorf("%w: table %s holds %d rows (checksum %s) once loaded; the manifest says %d rows (%s)",
					ErrInvalidArchive, mt.Name, n, sum, mt.Rows, mt.Checksum)
			}
		}
		for _, sq := range ar.manifest.Sequences {
			if _, err := conn.Exec(ctx, `SELECT setval(to_regclass($1), $2, true) WHERE to_regclass($1) IS NOT NULL`,
				pgx.Identifier{side.Schema, sq.Name}.Sanitize(), sq.LastValue); err != nil {
				return refused("sequence "+sq.Name, err)
			}
		}
		res.Verify = time.Since(verifyStart)
		s.hook(StepVerified)
		return nil
	})
}

// reachable checks that the schema built here can hold the archive's rows:
// every table and column of the archive exists here with the same type,
// and every column here that the archive lacks can be left to its default.
func reachable(m *Manifest, live []liveTable) error {
	here := make(map[string]liveTable, len(live))
	for _, lt := range live {
		here[lt.name] = lt
	}
	var problems []string
	for _, mt := range m.Tables {
		lt, ok := here[mt.Name]
		if !ok {
			problems = append(problems, "table "+mt.Name+" does not exist here")
			continue
		}
		cols := make(map[string]liveColumn, len(lt.columns))
		for _, c := range lt.columns {
			cols[c.Name] = c
		}
		for _, c := range mt.Columns {
			lc, ok := cols[c.Name]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("column %s.%s does not exist here", mt.Name, c.Name))
			case lc.Type != c.Type:
				problems = append(problems, fmt.Sprintf("column %s.%s is %s here, %s in the archive", mt.Name, c.Name, lc.Type, c.Type))
			}
			delete(cols, c.Name)
		}
		for _, lc := range lt.columns {
			if _, missing := cols[lc.Name]; missing && lc.notNull && !lc.hasDefault {
				problems = append(problems, fmt.Sprintf("column %s.%s is required here and missing from the archive", mt.Name, lc.Name))
			}
		}
	}
	if len(problems) > 0 {
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("and %d more", len(problems)-10))
		}
		return fmt.Errorf("%w: the archive (schema hash %s, modules %s) was written by a release whose schema differs: %s",
			ErrSchemaUnreachable, clip(m.SchemaHash, 16), moduleNames(m), strings.Join(problems, "; "))
	}
	return nil
}

func moduleNames(m *Manifest) string {
	if len(m.Modules) == 0 {
		return "none"
	}
	names := make([]string, len(m.Modules))
	for i, mod := range m.Modules {
		names[i] = mod.Name
	}
	return strings.Join(names, ", ")
}

// load streams one table's chunks through a copyFilter into COPY … FROM
// STDIN (FREEZE, the table being created in this transaction: its rows are
// written frozen, with no later vacuum pass to mark them so).
func (s *Service) load(ctx context.Context, conn *pgx.Conn, ar *archiveReader, side provision.Side, mt ManifestTable,
	partitioned bool) (TableEnd, error) {
	end := TableEnd{Name: mt.Name}
	opts := "FORMAT binary, FREEZE"
	if partitioned { // not supported there
		opts = "FORMAT binary"
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var tag pgconn.CommandTag
	go func() {
		var err error
		tag, err = conn.PgConn().CopyFrom(ctx, pr, "COPY "+pgx.Identifier{side.Schema, mt.Name}.Sanitize()+
			" ("+quoteColumns(mt.Columns)+") FROM STDIN ("+opts+")")
		pr.CloseWithError(err) // a failed COPY stops the writer below
		done <- err
	}()
	var from, to [16]byte
	copy(from[:], ar.manifest.Tenant.ID[:])
	copy(to[:], side.Tenant.ID[:])
	f := newCopyFilter(pw, mt.Name, len(mt.Columns), tenantIDField(mt.Columns), from, to)
	digest := newDigest()
	feed := func() error {
		for n := 1; ; n++ {
			chunk, err := ar.nextChunk(mt.Name, n)
			if err != nil {
				return err
			}
			if chunk == nil {
				if n == 1 {
					return corrupt("table %s: no data in the archive", mt.Name)
				}
				return f.finish()
			}
			end.Chunks, end.Bytes = n, end.Bytes+int64(len(chunk))
			digest.Write(chunk) // before the filter changes the chunk
			if _, err := f.Write(chunk); err != nil {
				return err
			}
		}
	}
	feedErr := feed()
	pw.CloseWithError(feedErr) // nil: the end of the COPY data
	copyErr := <-done
	switch {
	case copyErr != nil && (feedErr == nil || errors.Is(feedErr, copyErr)): // the database stopped first
		return end, refused("table "+mt.Name, copyErr)
	case feedErr != nil:
		return end, feedErr
	case copyErr != nil:
		return end, refused("table "+mt.Name, copyErr)
	case f.tuples != mt.Rows || tag.RowsAffected() != mt.Rows:
		return end, corrupt("table %s: %d rows in the archive, %d loaded; the manifest says %d", mt.Name, f.tuples, tag.RowsAffected(), mt.Rows)
	}
	end.SHA256 = digest.hex()
	return end, nil
}

// refused describes a database error while loading: the data or the
// schema here refused the archive's rows. Only PostgreSQL's own message
// for data and constraint errors is kept (it names no SQL).
func refused(what string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "22": // data exception: the bytes are not valid values
			return fmt.Errorf("%w: %s: the database refused the data (%s)", ErrInvalidArchive, what, pe.Message)
		case "23": // integrity constraint: this platform's schema refuses the rows
			return fmt.Errorf("%w: %s: the rows break a constraint of the schema here (%s)", ErrSchemaUnreachable, what, pe.Message)
		}
	}
	return fmt.Errorf("import: %s: %w", what, err)
}
