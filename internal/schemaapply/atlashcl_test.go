package schemaapply_test

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"ariga.io/atlas/schemahcl"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
)

// atlasHCL is the project file at the repository root.
var atlasHCL = filepath.Join("..", "..", "atlas.hcl")

// scopedCall reports whether e is urlqueryset(<url>, "search_path", <schema>),
// directly or through a local defined so.
func scopedCall(e hclsyntax.Expression, locals map[string]*hclsyntax.Attribute) bool {
	switch e := e.(type) {
	case *hclsyntax.FunctionCallExpr:
		if e.Name != "urlqueryset" || len(e.Args) != 3 {
			return false
		}
		v, diags := e.Args[1].Value(nil)
		return !diags.HasErrors() && v.Type() == cty.String && v.AsString() == "search_path"
	case *hclsyntax.ScopeTraversalExpr:
		if len(e.Traversal) == 2 && e.Traversal.RootName() == "local" {
			if a, ok := locals[e.Traversal[1].(hcl.TraverseAttr).Name]; ok {
				return scopedCall(a.Expr, locals)
			}
		}
	}
	return false
}

// TestAtlasHCLEveryURLIsScoped reads atlas.hcl as syntax: every url and dev
// attribute (in env and data blocks) must set search_path. An unscoped URL
// makes `atlas schema apply` drop every other tenant's schema.
func TestAtlasHCLEveryURLIsScoped(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(atlasHCL)
	require.NoError(t, err)
	f, diags := hclsyntax.ParseConfig(src, "atlas.hcl", hcl.InitialPos)
	require.False(t, diags.HasErrors(), diags.Error())
	body := f.Body.(*hclsyntax.Body)
	locals := map[string]*hclsyntax.Attribute{}
	for _, b := range body.Blocks {
		if b.Type == "locals" {
			for k, a := range b.Body.Attributes {
				locals[k] = a
			}
		}
	}
	envs := 0
	for _, b := range body.Blocks {
		if b.Type != "env" && b.Type != "data" {
			continue
		}
		if b.Type == "env" {
			envs++
			require.Contains(t, b.Body.Attributes, "url", "env %v has no url", b.Labels)
		}
		for _, name := range []string{"url", "dev"} {
			if a, ok := b.Body.Attributes[name]; ok {
				assert.True(t, scopedCall(a.Expr, locals), "%s %v: %s is not urlqueryset(…, \"search_path\", …)", b.Type, b.Labels, name)
			}
		}
	}
	assert.Equal(t, 2, envs, "envs landlord and tenant")
}

// atlasProject is the part of the atlas CLI's project file that matters here.
type atlasProject struct {
	Envs []*atlasEnv `spec:"env"`
}

type atlasEnv struct {
	Name string `spec:"name,name"`
	URL  string `spec:"url"`
	Dev  string `spec:"dev"`
	schemahcl.DefaultExtension
}

func (e *atlasEnv) sources(t *testing.T) []string {
	t.Helper()
	a, ok := e.Attr("src")
	require.True(t, ok, "env %s has no src", e.Name)
	if a.V.Type() == cty.String {
		return []string{a.V.AsString()}
	}
	require.True(t, a.V.Type().Equals(cty.List(cty.String)), "env %s: src must be a string or a list of strings (the CLI refuses %s)", e.Name, a.V.Type().FriendlyName())
	s, err := a.Strings()
	require.NoError(t, err)
	return s
}

// evalAtlasHCL evaluates atlas.hcl the way the atlas CLI does (same
// schemahcl library). It registers no data source: a data "sql" block (a
// catalog query feeding a multi-env) would fail here.
func evalAtlasHCL(t *testing.T, vars map[string]cty.Value) map[string][]*atlasEnv {
	t.Helper()
	var p atlasProject
	require.NoError(t, schemahcl.New().EvalFiles([]string{atlasHCL}, &p, vars))
	envs := map[string][]*atlasEnv{}
	for _, e := range p.Envs {
		envs[e.Name] = append(envs[e.Name], e)
		for what, raw := range map[string]string{"url": e.URL, "dev": e.Dev} {
			u, err := url.Parse(raw)
			require.NoError(t, err)
			sp := u.Query().Get("search_path")
			assert.NotEmpty(t, sp, "env %s: %s %s has no search_path", e.Name, what, raw)
			assert.NotContains(t, sp, ",", "env %s: %s must be scoped to one schema", e.Name, what)
		}
	}
	return envs
}

