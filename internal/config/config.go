// Package config holds publicdigit's one typed configuration struct and loads
// it with koanf: built-in defaults, then an optional YAML file, then the
// environment (PD_ prefix), then command-line flags, then validation whose
// messages name the offending field.
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// Config is the whole configuration of the server, the CLI and the harness.
type Config struct {
	// Landlord is the pooled connection to the landlord catalog (through PgBouncer).
	Landlord Landlord `koanf:"landlord"`
	// Admin is the direct connection (never through PgBouncer) used for DDL,
	// provisioning, schema applies and moves, on the landlord's database.
	Admin Conn `koanf:"admin"`
	// DefaultCluster names the cluster that new tenants go to.
	DefaultCluster string `koanf:"default_cluster"`
	// Clusters are the PostgreSQL servers (each with its PgBouncer) that hold tenants.
	Clusters map[string]Cluster `koanf:"clusters"`
	// Pool sizes and lifetimes of the shared tenant pools.
	Pool Pool `koanf:"pool"`
	// Tenant holds the per-request tenant binding settings.
	Tenant Tenant `koanf:"tenant"`
	// HTTP is the API server.
	HTTP HTTP `koanf:"http"`
	// Log configures zerolog.
	Log Log `koanf:"log"`
}

// Conn is one PostgreSQL connection string.
type Conn struct {
	URL string `koanf:"url"`
}

// Landlord is how the application reaches the landlord catalog.
type Landlord struct {
	// URL is the pooled connection (application role, through PgBouncer).
	URL string `koanf:"url"`
	// ListenURL is a direct connection (never through PgBouncer: LISTEN is a
	// session feature) on which each server process hears tenant changes
	// (moves, suspensions) and drops its cached placements at once. Empty
	// turns it off; placements then refresh after tenant.cache_ttl.
	ListenURL string `koanf:"listen_url"`
}

// Cluster is one PostgreSQL server and the PgBouncer in front of it.
type Cluster struct {
	// URL is the shared tenant pool: the application role through PgBouncer,
	// on the cluster's platform database.
	URL string `koanf:"url"`
	// AdminURL is a direct connection as the owner/admin role to the same database.
	AdminURL string `koanf:"admin_url"`
	// PgBouncer is the version of the PgBouncer in front: "1.18" (no prepared
	// statements across transactions) or "1.21" (max_prepared_statements set),
	// or "none" when URL goes straight to PostgreSQL.
	PgBouncer string `koanf:"pgbouncer"`
	// Lanes splits the shared tenant pool into this many pools (default 1),
	// each with pool.max_conns/lanes connections; a tenant always uses lane
	// pgroute.LaneOf(slug, lanes). Behind PgBouncer, lane i is the database
	// alias <database>_lane<i> of URL's database, each with its own server
	// pool (pool_size), so that a PostgreSQL backend only ever serves the
	// tenants of one lane and caches the catalog entries of those only
	// (~110 KB a tenant, kept for the connection's life). See docs/SCALE.md.
	Lanes int `koanf:"lanes"`
}

// MaxLanes bounds clusters.<name>.lanes.
const MaxLanes = 256

