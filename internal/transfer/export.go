package transfer

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Export is an export whose snapshot is open and whose manifest is known:
// WriteTo streams the archive, Close releases the snapshot and the locks.
// Everything that can refuse an export (tenant not found, moving, not
// reachable) has been said by then, so an HTTP handler can still answer
// with an error before it starts streaming.
type Export struct {
	// Manifest describes the archive WriteTo writes.
	Manifest Manifest

	s      *Service
	conn   *pgx.Conn
	unlock func()
	schema string
	tables []liveTable
}

// exportable: a tenant whose schema is complete and not being moved.
func exportable(t tenant.Tenant) error {
	switch t.Status {
	case tenant.StatusActive, tenant.StatusSuspended, tenant.StatusDeleted:
		return nil
	case tenant.StatusMoving:
		return &tenant.StatusError{Slug: t.Slug, Status: t.Status, Op: "export (wait for the move to finish)"}
	}
	return &tenant.StatusError{Slug: t.Slug, Status: t.Status, Op: "export"}
}

// Export opens an export of a tenant: it takes the tenant's operation lock,
// connects to the tenant's database, holds the tenant's schema lock shared,
// opens a REPEATABLE READ snapshot and computes the manifest in it. The
// caller must Close the export.
func (s *Service) Export(ctx context.Context, slug tenant.Slug) (_ *Export, err error) {
	unlock, err := s.o.Catalog.Lock(ctx, slug)
	if err != nil {
		return nil, err
	}
	e := &Export{s: s, unlock: unlock}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	t, err := s.o.Catalog.Get(ctx, slug)
	if err != nil {
		return nil, err
	}
	if err := exportable(t); err != nil {
		return nil, err
	}
	mods, err := s.modulesOf(ctx, t)
	if err != nil {
		return nil, err
	}
	if err := e.open(ctx, t); err != nil {
		return nil, fmt.Errorf("export %s: %w", slug, err)
	}
	e.Manifest = Manifest{Format: Format, Version: FormatVersion, CreatedAt: time.Now().UTC(),
		Tenant:     ManifestTenant{ID: t.ID, Slug: t.Slug.String(), Name: t.Name, Status: t.Status},
		SchemaHash: t.SchemaHash, Modules: mods, CopyFormat: "binary"}
	if err := e.describe(ctx, t); err != nil {
		return nil, fmt.Errorf("export %s: %w", slug, err)
	}
	return e, nil
}

// modulesOf lists a tenant's modules with their versions and files: those
// installed, and the default modules it removed. A module whose uninstall
// is unfinished is refused (its tables are neither kept nor gone).
func (s *Service) modulesOf(ctx context.Context, t tenant.Tenant) ([]ManifestModule, error) {
	records, err := s.o.Modules.Records(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	out := make([]ManifestModule, 0, len(records))
	for _, r := range records {
		if r.Status != modules.StatusInstalled && r.Status != modules.StatusRemoved {
			return nil, fmt.Errorf("tenant %s: module %s is %s (run its uninstall again to finish it), cannot export: %w",
				t.Slug, r.Module, r.Status, tenant.ErrWrongStatus)
		}
		m, err := s.o.Modules.Get(ctx, r.Module)
		if err != nil {
			return nil, err
		}
		out = append(out, ManifestModule{Name: m.Name, Status: r.Status, Version: m.Version, SchemaFiles: m.SchemaFiles})
	}
	return out, nil
}

// open connects to the tenant's database and starts the snapshot. The
// schema lock is taken (shared, for the session) before the snapshot, so
// that the snapshot sees any schema apply that held it committed.
func (e *Export) open(ctx context.Context, t tenant.Tenant) error {
	raw, err := e.s.o.Clusters.AdminURL(t.Cluster, t.Database)
	if err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "publicdigit-export"
	if e.conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		return fmt.Errorf("connect to %s on cluster %s: %w", t.Database, t.Cluster, err)
	}
	e.schema = t.Schema
	if _, err := e.conn.Exec(ctx, "SELECT pg_advisory_lock_shared(hashtext('schema:' || $1))", t.Schema); err != nil {
		return fmt.Errorf("lock schema %s: %w", t.Schema, err)
	}
	if _, err := e.conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err != nil {
		return err
	}
	_, err = e.conn.Exec(ctx, sessionFormats)
	return err
}

// describe fills the manifest from the snapshot: server version, tables
// with their columns, counts and checksums, sequences.
func (e *Export) describe(ctx context.Context, t tenant.Tenant) error {
	m := &e.Manifest
	if err := e.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&m.ServerVersion); err != nil {
		return err
	}
	tables, err := liveTables(ctx, e.conn, t.Schema)
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return fmt.Errorf("schema %s has no tables", t.Schema)
	}
	e.tables = tables
	for _, lt := range tables {
		mt := ManifestTable{Name: lt.name, Columns: make([]Column, len(lt.columns))}
		for i, c := range lt.columns {
			mt.Columns[i] = c.Column
		}
		if mt.ChecksumMethod, mt.Rows, mt.Checksum, err = exportChecksum(ctx, e.conn, t.Schema, lt.name, mt.Columns, t.ID); err != nil {
			return err
		}
		m.Tables = append(m.Tables, mt)
	}
	m.Sequences, err = sequences(ctx, e.conn, t.Schema)
	return err
}

// WriteTo writes the archive to w: the manifest, every table's rows with
// binary COPY from the snapshot, the seal. It returns the rows written.
func (e *Export) WriteTo(ctx context.Context, w io.Writer) (int64, error) {
	aw, err := newArchiveWriter(w, &e.Manifest)
	if err != nil {
		return 0, err
	}
	var rows int64
	for i, lt := range e.tables {
		mt := e.Manifest.Tables[i]
		src := pgx.Identifier{e.schema, lt.name}.Sanitize() + " (" + quoteColumns(mt.Columns) + ")"
		if lt.partitioned { // COPY TO reads a partitioned table through a query only
			src = "(SELECT " + quoteColumns(mt.Columns) + " FROM " + pgx.Identifier{e.schema, lt.name}.Sanitize() + ")"
		}
		aw.beginTable(lt.name)
		tag, err := e.conn.PgConn().CopyTo(ctx, aw, "COPY "+src+" TO STDOUT (FORMAT binary)")
		if err != nil {
			return rows, fmt.Errorf("export table %s: %w", lt.name, err)
		}
		if tag.RowsAffected() != mt.Rows {
			return rows, fmt.Errorf("export table %s: %d rows copied, %d counted in the same snapshot", lt.name, tag.RowsAffected(), mt.Rows)
		}
		if err := aw.endTable(); err != nil {
			return rows, err
		}
		rows += mt.Rows
	}
	return rows, aw.close()
}

// Close ends the snapshot and releases the schema and tenant locks. Safe to call twice.
func (e *Export) Close() {
	if e.conn != nil {
		// Closing the session ends the transaction and its session lock.
		_ = e.conn.Close(context.Background())
		e.conn = nil
	}
	if e.unlock != nil {
		e.unlock()
		e.unlock = nil
	}
}
