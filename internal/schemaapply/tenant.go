package schemaapply

import (
	"github.com/publicdigit/publicdigit/internal/apperr"

	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	hcl "github.com/publicdigit/publicdigit/schema"
)

// TenantSpec describes one tenant schema to apply.
type TenantSpec struct {
	// Schema is the tenant's schema, tenant_<slug>.
	Schema string
	// Role is the tenant's own role (NOLOGIN), tenant_<slug>: it gets USAGE
	// on the schema and SELECT/INSERT/UPDATE/DELETE on its tables only.
	Role string
	// AppRole (e.g. pd_app) is granted Role so that it can assume it per
	// transaction; empty means no grant.
	AppRole string
	// Modules are module schema files relative to schema/tenant/, e.g.
	// "modules/elections.hcl" (landlord.modules.schema_files of the installed modules).
	Modules []string
}

// TenantPrefix prefixes tenant schemas and roles (tenant.SchemaPrefix).
const TenantPrefix = "tenant_"

// ErrInvalidSpec is wrapped by every TenantTarget validation error.
var ErrInvalidSpec = apperr.New("invalid_schema_spec", "invalid tenant spec")

// identPattern accepts the names this package quotes into DDL: lower-case
// identifiers as made by tenant.Slug (and the application role).
var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (s TenantSpec) validate() error {
	if !identPattern.MatchString(s.Schema) {
		return fmt.Errorf("%w: schema %q", ErrInvalidSpec, s.Schema)
	}
	if !identPattern.MatchString(s.Role) {
		return fmt.Errorf("%w: role %q", ErrInvalidSpec, s.Role)
	}
	if s.AppRole != "" && !identPattern.MatchString(s.AppRole) {
		return fmt.Errorf("%w: application role %q", ErrInvalidSpec, s.AppRole)
	}
	if s.AppRole == s.Role {
		return fmt.Errorf("%w: the tenant role cannot be the application role", ErrInvalidSpec)
	}
	return nil
}

// TenantTarget is the desired state of one tenant: schema/tenant/core.hcl
// plus the spec's module files (embedded), with var.tenant = spec.Schema,
// the role and its grant to the application role before the plan, and the
// schema and table grants after it.
func TenantTarget(spec TenantSpec) (Target, error) {
	return TenantTargetFS(hcl.Files, spec)
}

// TenantTargetFS is TenantTarget reading the HCL from fsys, laid out like
// the schema/ folder (tenant/core.hcl, tenant/modules/*.hcl): hcl.Files, or
// os.DirFS of a checkout's schema/ folder to try an edit before building.
func TenantTargetFS(fsys fs.FS, spec TenantSpec) (Target, error) {
	if err := spec.validate(); err != nil {
		return Target{}, err
	}
	core, err := fs.ReadFile(fsys, hcl.TenantDir+"/"+hcl.CoreFile)
	if err != nil {
		return Target{}, fmt.Errorf("tenant core schema: %w", err)
	}
	files := [][]byte{core}
	names := []string{"schema/" + hcl.TenantDir + "/" + hcl.CoreFile}
	for _, m := range sortedUnique(spec.Modules) {
		b, err := hcl.TenantModuleFS(fsys, m)
		if err != nil {
			return Target{}, err
		}
		files = append(files, b)
		names = append(names, "schema/"+hcl.TenantDir+"/"+m)
	}
	return Target{
		Schema: spec.Schema,
		HCL:    files,
		Files:  names,
		Vars:   map[string]string{"tenant": spec.Schema},
		Before: tenantRoleSteps(spec),
		After:  []Step{tenantGrantStep(spec)},
	}, nil
}

func sortedUnique(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	n := 0
	for i, s := range out {
		if i > 0 && s == out[n-1] {
			continue
		}
		out[n] = s
		n++
	}
	return out[:n]
}

// tenantRoleSteps create the tenant role when missing and grant it to the
// application role. Roles are cluster-wide but transactional: a failed
// apply leaves none behind.
func tenantRoleSteps(spec TenantSpec) []Step {
	role := pgx.Identifier{spec.Role}.Sanitize()
	steps := []Step{{
		Name:  "tenant role",
		Check: "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)",
		Args:  []any{spec.Role},
		SQL:   []string{"CREATE ROLE " + role + " NOLOGIN"},
	}}
	if spec.AppRole != "" {
		steps = append(steps, Step{
			Name: "tenant role membership",
			// pg_has_role by oid: NULL (not an error) while the role does not exist (dry run).
			Check: `SELECT coalesce((SELECT pg_has_role($2, r.oid, 'MEMBER') FROM pg_roles r WHERE r.rolname = $1), false)`,
			Args:  []any{spec.Role, spec.AppRole},
			SQL:   []string{"GRANT " + role + " TO " + pgx.Identifier{spec.AppRole}.Sanitize()},
		})
	}
	return steps
}

