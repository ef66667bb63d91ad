package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/cli"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func TestTenantMoveAndPurgeRetired(t *testing.T) {
	cfg := dbtest.SetEnv(t)
	dbtest.WithClusterB(t, &cfg)
	b := cfg.Clusters["b"]
	t.Setenv("PD_CLUSTERS__B__URL", b.URL)
	t.Setenv("PD_CLUSTERS__B__ADMIN_URL", b.AdminURL)
	t.Setenv("PD_CLUSTERS__B__PGBOUNCER", b.PgBouncer)
	tt := dbtest.Tenant(t, "climv")
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, b.AdminURL)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{tt.Schema}.Sanitize()+" WITH (FORCE)")
		_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{tt.Role}.Sanitize())
	})

	code, out, errOut := run(t, "tenant", "move", tt.Slug, "--to", "database", "--cluster", "b", "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var res struct {
		Tenant struct {
			Placement string `json:"placement"`
			Cluster   string `json:"cluster"`
		} `json:"tenant"`
		Mode    string `json:"mode"`
		Retired string `json:"retired_name"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Equal(t, "database", res.Tenant.Placement)
	assert.Equal(t, "b", res.Tenant.Cluster)
	assert.Equal(t, "logical", res.Mode, "the default mode")

	code, _, errOut = run(t, "tenant", "move", tt.Slug, "--to", "database", "--cluster", "b")
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, errOut, "already on that placement")

	code, out, errOut = run(t, "tenant", "list", "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	found := false
	for _, row := range list {
		if row["slug"] == tt.Slug {
			found = true
			assert.Equal(t, "b", row["cluster"])
			assert.Greater(t, row["size_bytes"], float64(0), "size measured on cluster b")
		}
	}
	assert.True(t, found)

	code, out, errOut = run(t, "tenant", "purge-retired", "--tenant", tt.Slug, "--dry-run")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "0 retired copies would drop", "grace period of 24h by default")
	code, out, errOut = run(t, "tenant", "purge-retired", "--tenant", tt.Slug, "--older-than", "0")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "1 retired copies dropped")
	assert.Contains(t, out, res.Retired)
}

func TestTenantMoveUsage(t *testing.T) {
	dbtest.SetEnv(t)
	for _, args := range [][]string{
		{"tenant", "move", "acme"},
		{"tenant", "move", "acme", "--to", "cloud"},
		{"tenant", "move", "acme", "--to", "database", "--cluster", "mars"},
		{"tenant", "move", "Bad-Slug", "--to", "database"},
		{"tenant", "move", "acme", "--to", "database", "--mode", "rsync"},
		{"tenant", "moves", "acme"},
		{"tenant", "purge-retired", "--older-than", "-1h"},
		{"tenant", "purge-retired", "--tenant", "x;y"},
	} {
		code, _, errOut := run(t, args...)
		assert.Equal(t, cli.ExitUsage, code, "%v: %s", args, errOut)
		assert.Equal(t, 2, strings.Count(errOut, "\n"), "%v: one clear line and the hint: %s", args, errOut)
	}
}

// An unfinished move (here an interrupted one, recorded and never rerun) is
// listed by tenant moves, in text and JSON; lock mode moves by --mode.
func TestTenantMovesAndLockMode(t *testing.T) {
	cfg := dbtest.SetEnv(t)
	dbtest.WithClusterB(t, &cfg)
	tt := dbtest.Tenant(t, "climvs")
	admin := dbtest.AdminDB(t)
	_, err := admin.Exec(`INSERT INTO landlord.tenant_moves (tenant_id, from_placement, from_cluster, from_database, from_schema,
		to_placement, to_cluster, to_database, to_schema, retired_name, mode, state, rows_copied)
		VALUES ($1, 'schema', 'main', current_database(), $2, 'database', 'main', $2, $2, $3, 'logical', 'streaming', 42)`,
		tt.ID, tt.Schema, dbtest.Name("pd_retired_")+"00") // pd_retired_<12 hex>, as the catalog's CHECK wants
	require.NoError(t, err)
	catalogtest.SetStatusQuietly(t, admin, tenant.MustSlug(tt.Slug), tenant.StatusMoving)

	code, out, errOut := run(t, "tenant", "moves")
	require.Equal(t, cli.ExitOK, code, errOut)
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, tt.Slug+" ") {
			line = l
		}
	}
	require.NotEmpty(t, line, "%s", out)
	assert.Regexp(t, `logical\s+schema on main\s+database on main\s+streaming\s+42\s+-\s+-`, line)

	code, out, errOut = run(t, "tenant", "moves", "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	found := false
	for _, m := range list {
		if m["slug"] == tt.Slug {
			found = true
			assert.Equal(t, "logical", m["mode"])
			assert.Equal(t, "streaming", m["state"])
			assert.EqualValues(t, 42, m["rows_copied"])
		}
	}
	assert.True(t, found, "%s", out)

	// The interrupted move is started over by the rerun, here in lock mode.
	code, out, errOut = run(t, "tenant", "move", tt.Slug, "--to", "database", "--mode", "lock")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Contains(t, out, "(lock mode) (finished an interrupted move)")
	t.Cleanup(func() {
		run(t, "tenant", "purge-retired", "--tenant", tt.Slug, "--older-than", "0")
		conn, err := pgx.Connect(context.Background(), cfg.Clusters["main"].AdminURL)
		if err == nil {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{tt.Schema}.Sanitize()+" WITH (FORCE)")
			conn.Close(context.Background())
		}
	})
	code, out, errOut = run(t, "tenant", "moves", "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.NotContains(t, out, tt.Slug)
}
