// Package catalogtest lets tests put the tenant catalog into states that the
// product reaches only through many steps (a moving tenant, a changed
// schema name, a row without a schema). It belongs to the catalog package:
// no other package writes landlord.tenants, not even in tests.
package catalogtest

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// DB is a direct admin connection to a test database (*sql.DB or *sql.Tx).
type DB = catalog.DBTX

func exec(t testing.TB, db DB, what, query string, args ...any) {
	t.Helper()
	res, err := db.ExecContext(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("catalogtest: %s: %v", what, err)
	}
	if n, _ := res.RowsAffected(); n == 0 && what != "delete" {
		t.Fatalf("catalogtest: %s: no such tenant", what)
	}
}

// Insert adds a catalog row for slug with the given status and placement
// (no schema is made) and returns it.
func Insert(t testing.TB, db DB, slug tenant.Slug, status tenant.Status, pl tenant.Placement) tenant.Tenant {
	t.Helper()
	row, inserted, err := catalog.InsertProvisioning(context.Background(), db, slug, "Tenant "+slug.String(), pl)
	if err != nil || !inserted {
		t.Fatalf("catalogtest: insert %s: inserted %v, %v", slug, inserted, err)
	}
	if status != tenant.StatusProvisioning {
		SetStatus(t, db, slug, status)
		row.Status = status
		row.Version++
	}
	return row
}

// InsertID is Insert with a given tenant id.
func InsertID(t testing.TB, db DB, id uuid.UUID, slug tenant.Slug, status tenant.Status, pl tenant.Placement) {
	t.Helper()
	exec(t, db, "insert", `INSERT INTO landlord.tenants (id, slug, name, status, placement, cluster, database_name, schema_name)
		VALUES ($1, $2, $2, $3, $4, $5, $6, $7)`, id, slug.String(), string(status), string(pl.Kind), pl.Cluster, pl.Database, pl.Schema)
}

// Delete removes the row of slug (its module installs and tokens go with
// it), whatever its status; a missing row is fine.
func Delete(t testing.TB, db DB, slug tenant.Slug) {
	t.Helper()
	exec(t, db, "delete", `DELETE FROM landlord.tenants WHERE slug = $1`, slug.String())
}

// DeleteID removes the row with that id, if any.
func DeleteID(t testing.TB, db DB, id uuid.UUID) {
	t.Helper()
	exec(t, db, "delete", `DELETE FROM landlord.tenants WHERE id = $1`, id)
}

// SetStatus forces a status (version bumped), without the checks and
// notices of the lifecycle methods.
func SetStatus(t testing.TB, db DB, slug tenant.Slug, status tenant.Status) {
	t.Helper()
	exec(t, db, "set status", `UPDATE landlord.tenants SET status = $2, version = version + 1 WHERE slug = $1`,
		slug.String(), string(status))
}

// SetStatusQuietly forces a status without bumping the version (what a
// stale cache cannot tell from the old one).
func SetStatusQuietly(t testing.TB, db DB, slug tenant.Slug, status tenant.Status) {
	t.Helper()
	exec(t, db, "set status", `UPDATE landlord.tenants SET status = $2 WHERE slug = $1`, slug.String(), string(status))
}

// SetStatementTimeout sets the tenant's own statement timeout (0: the default).
func SetStatementTimeout(t testing.TB, db DB, slug tenant.Slug, ms int) {
	t.Helper()
	exec(t, db, "set statement timeout", `UPDATE landlord.tenants SET statement_timeout_ms = nullif($2, 0) WHERE slug = $1`,
		slug.String(), ms)
}

// SetPlacement points the row at another placement (version bumped),
// without a notice: what a move leaves, seen by a router that missed it.
func SetPlacement(t testing.TB, db DB, id uuid.UUID, pl tenant.Placement) {
	t.Helper()
	exec(t, db, "set placement", `UPDATE landlord.tenants SET placement = $2, cluster = $3, database_name = $4, schema_name = $5,
		version = version + 1 WHERE id = $1`, id, string(pl.Kind), pl.Cluster, pl.Database, pl.Schema)
}

// SetCluster points the row at another cluster name.
func SetCluster(t testing.TB, db DB, id uuid.UUID, cluster string) {
	t.Helper()
	exec(t, db, "set cluster", `UPDATE landlord.tenants SET cluster = $2 WHERE id = $1`, id, cluster)
}

// Record is what the catalog recorded of a tenant's schema applies.
type Record struct {
	Hash, Fingerprint, Error string
	Applied                  bool // schema_applied_at is set
}

// Recorded returns the schema record of the tenant with that id.
func Recorded(t testing.TB, db DB, id uuid.UUID) Record {
	t.Helper()
	var r Record
	if err := db.QueryRowContext(context.Background(), `SELECT coalesce(schema_hash, ''), coalesce(schema_fingerprint, ''),
			coalesce(schema_error, ''), schema_applied_at IS NOT NULL FROM landlord.tenants WHERE id = $1`, id).
		Scan(&r.Hash, &r.Fingerprint, &r.Error, &r.Applied); err != nil {
		t.Fatalf("catalogtest: recorded %s: %v", id, err)
	}
	return r
}

// Exists reports whether a row of slug exists.
func Exists(t testing.TB, db DB, slug tenant.Slug) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRowContext(context.Background(), `SELECT EXISTS (SELECT FROM landlord.tenants WHERE slug = $1)`,
		slug.String()).Scan(&ok); err != nil {
		t.Fatalf("catalogtest: exists %s: %v", slug, err)
	}
	return ok
}

// ID returns the id of slug's tenant.
func ID(t testing.TB, db DB, slug tenant.Slug) uuid.UUID {
	t.Helper()
	var id uuid.UUID
	if err := db.QueryRowContext(context.Background(), `SELECT id FROM landlord.tenants WHERE slug = $1`,
		slug.String()).Scan(&id); err != nil {
		t.Fatalf("catalogtest: id of %s: %v", slug, err)
	}
	return id
}

// Records returns the schema records of the tenants whose schema is one of
// schemas, by schema name.
func Records(t testing.TB, db DB, schemas []string) map[string]Record {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT schema_name, coalesce(schema_hash, ''), coalesce(schema_fingerprint, ''),
			coalesce(schema_error, ''), schema_applied_at IS NOT NULL FROM landlord.tenants WHERE schema_name = ANY($1)`, schemas)
	if err != nil {
		t.Fatalf("catalogtest: records: %v", err)
	}
	defer rows.Close()
	out := map[string]Record{}
	for rows.Next() {
		var s string
		var r Record
		if err := rows.Scan(&s, &r.Hash, &r.Fingerprint, &r.Error, &r.Applied); err != nil {
			t.Fatalf("catalogtest: records: %v", err)
		}
		out[s] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("catalogtest: records: %v", err)
	}
	return out
}

// Count returns how many of the records satisfy ok.
func Count(records map[string]Record, ok func(Record) bool) int {
	n := 0
	for _, r := range records {
		if ok(r) {
			n++
		}
	}
	return n
}
