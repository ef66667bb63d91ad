package deploycheck_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/publicdigit/publicdigit/internal/deploycheck"
)

// dockerCompose runs docker-compose (the Debian package; it needs no Docker
// engine for `config`) in deploy/compose with extra arguments.
func dockerCompose(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	require.NoError(t, err, "docker-compose is missing: make deploy-tools installs it (apt-get install docker-compose)")
	cmd := exec.Command(bin, args...)
	cmd.Dir = deploycheck.Path("deploy", "compose")
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("docker-compose %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// composeEnv is a clean environment: PATH and HOME only (no PD_ or
// POSTGRES_ variables of the caller leak into the interpolation).
func composeEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
}

type composeFile struct {
	Services map[string]struct {
		Image       string            `json:"image"`
		Command     []string          `json:"command"`
		Environment map[string]string `json:"environment"`
		Volumes     []any             `json:"volumes"`
		DependsOn   map[string]struct {
			Condition string `json:"condition"`
		} `json:"depends_on"`
		Healthcheck struct {
			Test []string `json:"test"`
		} `json:"healthcheck"`
		Ports []string `json:"ports"`
	} `json:"services"`
}

// deploy/compose: `docker-compose config` accepts the file with the example
// settings (and refuses it without the required passwords); every command of
// the image's programs, every flag and every PD_ variable is one the
// binaries really take, and the variables make a valid configuration; the
// files it mounts exist; every service but the one-shot has a health check.
func TestComposeFile(t *testing.T) {
	out, err := dockerCompose(t, composeEnv(), "--env-file", ".env.example", "config")
	require.NoError(t, err)
	var cf composeFile
	require.NoError(t, yaml.Unmarshal([]byte(out), &cf))
	names := make([]string, 0, len(cf.Services))
	for n := range cf.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	assert.Equal(t, []string{"db-init", "pgbouncer", "postgres", "server"}, names)

	_, err = dockerCompose(t, composeEnv(), "config")
	assert.Error(t, err, "without .env the required passwords stop docker-compose")

	checked := 0
	for _, name := range names {
		s := cf.Services[name]
		where := "deploy/compose " + name
		if ourCommand(s.Command) {
			checkCommand(t, where, s.Command)
			checkEnv(t, where, s.Environment)
			checked++
		}
		if name != "db-init" {
			assert.NotEmpty(t, s.Healthcheck.Test, "%s has a health check", where)
		}
		if hc := s.Healthcheck.Test; len(hc) > 1 && hc[0] == "CMD" && ourCommand(hc[1:]) {
			checkCommand(t, where+" healthcheck", hc[1:])
		}
		for _, v := range s.Volumes {
			m, ok := v.(map[string]any)
			if !ok || m["type"] != "bind" {
				continue
			}
			src, _ := m["source"].(string)
			_, err := os.Stat(src)
			assert.NoError(t, err, "%s mounts %s", where, src)
		}
	}
	assert.Equal(t, 2, checked, "db-init and server run the image's programs")
	assert.Equal(t, "service_completed_successfully", cf.Services["server"].DependsOn["db-init"].Condition)
	assert.Equal(t, "service_healthy", cf.Services["server"].DependsOn["pgbouncer"].Condition)
	assert.Equal(t, []string{"/usr/local/bin/tenantctl", "db", "init"}, cf.Services["db-init"].Command)

	// The API and /metrics (on an address of its own) are published on the
	// host's loopback only.
	server := cf.Services["server"]
	cfg := checkEnv(t, "deploy/compose server", server.Environment)
	_, api, err := net.SplitHostPort(cfg.HTTP.Addr)
	require.NoError(t, err)
	require.NotEmpty(t, cfg.HTTP.MetricsAddr, "the server serves /metrics apart from the API (http.metrics_addr)")
	_, metrics, err := net.SplitHostPort(cfg.HTTP.MetricsAddr)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"127.0.0.1:" + api + ":" + api + "/tcp", "127.0.0.1:" + metrics + ":" + metrics + "/tcp"},
		server.Ports)
}

// docker-compose config is not vacuous: a file that depends on a service it
// does not define is refused.
func TestComposeConfigRefusesABrokenFile(t *testing.T) {
	dir := t.TempDir()
	broken := "services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_healthy\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(broken), 0o644))
	_, err := dockerCompose(t, composeEnv(), "-f", filepath.Join(dir, "docker-compose.yml"), "config")
	assert.Error(t, err)
}

// deploy/compose/pgbouncer.ini loads in a real PgBouncer with the production
// settings it includes (its databases are resolved only when used).
func TestComposePgBouncerINI(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(deploycheck.Path("deploy", "compose", "pgbouncer.ini"))
	require.NoError(t, err)
	b := runBouncer(t, string(raw), newerKeys)
	require.True(t, b.ready(t), "PgBouncer refused deploy/compose/pgbouncer.ini:\n%s", b.log.String())
	assert.Contains(t, b.log.String(), "max_client_conn: 2000")
}
