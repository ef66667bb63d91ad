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
// indexes, constraints, sequences, enum and domain types, comments) plus
// what the tenant steps manage (privileges, the role and its members), in
// one pass over the catalog for any number of schemas. Names of the schema
// itself and of its role are replaced, so two tenants of the same shape have
// the same fingerprint. A schema that does not exist gets the empty string.
//
// It is built for a fleet of thousands of schemas: relations and types are
// found through pg_depend (pg_class and pg_type have no index on the schema
// alone), indexes and constraints are read from their catalog rows rather
// than deparsed (pg_get_indexdef costs ~50 µs an index), and the items are
// combined by an order-independent digest (count, sum and xor of two 64-bit
// hashes of every item) instead of a sorted string aggregate.
const fingerprintSQL = `
WITH t AS (
  SELECT u.nsp, u.role FROM unnest($1::text[], $2::text[]) AS u(nsp, role)
), s AS (
  SELECT t.nsp, t.role, quote_ident(t.nsp) || '.' AS qual, quote_ident(t.role) || '=' AS grantee,
         n.oid AS nspoid, n.nspacl, r.oid AS roleoid, r.rolcanlogin
  FROM t
  LEFT JOIN pg_namespace n ON n.nspname = t.nsp
  LEFT JOIN pg_roles r ON r.rolname = t.role
), dep AS (
  SELECT s.nsp, s.qual, s.grantee, d.classid, d.objid
  FROM s JOIN pg_depend d ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = s.nspoid AND d.refobjsubid = 0
), rel AS (
  SELECT dep.nsp, dep.qual, dep.grantee, c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, c.relacl
  FROM dep JOIN pg_class c ON c.oid = dep.objid
  WHERE dep.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
), items AS (
  SELECT rel.nsp, concat_ws(' ', 'rel', rel.relname, rel.relkind, rel.relpersistence, rel.reloptions::text,
         CASE WHEN rel.relkind = 'p' THEN pg_get_partkeydef(rel.oid) END,
         'acl=' || replace(rel.relacl::text, rel.grantee, '<role>=')) AS item
  FROM rel
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'col', rel.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
         a.attnotnull, a.attidentity, a.attgenerated, a.attcollation)
  FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
  WHERE rel.relkind <> 'S'
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'default', rel.relname, ad.adnum, replace(pg_get_expr(ad.adbin, ad.adrelid), rel.qual, ''))
  FROM rel JOIN pg_attrdef ad ON ad.adrelid = rel.oid
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'comment', rel.relname, d.objsubid, d.description)
  FROM rel JOIN pg_description d ON d.objoid = rel.oid AND d.classoid = 'pg_class'::regclass
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'idx', rel.relname, ic.relname, ic.relam, ic.reloptions::text, i.indisunique,
         i.indisprimary, i.indisexclusion, i.indimmediate, i.indnullsnotdistinct, i.indnkeyatts, i.indkey::text,
         i.indclass::text, i.indcollation::text, i.indoption::text,
         'where=' || replace(pg_get_expr(i.indpred, i.indrelid), rel.qual, ''),
         'exprs=' || replace(pg_get_expr(i.indexprs, i.indrelid), rel.qual, ''),
         'comment=' || d.description)
  FROM rel
  JOIN pg_index i ON i.indrelid = rel.oid
  JOIN pg_class ic ON ic.oid = i.indexrelid
  LEFT JOIN pg_description d ON d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'con', rel.relname, k.conname, k.contype, k.condeferrable, k.condeferred,
         k.convalidated, k.connoinherit, k.conkey::text, fr.relname, k.confkey::text, k.confupdtype, k.confdeltype,
         k.confmatchtype, 'check=' || CASE WHEN k.contype = 'c' THEN replace(pg_get_expr(k.conbin, k.conrelid), rel.qual, '') END)
  FROM rel
  JOIN pg_constraint k ON k.conrelid = rel.oid
  LEFT JOIN pg_class fr ON fr.oid = k.confrelid
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'seq', rel.relname, q.seqtypid, q.seqstart, q.seqincrement,
         q.seqmin, q.seqmax, q.seqcache, q.seqcycle)
  FROM rel JOIN pg_sequence q ON q.seqrelid = rel.oid
  UNION ALL
  SELECT dep.nsp, concat_ws(' ', 'type', ty.typname, ty.typtype,
         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = ty.oid),
         CASE WHEN ty.typtype = 'd' THEN format_type(ty.typbasetype, ty.typtypmod) END)
  FROM dep JOIN pg_type ty ON ty.oid = dep.objid
  WHERE dep.classid = 'pg_type'::regclass AND ty.typtype IN ('e', 'd')
  UNION ALL
  SELECT s.nsp, concat_ws(' ', 'schema', 'acl=' || replace(s.nspacl::text, s.grantee, '<role>='),
         'role=' || CASE WHEN s.roleoid IS NULL THEN 'missing' ELSE 'login:' || s.rolcanlogin END,
         (SELECT 'members=' || string_agg(pg_get_userbyid(m.member)::text, ',' ORDER BY pg_get_userbyid(m.member)::text)
            FROM pg_auth_members m WHERE m.roleid = s.roleoid))
  FROM s
)
SELECT s.nsp,
       CASE WHEN s.nspoid IS NULL THEN '' ELSE md5(concat_ws(':', count(i.item),
         sum(hashtextextended(i.item, 0)), bit_xor(hashtextextended(i.item, 1)))) END
FROM s LEFT JOIN items i ON i.nsp = s.nsp
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
