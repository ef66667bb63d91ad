package schemaapply

import (
	"context"
	"database/sql"
	"fmt"
)

// Querier runs a query: *sql.DB, *sql.Tx and *sql.Conn all do.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// SchemaRole names a tenant schema and the role that owns rights on it.
type SchemaRole struct {
	Schema string
	Role   string
}

// fingerprintSQL digests, per schema, everything that the Atlas inspector
// reads (relations, columns with types, defaults, identity and collation,
// indexes, constraints, sequences, types, comments) plus what the tenant
// steps manage (privileges, the role and its members), in one pass over the
// catalog for any number of schemas. Names of the schema itself and of its
// role are replaced, so two tenants with the same shape have the same
// fingerprint. A schema that does not exist gets ”.
const fingerprintSQL = `
WITH t AS (
  SELECT u.nsp, u.role FROM unnest($1::text[], $2::text[]) AS u(nsp, role)
), s AS (
  SELECT t.nsp, n.oid AS nspoid, n.nspacl, r.oid AS roleoid, r.rolcanlogin
  FROM t
  LEFT JOIN pg_namespace n ON n.nspname = t.nsp
  LEFT JOIN pg_roles r ON r.rolname = t.role
), rel AS (
  SELECT s.nsp, s.roleoid, c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, c.relacl
  FROM s JOIN pg_class c ON c.relnamespace = s.nspoid
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
), items AS (
  SELECT rel.nsp, concat_ws(' ', 'rel', rel.relname, rel.relkind, rel.relpersistence, rel.reloptions::text,
         CASE WHEN rel.relkind = 'p' THEN pg_get_partkeydef(rel.oid) END, 'comment=' || d.description) AS item
  FROM rel
  LEFT JOIN pg_description d ON d.objoid = rel.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'col', rel.relname, a.attname, format_type(a.atttypid, a.atttypmod),
         CASE WHEN a.attnotnull THEN 'not-null' END,
         'default=' || pg_get_expr(ad.adbin, ad.adrelid),
         'identity=' || nullif(a.attidentity::text, ''),
         'generated=' || nullif(a.attgenerated::text, ''),
         'collation=' || CASE WHEN a.attcollation <> ty.typcollation THEN a.attcollation::regcollation::text END,
         'comment=' || d.description)
  FROM rel
  JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  LEFT JOIN pg_description d ON d.objoid = rel.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
  WHERE rel.relkind <> 'S'
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'idx', pg_get_indexdef(i.indexrelid), 'comment=' || d.description)
  FROM rel
  JOIN pg_index i ON i.indrelid = rel.oid
  LEFT JOIN pg_description d ON d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'con', rel.relname, k.conname, pg_get_constraintdef(k.oid), 'comment=' || d.description)
  FROM rel
  JOIN pg_constraint k ON k.conrelid = rel.oid
  LEFT JOIN pg_description d ON d.objoid = k.oid AND d.classoid = 'pg_constraint'::regclass AND d.objsubid = 0
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'seq', rel.relname, format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement,
         q.seqmin, q.seqmax, q.seqcache, q.seqcycle)
  FROM rel JOIN pg_sequence q ON q.seqrelid = rel.oid
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'acl', rel.relname,
         CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN a.grantee = rel.roleoid THEN '<role>' ELSE pg_get_userbyid(a.grantee)::text END,
         a.privilege_type, a.is_grantable)
  FROM rel CROSS JOIN LATERAL aclexplode(rel.relacl) a
  UNION ALL
  SELECT s.nsp, concat_ws(' ', 'schema-acl',
         CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN a.grantee = s.roleoid THEN '<role>' ELSE pg_get_userbyid(a.grantee)::text END,
         a.privilege_type, a.is_grantable)
  FROM s CROSS JOIN LATERAL aclexplode(s.nspacl) a
  UNION ALL
  SELECT s.nsp, concat_ws(' ', 'type', ty.typname, ty.typtype,
         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = ty.oid),
         CASE WHEN ty.typtype = 'd' THEN format_type(ty.typbasetype, ty.typtypmod) END)
  FROM s JOIN pg_type ty ON ty.typnamespace = s.nspoid
  WHERE ty.typtype IN ('e', 'd')
  UNION ALL
  SELECT s.nsp, concat_ws(' ', 'role',
         CASE WHEN s.roleoid IS NULL THEN 'missing' ELSE 'login=' || s.rolcanlogin END,
         (SELECT 'members=' || string_agg(pg_get_userbyid(m.member)::text, ',' ORDER BY pg_get_userbyid(m.member)::text)
            FROM pg_auth_members m WHERE m.roleid = s.roleoid))
  FROM s
), norm AS (
  SELECT i.nsp, replace(i.item, quote_ident(i.nsp) || '.', '') AS item FROM items i
)
SELECT s.nsp,
       CASE WHEN s.nspoid IS NULL THEN '' ELSE md5(string_agg(n.item, E'\n' ORDER BY n.item COLLATE "C")) END
FROM s LEFT JOIN norm n ON n.nsp = s.nsp
GROUP BY s.nsp, s.nspoid`

// Fingerprints returns the catalog fingerprint of every listed schema, in
// one query, keyed by schema name ("" for a schema that does not exist).
// Two schemas of the same shape, privileges and role setup have the same
// fingerprint whatever their names; any manual change (a column added, an
// index dropped, a grant revoked) changes it.
func Fingerprints(ctx context.Context, q Querier, items []SchemaRole) (map[string]string, error) {
	out := make(map[string]string, len(items))
	if len(items) == 0 {
		return out, nil
	}
	schemas := make([]string, len(items))
	roles := make([]string, len(items))
	for i, it := range items {
		schemas[i], roles[i] = it.Schema, it.Role
	}
	rows, err := q.QueryContext(ctx, fingerprintSQL, schemas, roles)
	if err != nil {
		return nil, fmt.Errorf("fingerprint schemas: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, fp string
		if err := rows.Scan(&name, &fp); err != nil {
			return nil, fmt.Errorf("fingerprint schemas: %w", err)
		}
		out[name] = fp
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fingerprint schemas: %w", err)
	}
	return out, nil
}

// Fingerprint returns the catalog fingerprint of one schema ("" if it does not exist).
func Fingerprint(ctx context.Context, q Querier, schemaName, role string) (string, error) {
	fps, err := Fingerprints(ctx, q, []SchemaRole{{Schema: schemaName, Role: role}})
	if err != nil {
		return "", err
	}
	return fps[schemaName], nil
}
