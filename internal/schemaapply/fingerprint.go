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
// hashes of every item) instead of a sorted string aggregate. No relation
// is opened: deparsing an expression against its table (pg_get_expr with a
// relation, pg_get_constraintdef) opens the table, which loads its catalog
// entries into the backend's cache and locks it — over 10,000 tenants, a
// minute and hundreds of MB. Column defaults, which cannot name columns,
// are deparsed without their table; index predicates and expressions and
// CHECK constraints are read as their stored node trees without the
// character positions (which differ with the length of the schema name in
// the DDL that created them): the same expression gives the same text in
// every tenant, and any change to it changes the text.
var fingerprintSQL = `
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
  SELECT rel.nsp, concat_ws(' ', 'default', rel.relname, ad.adnum, replace(
         CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, 0) ELSE ` + nodeText("ad.adbin") + ` END, rel.qual, ''))
  FROM rel JOIN pg_attrdef ad ON ad.adrelid = rel.oid
  JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'comment', rel.relname, d.objsubid, d.description)
  FROM rel JOIN pg_description d ON d.objoid = rel.oid AND d.classoid = 'pg_class'::regclass
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'idx', rel.relname, ic.relname, ic.relam, ic.reloptions::text, i.indisunique,
         i.indisprimary, i.indisexclusion, i.indimmediate, i.indnullsnotdistinct, i.indnkeyatts, i.indkey::text,
         i.indclass::text, i.indcollation::text, i.indoption::text,
         'where=' || ` + nodeText("i.indpred") + `,
         'exprs=' || ` + nodeText("i.indexprs") + `,
         'comment=' || d.description)
  FROM rel
  JOIN pg_index i ON i.indrelid = rel.oid
  JOIN pg_class ic ON ic.oid = i.indexrelid
  LEFT JOIN pg_description d ON d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
  UNION ALL
  SELECT rel.nsp, concat_ws(' ', 'con', rel.relname, k.conname, k.contype, k.condeferrable, k.condeferred,
         k.convalidated, k.connoinherit, k.conkey::text, fr.relname, k.confkey::text, k.confupdtype, k.confdeltype,
         k.confmatchtype, 'check=' || CASE WHEN k.contype = 'c' THEN ` + nodeText("k.conbin") + ` END)
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

// nodeText is a stored expression (pg_node_tree) as text without its
// character positions.
func nodeText(col string) string {
	return `regexp_replace(` + col + `::text, ' :location -?[0-9]+', '', 'g')`
}

// Fingerprints returns the catalog fingerprint of every listed schema, in
// one query, keyed by schema name ("" for a schema that does not exist).
// Two schemas of the same shape, privileges and role setup have the same
// fingerprint whatever their names; any manual change (a column added, an
// index dropped, a grant revoked) changes it.
func Fingerprints(ctx context.Context, q Querier, items []SchemaRole) (map[string]string, error) {
	return perSchema(ctx, q, "fingerprint", fingerprintSQL, items)
}

// perSchema runs query ($1 schemas, $2 roles) and collects its (schema, value) rows.
func perSchema(ctx context.Context, q Querier, what, query string, items []SchemaRole) (map[string]string, error) {
	out := make(map[string]string, len(items))
	if len(items) == 0 {
		return out, nil
	}
	schemas := make([]string, len(items))
	roles := make([]string, len(items))
	for i, it := range items {
		schemas[i], roles[i] = it.Schema, it.Role
	}
	rows, err := q.QueryContext(ctx, query, schemas, roles)
	if err != nil {
		return nil, fmt.Errorf("%s schemas: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, v string
		if err := rows.Scan(&name, &v); err != nil {
			return nil, fmt.Errorf("%s schemas: %w", what, err)
		}
		out[name] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s schemas: %w", what, err)
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

// stampSQL digests, per schema ($1: the schemas' oids; $3, $2: each
// schema's oid and its role's name), the transaction ids (xmin) of every
// catalog row whose content its fingerprint reads (fingerprintSQL: pg_index
// rows are left out, the fingerprint reading only what an index is created
// with; a change of those replaces the index's pg_class row, or adds a
// constraint), plus its role's oid,
// name, LOGIN and member names (pg_authid, where xmin would be, is not
// readable by the admin role): a cheap witness of change. Whatever changes
// the schema, its relations, columns, defaults, indexes, constraints,
// sequences, types, comments, privileges or its role's members writes or
// deletes at least one of those rows — a new row version carries the id of
// the transaction that wrote it — so while the stamp stays the same, so
// does the fingerprint. Unlike a fingerprint, a stamp is only ever compared
// with an earlier stamp of the same schema in the same database (tenants of
// the same shape have different stamps), and it deparses nothing. The
// schemas' oids are a parameter, so that the planner sees how many there
// are: each catalog is read once (a hashed = ANY, hash joins), however
// many schemas are asked for.
const stampSQL = `
WITH rel AS (
  SELECT c.relnamespace AS ns, c.oid, c.relkind, c.xmin AS x FROM pg_class c WHERE c.relnamespace = ANY($1::oid[])
), xids AS (
  SELECT ns, x FROM rel
  UNION ALL SELECT rel.ns, a.xmin FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid AND rel.relkind <> 'i'
    WHERE a.attnum > 0
  UNION ALL SELECT rel.ns, ad.xmin FROM pg_attrdef ad JOIN rel ON rel.oid = ad.adrelid
  UNION ALL SELECT rel.ns, q.xmin FROM pg_sequence q JOIN rel ON rel.oid = q.seqrelid
  UNION ALL SELECT rel.ns, d.xmin FROM pg_description d JOIN rel ON rel.oid = d.objoid AND d.classoid = 'pg_class'::regclass
  UNION ALL SELECT k.connamespace, k.xmin FROM pg_constraint k WHERE k.connamespace = ANY($1::oid[])
  UNION ALL SELECT ty.typnamespace, ty.xmin FROM pg_type ty WHERE ty.typnamespace = ANY($1::oid[]) AND ty.typtype IN ('e', 'd')
  UNION ALL SELECT ty.typnamespace, e.xmin FROM pg_enum e JOIN pg_type ty ON ty.oid = e.enumtypid
    WHERE ty.typnamespace = ANY($1::oid[])
  UNION ALL SELECT n.oid, n.xmin FROM pg_namespace n WHERE n.oid = ANY($1::oid[])
  UNION ALL SELECT t.ns, m.xmin FROM unnest($3::oid[], $2::text[]) AS t(ns, role)
    JOIN pg_roles r ON r.rolname = t.role JOIN pg_auth_members m ON m.roleid = r.oid
), items AS (
  SELECT ns, hashint8extended(x::text::bigint, 0) AS h FROM xids
  UNION ALL SELECT t.ns, hashtextextended(concat_ws(':', r.oid, r.rolname, r.rolcanlogin,
         (SELECT string_agg(pg_get_userbyid(m.member)::text, ',' ORDER BY 1) FROM pg_auth_members m WHERE m.roleid = r.oid)), 1)
  FROM unnest($3::oid[], $2::text[]) AS t(ns, role) JOIN pg_roles r ON r.rolname = t.role
)
SELECT ns, concat_ws('.', count(*), sum(h), bit_xor(h)) FROM items GROUP BY ns`

// stampFewSQL is stampSQL for a few schemas: the same rows, found through
// indexes (pg_depend for what a schema holds, pg_index for the indexes of
// its tables, pg_constraint by table and by type) instead of a scan of each
// catalog, which would cost a fleet rollout a scan of pg_class per tenant.
// Should the two ever see different rows, a stamp recorded by one does not
// match the other's: the fingerprint is then computed, never wrongly trusted.
const stampFewSQL = `
WITH dep AS (
  SELECT d.refobjid AS ns, d.classid, d.objid FROM pg_depend d
  WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ANY($1::oid[]) AND d.refobjsubid = 0
), tbl AS (
  SELECT dep.ns, c.oid, c.relkind, c.xmin AS x FROM dep JOIN pg_class c ON c.oid = dep.objid
  WHERE dep.classid = 'pg_class'::regclass AND c.relnamespace = dep.ns
), rel AS (
  SELECT ns, oid, relkind, x FROM tbl
  UNION ALL SELECT tbl.ns, ic.oid, ic.relkind, ic.xmin FROM tbl JOIN pg_index i ON i.indrelid = tbl.oid
    JOIN pg_class ic ON ic.oid = i.indexrelid AND ic.relnamespace = tbl.ns
), typ AS (
  SELECT dep.ns, ty.oid, ty.xmin AS x FROM dep JOIN pg_type ty ON ty.oid = dep.objid
  WHERE dep.classid = 'pg_type'::regclass AND ty.typnamespace = dep.ns AND ty.typtype IN ('e', 'd')
), xids AS (
  SELECT ns, x FROM rel
  UNION ALL SELECT rel.ns, a.xmin FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid AND rel.relkind <> 'i'
    WHERE a.attnum > 0
  UNION ALL SELECT rel.ns, ad.xmin FROM rel JOIN pg_attrdef ad ON ad.adrelid = rel.oid
  UNION ALL SELECT rel.ns, q.xmin FROM rel JOIN pg_sequence q ON q.seqrelid = rel.oid
  UNION ALL SELECT rel.ns, d.xmin FROM rel JOIN pg_description d ON d.objoid = rel.oid AND d.classoid = 'pg_class'::regclass
  UNION ALL SELECT tbl.ns, k.xmin FROM tbl JOIN pg_constraint k ON k.conrelid = tbl.oid AND k.connamespace = tbl.ns
  UNION ALL SELECT typ.ns, k.xmin FROM typ JOIN pg_constraint k ON k.contypid = typ.oid AND k.connamespace = typ.ns
  UNION ALL SELECT ns, x FROM typ
  UNION ALL SELECT typ.ns, e.xmin FROM typ JOIN pg_enum e ON e.enumtypid = typ.oid
  UNION ALL SELECT n.oid, n.xmin FROM pg_namespace n WHERE n.oid = ANY($1::oid[])
  UNION ALL SELECT t.ns, m.xmin FROM unnest($3::oid[], $2::text[]) AS t(ns, role)
    JOIN pg_roles r ON r.rolname = t.role JOIN pg_auth_members m ON m.roleid = r.oid
), items AS (
  SELECT ns, hashint8extended(x::text::bigint, 0) AS h FROM xids
  UNION ALL SELECT t.ns, hashtextextended(concat_ws(':', r.oid, r.rolname, r.rolcanlogin,
         (SELECT string_agg(pg_get_userbyid(m.member)::text, ',' ORDER BY 1) FROM pg_auth_members m WHERE m.roleid = r.oid)), 1)
  FROM unnest($3::oid[], $2::text[]) AS t(ns, role) JOIN pg_roles r ON r.rolname = t.role
)
SELECT ns, concat_ws('.', count(*), sum(h), bit_xor(h)) FROM items GROUP BY ns`

// stampFew is how many schemas Stamps reads through indexes (stampFewSQL);
// more are read with one scan of each catalog (stampSQL).
const stampFew = 64

// Stamps returns the catalog stamp of every listed schema (see stampSQL)
// keyed by schema name ("" for a schema that does not exist): one query for
// the schemas' oids, one for the stamps.
func Stamps(ctx context.Context, q Querier, items []SchemaRole) (map[string]string, error) {
	return stamps(ctx, q, items, stampFew)
}

// stamps is Stamps reading up to few schemas through indexes (the test
// that compares the two queries chooses).
func stamps(ctx context.Context, q Querier, items []SchemaRole, few int) (map[string]string, error) {
	out := make(map[string]string, len(items))
	if len(items) == 0 {
		return out, nil
	}
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.Schema
		out[it.Schema] = ""
	}
	rows, err := q.QueryContext(ctx, `SELECT nspname::text, oid::bigint FROM pg_namespace WHERE nspname = ANY($1::text[])`, names)
	if err != nil {
		return nil, fmt.Errorf("stamp schemas: %w", err)
	}
	oidOf := make(map[string]int64, len(items))
	for rows.Next() {
		var n string
		var oid int64
		if err := rows.Scan(&n, &oid); err != nil {
			rows.Close()
			return nil, fmt.Errorf("stamp schemas: %w", err)
		}
		oidOf[n] = oid
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("stamp schemas: %w", err)
	}
	var oids, roleOids []int64
	var roles []string
	nameOf := make(map[int64]string, len(oidOf))
	for _, it := range items {
		if oid, ok := oidOf[it.Schema]; ok {
			oids = append(oids, oid)
			roleOids, roles = append(roleOids, oid), append(roles, it.Role)
			nameOf[oid] = it.Schema
		}
	}
	if len(oids) == 0 {
		return out, nil
	}
	query := stampSQL
	if len(oids) <= few {
		query = stampFewSQL
	}
	rows, err = q.QueryContext(ctx, query, oids, roles, roleOids)
	if err != nil {
		return nil, fmt.Errorf("stamp schemas: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var oid int64
		var v string
		if err := rows.Scan(&oid, &v); err != nil {
			return nil, fmt.Errorf("stamp schemas: %w", err)
		}
		out[nameOf[oid]] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stamp schemas: %w", err)
	}
	return out, nil
}
