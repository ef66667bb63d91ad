package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/pgpass"
)

// bouncer is a PgBouncer 1.18 that a benchmark runs for itself, in
// transaction pooling mode like deploy/local's, with the settings the
// benchmark measures (server_lifetime, one server pool per lane alias). It
// lives in a folder named after the benchmark, so that a run that was
// killed leaves a pid file the next run stops first.
type bouncer struct {
	dir  string
	port int
	// URL is the application role's connection string through this
	// PgBouncer to the benchmark's database (lane aliases: laneURL).
	URL string
	db  string
}

// bouncerSpec is what a bench PgBouncer serves.
type bouncerSpec struct {
	Name           string // folder suffix: one PgBouncer per name
	AppURL         string // the application role's URL (user, password) of the cluster
	AdminURL       string // direct URL of the cluster (host and port of PostgreSQL)
	Database       string // the database served
	PoolSize       int    // server connections for the database, shared by its lanes
	Lanes          int    // lane aliases <database>_lane<i>, each with PoolSize/Lanes servers
	ServerLifetime time.Duration
}

// laneDatabase is the PgBouncer alias of lane i of a database (the
// convention of config.Cluster.Lanes).
func laneDatabase(db string, i int) string { return db + "_lane" + strconv.Itoa(i) }

// startBouncer starts (after stopping a leftover of the same name) a
// PgBouncer for spec on a free port.
func startBouncer(ctx context.Context, spec bouncerSpec) (*bouncer, error) {
	dir := filepath.Join(os.TempDir(), "pdbench-bouncer-"+spec.Name)
	stopBouncerIn(dir)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// The configuration carries no password: PgBouncer's userlist needs the
	// application role's from the password file.
	app, err := url.Parse(pgpass.FillFromEnv(spec.AppURL))
	if err != nil {
		return nil, fmt.Errorf("bouncer: app url: %w", err)
	}
	direct, err := url.Parse(spec.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("bouncer: admin url: %w", err)
	}
	pw, _ := app.User.Password()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &bouncer{dir: dir, port: port, db: spec.Database}
	if err := b.write(spec, app.User.Username(), pw, direct.Hostname(), direct.Port()); err != nil {
		return nil, err
	}
	if err := asServer(dir); err != nil {
		return nil, err
	}
	cmd := serverCommand(ctx, "pgbouncer", "-d", filepath.Join(dir, "pgbouncer.ini"))
	if outb, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		return nil, fmt.Errorf("bouncer: start: %w: %s %s", err, outb, tail(string(log), 500))
	}
	if err := waitPort(ctx, port); err != nil {
		b.stop()
		return nil, err
	}
	u := *app
	u.Host = "127.0.0.1:" + strconv.Itoa(port)
	u.Path = "/" + spec.Database
	b.URL = u.String()
	return b, nil
}

func (b *bouncer) write(spec bouncerSpec, user, password, pgHost, pgPort string) error {
	lanes := max(spec.Lanes, 1)
	perLane := max(1, (spec.PoolSize+lanes-1)/lanes)
	var dbs strings.Builder
	server := fmt.Sprintf("host=%s port=%s dbname=%s", pgHost, pgPort, spec.Database)
	fmt.Fprintf(&dbs, "%s = %s pool_size=%d\n", spec.Database, server, spec.PoolSize)
	for i := 0; i < spec.Lanes; i++ {
		fmt.Fprintf(&dbs, "%s = %s pool_size=%d\n", laneDatabase(spec.Database, i), server, perLane)
	}
	ini := fmt.Sprintf(`; written by pdbench for one run
[databases]
%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s/userlist.txt
pool_mode = transaction
max_client_conn = 4000
default_pool_size = %d
reserve_pool_size = 0
server_lifetime = %d
server_idle_timeout = 600
server_reset_query =
ignore_startup_parameters = extra_float_digits
stats_users = %s
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
`, dbs.String(), b.port, b.dir, spec.PoolSize, int(spec.ServerLifetime.Seconds()), user, b.dir, b.dir)
	if err := os.WriteFile(filepath.Join(b.dir, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.dir, "userlist.txt"), []byte(fmt.Sprintf("%q %q\n", user, password)), 0o600)
}

// laneURL is the URL of lane i's alias.
func (b *bouncer) laneURL(i int) string {
	u, _ := url.Parse(b.URL)
	u.Path = "/" + laneDatabase(b.db, i)
	return u.String()
}

// serverPIDs lists the PostgreSQL backends this PgBouncer holds, by the
// database (alias) they serve (SHOW SERVERS on its admin console).
func (b *bouncer) serverPIDs(ctx context.Context) (map[string][]int, error) {
	u, _ := url.Parse(b.URL)
	u.Path = "/pgbouncer"
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bouncer console: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SHOW SERVERS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	dbCol, pidCol := -1, -1
	for i, f := range rows.FieldDescriptions() {
		switch f.Name {
		case "database":
			dbCol = i
		case "remote_pid":
			pidCol = i
		}
	}
	if dbCol < 0 || pidCol < 0 {
		return nil, errors.New("bouncer console: SHOW SERVERS has no database or remote_pid column")
	}
	out := map[string][]int{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		pid, _ := strconv.Atoi(fmt.Sprint(vals[pidCol]))
		if pid > 0 {
			db := fmt.Sprint(vals[dbCol])
			out[db] = append(out[db], pid)
		}
	}
	return out, rows.Err()
}

// stop ends this PgBouncer (by the pid in its pid file) and removes its folder.
func (b *bouncer) stop() {
	stopBouncerIn(b.dir)
	_ = os.RemoveAll(b.dir)
}

// stopBouncerIn ends the PgBouncer whose pid file is in dir, if it runs.
func stopBouncerIn(dir string) {
	raw, err := os.ReadFile(filepath.Join(dir, "pgbouncer.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !strings.Contains(string(cmdline), "pgbouncer") {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM) // immediate shutdown
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// asServer hands dir to the postgres user when running as root (PgBouncer,
// like PostgreSQL, refuses to run as root; deploy/local does the same).
func asServer(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("bouncer: running as root needs a postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// serverCommand runs name as the postgres user when running as root.
func serverCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(ctx context.Context, port int) error {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i := 0; i < 100; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("bouncer: nothing listens on %s", addr)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// rssAnonMB is a process's private (anonymous) resident memory in MB, from
// /proc/<pid>/status: for a PostgreSQL backend, its memory contexts (catalog
// caches included) without the shared buffers it touched.
func rssAnonMB(pid int) (float64, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no RssAnon in /proc/%d/status", pid)
}

// backendPIDs lists the backends of db connected as user (pg_stat_activity
// shows every session's pid, database and user to any role).
func backendPIDs(ctx context.Context, admin *sql.DB, db, user string) ([]int, error) {
	rows, err := admin.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename = $2 AND pid <> pg_backend_pid()`, db, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		out = append(out, pid)
	}
	return out, rows.Err()
}
