package scratch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Layout is how tenants' tables are laid out on the server.
type Layout string

const (
	// LayoutSchema: a schema per tenant in one database, its tables granted
	// to the application role.
	LayoutSchema Layout = "schema"
	// LayoutRole: the same, and a NOLOGIN role per tenant ("tenant_" + slug,
	// granted to the application role) that alone holds the grants.
	LayoutRole Layout = "role"
	// LayoutRLS: one set of tables shared by all tenants, keyed by tenant_id,
	// with a row-level-security policy on the setting app.tenant_id.
	LayoutRLS Layout = "rls"
	// LayoutDatabase: a database per tenant (cloned from a template), the
	// application role's search_path and statement_timeout set per database.
	LayoutDatabase Layout = "database"
)

// Schema names of the layouts that do not use the tenant's own.
const (
	SharedSchema   = "shared" // LayoutRLS
	DatabaseSchema = "app"    // LayoutDatabase
)

// Tenant is one scratch tenant and where its rows live.
type Tenant struct {
	Index    int
	ID       uuid.UUID
	Slug     string // pdload_<run>_<n>: a valid product slug
	Schema   string // the schema that holds its tables
	Database string // the database that holds that schema
	Role     string // its own role (LayoutRole), else empty
}

// Data sizes each tenant's seed rows.
type Data struct {
	Members int // members, numbered 1..Members
	Cards   int // cards numbered 1..Cards, each with one "issued" activity
	// StatementTimeout is bound to every workload statement; LayoutDatabase
	// sets it per database.
	StatementTimeout time.Duration
}

// SeedRows is the number of rows seeded per tenant.
func (d Data) SeedRows() int64 { return int64(d.Members + 2*d.Cards) }

// Set is one layout's scratch data: its databases and tenants.
type Set struct {
	Name      string // short, part of its database names
	Layout    Layout
	Tenants   []Tenant
	Databases []string      // every database of the set (the template too)
	Provision time.Duration // DDL (and databases, roles) for all tenants
	Seed      time.Duration // the seed rows of all tenants
}

// Served lists the databases that serve tenants (not the template).
func (s *Set) Served() []string {
	if s.Layout != LayoutDatabase {
		return s.Databases
	}
	return s.Databases[1:]
}

// MakeTenants returns n tenants of this run with ids derived from seed (the
// same ids in every layout), not yet placed.
func (s *Server) MakeTenants(n int, seed uint64) []Tenant {
	var key [32]byte
	copy(key[:], strconv.FormatUint(seed, 16)+"/"+strconv.Itoa(n))
	r := rand.NewChaCha8(key)
	ts := make([]Tenant, n)
	for i := range ts {
		id, err := uuid.NewRandomFromReader(r)
		if err != nil {
			panic(err) // ChaCha8 never fails to read
		}
		ts[i] = Tenant{Index: i, ID: id, Slug: fmt.Sprintf("%s%s_%05d", SlugPrefix, s.RunID, i+1)}
	}
	return ts
}

// Provision creates the set name in layout for tenants and seeds their
// rows. tick, if set, is called after each tenant.
func (s *Server) Provision(ctx context.Context, name string, layout Layout, tenants []Tenant, d Data, tick func()) (*Set, error) {
	set := &Set{Name: name, Layout: layout, Tenants: make([]Tenant, len(tenants))}
	copy(set.Tenants, tenants)
	if tick == nil {
		tick = func() {}
	}
	var err error
	if layout == LayoutDatabase {
		err = s.provisionDatabases(ctx, set, d, tick)
	} else {
		err = s.provisionShared(ctx, set, d, tick)
	}
	if err != nil {
		return set, fmt.Errorf("scratch: provision %s: %w", name, err)
	}
	return set, nil
}

