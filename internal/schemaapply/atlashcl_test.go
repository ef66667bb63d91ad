package schemaapply_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
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
	assert.Equal(t, 3, envs, "envs landlord, tenant, tenants")
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
// schemahcl library), with a stand-in for data "sql" that returns schemas.
func evalAtlasHCL(t *testing.T, schemas []string, vars map[string]cty.Value) map[string][]*atlasEnv {
	t.Helper()
	var queries []string
	state := schemahcl.New(schemahcl.WithDataSource("sql", func(_ context.Context, ctx *hcl.EvalContext, b *hclsyntax.Block) (cty.Value, error) {
		var in struct{ URL, Query string }
		attrs, _ := b.Body.JustAttributes()
		for name, a := range attrs {
			v, diags := a.Expr.Value(ctx)
			require.False(t, diags.HasErrors(), diags.Error())
			switch name {
			case "url":
				in.URL = v.AsString()
			case "query":
				in.Query = v.AsString()
			}
		}
		u, err := url.Parse(in.URL)
		require.NoError(t, err)
		assert.NotEmpty(t, u.Query().Get("search_path"), "data.sql url is scoped too")
		queries = append(queries, in.Query)
		values := make([]cty.Value, len(schemas))
		for i, s := range schemas {
			values[i] = cty.StringVal(s)
		}
		obj := map[string]cty.Value{"count": cty.NumberIntVal(int64(len(values))), "values": cty.ListValEmpty(cty.NilType), "value": cty.NilVal}
		if len(values) > 0 { // as the CLI's data "sql" does
			obj["values"], obj["value"] = cty.ListVal(values), values[0]
		}
		return cty.ObjectVal(obj), nil
	}))
	var p atlasProject
	require.NoError(t, state.EvalFiles([]string{atlasHCL}, &p, vars))
	require.Len(t, queries, 1)
	assert.Contains(t, queries[0], "SELECT schema_name AS s FROM", "the tenants env lists the catalog's tenant schemas")
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
	envs := evalAtlasHCL(t, []string{"tenant_acme", "tenant_beta"}, map[string]cty.Value{
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

	require.Len(t, envs["tenants"], 2)
	var paths []string
	for _, e := range envs["tenants"] {
		u, _ := url.Parse(e.URL)
		paths = append(paths, u.Query().Get("search_path"))
	}
	assert.ElementsMatch(t, []string{"tenant_acme", "tenant_beta"}, paths)

	// No --var tenant, an empty catalog: still nothing unscoped.
	envs = evalAtlasHCL(t, nil, map[string]cty.Value{"url": cty.StringVal(base)})
	assert.Contains(t, envs["tenant"][0].URL, "search_path=tenant_unset")
	assert.Equal(t, []string{"file://schema/tenant/core.hcl"}, envs["tenant"][0].sources(t))
	assert.Empty(t, envs["tenants"])
}
