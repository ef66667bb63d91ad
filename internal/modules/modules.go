// Package modules is the module registry: the modules this build serves
// (Builtin: digital_cards and elections, each a bounded context with its
// tenant schema files, a domain package, its routes in internal/httpapi and
// this package as its installer), the catalog of installable modules
// (landlord.modules) and which tenant installed what
// (landlord.tenant_modules). Installing a module applies its tenant HCL to
// the tenant's schema — the tenant's full desired schema, core plus every
// installed module — through the Atlas applier; uninstalling applies the
// schema without it, refusing while the module's tables hold data unless
// purged, and never touching another module's tables. The install record
// commits in the same transaction as the schema (when the tenant's database
// holds the catalog) and is announced on tenant.NotifyChannel, so every
// server serves or refuses the module's routes at once.
package modules

import (
	"context"
	"database/sql"
	"encoding/json"
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

	"github.com/publicdigit/publicdigit/internal/apperr"
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
	// ErrRequired: the module needs another module the tenant has not installed.
	ErrRequired = apperr.New("module_required", "module needs another module")
	// ErrInUse: another installed module needs this one.
	ErrInUse = apperr.New("module_in_use", "module needed by another installed module")
)

// The modules of this build.
const (
	// DigitalCards is cards issued to members (internal/cards), installed for
	// every tenant by default.
	DigitalCards = "digital_cards"
	// Elections is elections with a secret ballot (internal/elections).
	Elections = "elections"
)

// Definition is a module this build serves: its catalog entry, the modules
// it needs, and whether every tenant gets it.
type Definition struct {
	Module
	// Requires lists the modules that must be installed first; they cannot
	// be uninstalled while this one is.
	Requires []string
	// Default modules are installed for every new tenant, and by the fleet
	// runner for every tenant that never had them (a tenant that uninstalls
	// one keeps it uninstalled).
	Default bool
}

var builtin = []Definition{
	{Module: Module{Name: DigitalCards, DisplayName: "Digital cards", Version: "1.0.0",
		Description: "Membership cards with a QR code, their state machine and activity log.",
		SchemaFiles: []string{"modules/digital_cards.hcl"}}, Default: true},
	{Module: Module{Name: Elections, DisplayName: "Elections", Version: "1.0.0",
		Description: "Elections with positions, candidates and a secret ballot that counts once; results after closing.",
		SchemaFiles: []string{"modules/elections.hcl"}}, Requires: []string{DigitalCards}},
}

// Builtin lists the modules of this build.
func Builtin() []Definition {
	out := make([]Definition, len(builtin))
	for i, d := range builtin {
		out[i] = d
		out[i].SchemaFiles = slices.Clone(d.SchemaFiles)
		out[i].Requires = slices.Clone(d.Requires)
	}
	return out
}

// Lookup returns the built-in module of that name.
func Lookup(name string) (Definition, bool) {
	for _, d := range Builtin() {
		if d.Name == name {
			return d, true
		}
	}
	return Definition{}, false
}

// DefaultNames lists the default modules, sorted.
func DefaultNames() []string {
	var out []string
	for _, d := range builtin {
		if d.Default {
			out = append(out, d.Name)
		}
	}
	sort.Strings(out)
	return out
}

