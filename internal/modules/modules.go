// Package modules is the module registry: the catalog of installable
// modules (landlord.modules) and which tenant installed what
// (landlord.tenant_modules). Installing a module applies its tenant HCL to
// the tenant's schema — the tenant's full desired schema, core plus every
// installed module — through the Atlas applier; uninstalling applies the
// schema without it, refusing while the module's tables hold data unless
// forced. The install record commits in the same transaction as the schema.
package modules

import (
	"github.com/publicdigit/publicdigit/internal/apperr"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog"
	"github.com/publicdigit/publicdigit/internal/clusters"
	"github.com/publicdigit/publicdigit/internal/provision"
	"github.com/publicdigit/publicdigit/internal/requestid"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
	hcl "github.com/publicdigit/publicdigit/schema"
)

var (
	// ErrModuleNotFound: no module of that name in the catalog.
	ErrModuleNotFound = apperr.New("module_not_found", "module not found")
	// ErrModuleExists: a module of that name is already registered.
	ErrModuleExists = apperr.New("module_exists", "module already exists")
	// ErrInvalidModule is wrapped by every validation error of a module.
	ErrInvalidModule = apperr.New("invalid_module", "invalid module")
	// ErrAlreadyInstalled: the tenant has installed the module already.
	ErrAlreadyInstalled = apperr.New("module_installed", "module already installed")
	// ErrNotInstalled: the tenant has not installed the module.
	ErrNotInstalled = apperr.New("module_not_installed", "module not installed")
	// ErrModuleHasData is wrapped by *DataError: the module's tables hold rows.
	ErrModuleHasData = apperr.New("module_has_data", "module tables hold data")
)

// DataError names the module tables that hold rows and stopped an uninstall.
type DataError struct {
	Module string
	Tables []string
}

func (e *DataError) Error() string {
	return fmt.Sprintf("module %s: tables %s hold data (force to drop them)", e.Module, strings.Join(e.Tables, ", "))
}

// Unwrap makes errors.Is(err, ErrModuleHasData) true.
func (e *DataError) Unwrap() error { return ErrModuleHasData }

// Module is an installable module.
type Module struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Version     string `json:"version"`
	Description string `json:"description"`
	// SchemaFiles are tenant HCL files relative to schema/tenant/, e.g. "modules/events.hcl".
	SchemaFiles []string  `json:"schema_files"`
	CreatedAt   time.Time `json:"created_at"`
}

// Install is one module installed by one tenant.
type Install struct {
	Module      string    `json:"module"`
	Status      string    `json:"status"`
	InstalledAt time.Time `json:"installed_at"`
}

// Service is the modules. Safe for concurrent use.
type Service struct {
	db       *pgxpool.Pool
	catalog  *catalog.Catalog
	clusters *clusters.Clusters
	prov     *provision.Provisioner
	log      zerolog.Logger
}

// New returns the registry on the landlord pool; installs apply schemas through prov.
func New(landlord *pgxpool.Pool, cat *catalog.Catalog, cl *clusters.Clusters, prov *provision.Provisioner, log zerolog.Logger) *Service {
	return &Service{db: landlord, catalog: cat, clusters: cl, prov: prov, log: log.Hook(requestid.Hook)}
}

