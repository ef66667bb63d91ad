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

// A catalog stamp witnesses that a schema's catalog did not change: while a
// schema's stamp holds, so does its fingerprint, which need not be computed
// again. A stamp is taken in a snapshot and reads
//
//	s2:<xmax>:<xip>:<xid>:<counts and role>
//
// xmax and xip: the snapshot's — a transaction older than xmax and not in
// xip (those running then) had ended when the stamp was taken; xid: the
// transaction taking it, if it wrote anything (an apply stamps the schema it
// changed: its own rows are known); then the number of the schema's relations, constraints, enum and domain
// types and relation comments, and a digest of its role (oid, name, LOGIN,
// member names; pg_authid, where xmin would be, is not readable by the
// admin role).
//
// The stamp holds later (ChangedStamps) when the counts and role digest are
// the same and none of the catalog rows that the fingerprint reads
// (fingerprintSQL: the schema, its relations, columns, defaults,
// sequences, comments, constraints, types, enum labels, role memberships;
// pg_index rows are left out, the fingerprint reading only what an index is
// created with, and a change of those replaces the index's pg_class row, or
// adds a constraint) was written by a transaction that the snapshot did not
// see as ended (at or after xmax, or in xip), other than xid. Why that is
// enough: a row visible now whose writer had ended then was seen then: the
// rows now are a subset of the rows then. Any insert or
// update writes a row version with its transaction's id (at or after the
// horizon, or xid's own rows, which the stamp saw); and what only deletes —
// DROP of a relation, index, constraint or type, COMMENT … IS NULL, REVOKE
// of a membership — changes a count or the role digest (dropping a column
// or a default updates the column's row). So the subset is the same set.
// ANALYZE and VACUUM update pg_class in place (no new row version): they
// change nothing. A stamp errs only on the safe side: ids are compared
// modulo 2^32 (age), so a stamp more than a billion transactions old does
// not hold; the fingerprint is then computed, and a new stamp taken.
//
// Checking many schemas this way reads each catalog once with a filter on
// the row's transaction id (no join, no digest of every row: 10,000
// schemas, 700,000 catalog rows), then joins only the rows that the oldest
// stamp may not have seen. Both queries take $1 the schemas' names, $2 their
// roles, $3 their recorded stamps ("" if none) and $4 whether to return
// every schema's stamp (else only those that did not hold, with the new
// stamp: "" for a schema that does not exist).
//
// stampSQL finds the rows by scans of the catalogs (many schemas);
// stampFewSQL through indexes (pg_depend for what a schema holds, pg_index
// for the indexes of its tables, pg_constraint by table and by type): a
// stamp taken by one is checked by the other, so both count the same rows.
const stampCommonSQL = `
WITH now AS MATERIALIZED (
  SELECT (pg_snapshot_xmax(s)::text::numeric % 4294967296)::text AS xmax,
         coalesce((SELECT string_agg((x::text::numeric % 4294967296)::text, ',') FROM pg_snapshot_xip(s) AS x), '') AS xip,
         coalesce((txid_current_if_assigned() % 4294967296)::text, '') AS tx
  FROM pg_current_snapshot() AS s
), t AS MATERIALIZED (
  SELECT u.nsp, u.role, u.rec, n.oid AS ns, r.oid AS roleoid, p.xip, p.tx, p.sig, age(p.xmax) AS hage,
         greatest(age(p.xmax), (SELECT max(age(x)) FROM unnest(p.xip) AS x)) AS oldest
  FROM unnest($1::text[], $2::text[], $3::text[]) AS u(nsp, role, rec)
  LEFT JOIN pg_namespace n ON n.nspname = u.nsp
  LEFT JOIN pg_roles r ON r.rolname = u.role
  LEFT JOIN LATERAL (SELECT split_part(u.rec, ':', 2)::xid AS xmax, string_to_array(nullif(split_part(u.rec, ':', 3), ''), ',')::xid[] AS xip,
                            nullif(split_part(u.rec, ':', 4), '')::xid AS tx, split_part(u.rec, ':', 5) AS sig
                     WHERE u.rec LIKE 's2:%') AS p ON true
), lim AS (
  -- rows that some stamp may not have seen: written at or after the
  -- oldest xmax or running transaction of a stamp that can still be judged
  SELECT coalesce(max(oldest), -1) AS hage FROM t WHERE ns IS NOT NULL AND hage BETWEEN 0 AND 1000000000
), roles AS (
  SELECT t.ns, hashtextextended(concat_ws(':', t.roleoid, t.role,
         (SELECT r.rolcanlogin FROM pg_roles r WHERE r.oid = t.roleoid),
         (SELECT string_agg(pg_get_userbyid(m.member)::text, ',' ORDER BY 1) FROM pg_auth_members m WHERE m.roleid = t.roleoid)), 1) AS digest
  FROM t WHERE t.ns IS NOT NULL
)
`

