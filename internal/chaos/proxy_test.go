package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/chaos"
	"github.com/publicdigit/publicdigit/internal/dbtest"
)

func TestProxyConnects(t *testing.T) {
	p, err := chaos.NewProxy("127.0.0.1:0", "127.0.0.1:16432")
	require.NoError(t, err)
	defer p.Close()
	url := dbtest.WithPort(t, dbtest.AppURL(t, dbtest.Bouncer), p.Port())
	for i := 0; i < 50; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cfg, err := pgx.ParseConfig(url)
		require.NoError(t, err)
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
		c, err := pgx.ConnectConfig(ctx, cfg)
		require.NoError(t, err, i)
		var n int
		require.NoError(t, c.QueryRow(ctx, "SELECT 1").Scan(&n))
		c.Close(ctx)
		cancel()
	}
}
