package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/tenant"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/cli"
	"github.com/publicdigit/publicdigit/internal/dbtest"
)

// dropTenantAfter removes a tenant's row, schema and role at cleanup.
func dropTenantAfter(t *testing.T, slug string) {
	dbtest.RemoveAtCleanup(t, tenant.MustSlug(slug))
}

func TestTenantCommands(t *testing.T) {
	dbtest.SetEnv(t)
	t.Setenv("PD_TENANT__WARM_POOL", "0")
	dbtest.Landlord(t)
	slug := dbtest.Name("cli")
	dropTenantAfter(t, slug)

	code, out, errOut := run(t, "tenant", "create", slug, "--name", "CLI Club")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "tenant "+slug+": active (cold, ")

	code, _, errOut = run(t, "tenant", "create", slug)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "tenant already exists")
	assert.Equal(t, 1, strings.Count(errOut, "\n"), errOut)

	code, out, _ = run(t, "tenant", "list", "--json")
	require.Equal(t, cli.ExitOK, code)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	found := false
	for _, ten := range list {
		if ten["slug"] == slug {
			found = true
			assert.Equal(t, "CLI Club", ten["name"])
		}
	}
	assert.True(t, found)
	code, out, _ = run(t, "tenant", "list", "--status", "active")
	require.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, slug)
	assert.Contains(t, out, "PLACEMENT")

	code, out, _ = run(t, "tenant", "show", slug)
	require.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, "status:")
	assert.Contains(t, out, "tenant_"+slug)

	for _, step := range []struct{ op, want string }{
		{"suspend", "suspended"}, {"resume", "active"}, {"delete", "deleted"},
	} {
		code, out, errOut = run(t, "tenant", step.op, slug)
		require.Equal(t, cli.ExitOK, code, errOut)
		assert.Equal(t, "tenant "+slug+": "+step.want+"\n", out)
	}
	code, _, errOut = run(t, "tenant", "resume", slug)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "is deleted: cannot resume")

	code, _, errOut = run(t, "tenant", "purge", slug)
	assert.Equal(t, cli.ExitUsage, code, "purge needs --yes")
	assert.Contains(t, errOut, "--yes")
	code, out, errOut = run(t, "tenant", "purge", slug, "--yes")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "tenant "+slug+": purged\n", out)
	code, _, errOut = run(t, "tenant", "show", slug)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "tenant not found")

	// The operator's actions are in the audit trail, under the CLI's actor.
	t.Cleanup(func() {
		_, err := dbtest.AdminDB(t).ExecContext(context.Background(), `DELETE FROM landlord.audit_events WHERE tenant = $1`, slug)
		assert.NoError(t, err)
	})
	page, err := audit.New(dbtest.AppPool(t, dbtest.Bouncer, 2), zerolog.Nop()).List(context.Background(), audit.ListOptions{Tenant: slug})
	require.NoError(t, err)
	var got []string
	for i := len(page.Entries) - 1; i >= 0; i-- {
		e := page.Entries[i]
		got = append(got, string(e.Action)+" "+e.Outcome)
		assert.True(t, strings.HasPrefix(e.Actor, "tenantctl:"), e.Actor)
		assert.Nil(t, e.TokenID)
	}
	assert.Equal(t, []string{"tenant.create ok", "tenant.create error", "tenant.suspend ok", "tenant.resume ok",
		"tenant.delete ok", "tenant.resume error", "tenant.purge ok"}, got)
}

func TestTenantCommandUsageErrors(t *testing.T) {
	dbtest.SetEnv(t)
	for _, args := range [][]string{
		{"tenant", "create"},
		{"tenant", "create", "Bad-Slug"},
		{"tenant", "create", "a", "b"},
		{"tenant", "show", "x'; drop table y"},
		{"tenant", "suspend"},
		{"tenant", "list", "--status", "gone"},
		{"tenant", "purge", "api", "--yes"},
		{"token", "create"},
		{"token", "create", "--platform", "--tenant", "acme"},
		{"token", "create", "--tenant", "NOPE"},
		{"token", "revoke"},
		{"geo", "import"},
		{"geo", "import", "/no/such/file.csv"},
	} {
		code, _, errOut := run(t, args...)
		assert.Equal(t, cli.ExitUsage, code, "%v: %s", args, errOut)
	}
}

