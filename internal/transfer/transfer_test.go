package transfer_test

import (
	"bytes"
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/apptest"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
	"github.com/publicdigit/publicdigit/internal/transfer"
)

// bundle is one test's App and admin connection.
type bundle struct {
	a     *app.App
	admin *sql.DB
}

func newBundle(t *testing.T, hook func(transfer.Step)) *bundle {
	t.Helper()
	return &bundle{a: apptest.Open(t, apptest.Options{Options: app.Options{TransferHook: hook}}), admin: dbtest.AdminDB(t)}
}

// source is a tenant with the events module and rows in every table,
// including NULLs, JSON, text that COPY's text format would escape and
// timestamps to the microsecond.
type source struct {
	dbtest.TestTenant
	slug   tenant.Slug
	module string
}

func (b *bundle) source(t *testing.T, members int) source {
	t.Helper()
	mod := dbtest.Module(t, "evx", "modules/events.hcl")
	tt := dbtest.Tenant(t, "exs", mod)
	s := pgx.Identifier{tt.Schema}.Sanitize()
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO ` + s + `.members (tenant_id, full_name, email, phone, status, geo_unit_id, joined_at)
		 SELECT $1, 'Member ' || g || E'\t"quoted"\\ and\nnewline ✓',
		        CASE WHEN g % 3 = 0 THEN NULL ELSE 'm' || g || '@example.test' END,
		        CASE WHEN g % 2 = 0 THEN '' END, (ARRAY['active','inactive','suspended'])[1 + g % 3],
		        CASE WHEN g % 5 = 0 THEN g END, timestamptz '2024-02-29 12:34:56.789012+00' + g * interval '1 second'
		   FROM generate_series(1, $2::int) g`,
		`INSERT INTO ` + s + `.digital_cards (tenant_id, member_id, qr_code, status, expires_at, activated_at)
		 SELECT tenant_id, id, 'PD1-' || md5(id::text || k), (ARRAY['issued','active','revoked'])[1 + k],
		        now() + interval '1 year', CASE WHEN k = 1 THEN now() END
		   FROM ` + s + `.members CROSS JOIN generate_series(0, 2) k WHERE tenant_id = $1 AND $2::int > 0`,
		`INSERT INTO ` + s + `.card_activities (tenant_id, card_id, action, actor, detail)
		 SELECT tenant_id, id, 'issued', CASE WHEN random() < 0.5 THEN 'api' END,
		        jsonb_build_object('qr', qr_code, 'n', 1.5, 'nested', jsonb_build_array(1, 'two', NULL))
		   FROM ` + s + `.digital_cards WHERE tenant_id = $1 AND $2::int > 0`,
		`INSERT INTO ` + s + `.events (tenant_id, title, starts_at, capacity, status)
		 SELECT $1, 'Event ' || g, now() + g * interval '1 day', CASE WHEN g % 2 = 0 THEN 50 END, 'published'
		   FROM generate_series(1, least($2::int, 20)) g`,
		`INSERT INTO ` + s + `.event_registrations (tenant_id, event_id, member_id)
		 SELECT e.tenant_id, e.id, m.id FROM ` + s + `.events e
		   JOIN (SELECT id FROM ` + s + `.members ORDER BY id LIMIT 10) m ON true WHERE e.tenant_id = $1 AND $2::int > 0`,
	} {
		_, err := b.admin.ExecContext(ctx, q, tt.ID, members)
		require.NoError(t, err)
	}
	return source{TestTenant: tt, slug: tenant.MustSlug(tt.Slug), module: mod}
}

func (b *bundle) export(t *testing.T, slug tenant.Slug) []byte {
	t.Helper()
	ctx := context.Background()
	e, err := b.a.Transfer.Export(ctx, slug)
	require.NoError(t, err)
	defer e.Close()
	var buf bytes.Buffer
	_, err = e.WriteTo(ctx, &buf)
	require.NoError(t, err)
	return buf.Bytes()
}

// newSlug returns a fresh slug, everything made of it removed at cleanup.
func newSlug(t *testing.T, prefix string) tenant.Slug {
	t.Helper()
	s := tenant.MustSlug(dbtest.Name(prefix))
	dbtest.RemoveAtCleanup(t, s)
	return s
}

func (b *bundle) importAs(t *testing.T, archive []byte, as tenant.Slug) (transfer.ImportResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return b.a.Transfer.Import(ctx, bytes.NewReader(archive), transfer.ImportRequest{As: as})
}

// tables lists a tenant schema's tables.
func (b *bundle) tables(t *testing.T, schema string) []string {
	t.Helper()
	rows, err := b.admin.Query(`SELECT relname FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r' ORDER BY 1`, schema)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		out = append(out, n)
	}
	require.NoError(t, rows.Err())
	return out
}