// stampTailSQL joins the counts (cnt: ns, k, n), the rows that the oldest
// recorded stamp may not have seen (fresh: ns, x) and the role digests into
// each schema's stamp and whether its recorded one holds; with refresh.due,
// stamps that hold come back too, with a new one (see checkStamps).
const stampTailSQL = `
, stale AS MATERIALIZED (
  SELECT DISTINCT f.ns FROM fresh f JOIN t ON t.ns = f.ns
  WHERE (age(f.x) <= t.hage OR f.x = ANY(t.xip)) AND (t.tx IS NULL OR f.x <> t.tx)
), sig AS (
  SELECT t.ns, concat_ws('.', coalesce(c.rels, 0), coalesce(c.cons, 0), coalesce(c.types, 0), coalesce(c.descs, 0), r.digest) AS sig
  FROM t JOIN roles r ON r.ns = t.ns
  LEFT JOIN (SELECT ns, sum(n) FILTER (WHERE k = 'rel') AS rels, sum(n) FILTER (WHERE k = 'con') AS cons,
                    sum(n) FILTER (WHERE k = 'type') AS types, sum(n) FILTER (WHERE k = 'desc') AS descs
             FROM cnt GROUP BY ns) AS c ON c.ns = t.ns
), judged AS (
  SELECT t.nsp, t.rec, CASE WHEN t.ns IS NULL THEN '' ELSE concat_ws(':', 's2', now.xmax, now.xip, now.tx, sig.sig) END AS stamp,
         coalesce(t.ns IS NOT NULL AND t.hage BETWEEN 0 AND 1000000000 AND sig.sig = t.sig
           AND stale.ns IS NULL, false) AS holds
  FROM t CROSS JOIN now LEFT JOIN sig ON sig.ns = t.ns LEFT JOIN stale ON stale.ns = t.ns
)
SELECT nsp, stamp, holds FROM judged
WHERE $4 OR NOT (holds OR (stamp = '' AND rec = '')) OR (holds AND (SELECT due FROM refresh))`

