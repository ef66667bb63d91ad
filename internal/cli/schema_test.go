package cli_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/cli"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	hcl "github.com/publicdigit/publicdigit/schema"
)

func TestSchemaApplyTenant(t *testing.T) {
	dbtest.SetEnv(t)
	tt := dbtest.TenantRow(t, "clia")

	code, out, errOut := run(t, "schema", "apply", "--tenant", tt.Slug, "--dry-run")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "(dry run, nothing changed)")
	assert.Contains(t, out, `CREATE SCHEMA "`+tt.Schema+`";`)
	assert.Contains(t, out, `CREATE ROLE "`+tt.Role+`" NOLOGIN;`)

	code, out, errOut = run(t, "schema", "apply", "--tenant", tt.Slug)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Regexp(t, `^tenant `+tt.Slug+` \(`+tt.Schema+`\): applied \d+ statements in `, out)

	code, out, errOut = run(t, "schema", "apply", "--tenant", tt.Slug)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "tenant "+tt.Slug+" ("+tt.Schema+"): up to date\n", out)

	code, out, errOut = run(t, "schema", "diff", "--tenant", tt.Slug)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "tenant "+tt.Slug+" ("+tt.Schema+"): up to date\n", out)

	code, out, errOut = run(t, "schema", "apply", "--tenant", tt.Slug, "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var res schemaapply.FleetResult
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Len(t, res.Tenants, 1)
	assert.Equal(t, schemaapply.StatusUnchanged, res.Tenants[0].Status)
}

func TestSchemaBadInputIsOneLine(t *testing.T) {
	c := dbtest.SetEnv(t)
	tt := dbtest.Tenant(t, "clib")

	// Usage errors (exit 2) come before any connection: the admin URL points nowhere.
	t.Setenv("PD_ADMIN__URL", dbtest.WithPort(t, c.Admin.URL, "1"))
	for _, args := range [][]string{
		{"schema", "apply", "--tenant", "Bad-Slug"},
		{"schema", "apply", "--tenant", "admin"},
		{"schema", "apply"},
		{"schema", "apply", "--tenant", "x", "--all"},
		{"schema", "apply", "--tenant", "x", "--canary", "2"},
		{"schema", "apply", "--all", "--parallel", "0"},
		{"schema", "apply", "--all", "--slug-prefix", "A"},
		{"schema", "apply", "--all", "--schema-dir", "/no/such/dir"},
		{"schema", "diff"},
		{"schema", "drift", "extra"},
		{"schema"},
	} {
		code, _, errOut := run(t, args...)
		assert.Equal(t, cli.ExitUsage, code, "%v: %s", args, errOut)
		assert.NotContains(t, errOut, "connection refused", "%v", args)
	}
	code, _, errOut := run(t, "schema", "apply", "--tenant", "Bad-Slug")
	assert.Equal(t, cli.ExitUsage, code)
	assert.Contains(t, errOut, "invalid tenant slug")
	t.Setenv("PD_ADMIN__URL", c.Admin.URL)

	// An unknown tenant: one line, exit 1.
	code, _, errOut = run(t, "schema", "apply", "--tenant", "no_such_tenant_x9")
	assert.Equal(t, cli.ExitFailure, code)
	assert.Equal(t, "tenantctl: tenant not found in the landlord catalog: \"no_such_tenant_x9\"\n", errOut)

	// An HCL syntax error: one line, exit 1, nothing changed.
	dir := t.TempDir()
	copyFS(t, hcl.Files, dir)
	core := filepath.Join(dir, "tenant", "core.hcl")
	b, err := os.ReadFile(core)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(core, append(b, []byte("\ntable \"broken\" {\n  column \"x\" {\n")...), 0o600))
	for _, args := range [][]string{
		{"schema", "apply", "--tenant", tt.Slug, "--schema-dir", dir},
		{"schema", "apply", "--all", "--slug-prefix", tt.Slug, "--schema-dir", dir},
		{"schema", "diff", "--tenant", tt.Slug, "--schema-dir", dir},
	} {
		code, out, errOut := run(t, args...)
		assert.Equal(t, cli.ExitFailure, code, "%v", args)
		assert.Equal(t, 1, strings.Count(errOut, "\n"), "%v: %s", args, errOut)
		assert.Contains(t, errOut, "parse HCL", "%v", args)
		assert.Contains(t, errOut, "core.hcl", "%v: the error names the file", args)
		assert.Empty(t, out)
	}
}

