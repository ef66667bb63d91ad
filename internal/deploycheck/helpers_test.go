package deploycheck_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/cli"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/deploycheck"
)

// binDir holds the binaries built once for all tests (TestMain).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pd-deploycheck-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// World-readable: the systemd check copies them into its fake root.
	_ = os.Chmod(dir, 0o755)
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/publicdigit", "./cmd/tenantctl", "./cmd/healthcheck")
	cmd.Dir = deploycheck.Root()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "deploycheck: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaries are the programs of the image, by the name they are installed as.
var binaries = map[string]bool{"publicdigit": true, "tenantctl": true, "healthcheck": true}

// ourCommand reports whether argv runs one of the image's programs (by
// absolute path /usr/local/bin/<name>, as every file here names them).
func ourCommand(argv []string) bool {
	return len(argv) > 0 && strings.HasPrefix(argv[0], "/usr/local/bin/") && binaries[filepath.Base(argv[0])]
}

// runBin runs one of the built programs with args and a PD_-free environment.
func runBin(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		}
		t.Fatalf("run %s: %v", name, err)
	}
	return 0, out.String()
}

// commandPaths is every tenantctl command path, as words.
var commandPaths = func() map[string]bool {
	m := map[string]bool{}
	for _, p := range cli.CommandPaths() {
		m[strings.Join(p, " ")] = true
	}
	return m
}()

// checkCommand checks one command line that a deployment file runs:
// tenantctl's leading words must be one of its commands, and the real binary
// must accept every flag and value (it parses them, then --help stops it
// before it runs). healthcheck lines are run for real by the callers that
// have a server (checkHealthcheck).
func checkCommand(t *testing.T, where string, argv []string) {
	t.Helper()
	require.True(t, ourCommand(argv), "%s: %q is not one of the image's programs", where, argv)
	name, args := filepath.Base(argv[0]), argv[1:]
	switch name {
	case "tenantctl":
		var words []string
		for _, a := range args {
			if strings.HasPrefix(a, "-") {
				break
			}
			words = append(words, a)
		}
		found := false
		for n := len(words); n > 0 && !found; n-- {
			found = commandPaths[strings.Join(words[:n], " ")]
		}
		assert.True(t, found, "%s: tenantctl has no command %q", where, strings.Join(words, " "))
		code, out := runBin(t, name, append(append([]string{}, args...), "--help")...)
		assert.Equal(t, 0, code, "%s: tenantctl %s: %s", where, strings.Join(args, " "), out)
		if len(words) > 0 {
			assert.Contains(t, out, "tenantctl "+strings.Join(words, " "), "%s: the help is the command's own", where)
		}
	case "publicdigit":
		code, out := runBin(t, name, append(append([]string{}, args...), "--help")...)
		assert.Equal(t, 0, code, "%s: publicdigit %s: %s", where, strings.Join(args, " "), out)
	case "healthcheck":
		require.NotEmpty(t, args, "%s: healthcheck needs a URL", where)
	}
}

// configKeys lists every configuration key of config.Config (koanf tags),
// a map level as "*": landlord.url, clusters.*.url, …
func configKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Duration":
				walk(f.Type, key+".")
			case f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct:
				walk(f.Type.Elem(), key+".*.")
			default:
				keys = append(keys, key)
			}
		}
	}
	walk(reflect.TypeOf(config.Config{}), "")
	return keys
}

// envKey is the configuration key of a PD_ variable, "" if it names none.
func envKey(name string) string {
	if !strings.HasPrefix(name, config.EnvPrefix) {
		return ""
	}
	key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, config.EnvPrefix), "__", "."))
	for _, k := range configKeys() {
		ks, ws := strings.Split(k, "."), strings.Split(key, ".")
		if len(ks) != len(ws) {
			continue
		}
		match := true
		for i := range ks {
			if ks[i] != "*" && ks[i] != ws[i] {
				match = false
			}
		}
		if match {
			return k
		}
	}
	return ""
}

// checkEnv checks that every PD_ variable names a configuration key and that
// together they make a valid configuration (config.Load, as the programs do).
// Not for parallel tests: it swaps the process environment.
func checkEnv(t *testing.T, where string, env map[string]string) config.Config {
	t.Helper()
	n := 0
	for name := range env {
		if !strings.HasPrefix(name, config.EnvPrefix) {
			continue
		}
		n++
		assert.NotEmpty(t, envKey(name), "%s: %s is no configuration key", where, name)
	}
	require.NotZero(t, n, "%s: no PD_ variable", where)
	saved := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, config.EnvPrefix) {
			saved[k] = v
			os.Unsetenv(k)
		}
	}
	defer func() {
		for k := range env {
			os.Unsetenv(k)
		}
		for k, v := range saved {
			os.Setenv(k, v)
		}
	}()
	for k, v := range env {
		os.Setenv(k, v)
	}
	cfg, err := config.Load(nil)
	require.NoError(t, err, "%s: the PD_ variables do not make a valid configuration", where)
	return cfg
}

// The key check is not vacuous.
func TestEnvKeysAreChecked(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "clusters.*.admin_url", envKey("PD_CLUSTERS__MAIN__ADMIN_URL"))
	assert.Equal(t, "http.cursor_secret", envKey("PD_HTTP__CURSOR_SECRET"))
	assert.Equal(t, "pool.max_conns", envKey("PD_POOL__MAX_CONNS"))
	for _, bad := range []string{"PD_HTTP__ADRESS", "PD_POOL_MAX_CONNS", "PD_CLUSTERS__MAIN", "HTTP__ADDR"} {
		assert.Empty(t, envKey(bad), bad)
	}
	assert.Greater(t, len(configKeys()), 25)
}

// The command check is not vacuous: a wrong command, flag or value fails.
func TestCommandCheckCatchesMistakes(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"schema", "apply", "--all", "--paralel", "4"},
		{"schema", "apply", "--all", "--parallel", "four"},
		{"db", "init", "--dryrun"},
	} {
		code, out := runBin(t, "tenantctl", append(args, "--help")...)
		assert.NotEqual(t, 0, code, "%v: %s", args, out)
	}
	assert.False(t, commandPaths["schema aply"])
	assert.True(t, commandPaths["schema apply"])
	code, _ := runBin(t, "publicdigit", "--http.adr", "x", "--help")
	assert.NotEqual(t, 0, code)
}

// readINI reads a systemd unit or PgBouncer file: section → key → values (a
// key may repeat). Comments start with ; or #.
func readINI(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "%include"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			if out[section] == nil {
				out[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s:%d: not key = value: %q", path, i+1, line)
			require.NotEmpty(t, section, "%s:%d: a key outside any section", path, i+1)
			out[section][strings.TrimSpace(k)] = append(out[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return out
}

// readEnvFile reads KEY=value lines (comments with #).
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	env := map[string]string{}
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "%s:%d: not KEY=value", path, i+1)
		env[k] = v
	}
	return env
}
