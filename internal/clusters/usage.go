package clusters

import (
	"context"
	"fmt"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Usage is how big a tenant is, so that a DBA can pick the tenants to move.
type Usage struct {
	// SizeBytes is the size of the tenant's tables with indexes and TOAST,
	// from the page counts in the catalog (kept by VACUUM, ANALYZE and
	// index builds, so autovacuum keeps it recent): measuring the files
	// opens every relation, which over 10,000 tenants takes a minute and
	// fills the backend's catalog cache with all of them.
	SizeBytes int64 `json:"size_bytes"`
	// Rows is the live row count of all its tables, as PostgreSQL's
	// statistics estimate it (exact after ANALYZE, close otherwise).
	Rows int64 `json:"rows"`
}

// Usages measures tenants where they live: one query per database that holds
// some of them. Tenants whose database cannot be reached are left out and
// reported in the error (the others are still returned).
func (c *Clusters) Usages(ctx context.Context, tenants []tenant.Tenant) (map[string]Usage, error) {
	type where struct{ cluster, database string }
	groups := map[where][]string{}
	for _, t := range tenants {
		if t.Status == tenant.StatusDeleted && t.Schema == "" {
			continue
		}
		w := where{t.Cluster, t.Database}
		groups[w] = append(groups[w], t.Schema)
	}
	bySchema := map[where]map[string]Usage{}
	var firstErr error
	for w, schemas := range groups {
		u, err := c.usagesIn(ctx, w.cluster, w.database, schemas)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		bySchema[w] = u
	}
	out := make(map[string]Usage, len(tenants))
	for _, t := range tenants {
		if u, ok := bySchema[where{t.Cluster, t.Database}][t.Schema]; ok {
			out[t.Slug.String()] = u
		}
	}
	return out, firstErr
}

func (c *Clusters) usagesIn(ctx context.Context, cluster, database string, schemas []string) (map[string]Usage, error) {
	db, err := c.Admin(cluster)
	if err != nil {
		return nil, err
	}
	shared, err := c.SharedDatabase(cluster)
	if err != nil {
		return nil, err
	}
	if database != shared {
		own, err := c.Open(ctx, cluster, database)
		if err != nil {
			return nil, err
		}
		defer own.Close()
		db = own
	}
	rows, err := db.QueryContext(ctx, `SELECT n.nspname::text,
			(coalesce(sum(c.relpages::bigint + coalesce(t.relpages, 0) + coalesce(ti.pages, 0)
			              + coalesce((SELECT sum(ic.relpages) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
			                           WHERE i.indrelid = c.oid), 0)), 0)
			  * current_setting('block_size')::bigint)::bigint,
			coalesce(sum(greatest(coalesce(pg_stat_get_live_tuples(c.oid), 0), 0)), 0)::bigint
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
		  LEFT JOIN LATERAL (SELECT sum(tic.relpages) AS pages FROM pg_index ti JOIN pg_class tic ON tic.oid = ti.indexrelid
		                      WHERE ti.indrelid = t.oid) ti ON true
		 WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p')
		 GROUP BY n.nspname`, schemas)
	if err != nil {
		return nil, fmt.Errorf("tenant usage on %s/%s: %w", cluster, database, err)
	}
	defer rows.Close()
	out := map[string]Usage{}
	for rows.Next() {
		var schema string
		var u Usage
		if err := rows.Scan(&schema, &u.SizeBytes, &u.Rows); err != nil {
			return nil, err
		}
		out[schema] = u
	}
	return out, rows.Err()
}