func TestSchemaFleetDriftAndRepair(t *testing.T) {
	dbtest.SetEnv(t)
	db := dbtest.AdminDB(t)
	prefix := dbtest.Name("clif")
	events := dbtest.Module(t, "ev", "modules/events.hcl")
	a := dbtest.TenantRow(t, prefix+"_", events)
	b := dbtest.TenantRow(t, prefix+"_")
	dbtest.TenantRow(t, prefix+"_")

	code, out, errOut := run(t, "schema", "apply", "--all", "--slug-prefix", prefix, "--dry-run")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "-- tenant "+a.Slug+" ("+a.Schema+"): ")
	assert.Contains(t, out, `CREATE TABLE "`+a.Schema+`"."events"`)
	assert.Contains(t, out, "3 would change")
	assert.Empty(t, errOut, "no progress bar when stderr is not a terminal")

	code, out, errOut = run(t, "schema", "apply", "--all", "--slug-prefix", prefix, "--json", "--parallel", "2", "--canary", "1")
	require.Equal(t, cli.ExitOK, code, errOut)
	var res schemaapply.FleetResult
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Equal(t, 3, res.Applied)

	code, out, errOut = run(t, "schema", "apply", "--all", "--slug-prefix", prefix)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "fleet: 3 tenants: 3 converged (skipped), 0 applied, 0 unchanged, 0 failed")

	code, out, errOut = run(t, "schema", "drift", "--slug-prefix", prefix)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "drift: 3 tenants: 3 converged (not inspected), 0 in sync, 0 drifted, 0 failed")

	// Manual drift: an extra column on a, a dropped index on b.
	_, err := db.Exec(`ALTER TABLE ` + a.Schema + `.events ADD COLUMN extra text`)
	require.NoError(t, err)
	_, err = db.Exec(`DROP INDEX ` + b.Schema + `.members_tenant_geo_idx`)
	require.NoError(t, err)

	code, out, errOut = run(t, "schema", "drift", "--slug-prefix", prefix, "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var dr schemaapply.DriftResult
	require.NoError(t, json.Unmarshal([]byte(out), &dr))
	require.Len(t, dr.Drifted, 2)
	assert.Equal(t, 1, dr.Converged)

	code, out, _ = run(t, "schema", "drift", "--slug-prefix", prefix)
	assert.Equal(t, cli.ExitOK, code)
	assert.Regexp(t, a.Slug+`\s+`+a.Schema+`\s+drift\s+1\s+drop column events.extra`, out)
	assert.Regexp(t, b.Slug+`\s+`+b.Schema+`\s+drift\s+1\s+-`, out)

	code, out, _ = run(t, "schema", "diff", "--tenant", a.Slug)
	assert.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, "-- destructive (needs --allow-destructive): drop column events.extra")
	assert.Contains(t, out, `DROP COLUMN "extra"`)

	// Apply repairs b; a needs --allow-destructive: exit 1 and a hint.
	code, out, errOut = run(t, "schema", "apply", "--all", "--slug-prefix", prefix)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Regexp(t, `applied\s+`+b.Slug, out)
	assert.Regexp(t, `FAILED\s+`+a.Slug+`.*destructive change refused`, out)
	assert.Contains(t, out, "hint: 1 tenants need destructive changes")
	assert.Equal(t, "tenantctl: 1 of 3 tenants failed\n", errOut)

	code, out, errOut = run(t, "schema", "apply", "--tenant", a.Slug)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "use --allow-destructive")

	code, out, errOut = run(t, "schema", "apply", "--all", "--slug-prefix", prefix, "--allow-destructive")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Regexp(t, `applied\s+`+a.Slug, out)

	code, out, _ = run(t, "schema", "drift", "--slug-prefix", prefix)
	assert.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, "0 drifted")
}

func TestSchemaApplyLandlord(t *testing.T) {
	dbtest.SetEnv(t)
	dbtest.Landlord(t)
	code, out, errOut := run(t, "schema", "apply", "--landlord")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "landlord: up to date\n", out)
}

// copyFS writes the files of fsys under dir.
func copyFS(t *testing.T, fsys fs.FS, dir string) {
	t.Helper()
	require.NoError(t, fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, p), 0o755)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o600)
	}))
}
