package schemaapply

import (
	"fmt"
	"io/fs"

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

// Landlord is the landlord catalog target; appRole (the application role
// that reaches the catalog through PgBouncer) gets read-write access.
func Landlord(appRole string) Target {
	role := pgx.Identifier{appRole}.Sanitize()
	return Target{
		Schema: LandlordSchema,
		HCL:    [][]byte{hcl.Landlord()},
		Files:  []string{"schema/" + hcl.LandlordFile},
		Before: []Step{ExtensionsStep()},
		After: []Step{{
			Name: "grants",
			Check: `SELECT has_schema_privilege($1, 'landlord', 'USAGE')
			   AND coalesce(bool_and(has_table_privilege($1, c.oid, 'SELECT') AND has_table_privilege($1, c.oid, 'INSERT')
			                     AND has_table_privilege($1, c.oid, 'UPDATE') AND has_table_privilege($1, c.oid, 'DELETE')), true)
			  FROM pg_class c WHERE c.relnamespace = 'landlord'::regnamespace AND c.relkind = 'r'`,
			Args: []any{appRole},
			SQL: []string{
				"GRANT USAGE ON SCHEMA landlord TO " + role,
				"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA landlord TO " + role,
			},
		}},
	}
}