// provisionShared makes one database holding every tenant.
func (s *Server) provisionShared(ctx context.Context, set *Set, d Data, tick func()) error {
	db := DBPrefix + s.RunID + "_" + set.Name
	set.Databases = []string{db}
	start := time.Now()
	if err := s.createDatabase(ctx, db, "template0"); err != nil {
		return err
	}
	conn, err := s.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	app := pgx.Identifier{s.AppUser}.Sanitize()
	if set.Layout == LayoutRLS {
		stmts := append([]string{"CREATE SCHEMA " + pgx.Identifier{SharedSchema}.Sanitize()}, tablesDDL(SharedSchema, true)...)
		stmts = append(stmts, "CREATE TABLE "+pgx.Identifier{SharedSchema, "tenants"}.Sanitize()+" (id uuid PRIMARY KEY, slug text NOT NULL UNIQUE)")
		for _, t := range []string{"members", "digital_cards", "card_activities"} {
			q := pgx.Identifier{SharedSchema, t}.Sanitize()
			stmts = append(stmts, "ALTER TABLE "+q+" ENABLE ROW LEVEL SECURITY",
				"CREATE POLICY tenant_isolation ON "+q+" USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)")
		}
		stmts = append(stmts, grants(SharedSchema, app)...)
		if err := execAll(ctx, conn, stmts); err != nil {
			return err
		}
	}
	for i := range set.Tenants {
		t := &set.Tenants[i]
		t.Database = db
		switch set.Layout {
		case LayoutRLS:
			t.Schema = SharedSchema
			_, err = conn.Exec(ctx, `INSERT INTO `+pgx.Identifier{SharedSchema, "tenants"}.Sanitize()+` (id, slug) VALUES ($1, $2)`, t.ID, t.Slug)
		case LayoutRole:
			t.Schema, t.Role = "tenant_"+t.Slug, "tenant_"+t.Slug
			role := pgx.Identifier{t.Role}.Sanitize()
			stmts := append([]string{"CREATE ROLE " + role + " NOLOGIN", "GRANT " + role + " TO " + app,
				"CREATE SCHEMA " + pgx.Identifier{t.Schema}.Sanitize()}, tablesDDL(t.Schema, false)...)
			err = execAll(ctx, conn, append(stmts, grants(t.Schema, role)...))
		default:
			t.Schema = "tenant_" + t.Slug
			stmts := append([]string{"CREATE SCHEMA " + pgx.Identifier{t.Schema}.Sanitize()}, tablesDDL(t.Schema, false)...)
			err = execAll(ctx, conn, append(stmts, grants(t.Schema, app)...))
		}
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.Slug, err)
		}
		tick()
	}
	set.Provision = time.Since(start)
	start = time.Now()
	for _, t := range set.Tenants {
		if err := conn.SendBatch(ctx, seedBatch(t, d)).Close(); err != nil {
			return fmt.Errorf("seed %s: %w", t.Slug, err)
		}
	}
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return err
	}
	set.Seed = time.Since(start)
	return nil
}

// provisionDatabases makes a template database with the tables, then one
// clone per tenant.
func (s *Server) provisionDatabases(ctx context.Context, set *Set, d Data, tick func()) error {
	prefix := DBPrefix + s.RunID + "_" + set.Name + "_"
	tpl := prefix + "template"
	set.Databases = []string{tpl}
	start := time.Now()
	if err := s.createDatabase(ctx, tpl, "template0"); err != nil {
		return err
	}
	conn, err := s.connect(ctx, tpl)
	if err != nil {
		return err
	}
	stmts := append([]string{"CREATE SCHEMA " + pgx.Identifier{DatabaseSchema}.Sanitize()}, tablesDDL(DatabaseSchema, false)...)
	err = execAll(ctx, conn, append(stmts, grants(DatabaseSchema, pgx.Identifier{s.AppUser}.Sanitize())...))
	conn.Close(context.WithoutCancel(ctx)) // a template must have no session
	if err != nil {
		return err
	}
	app := pgx.Identifier{s.AppUser}.Sanitize()
	timeout := strconv.FormatInt(d.StatementTimeout.Milliseconds(), 10)
	for i := range set.Tenants {
		t := &set.Tenants[i]
		t.Database, t.Schema = fmt.Sprintf("%s%05d", prefix, i+1), DatabaseSchema
		set.Databases = append(set.Databases, t.Database)
		if err := s.createDatabase(ctx, t.Database, tpl); err != nil {
			return err
		}
		db := pgx.Identifier{t.Database}.Sanitize()
		for _, st := range []string{
			"ALTER ROLE " + app + " IN DATABASE " + db + " SET search_path = " + pgx.Identifier{DatabaseSchema}.Sanitize(),
			"ALTER ROLE " + app + " IN DATABASE " + db + " SET statement_timeout = " + timeout,
		} {
			if _, err := s.admin.Exec(ctx, st); err != nil {
				return fmt.Errorf("database %s: %w", t.Database, err)
			}
		}
		tick()
	}
	set.Provision = time.Since(start)
	start = time.Now()
	err = parallel(len(set.Tenants), func(i int) error {
		t := set.Tenants[i]
		conn, err := s.connect(ctx, t.Database)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := conn.SendBatch(ctx, seedBatch(t, d)).Close(); err != nil {
			return fmt.Errorf("seed %s: %w", t.Database, err)
		}
		return nil
	})
	set.Seed = time.Since(start)
	return err
}