// stampSQL: see stampCommonSQL; each catalog is read once, hash-joined
// with the schemas' oids: what is counted and checked together.
const stampSQL = stampCommonSQL + `
, scan AS MATERIALIZED (
  SELECT c.relnamespace AS ns, 'rel' AS k, count(*) AS n,
         array_agg(c.xmin) FILTER (WHERE age(c.xmin) <= (SELECT hage FROM lim)) AS fx
    FROM pg_class c WHERE c.relnamespace IN (SELECT ns FROM t) GROUP BY 1
  UNION ALL SELECT k.connamespace, 'con', count(*), array_agg(k.xmin) FILTER (WHERE age(k.xmin) <= (SELECT hage FROM lim))
    FROM pg_constraint k WHERE k.connamespace IN (SELECT ns FROM t) GROUP BY 1
  UNION ALL SELECT ty.typnamespace, 'type', count(*), array_agg(ty.xmin) FILTER (WHERE age(ty.xmin) <= (SELECT hage FROM lim))
    FROM pg_type ty WHERE ty.typnamespace IN (SELECT ns FROM t) AND ty.typtype IN ('e', 'd') GROUP BY 1
  UNION ALL SELECT c.relnamespace, 'desc', count(*), array_agg(d.xmin) FILTER (WHERE age(d.xmin) <= (SELECT hage FROM lim))
    FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
    WHERE d.classoid = 'pg_class'::regclass AND c.relnamespace IN (SELECT ns FROM t) GROUP BY 1
), cnt AS (
  SELECT ns, k, n FROM scan
), fresh AS (
  SELECT ns, unnest(fx) AS x FROM scan WHERE fx IS NOT NULL
  UNION ALL SELECT c.relnamespace, a.xmin FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE age(a.xmin) <= (SELECT hage FROM lim) AND a.attnum > 0 AND c.relkind <> 'i' AND c.relnamespace IN (SELECT ns FROM t)
  UNION ALL SELECT c.relnamespace, ad.xmin FROM pg_attrdef ad JOIN pg_class c ON c.oid = ad.adrelid
    WHERE age(ad.xmin) <= (SELECT hage FROM lim) AND c.relnamespace IN (SELECT ns FROM t)
  UNION ALL SELECT c.relnamespace, q.xmin FROM pg_sequence q JOIN pg_class c ON c.oid = q.seqrelid
    WHERE age(q.xmin) <= (SELECT hage FROM lim) AND c.relnamespace IN (SELECT ns FROM t)
  UNION ALL SELECT ty.typnamespace, e.xmin FROM pg_enum e JOIN pg_type ty ON ty.oid = e.enumtypid
    WHERE age(e.xmin) <= (SELECT hage FROM lim) AND ty.typnamespace IN (SELECT ns FROM t)
  UNION ALL SELECT n.oid, n.xmin FROM pg_namespace n WHERE age(n.xmin) <= (SELECT hage FROM lim) AND n.oid IN (SELECT ns FROM t)
  UNION ALL SELECT t.ns, m.xmin FROM t JOIN pg_auth_members m ON m.roleid = t.roleoid
    WHERE age(m.xmin) <= (SELECT hage FROM lim) AND t.ns IS NOT NULL
), refresh AS (
  SELECT (SELECT count(*) FROM fresh) > (SELECT count(*) FROM t) AS due
)` + stampTailSQL

// stampFewSQL: see stampCommonSQL; the same rows, found through indexes.
const stampFewSQL = stampCommonSQL + `
, dep AS (
  SELECT t.ns, d.classid, d.objid FROM t JOIN pg_depend d
    ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = t.ns AND d.refobjsubid = 0
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
), con AS (
  SELECT tbl.ns, k.xmin AS x FROM tbl JOIN pg_constraint k ON k.conrelid = tbl.oid AND k.connamespace = tbl.ns
  UNION ALL SELECT typ.ns, k.xmin FROM typ JOIN pg_constraint k ON k.contypid = typ.oid AND k.connamespace = typ.ns
), descr AS (
  SELECT rel.ns, d.xmin AS x FROM rel JOIN pg_description d ON d.objoid = rel.oid AND d.classoid = 'pg_class'::regclass
), cnt AS (
  SELECT ns, 'rel' AS k, count(*) AS n FROM rel GROUP BY 1
  UNION ALL SELECT ns, 'con', count(*) FROM con GROUP BY 1
  UNION ALL SELECT ns, 'type', count(*) FROM typ GROUP BY 1
  UNION ALL SELECT ns, 'desc', count(*) FROM descr GROUP BY 1
), fresh AS (
  SELECT ns, x FROM rel
  UNION ALL SELECT rel.ns, a.xmin FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid AND rel.relkind <> 'i'
    WHERE a.attnum > 0
  UNION ALL SELECT rel.ns, ad.xmin FROM rel JOIN pg_attrdef ad ON ad.adrelid = rel.oid
  UNION ALL SELECT rel.ns, q.xmin FROM rel JOIN pg_sequence q ON q.seqrelid = rel.oid
  UNION ALL SELECT ns, x FROM descr
  UNION ALL SELECT ns, x FROM con
  UNION ALL SELECT ns, x FROM typ
  UNION ALL SELECT typ.ns, e.xmin FROM typ JOIN pg_enum e ON e.enumtypid = typ.oid
  UNION ALL SELECT n.oid, n.xmin FROM pg_namespace n WHERE n.oid IN (SELECT ns FROM t)
  UNION ALL SELECT t.ns, m.xmin FROM t JOIN pg_auth_members m ON m.roleid = t.roleoid WHERE t.ns IS NOT NULL
), refresh AS (
  SELECT false AS due
)` + stampTailSQL