// content is an md5 of a table's rows as text in a stable order, with the
// tenant's own id written as "<tenant>": independent of the checksums the
// package computes.
func (b *bundle) content(t *testing.T, schema, table string, id uuid.UUID) (int64, string) {
	t.Helper()
	rows, err := b.admin.Query(`SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attname`,
		pgx.Identifier{schema, table}.Sanitize())
	require.NoError(t, err)
	var cols []string
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		if c == "tenant_id" {
			c = `replace(tenant_id::text, $1, '<tenant>')`
		} else {
			c = pgx.Identifier{c}.Sanitize()
		}
		cols = append(cols, c)
	}
	require.NoError(t, rows.Close())
	var n int64
	var sum sql.NullString
	require.NoError(t, b.admin.QueryRow(`SELECT count(*), md5(string_agg(r, E'\n' ORDER BY r)) FROM (SELECT ROW(`+
		strings.Join(cols, ", ")+`)::text AS r FROM `+pgx.Identifier{schema, table}.Sanitize()+`) x`, id.String()).Scan(&n, &sum))
	return n, sum.String
}

// assertSameRows compares every table of two tenants.
func (b *bundle) assertSameRows(t *testing.T, from, to tenant.Tenant) int64 {
	t.Helper()
	tables := b.tables(t, from.Schema)
	require.Equal(t, tables, b.tables(t, to.Schema))
	var total int64
	for _, tb := range tables {
		n1, s1 := b.content(t, from.Schema, tb, from.ID)
		n2, s2 := b.content(t, to.Schema, tb, to.ID)
		assert.Equal(t, n1, n2, "table %s: rows", tb)
		assert.Equal(t, s1, s2, "table %s: content", tb)
		var foreign int
		require.NoError(t, b.admin.QueryRow(`SELECT count(*) FROM `+pgx.Identifier{to.Schema, tb}.Sanitize()+
			` WHERE tenant_id <> $1`, to.ID).Scan(&foreign))
		assert.Zero(t, foreign, "table %s: every row carries the new tenant's id", tb)
		total += n1
	}
	return total
}

// assertNothing checks that nothing of slug exists: catalog row, schema,
// role, and that no side schema of an import was left anywhere.
func (b *bundle) assertNothing(t *testing.T, slug tenant.Slug) {
	t.Helper()
	assert.False(t, catalogtest.Exists(t, b.admin, slug), "no catalog row")
	var schemas, roles, sides int
	require.NoError(t, b.admin.QueryRow(`SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1),
		(SELECT count(*) FROM pg_roles WHERE rolname = $2),
		(SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, 'pd_import_'))`,
		slug.SchemaName(), slug.RoleName()).Scan(&schemas, &roles, &sides))
	assert.Zero(t, schemas, "no schema %s", slug.SchemaName())
	assert.Zero(t, roles, "no role %s", slug.RoleName())
	assert.Zero(t, sides, "no side schema left")
}