// DefaultFiles lists the schema files of the default modules, sorted.
func DefaultFiles() []string {
	var out []string
	for _, d := range builtin {
		if d.Default {
			out = append(out, d.SchemaFiles...)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// ForNewTenants is what provisioning needs to start every new tenant with
// the default modules.
func ForNewTenants() provision.DefaultModules {
	return provision.DefaultModules{
		Files: DefaultFiles(),
		Record: func(ctx context.Context, db catalog.DBTX, t tenant.Tenant) error {
			return RecordInstalled(ctx, db, t, DefaultNames())
		},
	}
}

// RecordInstalled records modules as installed for a tenant on db (the
// landlord database), keeping the records the tenant already has (a module
// it uninstalled stays removed), and announces the change to every server.
func RecordInstalled(ctx context.Context, db catalog.DBTX, t tenant.Tenant, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO landlord.tenant_modules (tenant_id, module_name, status)
		SELECT $1, n, 'installed' FROM unnest($2::text[]) n
		ON CONFLICT (tenant_id, module_name) DO NOTHING`, t.ID, names); err != nil {
		return fmt.Errorf("record modules %v of tenant %s: %w", names, t.Slug, err)
	}
	if _, err := db.ExecContext(ctx, notifySQL, t.Slug.String()); err != nil {
		return fmt.Errorf("record modules %v of tenant %s: %w", names, t.Slug, err)
	}
	return nil
}

// Register writes the built-in modules into the catalog (landlord.modules)
// on db, updating those that changed, and returns how many it wrote. The
// landlord's setup runs it after the landlord schema (tenantctl db init, the
// test and benchmark catalogs); a second run writes nothing.
func Register(ctx context.Context, db catalog.DBTX) (int, error) {
	type row struct {
		Name        string   `json:"name"`
		DisplayName string   `json:"display_name"`
		Version     string   `json:"version"`
		Description string   `json:"description"`
		SchemaFiles []string `json:"schema_files"`
	}
	rows := make([]row, len(builtin))
	for i, d := range builtin {
		if err := d.Validate(); err != nil {
			return 0, err
		}
		rows[i] = row{d.Name, d.DisplayName, d.Version, d.Description, d.SchemaFiles}
	}
	doc, err := json.Marshal(rows)
	if err != nil {
		return 0, err
	}
	res, err := db.ExecContext(ctx, `
		INSERT INTO landlord.modules AS m (name, display_name, version, description, schema_files)
		SELECT b.name, b.display_name, b.version, b.description, b.schema_files
		  FROM jsonb_to_recordset($1::jsonb) AS b(name text, display_name text, version text, description text, schema_files text[])
		ON CONFLICT (name) DO UPDATE
		   SET display_name = EXCLUDED.display_name, version = EXCLUDED.version,
		       description = EXCLUDED.description, schema_files = EXCLUDED.schema_files
		 WHERE (m.display_name, m.version, m.description, m.schema_files)
		       IS DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.version, EXCLUDED.description, EXCLUDED.schema_files)`,
		string(doc))
	if err != nil {
		return 0, fmt.Errorf("register built-in modules: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

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
	// SchemaFiles are tenant HCL files relative to schema/tenant/, e.g. "modules/elections.hcl".
	SchemaFiles []string  `json:"schema_files"`
	CreatedAt   time.Time `json:"created_at"`
	// Builtin, Requires and Default describe the modules of this build
	// (see Definition); a module registered otherwise has schema files only.
	Builtin  bool     `json:"builtin"`
	Requires []string `json:"requires"`
	Default  bool     `json:"default"`
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
	m.Requires = []string{}
	if d, ok := Lookup(m.Name); ok {
		m.Builtin, m.Requires, m.Default = true, append(m.Requires, d.Requires...), d.Default
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

// Install statuses (landlord.tenant_modules.status).
const (
	// StatusInstalled: the module's tables exist and its routes are live.
	StatusInstalled = "installed"
	// StatusUninstalling: an uninstall of a tenant outside the landlord's
	// database is under way: its routes are off, its tables not yet dropped.
	// Running the uninstall again finishes it.
	StatusUninstalling = "uninstalling"
	// StatusRemoved: a default module the tenant uninstalled; the fleet
	// runner leaves it so. Listed nowhere; installing it again is allowed.
	StatusRemoved = "removed"
)

// installed is a tenant's install records with each module's schema files.
type installed struct {
	Install
	files []string
}

// live reports whether the module's tables belong to the tenant's desired
// schema: installed, or not yet dropped by an unfinished uninstall.
func (i installed) live() bool { return i.Status == StatusInstalled || i.Status == StatusUninstalling }

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

// Installed lists the modules a tenant installed (and any whose uninstall
// is unfinished).
func (s *Service) Installed(ctx context.Context, slug tenant.Slug) ([]Install, error) {
	t, err := s.catalog.Get(ctx, slug)
	if err != nil {
		return nil, err
	}
	in, err := s.installedOf(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	out := []Install{}
	for _, x := range in {
		if x.live() {
			out = append(out, x.Install)
		}
	}
	return out, nil
}

// filesOf lists the schema files of the live modules in, but except.
func filesOf(in []installed, except string) []string {
	var files []string
	for _, x := range in {
		if x.Module != except && x.live() {
			files = append(files, x.files...)
		}
	}
	sort.Strings(files)
	return slices.Compact(files)
}

// find returns the record of the module in in.
func find(in []installed, name string) (installed, bool) {
	for _, x := range in {
		if x.Module == name {
			return x, true
		}
	}
	return installed{}, false
}

// canChangeModules: modules change on active and suspended tenants only.
func canChangeModules(t tenant.Tenant, op string) error {
	if t.Status != tenant.StatusActive && t.Status != tenant.StatusSuspended {
		return &tenant.StatusError{Slug: t.Slug, Status: t.Status, Op: op}
	}
	return nil
}

// notifySQL announces a change of the tenant ($1: its slug) to every server.
const notifySQL = `SELECT pg_notify('` + tenant.NotifyChannel + `', $1)`

// Install installs a module for a tenant: the tenant's schema becomes core +
// every installed module + this one, and the install is recorded and
// announced in the same transaction (when the tenant's database holds the
// catalog; otherwise right after the schema commits). A module that needs
// another (Definition.Requires) is refused until that one is installed.
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
		if x, ok := find(in, name); ok && x.live() {
			if x.Status == StatusUninstalling {
				return fmt.Errorf("tenant %s, module %s: an uninstall is unfinished (uninstall it again): %w", slug, name, ErrAlreadyInstalled)
			}
			return fmt.Errorf("tenant %s, module %s: %w", slug, name, ErrAlreadyInstalled)
		}
		for _, r := range m.Requires {
			if x, ok := find(in, r); !ok || x.Status != StatusInstalled {
				return fmt.Errorf("%w: module %s needs module %s: install it first", ErrRequired, name, r)
			}
		}
		files := append(filesOf(in, ""), m.SchemaFiles...)
		res, err := s.prov.ApplySchema(ctx, t, files, schemaapply.Options{},
			func(ctx context.Context, tx *sql.Tx, _ schemaapply.Result) error {
				out = Install{Module: name, Status: StatusInstalled}
				if err := tx.QueryRowContext(ctx, `INSERT INTO landlord.tenant_modules (tenant_id, module_name, status)
					VALUES ($1, $2, 'installed')
					ON CONFLICT (tenant_id, module_name) DO UPDATE SET status = 'installed', installed_at = now()
					RETURNING installed_at`, t.ID, name).Scan(&out.InstalledAt); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, notifySQL, slug.String()); err != nil {
					return err
				}
				return audit.Record(ctx, tx, ev)
			})
		if err != nil {
			return fmt.Errorf("install module %s: %w", name, err)
		}
		s.catalog.Notify(slug)
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
// (the schema becomes core + the other installed modules, so no other
// module's table is touched) and the install record deleted — or, for a
// default module, kept as removed so that the fleet runner does not install
// it again — and announced, in one transaction. It refuses while the
// module's tables hold rows unless purge is set, and while another installed
// module needs it. The check runs in the apply's own transaction, on the
// database where the tables are dropped (the tenant's shared or dedicated
// one), with the tables locked, so no row written meanwhile is lost with
// them.
//
// A tenant outside the landlord's database cannot drop and record in one
// transaction: its routes are switched off first (status uninstalling,
// announced), then its tables dropped, then the record finished; a failure
// in between turns the routes back on, and a crash leaves an uninstall that
// running it again finishes.
func (s *Service) Uninstall(ctx context.Context, slug tenant.Slug, name string, purge bool) error {
	ev := audit.Event{Action: audit.ModuleUninstall, Tenant: slug.String(), Target: name, Detail: map[string]any{"purge": purge}}
	err := s.catalog.WithTenantLock(ctx, slug, func(ctx context.Context, t tenant.Tenant) error {
		ev.TenantID = t.ID
		if err := canChangeModules(t, "uninstall module "+name); err != nil {
			return err
		}
		in, err := s.installedOf(ctx, t.ID)
		if err != nil {
			return err
		}
		x, ok := find(in, name)
		if !ok || !x.live() {
			if _, err := s.Get(ctx, name); err != nil {
				return err
			}
			return fmt.Errorf("tenant %s, module %s: %w", slug, name, ErrNotInstalled)
		}
		for _, y := range in {
			if d, ok := Lookup(y.Module); ok && y.live() && slices.Contains(d.Requires, name) {
				return fmt.Errorf("%w: module %s needs module %s: uninstall it first", ErrInUse, y.Module, name)
			}
		}
		remaining := filesOf(in, name)
		drop, err := addedTables(remaining, filesOf(in, ""))
		if err != nil {
			return fmt.Errorf("uninstall module %s: %w", name, err)
		}
		shared, err := s.prov.SharesCatalog(t)
		if err != nil {
			return err
		}
		if !shared && x.Status == StatusInstalled {
			if err := s.setStatus(ctx, t, name, StatusUninstalling); err != nil {
				return fmt.Errorf("uninstall module %s: %w", name, err)
			}
		}
		ev.Detail["dropped"] = drop
		if err := s.dropModule(ctx, t, name, remaining, drop, purge, ev); err != nil {
			if !shared {
				if rerr := s.setStatus(context.WithoutCancel(ctx), t, name, StatusInstalled); rerr != nil {
					err = errors.Join(err, fmt.Errorf("routes stay off until the uninstall is run again: %w", rerr))
				}
			}
			return fmt.Errorf("uninstall module %s: %w", name, err)
		}
		s.log.Info().Ctx(ctx).Str("tenant", slug.String()).Str("module", name).Strs("dropped", drop).Bool("purge", purge).
			Msg("module uninstalled")
		return nil
	})
	if err != nil {
		s.catalog.Audit().Failed(ctx, ev, err)
	}
	return err
}

// dropModule applies the schema without the module (dropping exactly the
// tables drop) and finishes its record, announced and audited (ev). Unless
// purge is set, it first checks in the apply's transaction that those
// tables hold no row (tablesWithRows).
func (s *Service) dropModule(ctx context.Context, t tenant.Tenant, name string, remaining, drop []string, purge bool,
	ev audit.Event) error {
	allowed := map[string]bool{}
	for _, tb := range drop {
		allowed["drop table "+tb] = true
	}
	d, _ := Lookup(name)
	o := schemaapply.Options{AllowDestructive: true, LockTimeout: uninstallLockTimeout}
	if !purge {
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
	_, err := s.prov.ApplySchema(ctx, t, remaining, o,
		func(ctx context.Context, tx *sql.Tx, res schemaapply.Result) error {
			for _, dd := range res.Destructive {
				if !allowed[dd] {
					return fmt.Errorf("uninstall would also %s: refused (apply the tenant schema first)", dd)
				}
			}
			q := `DELETE FROM landlord.tenant_modules WHERE tenant_id = $1 AND module_name = $2`
			if d.Default {
				q = `UPDATE landlord.tenant_modules SET status = 'removed' WHERE tenant_id = $1 AND module_name = $2`
			}
			if _, err := tx.ExecContext(ctx, q, t.ID, name); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, notifySQL, t.Slug.String()); err != nil {
				return err
			}
			return audit.Record(ctx, tx, ev)
		})
	if err != nil {
		return err
	}
	s.catalog.Notify(t.Slug)
	return nil
}

// setStatus changes a tenant's install record and announces it, as the
// admin role (the application role only reads install records).
func (s *Service) setStatus(ctx context.Context, t tenant.Tenant, name, status string) error {
	tx, err := s.catalog.Admin().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `UPDATE landlord.tenant_modules SET status = $3 WHERE tenant_id = $1 AND module_name = $2`,
		t.ID, name, status); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, notifySQL, t.Slug.String()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.catalog.Notify(t.Slug)
	return nil
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

// FleetModules are, for the fleet runner, the schema files of each tenant's
// modules and the default modules it never had.
type FleetModules struct {
	// Files are the schema files of the tenant's desired schema, sorted:
	// installed modules and Pending ones.
	Files []string
	// Pending are default modules with no record for the tenant (tenants
	// created before the module became a default): the fleet runner builds
	// them and records them installed (RecordInstalled) with the apply.
	Pending []string
}

// FilesOfMany returns, in one query, the fleet runner's view of many
// tenants' modules (FleetModules).
func (s *Service) FilesOfMany(ctx context.Context, tenantIDs []uuid.UUID) (map[uuid.UUID]FleetModules, error) {
	ids := make([]string, len(tenantIDs))
	for i, id := range tenantIDs {
		ids[i] = id.String()
	}
	rows, err := s.db.Query(ctx, `
		SELECT tm.tenant_id, tm.module_name, tm.status, m.schema_files
		  FROM landlord.tenant_modules tm
		  JOIN landlord.modules m ON m.name = tm.module_name
		 WHERE tm.tenant_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("module files: %w", err)
	}
	byTenant := make(map[uuid.UUID][]installed, len(tenantIDs))
	var id uuid.UUID
	var x installed
	_, err = pgx.ForEachRow(rows, []any{&id, &x.Module, &x.Status, &x.files}, func() error {
		y := x
		y.files = slices.Clone(x.files)
		byTenant[id] = append(byTenant[id], y)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("module files: %w", err)
	}
	out := make(map[uuid.UUID]FleetModules, len(tenantIDs))
	for _, id := range tenantIDs {
		in := byTenant[id]
		fm := FleetModules{Files: filesOf(in, "")}
		for _, d := range builtin {
			if _, ok := find(in, d.Name); d.Default && !ok {
				fm.Pending = append(fm.Pending, d.Name)
				fm.Files = append(fm.Files, d.SchemaFiles...)
			}
		}
		sort.Strings(fm.Files)
		fm.Files = slices.Compact(fm.Files)
		out[id] = fm
	}
	return out, nil
}