func TestTokenCommands(t *testing.T) {
	dbtest.SetEnv(t)
	t.Setenv("PD_TENANT__WARM_POOL", "0")
	dbtest.Landlord(t)
	slug := dbtest.Name("clit")
	dropTenantAfter(t, slug)
	code, _, errOut := run(t, "tenant", "create", slug)
	require.Equal(t, cli.ExitOK, code, errOut)

	code, out, errOut := run(t, "token", "create", "--tenant", slug, "--name", "app", "--expires", "24h")
	require.Equal(t, cli.ExitOK, code, errOut)
	secret := strings.TrimSpace(out)
	assert.True(t, strings.HasPrefix(secret, "pdt_"))
	assert.Equal(t, 1, strings.Count(out, "\n"), "stdout is the token alone")
	assert.Contains(t, errOut, "shown only once")

	code, out, _ = run(t, "token", "list", "--tenant", slug, "--json")
	require.Equal(t, cli.ExitOK, code)
	var toks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &toks))
	require.Len(t, toks, 1)
	assert.NotContains(t, out, secret)
	assert.Equal(t, "tenant", toks[0]["kind"])
	id := toks[0]["id"].(string)

	code, out, _ = run(t, "token", "list")
	require.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, id)

	code, out, errOut = run(t, "token", "revoke", id)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "revoked")
	code, out, _ = run(t, "token", "list", "--tenant", slug)
	require.Equal(t, cli.ExitOK, code)
	assert.NotContains(t, out, id)
	code, _, errOut = run(t, "token", "revoke", "00000000-0000-0000-0000-000000000000")
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "token not found")

	code, out, errOut = run(t, "token", "create", "--platform", "--name", "cli test")
	require.Equal(t, cli.ExitOK, code, errOut)
	code, _, _ = run(t, "token", "revoke", tokenID(t, strings.TrimSpace(out)))
	require.Equal(t, cli.ExitOK, code)

	code, _, errOut = run(t, "token", "create", "--tenant", dbtest.Name("ghost"))
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "tenant not found")
}

// tokenID finds a token's id by its secret's prefix and deletes it at cleanup.
func tokenID(t *testing.T, secret string) string {
	t.Helper()
	db := dbtest.AdminDB(t)
	var id string
	require.NoError(t, db.QueryRowContext(context.Background(),
		`SELECT id::text FROM landlord.api_tokens WHERE prefix = $1`, secret[:12]).Scan(&id))
	t.Cleanup(func() {
		_, _ = db.ExecContext(context.Background(), `DELETE FROM landlord.api_tokens WHERE id = $1`, id)
	})
	return id
}

func TestGeoImport(t *testing.T) {
	dbtest.SetEnv(t)
	dbtest.Landlord(t)
	p := dbtest.Name("C") + "-"
	t.Cleanup(func() {
		_, _ = dbtest.AdminDB(t).ExecContext(context.Background(),
			`DELETE FROM landlord.geo_administrative_units WHERE starts_with(code, $1)`, p)
	})
	dir := t.TempDir()
	good := filepath.Join(dir, "units.csv")
	require.NoError(t, os.WriteFile(good, []byte("code,name,level,parent_code\n"+
		p+"A,Alpha,country,\n"+p+"B,Beta,province,"+p+"A\n"), 0o600))
	code, out, errOut := run(t, "geo", "import", good)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "geo: 2 created, 0 updated, 0 unchanged\n", out)
	code, out, _ = run(t, "geo", "import", good)
	require.Equal(t, cli.ExitOK, code)
	assert.Equal(t, "geo: 0 created, 0 updated, 2 unchanged\n", out)

	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("code,name,level,parent_code\n"+p+"C,Gamma,ward,"+p+"NOPE\n"), 0o600))
	code, _, errOut = run(t, "geo", "import", bad)
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "line 2")
	assert.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
}