func TestAtlasHCLEvaluatesScoped(t *testing.T) {
	t.Parallel()
	base := "postgres://dba:secret@db.example:5432/publicdigit?sslmode=disable"
	envs := evalAtlasHCL(t, map[string]cty.Value{
		"url":     cty.StringVal(base),
		"tenant":  cty.StringVal("tenant_acme"),
		"modules": cty.ListVal([]cty.Value{cty.StringVal("modules/events.hcl"), cty.StringVal("modules/donations.hcl")}),
	})
	require.Len(t, envs["landlord"], 1)
	assert.Equal(t, "postgres://dba:secret@db.example:5432/publicdigit?search_path=landlord&sslmode=disable", envs["landlord"][0].URL)
	assert.Equal(t, []string{"file://schema/landlord.hcl"}, envs["landlord"][0].sources(t))

	require.Len(t, envs["tenant"], 1)
	assert.Contains(t, envs["tenant"][0].URL, "search_path=tenant_acme")
	assert.Equal(t, []string{"file://schema/tenant/core.hcl", "file://schema/tenant/modules/events.hcl",
		"file://schema/tenant/modules/donations.hcl"}, envs["tenant"][0].sources(t))
	for _, src := range envs["tenant"][0].sources(t) {
		_, err := os.Stat(filepath.Join("..", "..", strings.TrimPrefix(src, "file://")))
		assert.NoError(t, err, "src %s exists", src)
	}

	assert.Len(t, envs, 2, "no other env")

	// No --var tenant: still nothing unscoped.
	envs = evalAtlasHCL(t, map[string]cty.Value{"url": cty.StringVal(base)})
	assert.Contains(t, envs["tenant"][0].URL, "search_path=tenant_unset")
	assert.Equal(t, []string{"file://schema/tenant/core.hcl"}, envs["tenant"][0].sources(t))
}

// TestAtlasHCLHasNoMultiEnv: the community CLI's schema commands take one env
// and refuse a multi-env (`multiple envs found`); only `migrate apply` loops
// over one, and the project has no migration folder. An env with for_each
// would only document commands that fail.
func TestAtlasHCLHasNoMultiEnv(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(atlasHCL)
	require.NoError(t, err)
	f, diags := hclsyntax.ParseConfig(src, "atlas.hcl", hcl.InitialPos)
	require.False(t, diags.HasErrors(), diags.Error())
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "env" {
			assert.NotContains(t, b.Body.Attributes, "for_each", "env %v is a multi-env", b.Labels)
			assert.NotContains(t, b.Body.Attributes, "count", "env %v is a multi-env", b.Labels)
		}
		assert.NotEqual(t, "migration", b.Type)
	}
}

// atlasCommand is an atlas command line in the docs (a line that starts
// with the command, in a code block or an HCL comment; not prose).
var atlasCommand = regexp.MustCompile(`(?m)^[ \t#$]*atlas (schema|migrate) ([a-z]+)((?: +--?[a-z-]+(?:[ =](?:"[^"]*"|[^ \\\n-][^ \\\n]*))?| +\\\n)*)`)

// TestAtlasCommandsInDocsAreTrue reads every `atlas …` command line of
// atlas.hcl's comments, the README and docs/: each is a schema command (the
// project uses no migrate command), names one env that atlas.hcl defines,
// and sets only variables that atlas.hcl declares.
func TestAtlasCommandsInDocsAreTrue(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(atlasHCL)
	require.NoError(t, err)
	f, diags := hclsyntax.ParseConfig(src, "atlas.hcl", hcl.InitialPos)
	require.False(t, diags.HasErrors(), diags.Error())
	envs, vars := map[string]bool{}, map[string]bool{}
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		switch b.Type {
		case "env":
			envs[b.Labels[0]] = true
		case "variable":
			vars[b.Labels[0]] = true
		}
	}
	files := []string{atlasHCL, filepath.Join("..", "..", "README.md")}
	docs, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	files = append(files, docs...)
	n := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		text := strings.ReplaceAll(string(raw), "\n#  ", "\n ") // continuation lines in HCL comments
		for _, m := range atlasCommand.FindAllStringSubmatch(text, -1) {
			n++
			cmd := strings.Join(strings.Fields(strings.ReplaceAll(m[0], "\\\n", " ")), " ")
			assert.Equal(t, "schema", m[1], "%s: %q: the project documents schema commands only", file, cmd)
			assert.Contains(t, []string{"apply", "inspect", "diff"}, m[2], "%s: %q", file, cmd)
			fields := strings.Fields(strings.ReplaceAll(m[3], "\\\n", " "))
			var named []string
			for i := 0; i < len(fields); i++ {
				flag, val, hasVal := strings.Cut(fields[i], "=")
				if !hasVal && i+1 < len(fields) && !strings.HasPrefix(fields[i+1], "-") {
					val, hasVal = fields[i+1], true
					i++
				}
				switch flag {
				case "--env":
					named = append(named, val)
					assert.True(t, envs[val], "%s: %q names env %q, which atlas.hcl does not define", file, cmd, val)
				case "--var":
					name, _, _ := strings.Cut(val, "=")
					assert.True(t, vars[name], "%s: %q sets --var %s, which atlas.hcl does not declare", file, cmd, name)
				}
			}
			assert.Len(t, named, 1, "%s: %q: a schema command takes exactly one --env", file, cmd)
		}
	}
	assert.Greater(t, n, 4, "the docs show atlas commands")
}
