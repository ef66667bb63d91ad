package deploycheck_test

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/deploycheck"
)

// dockerfile is the root Dockerfile as instructions (continuations joined).
func dockerfile(t *testing.T) [][2]string {
	t.Helper()
	f, err := os.Open(deploycheck.Path("Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	var out [][2]string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") || (cur.Len() == 0 && strings.TrimSpace(line) == "") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		ins, rest, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, [2]string{strings.ToUpper(ins), strings.TrimSpace(rest)})
		cur.Reset()
	}
	require.NoError(t, sc.Err())
	return out
}

// The Dockerfile, as far as it can be checked without a Docker engine: what
// it copies exists and .dockerignore lets it through; it builds the three
// programs statically (CGO_ENABLED=0, as TestMain builds them: no ELF
// interpreter, so they run on distroless/static); the final image copies
// exactly those, runs as non-root, and its CMD and HEALTHCHECK name them.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := dockerfile(t)
	ignore, err := os.ReadFile(deploycheck.Path(".dockerignore"))
	require.NoError(t, err)
	var froms []string
	built := map[string]bool{}
	var final struct{ user, cmd, health string }
	copied := map[string]bool{}
	for _, in := range ins {
		switch in[0] {
		case "FROM":
			froms = append(froms, in[1])
		case "COPY":
			fields := strings.Fields(in[1])
			if strings.HasPrefix(fields[0], "--from=") {
				for _, src := range fields[1 : len(fields)-1] {
					copied[filepath.Base(src)] = true
				}
				continue
			}
			for _, src := range fields[:len(fields)-1] {
				_, err := os.Stat(deploycheck.Path(src))
				assert.NoError(t, err, "COPY %s", src)
				assert.Contains(t, string(ignore), "!"+src, ".dockerignore lets %s through", src)
			}
		case "RUN":
			if strings.Contains(in[1], "go build") {
				assert.Contains(t, in[1], "CGO_ENABLED=0")
				for _, m := range regexp.MustCompile(`\./cmd/([a-z]+)`).FindAllStringSubmatch(in[1], -1) {
					built[m[1]] = true
					_, err := os.Stat(deploycheck.Path("cmd", m[1], "main.go"))
					assert.NoError(t, err, "./cmd/%s", m[1])
				}
			}
		case "USER":
			final.user = in[1]
		case "CMD":
			final.cmd = in[1]
		case "HEALTHCHECK":
			final.health = in[1]
		}
	}
	require.Len(t, froms, 2, "a build stage and the final image")
	assert.Contains(t, froms[1], "distroless/static")
	assert.Equal(t, binaries, built, "the build makes the image's programs")
	assert.Equal(t, binaries, copied, "the final image has the image's programs")
	assert.Equal(t, "nonroot:nonroot", final.user)

	var cmd []string
	require.NoError(t, json.Unmarshal([]byte(final.cmd), &cmd), "CMD in exec form")
	checkCommand(t, "Dockerfile CMD", cmd)
	_, health, ok := strings.Cut(final.health, "CMD ")
	require.True(t, ok, final.health)
	var hc []string
	require.NoError(t, json.Unmarshal([]byte(health), &hc))
	checkCommand(t, "Dockerfile HEALTHCHECK", hc)

	for name := range binaries {
		f, err := elf.Open(filepath.Join(binDir, name))
		require.NoError(t, err)
		for _, p := range f.Progs {
			assert.NotEqual(t, elf.PT_INTERP, p.Type, "%s is static (CGO_ENABLED=0)", name)
		}
		f.Close()
	}
}