// tenantGrantStep gives the tenant role its own schema and nothing else, and
// takes the schema away from PUBLIC. Each privilege is checked separately
// (has_table_privilege with a list is true if any one is held).
func tenantGrantStep(spec TenantSpec) Step {
	s := pgx.Identifier{spec.Schema}.Sanitize()
	r := pgx.Identifier{spec.Role}.Sanitize()
	return Step{
		Name: "tenant grants",
		Check: `WITH r AS (SELECT oid FROM pg_roles WHERE rolname = $1),
		             n AS (SELECT oid, nspacl FROM pg_namespace WHERE nspname = $2)
		SELECT coalesce((
		  SELECT has_schema_privilege(r.oid, n.oid, 'USAGE')
		     AND NOT EXISTS (SELECT FROM aclexplode(n.nspacl) a WHERE a.grantee = 0)
		     AND coalesce((SELECT bool_and(has_table_privilege(r.oid, c.oid, 'SELECT')
		                               AND has_table_privilege(r.oid, c.oid, 'INSERT')
		                               AND has_table_privilege(r.oid, c.oid, 'UPDATE')
		                               AND has_table_privilege(r.oid, c.oid, 'DELETE'))
		                     FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')), true)
		     AND coalesce((SELECT bool_and(has_sequence_privilege(r.oid, c.oid, 'USAGE')
		                               AND has_sequence_privilege(r.oid, c.oid, 'SELECT'))
		                     FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'S'), true)
		  FROM r, n), false)`,
		Args: []any{spec.Role, spec.Schema},
		SQL: []string{
			"GRANT USAGE ON SCHEMA " + s + " TO " + r,
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + s + " TO " + r,
			"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA " + s + " TO " + r,
			"REVOKE ALL ON SCHEMA " + s + " FROM PUBLIC",
		},
	}
}

// ApplyTenant brings one tenant to its desired state in one transaction on
// db (a direct admin connection to the tenant's database): the role and its
// grant to the application role, the schema and its tables (core and
// modules), then the grants, under the schema's advisory lock. A converged
// tenant runs no statement. Result.Fingerprint is the schema's catalog
// fingerprint afterwards; record it with Result.Hash (RecordApplied) so that
// the fleet runner can skip the tenant without inspecting it.
func ApplyTenant(ctx context.Context, db *sql.DB, spec TenantSpec, o Options) (Result, error) {
	t, err := TenantTarget(spec)
	if err != nil {
		return Result{}, err
	}
	return apply(ctx, db, t, o, applyHooks{fingerprintRole: spec.Role})
}

// ApplyTenantTx is ApplyTenant inside the caller's transaction tx (a direct
// admin connection to the tenant's database): the same steps under the same
// advisory lock, without the commit, which is the caller's — so that a
// schema can be built, filled and made live in one transaction (tenant
// import). Options.BeforeCommit is not called; a dry run is refused.
func ApplyTenantTx(ctx context.Context, tx *sql.Tx, spec TenantSpec, o Options) (Result, error) {
	if o.DryRun || o.BeforeCommit != nil {
		return Result{}, fmt.Errorf("%w: ApplyTenantTx takes neither a dry run nor a BeforeCommit hook", ErrInvalidSpec)
	}
	t, err := TenantTarget(spec)
	if err != nil {
		return Result{}, err
	}
	a := &applier{t: t, o: o, h: applyHooks{fingerprintRole: spec.Role}, start: time.Now(), res: Result{Hash: t.Hash()}}
	if err := a.parse(); err != nil {
		return a.res, err
	}
	a.tx = tx
	for _, step := range []func(context.Context) error{a.lock, a.checkBefore, a.plan, a.execute, a.fingerprint} {
		if err := step(ctx); err != nil {
			return a.res, err
		}
	}
	a.res.Duration = time.Since(a.start)
	return a.res, nil
}