// stampFew is how many schemas Stamps reads through indexes (stampFewSQL);
// more are read with one scan of each catalog (stampSQL).
const stampFew = 64

// Stamps returns a new catalog stamp of every listed schema (see
// stampCommonSQL) keyed by schema name ("" for a schema that does not exist).
func Stamps(ctx context.Context, q Querier, items []SchemaRole) (map[string]string, error) {
	all, _, err := stamps(ctx, q, items, nil, stampFew)
	return all, err
}

// ChangedStamps checks the stamp recorded for each listed schema
// (recorded[i] for items[i]; "" if none) and returns, for each one whose
// stamp does not hold, a new stamp ("" for a schema that does not exist,
// which holds only the recorded ""), and nothing for the others.
func ChangedStamps(ctx context.Context, q Querier, items []SchemaRole, recorded []string) (map[string]string, error) {
	changed, _, err := checkStamps(ctx, q, items, recorded, stampFew)
	return changed, err
}

// checkStamps is ChangedStamps reading up to few schemas through indexes.
// Checking many stamps reads every catalog row written since the oldest of
// them (its snapshot): when those rows outnumber the schemas (after a
// rollout, say, whose batches took stamps in snapshots that other batches'
// rows postdate), refreshed holds a new stamp for each schema whose stamp
// holds, to be recorded, so that the next check reads fewer.
func checkStamps(ctx context.Context, q Querier, items []SchemaRole, recorded []string, few int) (changed, refreshed map[string]string, err error) {
	if len(recorded) != len(items) {
		return nil, nil, fmt.Errorf("stamp schemas: %d recorded stamps for %d schemas", len(recorded), len(items))
	}
	return stamps(ctx, q, items, recorded, few)
}

// Stamps and checkStamps: every schema's new stamp in changed when recorded
// is nil.
func stamps(ctx context.Context, q Querier, items []SchemaRole, recorded []string, few int) (changed, refreshed map[string]string, err error) {
	changed, refreshed = make(map[string]string), make(map[string]string)
	if len(items) == 0 {
		return changed, refreshed, nil
	}
	names := make([]string, len(items))
	roles := make([]string, len(items))
	recs := make([]string, len(items))
	for i, it := range items {
		names[i], roles[i] = it.Schema, it.Role
		if recorded != nil {
			recs[i] = recorded[i]
		}
	}
	query := stampSQL
	if len(items) <= few {
		query = stampFewSQL
	}
	rows, err := q.QueryContext(ctx, query, names, roles, recs, recorded == nil)
	if err != nil {
		return nil, nil, fmt.Errorf("stamp schemas: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, v string
		var holds bool
		if err := rows.Scan(&name, &v, &holds); err != nil {
			return nil, nil, fmt.Errorf("stamp schemas: %w", err)
		}
		if holds && recorded != nil {
			refreshed[name] = v
		} else {
			changed[name] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("stamp schemas: %w", err)
	}
	return changed, refreshed, nil
}