var (
	namePattern    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	versionPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,49}$`)
)

// ValidName checks a module name: ^[a-z][a-z0-9_]{0,62}$.
func ValidName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: name %q must match ^[a-z][a-z0-9_]{0,62}$", ErrInvalidModule, name)
	}
	return nil
}

func validText(field, s string, min, max int) error {
	n := utf8.RuneCountInString(s)
	if n < min || n > max {
		return fmt.Errorf("%w: %s must be %d to %d characters", ErrInvalidModule, field, min, max)
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("%w: %s must not start or end with spaces", ErrInvalidModule, field)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' {
			return fmt.Errorf("%w: %s must not contain control characters", ErrInvalidModule, field)
		}
	}
	return nil
}

// Validate checks a module: its fields, and that its schema files exist and
// parse together with the core tenant schema.
func (m Module) Validate() error {
	if err := ValidName(m.Name); err != nil {
		return err
	}
	if err := validText("display_name", m.DisplayName, 1, 100); err != nil {
		return err
	}
	if !versionPattern.MatchString(m.Version) {
		return fmt.Errorf("%w: version %q must be 1 to 50 of 0-9, A-Z, a-z, . + _ -", ErrInvalidModule, m.Version)
	}
	if err := validText("description", m.Description, 0, 2000); err != nil {
		return err
	}
	if len(m.SchemaFiles) > 20 {
		return fmt.Errorf("%w: at most 20 schema files", ErrInvalidModule)
	}
	seen := map[string]bool{}
	for _, f := range m.SchemaFiles {
		if seen[f] {
			return fmt.Errorf("%w: schema file %s listed twice", ErrInvalidModule, f)
		}
		seen[f] = true
		if _, err := hcl.TenantModule(f); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidModule, err)
		}
	}
	if _, err := moduleTables(m.SchemaFiles); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidModule, err)
	}
	return nil
}

// probe is the schema name used to evaluate module HCL outside any tenant.
const probe = "tenant_registry_probe"

// tables lists the tables of core + files.
func tables(files []string) (map[string]bool, error) {
	t, err := schemaapply.TenantTarget(schemaapply.TenantSpec{Schema: probe, Role: probe, Modules: files})
	if err != nil {
		return nil, err
	}
	r, err := t.Desired()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range r.Schemas {
		for _, tb := range s.Tables {
			out[tb.Name] = true
		}
	}
	return out, nil
}

// moduleTables lists the tables that files add to the core schema.
func moduleTables(files []string) ([]string, error) {
	return addedTables(nil, files)
}

// addedTables lists the tables of core + with that core + base lacks.
func addedTables(base, with []string) ([]string, error) {
	all, err := tables(append(append([]string(nil), base...), with...))
	if err != nil {
		return nil, err
	}
	have, err := tables(base)
	if err != nil {
		return nil, err
	}
	var out []string
	for t := range all {
		if !have[t] {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out, nil
}

const moduleCols = `m.name, m.display_name, m.version, m.description, m.schema_files, m.created_at`

func scanModule(row pgx.Row) (Module, error) {
	var m Module
	err := row.Scan(&m.Name, &m.DisplayName, &m.Version, &m.Description, &m.SchemaFiles, &m.CreatedAt)
	if m.SchemaFiles == nil {
		m.SchemaFiles = []string{}
	}
	return m, err
}

// Create registers a module.
func (s *Service) Create(ctx context.Context, m Module) (Module, error) {
	if m.SchemaFiles == nil {
		m.SchemaFiles = []string{}
	}
	if err := m.Validate(); err != nil {
		return Module{}, err
	}
	out, err := scanModule(s.db.QueryRow(ctx, `
		INSERT INTO landlord.modules AS m (name, display_name, version, description, schema_files)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name) DO NOTHING
		RETURNING `+moduleCols, m.Name, m.DisplayName, m.Version, m.Description, m.SchemaFiles))
	if errors.Is(err, pgx.ErrNoRows) {
		return Module{}, fmt.Errorf("module %s: %w", m.Name, ErrModuleExists)
	}
	if err != nil {
		return Module{}, fmt.Errorf("create module %s: %w", m.Name, err)
	}
	return out, nil
}

// Get returns a module.
func (s *Service) Get(ctx context.Context, name string) (Module, error) {
	if err := ValidName(name); err != nil {
		return Module{}, fmt.Errorf("module %q: %w", name, ErrModuleNotFound)
	}
	m, err := scanModule(s.db.QueryRow(ctx, `SELECT `+moduleCols+` FROM landlord.modules m WHERE m.name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Module{}, fmt.Errorf("module %s: %w", name, ErrModuleNotFound)
	}
	if err != nil {
		return Module{}, fmt.Errorf("get module %s: %w", name, err)
	}
	return m, nil
}

// List returns every module, by name.
func (s *Service) List(ctx context.Context) ([]Module, error) {
	rows, err := s.db.Query(ctx, `SELECT `+moduleCols+` FROM landlord.modules m ORDER BY m.name`)
	if err != nil {
		return nil, fmt.Errorf("list modules: %w", err)
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Module, error) { return scanModule(r) })
	if err != nil {
		return nil, fmt.Errorf("list modules: %w", err)
	}
	if ms == nil {
		ms = []Module{}
	}
	return ms, nil
}

// installed is a tenant's installs with each module's schema files.
type installed struct {
	Install
	files []string
}

func (s *Service) installedOf(ctx context.Context, tenantID uuid.UUID) ([]installed, error) {
	rows, err := s.db.Query(ctx, `
		SELECT tm.module_name, tm.status, tm.installed_at, m.schema_files
		  FROM landlord.tenant_modules tm JOIN landlord.modules m ON m.name = tm.module_name
		 WHERE tm.tenant_id = $1 ORDER BY tm.module_name`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("installed modules: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (installed, error) {
		var i installed
		err := r.Scan(&i.Module, &i.Status, &i.InstalledAt, &i.files)
		return i, err
	})
	if err != nil {
		return nil, fmt.Errorf("installed modules: %w", err)
	}
	return out, nil
}

