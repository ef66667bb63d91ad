package schemaapply_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

// The application role holds what the server writes through the landlord
// pool and nothing else: it cannot delete tokens or rewrite them, change
// installs or the module catalog, or touch the tables only the admin role
// writes (the tenant catalog's own grants are tested in internal/catalog).
func TestAppRoleLandlordGrantsAreNarrow(t *testing.T) {
	dbtest.Landlord(t)
	ctx := context.Background()
	app := dbtest.AppPool(t, dbtest.Bouncer, 2)
	refused := []string{
		`DELETE FROM landlord.api_tokens WHERE false`,
		`UPDATE landlord.api_tokens SET token_hash = '\x00' WHERE false`,
		`UPDATE landlord.modules SET schema_files = '{}' WHERE false`,
		`INSERT INTO landlord.tenant_modules (tenant_id, module_name) SELECT gen_random_uuid(), 'x' WHERE false`,
		`SELECT count(*) FROM landlord.tenant_moves`,
		`SELECT count(*) FROM landlord.retired_copies`,
		`UPDATE landlord.retired_copies SET schema_name = 'landlord' WHERE false`,
		`SELECT count(*) FROM landlord.tenant_spares`,
		`UPDATE landlord.geo_administrative_units SET name = 'x' WHERE false`,
	}
	for _, q := range refused {
		_, err := app.Exec(ctx, q)
		assertDenied(t, err, q)
	}
	allowed := []string{
		`UPDATE landlord.api_tokens SET revoked_at = now(), last_used_at = now() WHERE false`,
		`INSERT INTO landlord.modules (name, display_name, version) SELECT 'x', 'x', '1' WHERE false`,
		`SELECT count(*) FROM landlord.tenant_modules`,
		`SELECT count(*) FROM landlord.geo_administrative_units`,
	}
	for _, q := range allowed {
		_, err := app.Exec(ctx, q)
		assert.NoError(t, err, q)
	}
}

// A privilege granted by hand (or left by an older version, which granted
// everything) is taken away by the next landlord apply.
func TestLandlordApplyRevokesExtraGrants(t *testing.T) {
	dbtest.Landlord(t)
	ctx := context.Background()
	admin := dbtest.AdminDB(t)
	_, err := admin.ExecContext(ctx, `GRANT DELETE ON landlord.retired_copies TO pd_app`)
	require.NoError(t, err)
	res, err := schemaapply.Apply(ctx, admin, schemaapply.Landlord("pd_app"), schemaapply.Options{})
	require.NoError(t, err)
	assert.Contains(t, res.Statements, `REVOKE ALL ON ALL TABLES IN SCHEMA landlord FROM "pd_app"`)
	var has bool
	require.NoError(t, admin.QueryRowContext(ctx, `SELECT has_table_privilege('pd_app', 'landlord.retired_copies', 'DELETE')`).Scan(&has))
	assert.False(t, has)

	res, err = schemaapply.Apply(ctx, admin, schemaapply.Landlord("pd_app"), schemaapply.Options{})
	require.NoError(t, err)
	assert.Empty(t, res.Statements, "converged: nothing runs")
}

func assertDenied(t *testing.T, err error, what string) {
	t.Helper()
	var pe *pgconn.PgError
	if assert.ErrorAs(t, err, &pe, what) {
		assert.Equal(t, "42501", pe.Code, "%s: %s", what, pe.Message)
	}
}
