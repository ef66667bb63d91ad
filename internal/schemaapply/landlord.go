package schemaapply

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"

	hcl "github.com/publicdigit/publicdigit/schema"
)

// LandlordSchema is the schema that holds the landlord catalog.
const LandlordSchema = "landlord"

// Extensions every publicdigit database needs (ltree for geography paths,
// btree_gin for multi-column GIN indexes). Both are trusted extensions, so
// the database owner may create them.
var Extensions = []string{"ltree", "btree_gin"}

// ExtensionsStep creates the extensions when missing.
func ExtensionsStep() Step {
	stmts := make([]string, 0, len(Extensions))
	for _, e := range Extensions {
		stmts = append(stmts, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{e}.Sanitize())
	}
	return Step{
		Name:  "extensions",
		Check: "SELECT count(*) = cardinality($1::text[]) FROM pg_extension WHERE extname = ANY($1)",
		Args:  []any{Extensions},
		SQL:   stmts,
	}
}

// LandlordFS is Landlord reading landlord.hcl from fsys (laid out like the
// schema/ folder) instead of the embedded copy.
func LandlordFS(fsys fs.FS, appRole string) (Target, error) {
	b, err := fs.ReadFile(fsys, hcl.LandlordFile)
	if err != nil {
		return Target{}, fmt.Errorf("landlord schema: %w", err)
	}
	t := Landlord(appRole)
	t.HCL = [][]byte{b}
	return t, nil
}

// AppGrant is one privilege of the application role on a landlord table:
// on the whole table, or on the listed columns only.
type AppGrant struct {
	Table     string
	Privilege string
	Columns   []string
}

// AppGrants are the application role's privileges on the landlord catalog:
// what the server reads and writes through the landlord pool, nothing more.
// Everything else — provisioning, module installs, moves, purges, the warm
// pool, retired copies — runs as the admin role on direct connections. In
// particular the application role cannot write a tenant's placement
// (cluster, database, schema), the names that purge drops.
var AppGrants = []AppGrant{
	{Table: "tenants", Privilege: "SELECT"},
	{Table: "tenants", Privilege: "UPDATE", Columns: []string{"name", "status", "version", "updated_at", "deleted_at",
		"statement_timeout_ms", "max_concurrent_requests"}},
	{Table: "modules", Privilege: "SELECT"},
	{Table: "modules", Privilege: "INSERT"},
	{Table: "tenant_modules", Privilege: "SELECT"},
	{Table: "geo_administrative_units", Privilege: "SELECT"},
	{Table: "api_tokens", Privilege: "SELECT"},
	{Table: "api_tokens", Privilege: "INSERT"},
	{Table: "api_tokens", Privilege: "UPDATE", Columns: []string{"revoked_at", "last_used_at"}},
	// The audit trail: written and read, never changed (internal/audit).
	{Table: "audit_events", Privilege: "SELECT"},
	{Table: "audit_events", Privilege: "INSERT"},
}

// appGrantKeys are AppGrants as the grants check reads them from the ACLs:
// "table PRIVILEGE" or "table.column PRIVILEGE".
func appGrantKeys(grants []AppGrant) []string {
	var out []string
	for _, g := range grants {
		if len(g.Columns) == 0 {
			out = append(out, g.Table+" "+g.Privilege)
			continue
		}
		for _, c := range g.Columns {
			out = append(out, g.Table+"."+c+" "+g.Privilege)
		}
	}
	return out
}

// appGrantSQL revokes everything the application role holds on the
// landlord's tables and sequences, then grants AppGrants.
func appGrantSQL(role string, grants []AppGrant) []string {
	stmts := []string{
		"REVOKE ALL ON ALL TABLES IN SCHEMA landlord FROM " + role,
		"REVOKE ALL ON ALL SEQUENCES IN SCHEMA landlord FROM " + role,
		"GRANT USAGE ON SCHEMA landlord TO " + role,
	}
	for _, g := range grants {
		priv := g.Privilege
		if len(g.Columns) > 0 {
			cols := make([]string, len(g.Columns))
			for i, c := range g.Columns {
				cols[i] = pgx.Identifier{c}.Sanitize()
			}
			priv += " (" + strings.Join(cols, ", ") + ")"
		}
		stmts = append(stmts, "GRANT "+priv+" ON "+pgx.Identifier{LandlordSchema, g.Table}.Sanitize()+" TO "+role)
	}
	return stmts
}

// appGrantCheck is true when the application role ($1) has USAGE on the
// landlord schema and exactly the privileges $2 (appGrantKeys) on its
// tables, columns and sequences: a privilege granted by hand, or left by an
// older version, makes the step run again.
const appGrantCheck = `
	WITH app AS (SELECT oid FROM pg_roles WHERE rolname = $1),
	held AS (
		SELECT c.relname || ' ' || a.privilege_type AS g
		  FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a, app
		 WHERE c.relnamespace = 'landlord'::regnamespace AND a.grantee = app.oid
		UNION ALL
		SELECT c.relname || '.' || att.attname || ' ' || a.privilege_type
		  FROM pg_class c JOIN pg_attribute att ON att.attrelid = c.oid AND att.attnum > 0 AND NOT att.attisdropped
		 CROSS JOIN LATERAL aclexplode(att.attacl) a, app
		 WHERE c.relnamespace = 'landlord'::regnamespace AND a.grantee = app.oid)
	SELECT has_schema_privilege($1, 'landlord', 'USAGE')
	   AND coalesce((SELECT array_agg(g ORDER BY g) FROM held), '{}')
	     = coalesce((SELECT array_agg(x ORDER BY x) FROM unnest($2::text[]) x), '{}')`

// AppRoleStep makes the application role NOINHERIT: it is a member of
// every tenant role (so that the router can SET LOCAL ROLE to the bound
// tenant's), and without INHERIT that membership gives it none of their
// privileges — only the role the transaction assumed reaches a tenant's
// tables. Roles are cluster-wide; deploy/local/db-up.sh creates the role
// NOINHERIT, and this step keeps it so wherever the landlord is applied.
func AppRoleStep(appRole string) Step {
	return Step{
		Name:  "application role NOINHERIT",
		Check: "SELECT coalesce((SELECT NOT rolinherit FROM pg_roles WHERE rolname = $1), true)",
		Args:  []any{appRole},
		SQL:   []string{"ALTER ROLE " + pgx.Identifier{appRole}.Sanitize() + " NOINHERIT"},
	}
}

// Landlord is the landlord catalog target; appRole (the application role
// that reaches the catalog through PgBouncer) gets AppGrants and no more,
// and is made NOINHERIT (AppRoleStep).
func Landlord(appRole string) Target {
	role := pgx.Identifier{appRole}.Sanitize()
	return Target{
		Schema: LandlordSchema,
		HCL:    [][]byte{hcl.Landlord()},
		Files:  []string{"schema/" + hcl.LandlordFile},
		Before: []Step{ExtensionsStep(), AppRoleStep(appRole)},
		After: []Step{{
			Name:  "grants",
			Check: appGrantCheck,
			Args:  []any{appRole, appGrantKeys(AppGrants)},
			SQL:   appGrantSQL(role, AppGrants),
		}},
	}
}