// Installed lists the modules a tenant installed.
func (s *Service) Installed(ctx context.Context, slug tenant.Slug) ([]Install, error) {
	t, err := s.catalog.Get(ctx, slug)
	if err != nil {
		return nil, err
	}
	in, err := s.installedOf(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	out := make([]Install, len(in))
	for i, x := range in {
		out[i] = x.Install
	}
	return out, nil
}

func filesOf(in []installed, except string) []string {
	var files []string
	for _, x := range in {
		if x.Module != except {
			files = append(files, x.files...)
		}
	}
	sort.Strings(files)
	return slices.Compact(files)
}

// canChangeModules: modules change on active and suspended tenants only.
func canChangeModules(t tenant.Tenant, op string) error {
	if t.Status != tenant.StatusActive && t.Status != tenant.StatusSuspended {
		return &tenant.StatusError{Slug: t.Slug, Status: t.Status, Op: op}
	}
	return nil
}

// Install installs a module for a tenant: the tenant's schema becomes core +
// every installed module + this one, and the install is recorded in the same
// transaction (when the tenant's database holds the catalog).
func (s *Service) Install(ctx context.Context, slug tenant.Slug, name string) (Install, error) {
	var out Install
	ev := audit.Event{Action: audit.ModuleInstall, Tenant: slug.String(), Target: name}
	err := s.catalog.WithTenantLock(ctx, slug, func(ctx context.Context, t tenant.Tenant) error {
		ev.TenantID = t.ID
		if err := canChangeModules(t, "install module "+name); err != nil {
			return err
		}
		m, err := s.Get(ctx, name)
		if err != nil {
			return err
		}
		in, err := s.installedOf(ctx, t.ID)
		if err != nil {
			return err
		}
		for _, x := range in {
			if x.Module == name {
				return fmt.Errorf("tenant %s, module %s: %w", slug, name, ErrAlreadyInstalled)
			}
		}
		files := append(filesOf(in, ""), m.SchemaFiles...)
		res, err := s.prov.ApplySchema(ctx, t, files, schemaapply.Options{},
			func(ctx context.Context, tx *sql.Tx, _ schemaapply.Result) error {
				out = Install{Module: name, Status: "installed"}
				if err := tx.QueryRowContext(ctx, `INSERT INTO landlord.tenant_modules (tenant_id, module_name, status)
					VALUES ($1, $2, 'installed') RETURNING installed_at`, t.ID, name).Scan(&out.InstalledAt); err != nil {
					return err
				}
				return audit.Record(ctx, tx, ev)
			})
		if err != nil {
			return fmt.Errorf("install module %s: %w", name, err)
		}
		s.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("module", name).Int("statements", len(res.Statements)).
			Dur("duration", res.Duration).Msg("module installed")
		return nil
	})
	if err != nil {
		s.catalog.Audit().Failed(ctx, ev, err)
		return Install{}, err
	}
	return out, nil
}

// Uninstall removes a module from a tenant: the module's tables are dropped
// (the schema becomes core + the other installed modules) and the install
// record deleted, in one transaction. Unless force is set it refuses while
// those tables hold rows; the check runs in the apply's own transaction, on
// the database where the tables are dropped (the tenant's shared or
// dedicated one), with the tables locked, so no row written meanwhile is
// lost with them.
func (s *Service) Uninstall(ctx context.Context, slug tenant.Slug, name string, force bool) error {
	ev := audit.Event{Action: audit.ModuleUninstall, Tenant: slug.String(), Target: name, Detail: map[string]any{"force": force}}
	err := s.catalog.WithTenantLock(ctx, slug, func(ctx context.Context, t tenant.Tenant) error {
		ev.TenantID = t.ID
		if err := canChangeModules(t, "uninstall module "+name); err != nil {
			return err
		}
		in, err := s.installedOf(ctx, t.ID)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(in, func(x installed) bool { return x.Module == name }) {
			if _, err := s.Get(ctx, name); err != nil {
				return err
			}
			return fmt.Errorf("tenant %s, module %s: %w", slug, name, ErrNotInstalled)
		}
		remaining := filesOf(in, name)
		drop, err := addedTables(remaining, filesOf(in, ""))
		if err != nil {
			return fmt.Errorf("uninstall module %s: %w", name, err)
		}
		allowed := map[string]bool{}
		for _, tb := range drop {
			allowed["drop table "+tb] = true
		}
		o := schemaapply.Options{AllowDestructive: true, LockTimeout: uninstallLockTimeout}
		if !force {
			o.BeforeExecute = func(ctx context.Context, tx *sql.Tx) error {
				full, err := tablesWithRows(ctx, tx, t.Schema, drop)
				if err != nil {
					return err
				}
				if len(full) > 0 {
					return &DataError{Module: name, Tables: full}
				}
				return nil
			}
		}
		_, err = s.prov.ApplySchema(ctx, t, remaining, o,
			func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error {
				for _, d := range res.Destructive {
					if !allowed[d] {
						return fmt.Errorf("uninstall would also %s: refused (apply the tenant schema first)", d)
					}
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM landlord.tenant_modules WHERE tenant_id = $1 AND module_name = $2`, t.ID, name); err != nil {
					return err
				}
				ev.Detail["dropped"] = drop
				return audit.Record(ctx, tx, ev)
			})
		if err != nil {
			return fmt.Errorf("uninstall module %s: %w", name, err)
		}
		s.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("module", name).Strs("dropped", drop).Bool("force", force).
			Msg("module uninstalled")
		return nil
	})
	if err != nil {
		s.catalog.Audit().Failed(ctx, ev, err)
	}
	return err
}

// uninstallLockTimeout bounds an uninstall's wait for the module's tables
// (in-flight requests of the tenant finish first).
const uninstallLockTimeout = 5 * time.Second

// tablesWithRows returns those of the named tables of schema that hold a
// row, in tx: the apply's transaction, on the database where they would be
// dropped. It locks them (ACCESS EXCLUSIVE, as the drop will) so that no
// row arrives between the check and the drop. A table that is not in that
// database is not dropped by the apply either; a missing schema is an
// error (the apply runs on the wrong database), never "no rows".
func tablesWithRows(ctx context.Context, tx *sql.Tx, schema string, names []string) ([]string, error) {
	var exists bool
	var present []string
	if err := tx.QueryRowContext(ctx, `
		SELECT to_regnamespace(quote_ident($1)) IS NOT NULL,
		       coalesce(array_agg(n ORDER BY n) FILTER (WHERE to_regclass(quote_ident($1) || '.' || quote_ident(n)) IS NOT NULL), '{}')
		  FROM unnest($2::text[]) n`, schema, names).Scan(&exists, pgtype.NewMap().SQLScanner(&present)); err != nil {
		return nil, fmt.Errorf("check module tables: %w", err)
	}
	if !exists {
		return nil, fmt.Errorf("check module tables: schema %s is not in the tenant's database", schema)
	}
	if len(present) == 0 {
		return nil, nil
	}
	idents := make([]string, len(present))
	for i, n := range present {
		idents[i] = pgx.Identifier{schema, n}.Sanitize()
	}
	if _, err := tx.ExecContext(ctx, `LOCK TABLE `+strings.Join(idents, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		return nil, fmt.Errorf("lock module tables: %w", err)
	}
	var full []string
	for i, n := range present {
		var has bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+idents[i]+`)`).Scan(&has); err != nil {
			return nil, fmt.Errorf("check table %s: %w", n, err)
		}
		if has {
			full = append(full, n)
		}
	}
	return full, nil
}

// FilesOf lists the schema files of a tenant's installed modules, sorted
// (moves rebuild the tenant's schema from them).
func (s *Service) FilesOf(ctx context.Context, tenantID uuid.UUID) ([]string, error) {
	in, err := s.installedOf(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return filesOf(in, ""), nil
}

// FilesOfMany is FilesOf for many tenants in one query (the fleet runner).
func (s *Service) FilesOfMany(ctx context.Context, tenantIDs []uuid.UUID) (map[uuid.UUID][]string, error) {
	ids := make([]string, len(tenantIDs))
	for i, id := range tenantIDs {
		ids[i] = id.String()
	}
	rows, err := s.db.Query(ctx, `
		SELECT tm.tenant_id, array_agg(DISTINCT f ORDER BY f)
		  FROM landlord.tenant_modules tm
		  JOIN landlord.modules m ON m.name = tm.module_name
		  CROSS JOIN LATERAL unnest(m.schema_files) f
		 WHERE tm.tenant_id = ANY($1::uuid[])
		 GROUP BY tm.tenant_id`, ids)
	if err != nil {
		return nil, fmt.Errorf("module files: %w", err)
	}
	defer rows.Close()
	out := make(map[uuid.UUID][]string, len(tenantIDs))
	for rows.Next() {
		var id uuid.UUID
		var files []string
		if err := rows.Scan(&id, &files); err != nil {
			return nil, fmt.Errorf("module files: %w", err)
		}
		out[id] = files
	}
	return out, rows.Err()
}
