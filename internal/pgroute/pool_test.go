package pgroute_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
)

func TestLandlordPoolModes(t *testing.T) {
	assert.Equal(t, pgx.QueryExecModeExec, pgroute.LandlordExecMode("1.18"))
	assert.Equal(t, pgx.QueryExecModeCacheStatement, pgroute.LandlordExecMode("1.21"))
	assert.Equal(t, pgx.QueryExecModeCacheStatement, pgroute.LandlordExecMode("none"))

	dbtest.Landlord(t)
	ctx := context.Background()
	for _, tc := range []struct {
		bouncer string
		path    dbtest.Path
	}{{"1.18", dbtest.Bouncer}, {"none", dbtest.Direct}} {
		pool, err := pgroute.NewPool(ctx, dbtest.AppURL(t, tc.path), pgroute.PoolConfig{MaxConns: 2},
			pgroute.LandlordExecMode(tc.bouncer), nil)
		require.NoError(t, err)
		for i := 0; i < 3; i++ { // the cached statement is reused
			var n int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM landlord.modules WHERE name = $1`, "x").Scan(&n), tc.bouncer)
		}
		pool.Close()
	}
}

func TestSlowStatementsAreLoggedWithTenant(t *testing.T) {
	tenants := newTenants(t, 1)
	var buf bytes.Buffer
	cfg := routerConfig(t, dbtest.Bouncer)
	cfg.Tenant.SlowStatement = 50 * time.Millisecond
	ctx := context.Background()
	r := newRouter(t, cfg, pgroute.Options{Log: zerolog.New(&syncWriter{w: &buf})})
	require.NoError(t, r.Do(ctx, tenants[0].slug, func(b *pgroute.Batch) error {
		b.Queue(`SELECT pg_sleep(0.1)`)
		return nil
	}))
	require.NoError(t, r.Do(ctx, tenants[0].slug, func(b *pgroute.Batch) error {
		b.Queue(`SELECT 1`)
		return nil
	}))
	out := buf.String()
	assert.Contains(t, out, `"message":"slow statement"`)
	assert.Contains(t, out, `"tenant":"`+tenants[0].slug.String()+`"`)
	assert.Contains(t, out, `pg_sleep`)
	assert.Equal(t, 1, bytes.Count(buf.Bytes(), []byte("slow statement")), "fast statements are not logged")
}

type syncWriter struct {
	mu chan struct{}
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) { return s.w.Write(p) }