// Drop removes the set's databases and tenant roles.
func (s *Server) Drop(ctx context.Context, set *Set) error {
	var roles []string
	for _, t := range set.Tenants {
		if t.Role != "" {
			roles = append(roles, t.Role)
		}
	}
	return s.dropAll(ctx, set.Databases, roles)
}

func (s *Server) createDatabase(ctx context.Context, name, template string) error {
	_, err := s.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+
		" TEMPLATE "+pgx.Identifier{template}.Sanitize()+" ENCODING 'UTF8'")
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// connect opens an admin connection to db.
func (s *Server) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	u, err := WithDatabase(s.adminURL, db)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", db, err)
	}
	return conn, nil
}

// execAll runs statements as one simple-protocol message: one round trip,
// one implicit transaction.
func execAll(ctx context.Context, conn *pgx.Conn, stmts []string) error {
	_, err := conn.Exec(ctx, strings.Join(stmts, ";\n"), pgx.QueryExecModeSimpleProtocol)
	return err
}

// tablesDDL creates a simplified copy of the product's tenant tables
// (schema/tenant/core.hcl: members, digital_cards, card_activities) in
// schema. Shared tables lead their keys with tenant_id; a tenant's own
// tables need not.
func tablesDDL(schema string, shared bool) []string {
	q := func(t string) string { return pgx.Identifier{schema, t}.Sanitize() }
	key := func(cols string) string {
		if shared {
			return "(tenant_id, " + cols + ")"
		}
		return "(" + cols + ")"
	}
	return []string{
		"CREATE TABLE " + q("members") + ` (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL,
  member_no int NOT NULL,
  full_name text NOT NULL,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'suspended')),
  created_at timestamptz NOT NULL DEFAULT now())`,
		"CREATE UNIQUE INDEX ON " + q("members") + " " + key("member_no"),
		"CREATE TABLE " + q("digital_cards") + ` (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL,
  member_id uuid NOT NULL REFERENCES ` + q("members") + ` (id),
  card_no int,
  qr_code text NOT NULL UNIQUE,
  status text NOT NULL DEFAULT 'issued' CHECK (status IN ('issued', 'active', 'revoked', 'expired')),
  issued_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now())`,
		"CREATE UNIQUE INDEX ON " + q("digital_cards") + " " + key("card_no"),
		"CREATE INDEX ON " + q("digital_cards") + " " + key("member_id"),
		"CREATE TABLE " + q("card_activities") + ` (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL,
  card_id uuid NOT NULL REFERENCES ` + q("digital_cards") + ` (id),
  action text NOT NULL CHECK (action IN ('issued', 'activated', 'revoked', 'expired', 'validated')),
  actor text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now())`,
		"CREATE INDEX ON " + q("card_activities") + " " + key("card_id, created_at"),
	}
}

// grants gives grantee (a quoted role) the use of schema's tables.
func grants(schema, grantee string) []string {
	s := pgx.Identifier{schema}.Sanitize()
	return []string{
		"GRANT USAGE ON SCHEMA " + s + " TO " + grantee,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + s + " TO " + grantee,
	}
}

// seedBatch inserts a tenant's seed rows: members, cards (marked "seed" in
// their QR code) and one activity per card (actor "seed").
func seedBatch(t Tenant, d Data) *pgx.Batch {
	q := func(table string) string { return pgx.Identifier{t.Schema, table}.Sanitize() }
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO `+q("members")+` (tenant_id, member_no, full_name)
SELECT $1::uuid, g, 'Member ' || g FROM generate_series(1, $2::int) g`, t.ID, d.Members)
	b.Queue(`INSERT INTO `+q("digital_cards")+` (tenant_id, member_id, card_no, qr_code, status, expires_at)
SELECT $1::uuid, m.id, g, 'seed-' || $3::text || '-' || g, (ARRAY['issued', 'active', 'revoked'])[1 + g % 3], now() + interval '1 year'
  FROM generate_series(1, $2::int) g JOIN `+q("members")+` m ON m.tenant_id = $1::uuid AND m.member_no = 1 + g % $4::int`,
		t.ID, d.Cards, t.Slug, d.Members)
	b.Queue(`INSERT INTO `+q("card_activities")+` (tenant_id, card_id, action, actor)
SELECT $1::uuid, id, 'issued', 'seed' FROM `+q("digital_cards")+` WHERE tenant_id = $1::uuid`, t.ID)
	return b
}