// seed demo loads the demo, twice without change, and keeps its token file.
// It writes the fixed demo names into the test database, so it removes them
// afterwards.
func TestSeedDemoIsIdempotent(t *testing.T) {
	dbtest.SetEnv(t)
	t.Setenv("PD_TENANT__WARM_POOL", "0")
	dbtest.Landlord(t)
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	for _, s := range []string{"nrna", "rotary"} {
		require.False(t, catalogtest.Exists(t, db, tenant.MustSlug(s)),
			"the demo tenant %s is left in the test database by an interrupted run; run make db-reset", s)
	}
	t.Cleanup(func() {
		_, _ = db.ExecContext(ctx, `DELETE FROM landlord.geo_administrative_units WHERE code = 'NP' OR starts_with(code, 'NP-')`)
		_, _ = db.ExecContext(ctx, `DELETE FROM landlord.api_tokens WHERE name = 'demo'`)
	})
	dropTenantAfter(t, "rotary")
	dropTenantAfter(t, "nrna")
	tokenFile := filepath.Join(t.TempDir(), "demo-token")

	code, out, errOut := run(t, "seed", "demo", "--token-file", tokenFile)
	require.Equal(t, cli.ExitOK, code, errOut)
	for _, want := range []string{"modules digital_cards, elections: present", "tenant nrna: provisioned",
		"tenant nrna: module elections installed", "geography: 17 created", "tenant nrna: 6 demo members with active cards (6 created)",
		"created (open)", "demo token: " + tokenFile + " (new)"} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "tenant rotary: module elections")
	secret, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	st, err := os.Stat(tokenFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	code, out, errOut = run(t, "seed", "demo", "--token-file", tokenFile)
	require.Equal(t, cli.ExitOK, code, errOut)
	for _, want := range []string{"modules digital_cards, elections: present", "tenant nrna: present", "tenant rotary: present",
		"geography: 0 created, 0 updated, 17 unchanged", "(0 created)", "present (open)", "(kept)"} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "installed")
	again, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	assert.Equal(t, secret, again, "a working token is kept")

	code, out, _ = run(t, "tenant", "show", "rotary")
	require.Equal(t, cli.ExitOK, code)
	assert.Regexp(t, `modules:\s+digital_cards\n`, out)
	code, out, _ = run(t, "election", "list", "nrna")
	require.Equal(t, cli.ExitOK, code)
	assert.Regexp(t, `open\s+\S+\s+\S+\s+-\s+NRNA Executive Committee 2026`, out)

	// A revoked token is replaced.
	code, _, _ = run(t, "token", "revoke", tokenID(t, strings.TrimSpace(string(secret))))
	require.Equal(t, cli.ExitOK, code)
	code, out, _ = run(t, "seed", "demo", "--token-file", tokenFile)
	require.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, "(new)")
}

func TestLimitsAndAuditCommands(t *testing.T) {
	dbtest.SetEnv(t)
	t.Setenv("PD_TENANT__WARM_POOL", "0")
	t.Setenv("PD_TENANT__MAX_CONCURRENT_REQUESTS", "8")
	t.Setenv("PD_TENANT__STATEMENT_TIMEOUT", "5s")
	dbtest.Landlord(t)
	slug := dbtest.Name("clilim")
	dropTenantAfter(t, slug)
	t.Cleanup(func() {
		_, err := dbtest.AdminDB(t).ExecContext(context.Background(), `DELETE FROM landlord.audit_events WHERE tenant = $1`, slug)
		assert.NoError(t, err)
	})
	code, _, errOut := run(t, "tenant", "create", slug)
	require.Equal(t, cli.ExitOK, code, errOut)

	code, out, errOut := run(t, "tenant", "limits", slug)
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "tenant "+slug+": max_concurrent_requests 8 (default), statement_timeout 5s (default)\n", out)
	code, out, errOut = run(t, "tenant", "limits", slug, "--max-concurrent", "3", "--statement-timeout", "2s")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "tenant "+slug+": max_concurrent_requests 3, statement_timeout 2s\n", out)
	code, out, errOut = run(t, "tenant", "limits", slug, "--max-concurrent", "default")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "tenant "+slug+": max_concurrent_requests 8 (default), statement_timeout 2s\n", out)
	for _, bad := range [][]string{{"--max-concurrent", "0"}, {"--max-concurrent", "3x"}, {"--statement-timeout", "-1s"},
		{"--statement-timeout", "11m"}} {
		code, _, errOut = run(t, append([]string{"tenant", "limits", slug}, bad...)...)
		assert.Equal(t, cli.ExitUsage, code, "%v: %s", bad, errOut)
	}

	code, out, errOut = run(t, "audit", "list", "--tenant", slug)
	require.Equal(t, cli.ExitOK, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out) // header, two limit changes, the create
	assert.Contains(t, lines[1], "tenant.limits")
	assert.Contains(t, lines[3], "tenant.create")
	assert.Contains(t, lines[3], "tenantctl:")
	code, out, errOut = run(t, "audit", "list", "--tenant", slug, "--action", "tenant.create", "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var entries []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &entries))
	require.Len(t, entries, 1)
	assert.Equal(t, "ok", entries[0]["outcome"])
	code, _, _ = run(t, "audit", "list", "--action", "tenant.explode")
	assert.Equal(t, cli.ExitUsage, code)
}
