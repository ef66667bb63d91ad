package transfer

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
)

// The checksum hashes rows with their types' hash functions, falls back to
// their text for a type without one (json), counts the tenant's own id as
// NULL whatever it is, and changes with any value.
func TestChecksumMethods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.AdminURL(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	schema := dbtest.Schema(t, dbtest.AdminDB(t), "pd_cks_")
	s := pgx.Identifier{schema}.Sanitize()
	own, other := uuid.New(), uuid.New()
	for _, q := range []string{
		`CREATE TABLE ` + s + `.a (doc jsonb, id int, tenant_id uuid)`,
		`CREATE TABLE ` + s + `.b (doc json, id int, tenant_id uuid)`,
	} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err)
	}
	fill := func(tenantID uuid.UUID, doc string) {
		for _, tb := range []string{"a", "b"} {
			_, err := conn.Exec(ctx, `TRUNCATE `+s+`.`+tb)
			require.NoError(t, err)
			_, err = conn.Exec(ctx, `INSERT INTO `+s+`.`+tb+` SELECT $2::jsonb, g, $1 FROM generate_series(1, 50) g`, tenantID, doc)
			require.NoError(t, err)
		}
	}
	cols := []Column{{"doc", "jsonb"}, {"id", "integer"}, {"tenant_id", "uuid"}}
	sums := func(tenantID uuid.UUID) (string, string) {
		_, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
		require.NoError(t, err)
		defer conn.Exec(ctx, "ROLLBACK") //nolint:errcheck // read only
		_, err = conn.Exec(ctx, sessionFormats)
		require.NoError(t, err)
		ma, na, sa, err := exportChecksum(ctx, conn, schema, "a", cols, tenantID)
		require.NoError(t, err)
		cols[0].Type = "json"
		mb, nb, sb, err := exportChecksum(ctx, conn, schema, "b", cols, tenantID)
		cols[0].Type = "jsonb"
		require.NoError(t, err, "the failed record hash did not spoil the snapshot")
		assert.Equal(t, checksumRecord, ma)
		assert.Equal(t, checksumText, mb, "json has no hash function")
		assert.Equal(t, int64(50), na)
		assert.Equal(t, int64(50), nb)
		return sa, sb
	}
	fill(own, `{"k": 1}`)
	a1, b1 := sums(own)
	fill(other, `{"k": 1}`)
	a2, b2 := sums(other)
	assert.Equal(t, a1, a2, "the tenant's own id counts alike whatever it is")
	assert.Equal(t, b1, b2)
	a3, b3 := sums(own) // rows of another tenant than own
	assert.NotEqual(t, a1, a3)
	assert.NotEqual(t, b1, b3)
	fill(own, `{"k": 2}`)
	a4, b4 := sums(own)
	assert.NotEqual(t, a1, a4, "a changed value changes the checksum")
	assert.NotEqual(t, b1, b4)
}
