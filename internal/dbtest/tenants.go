package dbtest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// TestTenant is a tenant made for one test, in the test database's landlord catalog.
type TestTenant struct {
	ID     uuid.UUID
	Slug   string
	Schema string
	Role   string
}

// Spec is the tenant's schemaapply spec with the given module files.
func (tt TestTenant) Spec(appRole string, moduleFiles ...string) schemaapply.TenantSpec {
	return schemaapply.TenantSpec{Schema: tt.Schema, Role: tt.Role, AppRole: appRole, Modules: moduleFiles}
}

// Module registers a module with a random name (prefix + suffix) in
// landlord.modules, bringing the given tenant schema files (e.g.
// "modules/events.hcl"), and deletes it at cleanup. Register modules before
// the tenants that install them: cleanups run in reverse order.
func Module(t testing.TB, prefix string, files ...string) string {
	t.Helper()
	Landlord(t)
	db := AdminDB(t)
	name := Name(prefix)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO landlord.modules (name, display_name, version, schema_files)
		VALUES ($1, $1, 'test', $2)`, name, files); err != nil {
		t.Fatalf("dbtest: register module: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), `DELETE FROM landlord.modules WHERE name = $1`, name); err != nil {
			t.Errorf("dbtest: delete module %s: %v", name, err)
		}
	})
	return name
}

// TenantRow inserts a catalog row for a new tenant — slug prefix +
// random suffix, status active, placement schema, cluster main, this test
// database, schema tenant_<slug> — with the default modules
// (modules.DefaultNames: digital_cards, as provisioning gives every tenant)
// and the named modules installed, without creating its schema. Cleanup
// deletes the row and drops the schema and the role (tenant roles are
// cluster-wide; the random slug keeps them apart). The prefix must start
// with a lower-case letter.
func TenantRow(t testing.TB, prefix string, mods ...string) TestTenant {
	t.Helper()
	return tenantRow(t, prefix, append(modules.DefaultNames(), mods...))
}

// BareTenantRow is TenantRow with only the named modules (no default ones).
func BareTenantRow(t testing.TB, prefix string, mods ...string) TestTenant {
	t.Helper()
	return tenantRow(t, prefix, mods)
}

func tenantRow(t testing.TB, prefix string, mods []string) TestTenant {
	t.Helper()
	Landlord(t)
	db := AdminDB(t)
	if len(prefix) > 30 {
		t.Fatalf("dbtest: tenant prefix %q is longer than 30 bytes", prefix)
	}
	slug, err := tenant.ParseSlug(Name(prefix))
	if err != nil {
		t.Fatalf("dbtest: tenant prefix %q: %v", prefix, err)
	}
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	var database string
	if err := tx.QueryRowContext(ctx, `SELECT current_database()`).Scan(&database); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	row := catalogtest.Insert(t, tx, slug, tenant.StatusActive, tenant.Placement{
		Kind: tenant.PlacementSchema, Cluster: "main", Database: database, Schema: slug.SchemaName()})
	tt := TestTenant{ID: row.ID, Slug: slug.String(), Schema: slug.SchemaName(), Role: slug.RoleName()}
	for _, m := range mods {
		if _, err := tx.ExecContext(ctx, `INSERT INTO landlord.tenant_modules (tenant_id, module_name) VALUES ($1, $2)
			ON CONFLICT DO NOTHING`, tt.ID, m); err != nil {
			t.Fatalf("dbtest: install module %s: %v", m, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() { DropTenant(t, db, tt) })
	return tt
}

// Tenant is TenantRow followed by schemaapply.ApplyTenant (schema, role,
// grants to the configured application role, in one transaction, with the
// schema files of its modules: the default ones and those named) and the
// record of the applied hash and fingerprint, so the tenant starts converged.
func Tenant(t testing.TB, prefix string, mods ...string) TestTenant {
	t.Helper()
	return applied(t, TenantRow(t, prefix, mods...))
}

// BareTenant is Tenant with only the named modules (no default ones).
func BareTenant(t testing.TB, prefix string, mods ...string) TestTenant {
	t.Helper()
	return applied(t, BareTenantRow(t, prefix, mods...))
}

func applied(t testing.TB, tt TestTenant) TestTenant {
	t.Helper()
	db := AdminDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var files []string
	if err := db.QueryRowContext(ctx, `SELECT coalesce(array_agg(DISTINCT f ORDER BY f), '{}')
		FROM landlord.tenant_modules tm JOIN landlord.modules m ON m.name = tm.module_name
		CROSS JOIN LATERAL unnest(m.schema_files) f WHERE tm.tenant_id = $1`,
		tt.ID).Scan(pgtype.NewMap().SQLScanner(&files)); err != nil {
		t.Fatalf("dbtest: module files: %v", err)
	}
	_, err := schemaapply.ApplyTenant(ctx, db, tt.Spec(Config(t).Tenant.AppRole, files...), schemaapply.Options{
		BeforeCommit: func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error {
			return catalog.RecordApplied(ctx, tx, tt.ID, res.Hash, res.Fingerprint)
		},
	})
	if err != nil {
		t.Fatalf("dbtest: apply tenant %s: %v", tt.Slug, err)
	}
	return tt
}

// DropTenant deletes the tenant's landlord row (its module installs go with
// it) and drops its schema and role, if they exist.
func DropTenant(t testing.TB, db *sql.DB, tt TestTenant) {
	t.Helper()
	catalogtest.DeleteID(t, db, tt.ID)
	DropSchema(t, db, tt.Schema)
	dropRole(t, db, tt.Role)
}

// Catalog returns the tenant catalog of the test database (landlord pool
// through PgBouncer, direct admin connection).
func Catalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	Landlord(t)
	c, err := catalog.New(catalog.Options{Pool: AppPool(t, Bouncer, 4), Admin: AdminDB(t)})
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	return c
}

// RemoveAtCleanup removes, at cleanup, whatever a test made of the tenant
// slug: its catalog row (with its installs and tokens), its schema in the
// test database and its role.
func RemoveAtCleanup(t testing.TB, slug tenant.Slug) {
	t.Helper()
	t.Cleanup(func() {
		db := AdminDB(t)
		catalogtest.Delete(t, db, slug)
		DropSchema(t, db, slug.SchemaName())
		dropRole(t, db, slug.RoleName())
	})
}

// dropRole drops a tenant role made by a test. Roles are cluster-wide: a
// role that objects of another database still depend on (the demo tenant
// of the platform database that `make run` seeds, beside the test
// database) belongs to that database too and stays.
func dropRole(t testing.TB, db *sql.DB, role string) {
	t.Helper()
	ctx := context.Background()
	_, err := db.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	if err == nil {
		return
	}
	var here, elsewhere int
	if qerr := db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
			count(*) FILTER (WHERE d.dbid <> (SELECT oid FROM pg_database WHERE datname = current_database()))
		  FROM pg_shdepend d JOIN pg_roles r ON d.refobjid = r.oid WHERE r.rolname = $1`, role).Scan(&here, &elsewhere); qerr == nil &&
		here == 0 && elsewhere > 0 {
		t.Logf("dbtest: role %s stays: another database of this server uses it", role)
		return
	}
	t.Errorf("dbtest: drop role %s: %v", role, err)
}

// DeleteTokenAtCleanup deletes an API token (by id) at cleanup, as the admin
// role: the application role may create and revoke tokens, never delete them.
func DeleteTokenAtCleanup(t testing.TB, id string) {
	t.Helper()
	t.Cleanup(func() {
		if _, err := AdminDB(t).ExecContext(context.Background(), `DELETE FROM landlord.api_tokens WHERE id = $1::uuid`, id); err != nil {
			t.Errorf("dbtest: delete token %s: %v", id, err)
		}
	})
}
