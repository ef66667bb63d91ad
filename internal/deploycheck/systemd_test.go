package deploycheck_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/deploycheck"
)

// copyTree copies a folder (files and symlinks) into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.IsDir():
			return os.MkdirAll(target, 0o755)
		default:
			return copyFile(p, target, info.Mode())
		}
	}))
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// deploy/systemd: every unit parses, names only the installed programs with
// commands and flags they take, reads the env file whose example names only
// configuration keys and makes a valid configuration, and passes
// `systemd-analyze verify` in a root holding the built binaries and this
// machine's system units (an unknown key, a missing program or dependency
// fails it).
func TestSystemdUnits(t *testing.T) {
	dir := deploycheck.Path("deploy", "systemd")
	units, err := filepath.Glob(filepath.Join(dir, "*.service"))
	require.NoError(t, err)
	require.Len(t, units, 3)

	env := readEnvFile(t, filepath.Join(dir, "publicdigit.env.example"))
	checkEnv(t, "deploy/systemd/publicdigit.env.example", env)

	for _, u := range units {
		where := "deploy/systemd/" + filepath.Base(u)
		ini := readINI(t, u)
		svc := ini["Service"]
		require.NotNil(t, svc, "%s has a [Service] section", where)
		require.Len(t, svc["ExecStart"], 1, where)
		checkCommand(t, where, strings.Fields(svc["ExecStart"][0]))
		assert.Equal(t, []string{"/etc/publicdigit/publicdigit.env"}, svc["EnvironmentFile"], where)
		assert.Equal(t, []string{"publicdigit"}, svc["User"], "%s runs as its own user", where)
		for _, dep := range append(ini["Unit"]["Requires"], ini["Unit"]["After"]...) {
			for _, name := range strings.Fields(dep) {
				if strings.HasPrefix(name, "publicdigit") {
					_, err := os.Stat(filepath.Join(dir, name))
					assert.NoError(t, err, "%s depends on %s", where, name)
				}
			}
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	require.NoError(t, err, "systemd-analyze is missing: make deploy-tools installs it (apt-get install systemd)")
	root := t.TempDir()
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "etc/publicdigit", "usr/lib/systemd"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	copyTree(t, "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/system"))
	for name := range binaries {
		require.NoError(t, copyFile(filepath.Join(binDir, name), filepath.Join(root, "usr/local/bin", name), 0o755))
	}
	require.NoError(t, copyFile(filepath.Join(dir, "publicdigit.env.example"), filepath.Join(root, "etc/publicdigit/publicdigit.env"), 0o640))
	args := []string{"verify", "--root=" + root}
	for _, u := range units {
		require.NoError(t, copyFile(u, filepath.Join(root, "etc/systemd/system", filepath.Base(u)), 0o644))
		args = append(args, "/etc/systemd/system/"+filepath.Base(u))
	}
	verify := func() (string, error) {
		out, err := exec.Command(analyze, args...).CombinedOutput()
		return string(out), err
	}
	out, err := verify()
	assert.NoError(t, err, out)
	assert.Empty(t, out, "systemd-analyze verify has something to say")

	// Not vacuous: a misspelt key is reported.
	broken := filepath.Join(root, "etc/systemd/system", "publicdigit.service")
	raw, err := os.ReadFile(broken)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(broken, []byte(strings.Replace(string(raw), "Restart=", "Restrat=", 1)), 0o644))
	out, _ = verify()
	assert.Contains(t, out, "Restrat")
}
