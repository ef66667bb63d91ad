package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// DirectPGPort is the local PostgreSQL port (deploy/local/env.sh); the
// benchmarks compare the PgBouncer path with the direct one.
const DirectPGPort = "15432"

// Scratch is a throwaway database on the default cluster with its own
// landlord catalog, so benchmarks never touch the platform or test data.
type Scratch struct {
	Name         string
	AdminURL     string // pd_admin, direct
	AppURL       string // pd_app, through PgBouncer
	DirectAppURL string // pd_app, direct
	Admin        *sql.DB
	appRole      string
	roles        []string
	server       *sql.DB // admin connection to the cluster's own database, for CREATE/DROP DATABASE
}

// NewScratch (re)creates the database name.
func NewScratch(ctx context.Context, cfg config.Config, name string) (*Scratch, error) {
	cl, err := cfg.Cluster(cfg.DefaultCluster)
	if err != nil {
		return nil, err
	}
	sb := &Scratch{Name: name, appRole: cfg.Tenant.AppRole}
	if sb.AdminURL, err = withDatabase(cl.AdminURL, name, ""); err != nil {
		return nil, err
	}
	if sb.AppURL, err = withDatabase(cl.URL, name, ""); err != nil {
		return nil, err
	}
	if u, err := url.Parse(cl.URL); err == nil {
		if port, err := strconv.Atoi(u.Port()); err == nil {
			bouncerPort.Store(int32(port))
		}
	}
	if sb.DirectAppURL, err = withDatabase(cl.URL, name, DirectPGPort); err != nil {
		return nil, err
	}
	if sb.server, err = openDB(cl.AdminURL); err != nil {
		return nil, err
	}
	db := pgx.Identifier{name}.Sanitize()
	for _, s := range []string{
		"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)",
		"CREATE DATABASE " + db + " TEMPLATE template0 ENCODING 'UTF8'",
		"GRANT CONNECT ON DATABASE " + db + " TO " + pgx.Identifier{sb.appRole}.Sanitize(),
	} {
		if _, err := sb.server.ExecContext(ctx, s); err != nil {
			sb.server.Close()
			return nil, fmt.Errorf("scratch database %s: %w", name, err)
		}
	}
	if sb.Admin, err = openDB(sb.AdminURL); err != nil {
		return nil, err
	}
	if _, err := schemaapply.Apply(ctx, sb.Admin, schemaapply.Landlord(sb.appRole), schemaapply.Options{}); err != nil {
		return nil, fmt.Errorf("scratch landlord: %w", err)
	}
	if _, err := modules.Register(ctx, sb.Admin); err != nil {
		return nil, fmt.Errorf("scratch landlord: %w", err)
	}
	return sb, nil
}

// Tenant creates a schema-placed tenant with its role and the core schema,
// the default modules (as provisioning does) and the named built-in ones.
func (sb *Scratch) Tenant(ctx context.Context, slug tenant.Slug, extra ...string) (uuid.UUID, error) {
	t, err := registerTenant(ctx, sb.Admin, slug, "main", sb.Name)
	if err != nil {
		return uuid.Nil, err
	}
	id := t.ID
	names := append(modules.DefaultNames(), extra...)
	var files []string
	for _, n := range names {
		d, ok := modules.Lookup(n)
		if !ok {
			return id, fmt.Errorf("no built-in module %q", n)
		}
		files = append(files, d.SchemaFiles...)
	}
	if err := modules.RecordInstalled(ctx, sb.Admin, t, names); err != nil {
		return id, err
	}
	spec := schemaapply.TenantSpec{Schema: slug.SchemaName(), Role: slug.RoleName(), AppRole: sb.appRole, Modules: files}
	if _, err := schemaapply.ApplyTenant(ctx, sb.Admin, spec, schemaapply.Options{}); err != nil {
		return id, err
	}
	sb.roles = append(sb.roles, slug.RoleName())
	return id, nil
}

// GrantAppDirect gives the application role the tenant's tables directly,
// for the baselines that query them on a plain pool without assuming the
// tenant's role (the application role is NOINHERIT: in production it holds
// no tenant table itself).
func (sb *Scratch) GrantAppDirect(ctx context.Context, slug tenant.Slug) error {
	s, r := pgx.Identifier{slug.SchemaName()}.Sanitize(), pgx.Identifier{sb.appRole}.Sanitize()
	for _, stmt := range []string{
		"GRANT USAGE ON SCHEMA " + s + " TO " + r,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + s + " TO " + r,
		"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA " + s + " TO " + r,
	} {
		if _, err := sb.Admin.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("scratch: %w", err)
		}
	}
	return nil
}

// Members inserts n members into a tenant and returns their ids.
func (sb *Scratch) Members(ctx context.Context, slug tenant.Slug, tenantID uuid.UUID, n int) ([]uuid.UUID, error) {
	rows, err := sb.Admin.QueryContext(ctx, `INSERT INTO `+pgx.Identifier{slug.SchemaName(), "members"}.Sanitize()+
		` (tenant_id, full_name, email) SELECT $1, 'Member ' || g, 'm' || g || '@example.test' FROM generate_series(1, $2) g RETURNING id`, tenantID, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if _, err := sb.Admin.ExecContext(ctx, `ANALYZE `+pgx.Identifier{slug.SchemaName(), "members"}.Sanitize()); err != nil {
		return nil, err
	}
	return ids, rows.Err()
}

// Drop removes the database and the tenant roles it created.
func (sb *Scratch) Drop(ctx context.Context) {
	if sb.Admin != nil {
		sb.Admin.Close()
	}
	_, _ = sb.server.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{sb.Name}.Sanitize()+" WITH (FORCE)")
	for _, r := range sb.roles {
		_, _ = sb.server.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
	}
	sb.server.Close()
}

func openDB(raw string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	return stdlib.OpenDB(*cfg), nil
}

// withDatabase returns raw with another database name and, if port is set, port.
func withDatabase(raw, db, port string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.Path = "/" + db
	if port != "" {
		u.Host = u.Hostname() + ":" + port
	}
	return u.String(), nil
}

// registerTenant adds an active, schema-placed tenant to the catalog on db
// (its schema is not built).
func registerTenant(ctx context.Context, db *sql.DB, slug tenant.Slug, cluster, database string) (tenant.Tenant, error) {
	row, _, err := catalog.InsertProvisioning(ctx, db, slug, "Bench tenant "+slug.String(), tenant.Placement{
		Kind: tenant.PlacementSchema, Cluster: cluster, Database: database, Schema: slug.SchemaName()})
	if err != nil {
		return tenant.Tenant{}, err
	}
	return catalog.Activate(ctx, db, row)
}