func TestRoundTripAsAnotherSlug(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 300)
	ctx := context.Background()
	archive := b.export(t, src.slug)

	as := newSlug(t, "exr")
	res, err := b.importAs(t, archive, as)
	require.NoError(t, err)
	assert.True(t, res.SameSchema, "same release: the archive's schema hash is the one built here")
	assert.Equal(t, tenant.StatusActive, res.Tenant.Status)
	assert.Equal(t, as.SchemaName(), res.Tenant.Schema)
	assert.NotEqual(t, src.ID, res.Tenant.ID)

	from, err := b.a.Catalog.Get(ctx, src.slug)
	require.NoError(t, err)
	to, err := b.a.Catalog.Get(ctx, as)
	require.NoError(t, err)
	rows := b.assertSameRows(t, from, to)
	assert.Equal(t, rows, res.Rows)
	assert.Equal(t, int64(300+900+900+20+200), rows)
	assert.Equal(t, from.Name, to.Name, "the archive's display name")

	// The catalog, the module installs, the schema and its grants are those of a provisioned tenant.
	assert.Equal(t, from.SchemaHash, to.SchemaHash)
	installed, err := b.a.Modules.Installed(ctx, as)
	require.NoError(t, err)
	require.Len(t, installed, 2)
	assert.Equal(t, []string{"digital_cards", src.module}, []string{installed[0].Module, installed[1].Module})
	fps, err := schemaapply.Fingerprints(ctx, b.admin, []schemaapply.SchemaRole{
		{Schema: from.Schema, Role: src.slug.RoleName()}, {Schema: to.Schema, Role: as.RoleName()}})
	require.NoError(t, err)
	assert.Equal(t, fps[from.Schema], fps[to.Schema], "same tables, indexes, constraints, grants and role setup")
	assert.Equal(t, fps[to.Schema], catalogtest.Recorded(t, b.admin, to.ID).Fingerprint, "the recorded fingerprint is the live one")
	b.assertNothing(t, tenant.MustSlug("never_made"))

	// Served through the router (PgBouncer, the tenant's own role).
	page, more, err := b.a.Members.List(ctx, as, membership.ListQuery{Limit: membership.MaxLimit})
	require.NoError(t, err)
	assert.Len(t, page, membership.MaxLimit)
	assert.True(t, more)
	assert.Equal(t, to.ID, page[0].TenantID)
}

// TestExportIsOneSnapshot: writes made once the export is open — rows
// added, changed and deleted in several tables — are not in the archive,
// which holds every table as it was at one instant; and they are not
// blocked by the export.
func TestExportIsOneSnapshot(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 100)
	ctx := context.Background()
	before := map[string][2]any{}
	for _, tb := range b.tables(t, src.Schema) {
		n, sum := b.content(t, src.Schema, tb, src.ID)
		before[tb] = [2]any{n, sum}
	}

	e, err := b.a.Transfer.Export(ctx, src.slug)
	require.NoError(t, err)
	s := pgx.Identifier{src.Schema}.Sanitize()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, q := range []string{
		`INSERT INTO ` + s + `.members (tenant_id, full_name) VALUES ($1, 'late')`,
		`UPDATE ` + s + `.digital_cards SET status = 'revoked' WHERE tenant_id = $1`,
		`DELETE FROM ` + s + `.card_activities WHERE tenant_id = $1`,
	} {
		_, err := b.admin.ExecContext(wctx, q, src.ID)
		require.NoError(t, err, "writes go on during an export")
	}
	var buf bytes.Buffer
	_, err = e.WriteTo(ctx, &buf)
	e.Close()
	require.NoError(t, err)

	as := newSlug(t, "exn")
	res, err := b.importAs(t, buf.Bytes(), as)
	require.NoError(t, err)
	for tb, want := range before {
		n, sum := b.content(t, res.Tenant.Schema, tb, res.Tenant.ID)
		assert.Equal(t, want, [2]any{n, sum}, "table %s as it was when the export opened", tb)
	}
	n, _ := b.content(t, src.Schema, "card_activities", src.ID)
	assert.Zero(t, n, "the source did change")
}