// LaneURLs are the URLs of the cluster's lanes: URL itself when there is
// one lane; else, behind PgBouncer, URL with the database <database>_lane<i>
// (PgBouncer aliases of the same database), or, direct to PostgreSQL
// (pgbouncer "none"), URL once per lane (each lane's pool has its own
// connections anyway).
func (c Cluster) LaneURLs() ([]string, error) {
	if c.Lanes <= 1 {
		return []string{c.URL}, nil
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster url: %w", err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	out := make([]string, c.Lanes)
	for i := range out {
		if c.PgBouncer == "none" {
			out[i] = c.URL
			continue
		}
		lu := *u
		lu.Path = "/" + db + "_lane" + strconv.Itoa(i)
		out[i] = lu.String()
	}
	return out, nil
}

// Pool sizes the pgx pools that serve tenants.
type Pool struct {
	MaxConns          int32         `koanf:"max_conns"`
	MinConns          int32         `koanf:"min_conns"`
	MaxConnLifetime   time.Duration `koanf:"max_conn_lifetime"`
	MaxConnIdleTime   time.Duration `koanf:"max_conn_idle_time"`
	HealthCheckPeriod time.Duration `koanf:"health_check_period"`
	ApplicationName   string        `koanf:"application_name"`
	// DedicatedMaxPools caps the lazily opened pools of dedicated tenant databases.
	DedicatedMaxPools int `koanf:"dedicated_max_pools"`
	// DedicatedMaxConns sizes each dedicated pool.
	DedicatedMaxConns int32 `koanf:"dedicated_max_conns"`
	// DedicatedIdleClose closes a dedicated pool unused for this long.
	DedicatedIdleClose time.Duration `koanf:"dedicated_idle_close"`
}

// Tenant holds how a request binds its tenant.
type Tenant struct {
	// StatementTimeout is the default per-statement limit set in every tenant transaction.
	StatementTimeout time.Duration `koanf:"statement_timeout"`
	// Roles makes each transaction assume the tenant's own role. It must be
	// true: the application role is NOINHERIT, so the tenant's role is the
	// only way to its tables (kept as a key so that a false one is refused
	// with a reason rather than ignored).
	Roles bool `koanf:"roles"`
	// AppRole is the application role granted every tenant role.
	AppRole string `koanf:"app_role"`
	// SlowStatement logs statements slower than this (0 turns the log off).
	SlowStatement time.Duration `koanf:"slow_statement"`
	// CacheTTL bounds how long a resolved placement is trusted without re-reading the catalog.
	CacheTTL time.Duration `koanf:"cache_ttl"`
	// ListenCacheTTL replaces CacheTTL for placements resolved while the
	// change listener (landlord.listen_url) is connected, as long as it
	// stays connected: every change the product makes is announced and
	// drops the placement at once, so this only bounds changes made around
	// the product. With traffic spread over thousands of tenants, most of
	// them are requested less often than CacheTTL (see docs/SCALE.md).
	ListenCacheTTL time.Duration `koanf:"listen_cache_ttl"`
	// WarmPool is the number of pre-built spare tenant schemas kept ready.
	WarmPool int `koanf:"warm_pool"`
	// MaxConcurrentRequests is the default cap on one tenant's API requests
	// in flight in a server process (a tenant's own cap, in the catalog,
	// overrides it): a flooding tenant holds at most that many of the
	// shared pool's connections.
	MaxConcurrentRequests int `koanf:"max_concurrent_requests"`
	// QueueWait is how long a request over its tenant's cap waits for a
	// slot before it is refused with 429 (0: refused at once).
	QueueWait time.Duration `koanf:"queue_wait"`
	// MaxQueuedRequests bounds a tenant's requests waiting at once (more
	// are refused at once); 0 means 4 × the tenant's cap.
	MaxQueuedRequests int `koanf:"max_queued_requests"`
	// LockWait bounds how long a tenant operation (provisioning, a module
	// change, a move, a purge) waits for another one on the same tenant, or
	// for a lock connection, before it fails with tenant_busy (503).
	LockWait time.Duration `koanf:"lock_wait"`
}

// HTTP configures the API server.
type HTTP struct {
	Addr string `koanf:"addr"`
	// MetricsAddr, when set, is where /metrics is served, and only there
	// (not next to the API on Addr): a private address for Prometheus.
	MetricsAddr     string        `koanf:"metrics_addr"`
	BodyLimit       int           `koanf:"body_limit"`
	TenantHeader    bool          `koanf:"tenant_header"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	WriteWait       time.Duration `koanf:"write_wait"`
	// RequestTimeout is the deadline of every request but changes through
	// the platform routes, and of every token lookup: waiting for a pool
	// connection, the lookup and the tenant's statements all end by then
	// (503 timeout + Retry-After).
	RequestTimeout time.Duration `koanf:"request_timeout"`
	// PlatformTimeout is the deadline of changes (POST, PATCH, DELETE)
	// through the platform routes (/api/v1/platform/…), which provision
	// and install modules.
	PlatformTimeout time.Duration `koanf:"platform_timeout"`
	// CursorSecret signs the tenant API's pagination cursors (HMAC-SHA256):
	// at least 32 bytes, the same in every server process. Empty: a random
	// secret per process (cursors then break on restart and across processes).
	CursorSecret string `koanf:"cursor_secret"`
	// AuthFailuresPerMinute is how many requests with a token the catalog
	// refuses one client address may send per minute; past it the address
	// gets 429 without a catalog lookup until its minute ends. 0: no limit.
	AuthFailuresPerMinute int `koanf:"auth_failures_per_minute"`
}

// Log configures logging.
type Log struct {
	// Level is one of trace, debug, info, warn, error.
	Level string `koanf:"level"`
	// Format is auto (console on a terminal, JSON otherwise), json or console.
	Format string `koanf:"format"`
}

// DefaultPgBouncer is the PgBouncer version assumed in front of a cluster
// whose config does not say.
const DefaultPgBouncer = "1.18"

// The local development defaults match deploy/local (make db-up). They
// carry no password: the local ones are in the password file that db-up
// writes (the Makefile sets PGPASSFILE); a deployment gives its own URLs,
// with the password in the URL (PD_ADMIN__URL=…), PGPASSWORD or a
// password file.
const (
	localApp       = "postgres://pd_app@127.0.0.1:16432/publicdigit?sslmode=disable"
	localAdmin     = "postgres://pd_admin@127.0.0.1:15432/publicdigit?sslmode=disable"
	localAppDirect = "postgres://pd_app@127.0.0.1:15432/publicdigit?sslmode=disable"
)

// Defaults returns the built-in configuration: everything on the local
// PostgreSQL and PgBouncer that `make db-up` starts.
func Defaults() Config {
	return Config{
		Landlord:       Landlord{URL: localApp, ListenURL: localAppDirect},
		Admin:          Conn{URL: localAdmin},
		DefaultCluster: "main",
		Clusters: map[string]Cluster{
			"main": {URL: localApp, AdminURL: localAdmin, PgBouncer: "1.18", Lanes: 1},
		},
		Pool: Pool{
			MaxConns:           16,
			MinConns:           0,
			MaxConnLifetime:    30 * time.Minute,
			MaxConnIdleTime:    5 * time.Minute,
			HealthCheckPeriod:  time.Minute,
			ApplicationName:    "publicdigit",
			DedicatedMaxPools:  32,
			DedicatedMaxConns:  4,
			DedicatedIdleClose: 5 * time.Minute,
		},
		Tenant: Tenant{
			StatementTimeout: 5 * time.Second,
			Roles:            true,
			AppRole:          "pd_app",
			SlowStatement:    200 * time.Millisecond,
			CacheTTL:         30 * time.Second,
			ListenCacheTTL:   10 * time.Minute,
			WarmPool:         4,
			LockWait:         30 * time.Second,

			MaxConcurrentRequests: 8,
			QueueWait:             time.Second,
			MaxQueuedRequests:     0,
		},
		HTTP: HTTP{
			Addr:            "127.0.0.1:8080",
			MetricsAddr:     "",
			BodyLimit:       64 * 1024,
			TenantHeader:    false,
			ShutdownTimeout: 10 * time.Second,
			WriteWait:       2 * time.Second,
			RequestTimeout:  10 * time.Second,
			PlatformTimeout: 2 * time.Minute,
			CursorSecret:    "",

			AuthFailuresPerMinute: 30,
		},
		Log: Log{Level: "info", Format: "auto"},
	}
}

// MinCursorSecret is the shortest accepted http.cursor_secret, in bytes.
const MinCursorSecret = 32

// EnvPrefix prefixes every environment variable; a double underscore
// separates levels: PD_POOL__MAX_CONNS=32, PD_CLUSTERS__MAIN__URL=….
const EnvPrefix = "PD_"

// Flags registers the common flags on fs. Flag names are config keys, so
// --http.addr overrides http.addr; --config names the YAML file.
func Flags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.String("config", "", "YAML config file (overrides defaults; environment and flags override it); also PD_CONFIG")
	fs.String("landlord.url", "", "landlord catalog connection, through PgBouncer (default "+Redact(d.Landlord.URL)+")")
	fs.String("admin.url", "", "direct admin connection for DDL, provisioning and moves (default "+Redact(d.Admin.URL)+")")
	fs.String("http.addr", "", "HTTP listen address (default "+d.HTTP.Addr+")")
	fs.String("log.level", "", "log level: trace, debug, info, warn, error (default "+d.Log.Level+")")
	fs.String("log.format", "", "log format: auto, json, console (default "+d.Log.Format+")")
}

// Load builds the configuration: defaults < file < environment < flags.
// fs may be nil; only flags the user set override earlier layers.
func Load(fs *pflag.FlagSet) (Config, error) {
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(defaultsMap(), "."), nil); err != nil {
		return Config{}, fmt.Errorf("config: defaults: %w", err)
	}

	path := os.Getenv(EnvPrefix + "CONFIG")
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Changed {
			path = f.Value.String()
		}
	}
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config: file %s: %w", path, err)
		}
	}

	envProvider := env.Provider(".", env.Opt{
		Prefix: EnvPrefix,
		TransformFunc: func(key, value string) (string, any) {
			key = strings.TrimPrefix(key, EnvPrefix)
			if key == "CONFIG" {
				return "", nil
			}
			return strings.ToLower(strings.ReplaceAll(key, "__", ".")), value
		},
	})
	if err := k.Load(envProvider, nil); err != nil {
		return Config{}, fmt.Errorf("config: environment: %w", err)
	}

	if fs != nil {
		if err := k.Load(posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
			if !f.Changed || f.Name == "config" {
				return "", nil
			}
			return f.Name, posflag.FlagVal(fs, f)
		}), nil); err != nil {
			return Config{}, fmt.Errorf("config: flags: %w", err)
		}
	}

	var c Config
	if err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return Config{}, fmt.Errorf("config: %s", oneLine(err.Error()))
	}
	// A cluster added by a file or the environment need not repeat the
	// PgBouncer version of the local setup.
	for name, cl := range c.Clusters {
		if cl.PgBouncer == "" {
			cl.PgBouncer = DefaultPgBouncer
		}
		if cl.Lanes == 0 {
			cl.Lanes = 1
		}
		c.Clusters[name] = cl
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// defaultsMap flattens Defaults() into koanf keys.
func defaultsMap() map[string]any {
	d := Defaults()
	m := map[string]any{
		"landlord.url":                   d.Landlord.URL,
		"landlord.listen_url":            d.Landlord.ListenURL,
		"admin.url":                      d.Admin.URL,
		"default_cluster":                d.DefaultCluster,
		"pool.max_conns":                 d.Pool.MaxConns,
		"pool.min_conns":                 d.Pool.MinConns,
		"pool.max_conn_lifetime":         d.Pool.MaxConnLifetime.String(),
		"pool.max_conn_idle_time":        d.Pool.MaxConnIdleTime.String(),
		"pool.health_check_period":       d.Pool.HealthCheckPeriod.String(),
		"pool.application_name":          d.Pool.ApplicationName,
		"pool.dedicated_max_pools":       d.Pool.DedicatedMaxPools,
		"pool.dedicated_max_conns":       d.Pool.DedicatedMaxConns,
		"pool.dedicated_idle_close":      d.Pool.DedicatedIdleClose.String(),
		"tenant.statement_timeout":       d.Tenant.StatementTimeout.String(),
		"tenant.roles":                   d.Tenant.Roles,
		"tenant.app_role":                d.Tenant.AppRole,
		"tenant.slow_statement":          d.Tenant.SlowStatement.String(),
		"tenant.cache_ttl":               d.Tenant.CacheTTL.String(),
		"tenant.listen_cache_ttl":        d.Tenant.ListenCacheTTL.String(),
		"tenant.warm_pool":               d.Tenant.WarmPool,
		"tenant.lock_wait":               d.Tenant.LockWait.String(),
		"tenant.max_concurrent_requests": d.Tenant.MaxConcurrentRequests,
		"tenant.queue_wait":              d.Tenant.QueueWait.String(),
		"tenant.max_queued_requests":     d.Tenant.MaxQueuedRequests,
		"http.addr":                      d.HTTP.Addr,
		"http.metrics_addr":              d.HTTP.MetricsAddr,
		"http.body_limit":                d.HTTP.BodyLimit,
		"http.tenant_header":             d.HTTP.TenantHeader,
		"http.shutdown_timeout":          d.HTTP.ShutdownTimeout.String(),
		"http.write_wait":                d.HTTP.WriteWait.String(),
		"http.request_timeout":           d.HTTP.RequestTimeout.String(),
		"http.platform_timeout":          d.HTTP.PlatformTimeout.String(),
		"http.cursor_secret":             d.HTTP.CursorSecret,
		"http.auth_failures_per_minute":  d.HTTP.AuthFailuresPerMinute,
		"log.level":                      d.Log.Level,
		"log.format":                     d.Log.Format,
	}
	for name, c := range d.Clusters {
		m["clusters."+name+".url"] = c.URL
		m["clusters."+name+".admin_url"] = c.AdminURL
		m["clusters."+name+".pgbouncer"] = c.PgBouncer
		m["clusters."+name+".lanes"] = c.Lanes
	}
	return m
}

// Validate checks every field and reports all problems at once, each naming its field.
func (c Config) Validate() error {
	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	checkURL := func(field, raw string) {
		if raw == "" {
			bad(field, "must be set")
			return
		}
		if _, err := pgxpool.ParseConfig(raw); err != nil {
			bad(field, "not a valid PostgreSQL connection string")
		}
	}
	checkURL("landlord.url", c.Landlord.URL)
	if c.Landlord.ListenURL != "" {
		checkURL("landlord.listen_url", c.Landlord.ListenURL)
	}
	checkURL("admin.url", c.Admin.URL)
	if len(c.Clusters) == 0 {
		bad("clusters", "at least one cluster is required")
	}
	names := make([]string, 0, len(c.Clusters))
	for name := range c.Clusters {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cl := c.Clusters[name]
		f := "clusters." + name
		if !validClusterName(name) {
			bad(f, "cluster names use a-z, 0-9 and _ (got %q)", name)
		}
		checkURL(f+".url", cl.URL)
		checkURL(f+".admin_url", cl.AdminURL)
		switch cl.PgBouncer {
		case "1.18", "1.21", "none":
		default:
			bad(f+".pgbouncer", `must be "1.18", "1.21" or "none" (got %q)`, cl.PgBouncer)
		}
		if cl.Lanes < 1 || cl.Lanes > MaxLanes {
			bad(f+".lanes", "must be between 1 and %d (got %d)", MaxLanes, cl.Lanes)
		} else if c.Pool.MaxConns >= 1 && int32(cl.Lanes) > c.Pool.MaxConns {
			bad(f+".lanes", "must not exceed pool.max_conns (%d): each lane needs a connection (got %d)", c.Pool.MaxConns, cl.Lanes)
		}
	}
	if _, ok := c.Clusters[c.DefaultCluster]; !ok && len(c.Clusters) > 0 {
		bad("default_cluster", "no cluster named %q (have %s)", c.DefaultCluster, strings.Join(names, ", "))
	}
	if c.Pool.MaxConns < 1 {
		bad("pool.max_conns", "must be at least 1 (got %d)", c.Pool.MaxConns)
	}
	if c.Pool.MinConns < 0 || c.Pool.MinConns > c.Pool.MaxConns {
		bad("pool.min_conns", "must be between 0 and pool.max_conns (got %d)", c.Pool.MinConns)
	}
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			bad(field, "must be a positive duration such as 30s or 5m (got %s)", d)
		}
	}
	positive("pool.max_conn_lifetime", c.Pool.MaxConnLifetime)
	positive("pool.max_conn_idle_time", c.Pool.MaxConnIdleTime)
	positive("pool.health_check_period", c.Pool.HealthCheckPeriod)
	positive("pool.dedicated_idle_close", c.Pool.DedicatedIdleClose)
	positive("tenant.statement_timeout", c.Tenant.StatementTimeout)
	positive("tenant.cache_ttl", c.Tenant.CacheTTL)
	positive("tenant.listen_cache_ttl", c.Tenant.ListenCacheTTL)
	positive("tenant.lock_wait", c.Tenant.LockWait)
	positive("http.shutdown_timeout", c.HTTP.ShutdownTimeout)
	positive("http.write_wait", c.HTTP.WriteWait)
	positive("http.request_timeout", c.HTTP.RequestTimeout)
	positive("http.platform_timeout", c.HTTP.PlatformTimeout)
	if c.Tenant.MaxConcurrentRequests < 1 || c.Tenant.MaxConcurrentRequests > 10_000 {
		bad("tenant.max_concurrent_requests", "must be between 1 and 10000 (got %d)", c.Tenant.MaxConcurrentRequests)
	}
	if c.Tenant.QueueWait < 0 {
		bad("tenant.queue_wait", "must not be negative (got %s; 0 refuses at once)", c.Tenant.QueueWait)
	}
	if c.Tenant.MaxQueuedRequests < 0 {
		bad("tenant.max_queued_requests", "must not be negative (got %d; 0 means 4 × the tenant's cap)", c.Tenant.MaxQueuedRequests)
	}
	if c.Tenant.StatementTimeout > 10*time.Minute {
		bad("tenant.statement_timeout", "must be at most 10m (got %s)", c.Tenant.StatementTimeout)
	}
	if c.Tenant.SlowStatement < 0 {
		bad("tenant.slow_statement", "must not be negative (got %s)", c.Tenant.SlowStatement)
	}
	if c.Pool.DedicatedMaxPools < 1 {
		bad("pool.dedicated_max_pools", "must be at least 1 (got %d)", c.Pool.DedicatedMaxPools)
	}
	if c.Pool.DedicatedMaxConns < 1 {
		bad("pool.dedicated_max_conns", "must be at least 1 (got %d)", c.Pool.DedicatedMaxConns)
	}
	if c.Tenant.WarmPool < 0 || c.Tenant.WarmPool > 1000 {
		bad("tenant.warm_pool", "must be between 0 and 1000 (got %d)", c.Tenant.WarmPool)
	}
	if !c.Tenant.Roles {
		bad("tenant.roles", "must be true: the application role is NOINHERIT and reaches a tenant's tables only through the tenant's own role")
	}
	if c.Tenant.AppRole == "" {
		bad("tenant.app_role", "must be set")
	}
	if _, port, err := net.SplitHostPort(c.HTTP.Addr); err != nil || port == "" {
		bad("http.addr", "must be host:port such as 127.0.0.1:8080 (got %q)", c.HTTP.Addr)
	}
	if c.HTTP.AuthFailuresPerMinute < 0 {
		bad("http.auth_failures_per_minute", "must not be negative (got %d; 0 turns the limit off)", c.HTTP.AuthFailuresPerMinute)
	}
	if c.HTTP.MetricsAddr != "" {
		_, mport, err := net.SplitHostPort(c.HTTP.MetricsAddr)
		_, aport, _ := net.SplitHostPort(c.HTTP.Addr)
		switch {
		case err != nil || mport == "":
			bad("http.metrics_addr", "must be host:port such as 127.0.0.1:9090, or empty to serve /metrics on http.addr (got %q)", c.HTTP.MetricsAddr)
		case mport == aport && mport != "0":
			bad("http.metrics_addr", "must use another port than http.addr (both %s)", mport)
		}
	}
	if c.HTTP.BodyLimit < 1024 {
		bad("http.body_limit", "must be at least 1024 bytes (got %d)", c.HTTP.BodyLimit)
	}
	if n := len(c.HTTP.CursorSecret); n > 0 && n < MinCursorSecret {
		// The secret itself is never echoed.
		bad("http.cursor_secret", "must be at least %d bytes, or empty for a random per-process secret (got %d bytes)", MinCursorSecret, n)
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be trace, debug, info, warn or error (got %q)", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		bad("log.format", "must be auto, json or console (got %q)", c.Log.Format)
	}
	if len(problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: problems}
}

// ValidationError lists every invalid field, each as "field: problem".
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "config: " + strings.Join(e.Problems, "; ")
}

// oneLine folds a multi-line decoder error into one line.
func oneLine(s string) string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' })
	for i := range fields {
		fields[i] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(fields[i]), "* "))
	}
	return strings.Join(fields, " ")
}

func validClusterName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// Cluster returns the named cluster, or an error naming the known ones.
func (c Config) Cluster(name string) (Cluster, error) {
	cl, ok := c.Clusters[name]
	if !ok {
		return Cluster{}, fmt.Errorf("unknown cluster %q", name)
	}
	return cl, nil
}

// Redact hides the passwords in a connection string for logs and status
// output: a URL's user password and password query parameters, and the
// password of a keyword/value string (password=… or password='…'). A URL
// that does not parse is redacted by pattern, never returned as is.
func Redact(raw string) string {
	if strings.Contains(raw, "://") {
		if u, err := url.Parse(raw); err == nil {
			if u.User != nil {
				if _, ok := u.User.Password(); ok {
					u.User = url.UserPassword(u.User.Username(), redacted)
				}
			}
			if q := u.Query(); len(q) > 0 {
				changed := false
				for k := range q {
					if strings.EqualFold(k, "password") {
						q[k] = []string{redacted}
						changed = true
					}
				}
				if changed {
					u.RawQuery = q.Encode()
				}
			}
			return u.String()
		}
		raw = urlPassword.ReplaceAllString(raw, "${1}"+redacted+"@")
	}
	return keywordPassword.ReplaceAllString(raw, "${1}"+redacted)
}

const redacted = "xxxxx"

var (
	// urlPassword is the user:password@ of a URL (up to its last @).
	urlPassword = regexp.MustCompile(`(://[^:/@\s]*:).*@`)
	// keywordPassword is password=value in a keyword/value string or a
	// query: a quoted value (with \' escapes) or up to a space or &.
	keywordPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]*)`)
)
