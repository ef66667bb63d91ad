package deploycheck_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/deploycheck"
)

// newerKeys are the keys of pgbouncer/pgbouncer-production.ini that this
// machine's PgBouncer (1.18, Debian 12) does not know, with the version that
// brought them. The tests leave them out to start 1.18 on the file, and check
// that 1.18 refuses each of them: the list hides nothing else.
var newerKeys = map[string]string{
	"max_prepared_statements": "1.21",
	"auth_dbname":             "1.20",
}

// The local PostgreSQL (deploy/local, make db-up) and the passwords it sets.
const (
	localPG      = "127.0.0.1:15432"
	testDB       = "publicdigit_test"
	authUser     = "pgbouncer_auth"
	authPassword = "pgbouncer_auth_dev"
	appUser      = "pd_app"
	appPassword  = "pd_app_dev"
)

func pgbouncerBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("pgbouncer")
	require.NoError(t, err, "PgBouncer is not installed: make db-up installs it")
	return p
}

// productionINI returns pgbouncer-production.ini without the keys in skip.
func productionINI(t *testing.T, skip map[string]string) string {
	t.Helper()
	raw, err := os.ReadFile(deploycheck.Path("pgbouncer", "pgbouncer-production.ini"))
	require.NoError(t, err)
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		k, _, ok := strings.Cut(line, "=")
		if _, newer := skip[strings.TrimSpace(k)]; ok && newer {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// bouncerDir makes a folder the PgBouncer process can read and write: when
// the tests run as root, PgBouncer (which refuses root) runs as postgres.
func bouncerDir(t *testing.T) (string, *syscall.Credential) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pd-deploycheck-bouncer-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	if os.Geteuid() != 0 {
		return dir, nil
	}
	u, err := user.Lookup("postgres")
	require.NoError(t, err, "running as root, PgBouncer needs the postgres user (make db-up creates it)")
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	require.NoError(t, os.Chown(dir, uid, gid))
	return dir, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

func write(t *testing.T, cred *syscall.Credential, path, content string, mode os.FileMode) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), mode))
	if cred != nil {
		require.NoError(t, os.Chown(path, int(cred.Uid), int(cred.Gid)))
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type bouncer struct {
	port int
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runBouncer starts PgBouncer on main, a deployment's pgbouncer.ini whose
// %include of /etc/pgbouncer/pgbouncer-production.ini is pointed at a copy of
// the production file (less skip, plus the local address, port and
// auth_file; no log file: the log is the process's stderr).
func runBouncer(t *testing.T, databases string, skip map[string]string) *bouncer {
	t.Helper()
	dir, cred := bouncerDir(t)
	port := freePort(t)
	// The local overrides go at the end of the production file's own
	// [pgbouncer] section (a later value of a key wins there; a second
	// [pgbouncer] header would reset the section to PgBouncer's defaults).
	prod := productionINI(t, skip) + "\n; local overrides\n" +
		"listen_addr = 127.0.0.1\nlisten_port = " + strconv.Itoa(port) + "\n" +
		"auth_file = " + filepath.Join(dir, "userlist.txt") + "\n"
	write(t, cred, filepath.Join(dir, "pgbouncer-production.ini"), prod, 0o644)
	write(t, cred, filepath.Join(dir, "userlist.txt"), fmt.Sprintf("%q %q\n", authUser, authPassword), 0o600)
	main := strings.ReplaceAll(databases, "/etc/pgbouncer/pgbouncer-production.ini", filepath.Join(dir, "pgbouncer-production.ini"))
	write(t, cred, filepath.Join(dir, "pgbouncer.ini"), main, 0o644)

	b := &bouncer{port: port, log: &syncBuffer{}, done: make(chan error, 1)}
	b.cmd = exec.Command(pgbouncerBin(t), filepath.Join(dir, "pgbouncer.ini"))
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if cred != nil {
		b.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	require.NoError(t, b.cmd.Start())
	go func() { b.done <- b.cmd.Wait() }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// ready waits until PgBouncer listens; it reports false (with the log) if the
// process exits first.
func (b *bouncer) ready(t *testing.T) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-b.done:
			b.done <- err
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(b.port), 200*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("PgBouncer did not listen within 10 s:\n%s", b.log.String())
	return false
}

func (b *bouncer) connect(ctx context.Context, user, password, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", user, password, b.port, db))
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return pgx.ConnectConfig(ctx, cfg)
}

// testDatabases is a deployment's pgbouncer.ini for the test database.
const testDatabases = "[databases]\n" + testDB + " = host=127.0.0.1 port=15432 dbname=" + testDB + "\n" +
	"%include /etc/pgbouncer/pgbouncer-production.ini\n"

// The production configuration, on a real PgBouncer: it starts, and a client
// logs in through auth_query (pgbouncer/auth_query.sql, installed by make
// db-up) with only the auth user in auth_file; a wrong password, a superuser
// and an unknown role are refused; transaction pooling is on.
func TestProductionPgBouncerLogsInThroughAuthQuery(t *testing.T) {
	t.Parallel()
	b := runBouncer(t, testDatabases, newerKeys)
	require.True(t, b.ready(t), "PgBouncer refused the production config:\n%s", b.log.String())
	assert.Contains(t, b.log.String(), "max_client_conn: 2000", "the production file's settings are in force")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := b.connect(ctx, appUser, appPassword, testDB)
	require.NoError(t, err, "pd_app through auth_query:\n%s", b.log.String())
	defer conn.Close(ctx)
	var who string
	require.NoError(t, conn.QueryRow(ctx, "SELECT current_user").Scan(&who))
	assert.Equal(t, appUser, who)

	// Transaction pooling: a SET LOCAL lives in its transaction only.
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SET LOCAL statement_timeout = 1234")
	require.NoError(t, err)
	var inTx string
	require.NoError(t, tx.QueryRow(ctx, "SHOW statement_timeout").Scan(&inTx))
	require.NoError(t, tx.Commit(ctx))
	assert.Equal(t, "1234ms", inTx)

	for _, c := range []struct{ user, password, why string }{
		{appUser, "wrong", "a wrong password"},
		{"postgres", "postgres", "a superuser: get_auth never returns one"},
		{"no_such_role", "x", "an unknown role"},
	} {
		bad, err := b.connect(ctx, c.user, c.password, testDB)
		if err == nil {
			bad.Close(ctx)
		}
		assert.Error(t, err, "%s must not log in", c.why)
	}
	cfg, err := pgx.ParseConfig("postgres://" + authUser + ":" + authPassword + "@" + localPG + "/" + testDB + "?sslmode=disable")
	require.NoError(t, err)
	direct, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer direct.Close(ctx)
	var n int
	assert.Error(t, direct.QueryRow(ctx, "SELECT count(*) FROM pg_authid").Scan(&n), "the auth user cannot read pg_authid itself")
}

// Each key left out for 1.18 is one that 1.18 refuses: the list hides no typo.
func TestProductionPgBouncerKeysLeftOutAreNewerThan118(t *testing.T) {
	t.Parallel()
	for key, since := range newerKeys {
		skip := map[string]string{}
		for k, v := range newerKeys {
			if k != key {
				skip[k] = v
			}
		}
		b := runBouncer(t, testDatabases, skip)
		assert.False(t, b.ready(t), "PgBouncer 1.18 accepted %s (from %s): take it off newerKeys", key, since)
		assert.Contains(t, b.log.String(), "unknown parameter: pgbouncer/"+key)
	}
}