// TestExportRefusesMovingTenant: a tenant that is moving (or still being
// provisioned) is not exported; one that does not exist is not found.
func TestExportRefusesMovingTenant(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 1)
	ctx := context.Background()
	for _, st := range []tenant.Status{tenant.StatusMoving, tenant.StatusProvisioning} {
		catalogtest.SetStatus(t, b.admin, src.slug, st)
		_, err := b.a.Transfer.Export(ctx, src.slug)
		assert.ErrorIs(t, err, tenant.ErrWrongStatus, "%s", st)
	}
	_, err := b.a.Transfer.Export(ctx, tenant.MustSlug("nobody_here"))
	assert.ErrorIs(t, err, tenant.ErrNotFound)
}

// TestRoundTripOfAnEmptyTenant: tables without rows travel too (each chunk
// then is smaller than the manifest).
func TestRoundTripOfAnEmptyTenant(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 0)
	as := newSlug(t, "exe")
	res, err := b.importAs(t, b.export(t, src.slug), as)
	require.NoError(t, err)
	assert.Zero(t, res.Rows)
	from, err := b.a.Catalog.Get(context.Background(), src.slug)
	require.NoError(t, err)
	assert.Zero(t, b.assertSameRows(t, from, res.Tenant))
}

// TestImportKeepsARemovedDefaultModuleRemoved: a tenant that uninstalled the
// default module digital_cards is imported without it, its record kept as
// removed (so the fleet runner does not install it again).
func TestImportKeepsARemovedDefaultModuleRemoved(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	ctx := context.Background()
	tt := dbtest.Tenant(t, "exm")
	src := tenant.MustSlug(tt.Slug)
	require.NoError(t, b.a.Modules.Uninstall(ctx, src, modules.DigitalCards, false))
	_, err := b.admin.Exec(`INSERT INTO `+pgx.Identifier{tt.Schema}.Sanitize()+`.members (tenant_id, full_name) VALUES ($1, 'x')`, tt.ID)
	require.NoError(t, err)

	as := newSlug(t, "exm")
	res, err := b.importAs(t, b.export(t, src), as)
	require.NoError(t, err)
	assert.Equal(t, int64(1), res.Rows)
	assert.Equal(t, []string{"members"}, b.tables(t, res.Tenant.Schema))
	records, err := b.a.Modules.Records(ctx, res.Tenant.ID)
	require.NoError(t, err)
	require.Len(t, records, 1)
	assert.Equal(t, modules.DigitalCards, records[0].Module)
	assert.Equal(t, modules.StatusRemoved, records[0].Status)
	assert.True(t, res.SameSchema)
}

// TestImportOfAnOlderArchive: an archive that does not mention a default
// module of this release (written before digital_cards became one, when its
// tables were in the core schema) gets the module installed, and its rows
// land in the module's tables.
func TestImportOfAnOlderArchive(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 30)
	old := withManifest(t, b.export(t, src.slug), func(m *transfer.Manifest) {
		m.Modules = m.Modules[1:] // no record of digital_cards
		m.SchemaHash = "an-older-release"
	})
	as := newSlug(t, "exo")
	res, err := b.importAs(t, old, as)
	require.NoError(t, err)
	assert.False(t, res.SameSchema)
	from, err := b.a.Catalog.Get(context.Background(), src.slug)
	require.NoError(t, err)
	assert.Equal(t, res.Rows, b.assertSameRows(t, from, res.Tenant))
	installed, err := b.a.Modules.Installed(context.Background(), as)
	require.NoError(t, err)
	require.Len(t, installed, 2)
	assert.Equal(t, modules.DigitalCards, installed[0].Module)
	assert.Equal(t, from.SchemaHash, res.Tenant.SchemaHash, "the schema of this release, as its own tenants have")
}
