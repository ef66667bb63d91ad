package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/config"
)

func TestDefaultsAreValid(t *testing.T) {
	require.NoError(t, config.Defaults().Validate())
	c, err := config.Load(nil)
	require.NoError(t, err)
	assert.Equal(t, config.Defaults().HTTP.Addr, c.HTTP.Addr)
	assert.Equal(t, "1.18", c.Clusters["main"].PgBouncer)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "publicdigit.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.Flags(fs)
	require.NoError(t, fs.Parse(args))
	return fs
}

// Precedence: defaults < file < environment < flags.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
http:
  addr: 127.0.0.1:7001
log:
  level: debug
  format: json
pool:
  max_conns: 7
  max_conn_lifetime: 10m
clusters:
  main:
    pgbouncer: "1.21"
`)
	t.Setenv("PD_CONFIG", file)

	c, err := config.Load(flags(t))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7001", c.HTTP.Addr, "file over default")
	assert.Equal(t, int32(7), c.Pool.MaxConns)
	assert.Equal(t, 10*time.Minute, c.Pool.MaxConnLifetime)
	assert.Equal(t, "1.21", c.Clusters["main"].PgBouncer)
	assert.NotEmpty(t, c.Clusters["main"].URL, "a file entry merges with the default cluster")

	t.Setenv("PD_HTTP__ADDR", "127.0.0.1:7002")
	t.Setenv("PD_POOL__MAX_CONNS", "9")
	t.Setenv("PD_HTTP__TENANT_HEADER", "true")
	c, err = config.Load(flags(t))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7002", c.HTTP.Addr, "environment over file")
	assert.Equal(t, int32(9), c.Pool.MaxConns)
	assert.True(t, c.Tenant.Roles)
	assert.True(t, c.HTTP.TenantHeader)
	assert.Equal(t, "debug", c.Log.Level, "file value kept where env is silent")

	c, err = config.Load(flags(t, "--http.addr", "127.0.0.1:7003", "--log.level", "error"))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7003", c.HTTP.Addr, "flag over environment")
	assert.Equal(t, "error", c.Log.Level, "flag over file")
	assert.Equal(t, int32(9), c.Pool.MaxConns, "env kept where flags are silent")
}

func TestConfigFlagBeatsEnvFile(t *testing.T) {
	t.Setenv("PD_CONFIG", writeFile(t, "http:\n  addr: 127.0.0.1:7001\n"))
	other := writeFile(t, "http:\n  addr: 127.0.0.1:7009\n")
	c, err := config.Load(flags(t, "--config", other))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7009", c.HTTP.Addr)
}

func TestValidationNamesTheField(t *testing.T) {
	cases := []struct {
		env   map[string]string
		field string
	}{
		{map[string]string{"PD_POOL__MAX_CONNS": "0"}, "pool.max_conns"},
		{map[string]string{"PD_POOL__MIN_CONNS": "99"}, "pool.min_conns"},
		{map[string]string{"PD_LOG__LEVEL": "loud"}, "log.level"},
		{map[string]string{"PD_LOG__FORMAT": "xml"}, "log.format"},
		{map[string]string{"PD_HTTP__ADDR": "nowhere"}, "http.addr"},
		{map[string]string{"PD_LANDLORD__URL": "postgres://%zz"}, "landlord.url"},
		{map[string]string{"PD_ADMIN__URL": ""}, "admin.url"},
		{map[string]string{"PD_DEFAULT_CLUSTER": "mars"}, "default_cluster"},
		{map[string]string{"PD_CLUSTERS__MAIN__PGBOUNCER": "2.0"}, "clusters.main.pgbouncer"},
		{map[string]string{"PD_CLUSTERS__MAIN__LANES": "257"}, "clusters.main.lanes"},
		{map[string]string{"PD_CLUSTERS__MAIN__LANES": "17"}, "clusters.main.lanes"}, // more than pool.max_conns (16)
		{map[string]string{"PD_TENANT__STATEMENT_TIMEOUT": "-1s"}, "tenant.statement_timeout"},
		{map[string]string{"PD_HTTP__BODY_LIMIT": "10"}, "http.body_limit"},
		{map[string]string{"PD_HTTP__CURSOR_SECRET": "short-secret"}, "http.cursor_secret"},
		{map[string]string{"PD_TENANT__ROLES": "false"}, "tenant.roles"},
		{map[string]string{"PD_HTTP__METRICS_ADDR": "9090"}, "http.metrics_addr"},
		{map[string]string{"PD_HTTP__ADDR": "0.0.0.0:8080", "PD_HTTP__METRICS_ADDR": "127.0.0.1:8080"}, "http.metrics_addr"},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := config.Load(nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.field)
			assert.NotContains(t, err.Error(), "\n", "one line")
			assert.NotContains(t, err.Error(), "short-secret", "secrets are not echoed")
		})
	}
}

func TestBadDurationIsOneClearLine(t *testing.T) {
	t.Setenv("PD_POOL__MAX_CONN_LIFETIME", "forever")
	_, err := config.Load(nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "max_conn_lifetime")
	assert.NotContains(t, err.Error(), "\n")
}

func TestMissingFile(t *testing.T) {
	t.Setenv("PD_CONFIG", filepath.Join(t.TempDir(), "nope.yaml"))
	_, err := config.Load(nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nope.yaml")
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	c := config.Defaults()
	c.Pool.MaxConns = 0
	c.Log.Level = "x"
	err := c.Validate()
	var ve *config.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Problems, 2)
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:secret@h:1/d", "postgres://u:xxxxx@h:1/d"},
		{"postgres://u@h:1/d?sslmode=disable", "postgres://u@h:1/d?sslmode=disable"},
		{"postgres://u@h:1/d?password=secret&sslmode=disable", "postgres://u@h:1/d?password=xxxxx&sslmode=disable"},
		{"postgres://u@h:1/d?PASSWORD=secret", "postgres://u@h:1/d?PASSWORD=xxxxx"},
		{"postgres://u:secret@h:1/d?password=other", "postgres://u:xxxxx@h:1/d?password=xxxxx"},
		// Not a URL that parses: redacted by pattern.
		{"postgres://u:sec%zzret@h:1/d", "postgres://u:xxxxx@h:1/d"},
		{"postgres://u:p@ss@h:1/d?password=x y", "postgres://u:xxxxx@h:1/d?password=xxxxx"},
		{"postgres://u:sec ret@h:1/d%", "postgres://u:xxxxx@h:1/d%"},
		// Keyword/value strings.
		{"host=h port=1 user=u password=secret dbname=d", "host=h port=1 user=u password=xxxxx dbname=d"},
		{"host=h password = 'a secret with spaces' dbname=d", "host=h password = xxxxx dbname=d"},
		{`host=h password='it\'s' dbname=d`, "host=h password=xxxxx dbname=d"},
		{"Password=secret", "Password=xxxxx"},
		{"host=h dbname=d", "host=h dbname=d"},
	} {
		got := config.Redact(tc.in)
		assert.Equal(t, tc.want, got, tc.in)
		assert.NotContains(t, got, "secret", tc.in)
	}
}

func TestClusterFromEnvironmentGetsDefaults(t *testing.T) {
	t.Setenv("PD_CLUSTERS__B__URL", "postgres://pd_app:x@127.0.0.1:16433/publicdigit")
	t.Setenv("PD_CLUSTERS__B__ADMIN_URL", "postgres://pd_admin:x@127.0.0.1:15433/publicdigit")
	c, err := config.Load(nil)
	require.NoError(t, err)
	require.Contains(t, c.Clusters, "b")
	assert.Equal(t, config.DefaultPgBouncer, c.Clusters["b"].PgBouncer)
	assert.Equal(t, 1, c.Clusters["b"].Lanes)
	assert.Contains(t, c.Clusters, "main", "the default cluster stays")

	t.Setenv("PD_CLUSTERS__C__URL", "postgres://pd_app:x@127.0.0.1:1/publicdigit")
	_, err = config.Load(nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "clusters.c.admin_url: must be set")
}

func TestLaneURLs(t *testing.T) {
	cl := config.Cluster{URL: "postgres://pd_app:pw@127.0.0.1:16432/publicdigit?sslmode=disable", PgBouncer: "1.18", Lanes: 1}
	urls, err := cl.LaneURLs()
	require.NoError(t, err)
	assert.Equal(t, []string{cl.URL}, urls, "one lane: the URL itself")

	cl.Lanes = 3
	urls, err = cl.LaneURLs()
	require.NoError(t, err)
	assert.Equal(t, []string{
		"postgres://pd_app:pw@127.0.0.1:16432/publicdigit_lane0?sslmode=disable",
		"postgres://pd_app:pw@127.0.0.1:16432/publicdigit_lane1?sslmode=disable",
		"postgres://pd_app:pw@127.0.0.1:16432/publicdigit_lane2?sslmode=disable",
	}, urls, "behind PgBouncer: one database alias per lane")

	cl.PgBouncer = "none"
	urls, err = cl.LaneURLs()
	require.NoError(t, err)
	assert.Equal(t, []string{cl.URL, cl.URL, cl.URL}, urls, "direct: the database itself, a pool per lane")

	t.Setenv("PD_CLUSTERS__MAIN__LANES", "4")
	c, err := config.Load(nil)
	require.NoError(t, err)
	assert.Equal(t, 4, c.Clusters["main"].Lanes)
}

func TestMetricsAddrFromTheEnvironment(t *testing.T) {
	c, err := config.Load(nil)
	require.NoError(t, err)
	assert.Empty(t, c.HTTP.MetricsAddr, "by default /metrics is served on http.addr")
	t.Setenv("PD_HTTP__METRICS_ADDR", "127.0.0.1:9090")
	c, err = config.Load(nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9090", c.HTTP.MetricsAddr)
}
