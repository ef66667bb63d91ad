package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/cli"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func TestTenantExportImport(t *testing.T) {
	dbtest.SetEnv(t)
	t.Setenv("PD_TENANT__WARM_POOL", "0")
	dbtest.Landlord(t)
	admin := dbtest.AdminDB(t)
	slug, copySlug := dbtest.Name("clx"), dbtest.Name("cly")
	dropTenantAfter(t, slug)
	dropTenantAfter(t, copySlug)
	code, _, errOut := run(t, "tenant", "create", slug, "--name", "Export Club")
	require.Equal(t, cli.ExitOK, code, errOut)
	id := catalogtest.ID(t, admin, tenant.MustSlug(slug))
	_, err := admin.Exec(`INSERT INTO `+pgx.Identifier{"tenant_" + slug}.Sanitize()+`.members (tenant_id, full_name)
		SELECT $1, 'm' || g FROM generate_series(1, 250) g`, id)
	require.NoError(t, err)

	dir := t.TempDir()
	file := filepath.Join(dir, slug+".tar.gz")
	code, out, errOut := run(t, "tenant", "export", slug, "-o", file)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "tenant "+slug+": 250 rows in 3 tables exported to "+file)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no .partial file left")

	code, _, errOut = run(t, "tenant", "export", slug, "-o", file)
	assert.Equal(t, cli.ExitUsage, code, "an existing file is not replaced without --force")
	assert.Contains(t, errOut, "--force")
	code, _, errOut = run(t, "tenant", "export", slug)
	assert.Equal(t, cli.ExitUsage, code)
	assert.Contains(t, errOut, "-o <file>")

	code, out, errOut = run(t, "tenant", "import", file, "--as", copySlug, "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var res struct {
		Tenant     tenant.Tenant `json:"tenant"`
		Rows       int64         `json:"rows"`
		SameSchema bool          `json:"same_schema"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Equal(t, copySlug, res.Tenant.Slug.String())
	assert.Equal(t, "Export Club", res.Tenant.Name)
	assert.Equal(t, int64(250), res.Rows)
	assert.True(t, res.SameSchema)
	var n int
	require.NoError(t, admin.QueryRow(`SELECT count(*) FROM `+pgx.Identifier{"tenant_" + copySlug}.Sanitize()+
		`.members WHERE tenant_id = $1`, res.Tenant.ID).Scan(&n))
	assert.Equal(t, 250, n)

	// Refusals: the slug is taken now; a truncated archive; no such file.
	code, _, errOut = run(t, "tenant", "import", file, "--as", copySlug)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "tenant already exists")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	cut := filepath.Join(dir, "cut.tar.gz")
	require.NoError(t, os.WriteFile(cut, b[:len(b)/2], 0o600))
	other := dbtest.Name("clz")
	dropTenantAfter(t, other)
	code, _, errOut = run(t, "tenant", "import", cut, "--as", other)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "invalid tenant archive")
	assert.False(t, catalogtest.Exists(t, admin, tenant.MustSlug(other)))
	code, _, _ = run(t, "tenant", "import", filepath.Join(dir, "missing.tar.gz"))
	assert.Equal(t, cli.ExitUsage, code)
}
