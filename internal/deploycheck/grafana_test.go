package deploycheck_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/publicdigit/publicdigit/internal/apiclient"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/deploycheck"
	"github.com/publicdigit/publicdigit/internal/servertest"
)

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promBraces   = regexp.MustCompile(`\{[^{}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promVar      = regexp.MustCompile(`\$\{?\w+\}?`)
	promDuration = regexp.MustCompile(`\b(\d+(ms|s|m|h|d|w|y))+\b`)
	promNumber   = regexp.MustCompile(`\b\d+(\.\d+)?([eE][+-]?\d+)?\b`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	labelValues  = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)[^()]*\)`)
)

// promKeywords are PromQL words that are not metric names.
var promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "bool": true, "offset": true, "and": true, "or": true, "unless": true, "inf": true, "nan": true}

// metricNames returns the metric names a PromQL expression selects: what is
// left once strings, label matchers, ranges, groupings, Grafana variables,
// durations and numbers are taken out, less function and aggregation names (followed by
// "(") and keywords. Grafana's label_values(metric, label) counts its metric.
func metricNames(expr string) []string {
	set := map[string]bool{}
	for _, m := range labelValues.FindAllStringSubmatch(expr, -1) {
		set[m[1]] = true
	}
	expr = labelValues.ReplaceAllString(expr, " ")
	s := promString.ReplaceAllString(expr, " ")
	for prev := ""; prev != s; {
		prev = s
		s = promBraces.ReplaceAllString(s, " ")
	}
	s = promRange.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = promVar.ReplaceAllString(s, " ")
	s = promDuration.ReplaceAllString(s, " ")
	s = promNumber.ReplaceAllString(s, " ")
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if promKeywords[strings.ToLower(word)] || strings.HasPrefix(rest, "(") {
			continue
		}
		set[word] = true
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets (in rows too) and templating queries.
func dashboardExprs(t *testing.T, raw []byte) []string {
	t.Helper()
	var doc any
	require.NoError(t, json.Unmarshal(raw, &doc))
	var exprs []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				walk(c, k)
			}
		case []any:
			for _, c := range v {
				walk(c, key)
			}
		case string:
			if key == "expr" || key == "definition" {
				exprs = append(exprs, v)
			}
		}
	}
	walk(doc, "")
	return exprs
}

func TestMetricNamesFromPromQL(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`sum by (route) (rate(publicdigit_http_requests_total{status=~"5..", route!="x"}[$__rate_interval]))`: {"publicdigit_http_requests_total"},
		`histogram_quantile(0.95, sum by (le) (rate(a_bucket[5m]))) / on(instance) group_left b`:              {"a_bucket", "b"},
		`label_values(publicdigit_http_requests_total, instance)`:                                             {"publicdigit_http_requests_total"},
		`max(x{instance=~"$instance"}) > bool 1e3 offset 5m or vector(1)`:                                     {"x"},
	} {
		assert.Equal(t, want, metricNames(expr), expr)
	}
}

// scrape returns the sample names of a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[line[:strings.IndexAny(line, "{ ")]] = true
	}
	require.NoError(t, sc.Err())
	return names
}

// deploy/grafana/publicdigit.json names only series that a running server
// (server.Run, through PgBouncer to the test database) exports on /metrics,
// once it has served requests and provisioned a tenant.
func TestDashboardSeriesAreExported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := servertest.Start(t, servertest.Config(t))
	base := srv.Base
	token := srv.PlatformToken(t)
	auth := func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
	c, err := apiclient.NewClientWithResponses(base, apiclient.WithRequestEditorFn(auth))
	require.NoError(t, err)
	slug := dbtest.Name("dash_")
	created, err := c.CreateTenantWithResponse(ctx, apiclient.TenantCreate{Slug: slug, Name: "dashboard"})
	require.NoError(t, err)
	require.Equal(t, 201, created.StatusCode(), "%s", created.Body)
	t.Cleanup(func() {
		_, err := c.DeleteTenantWithResponse(ctx, slug, nil)
		assert.NoError(t, err)
		purge := true
		del, err := c.DeleteTenantWithResponse(ctx, slug, &apiclient.DeleteTenantParams{Purge: &purge})
		if assert.NoError(t, err) {
			assert.Equal(t, 204, del.StatusCode(), "%s", del.Body)
		}
	})
	_, err = c.ListMembersWithResponse(ctx, slug, nil)
	require.NoError(t, err)

	exported := scrape(t, base+"/metrics")
	raw, err := os.ReadFile(deploycheck.Path("deploy", "grafana", "publicdigit.json"))
	require.NoError(t, err)
	exprs := dashboardExprs(t, raw)
	require.Greater(t, len(exprs), 15)
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricNames(e)
		assert.NotEmpty(t, names, "no series in %q", e)
		for _, n := range names {
			used[n] = true
			assert.True(t, exported[n], "the dashboard's %s is not exported by /metrics (in %q)", n, e)
		}
	}
	assert.Greater(t, len(used), 12, "the dashboard covers the server's series")
	assert.False(t, exported["publicdigit_no_such_series"], "the scrape is not everything")
}

// Every health check command the deployment files give (compose, the
// Dockerfile) passes against a running server, and the healthcheck program
// fails for a route that does not answer 2xx.
func TestHealthchecksAgainstTheServer(t *testing.T) {
	t.Parallel()
	base := servertest.Start(t, servertest.Config(t)).Base
	out, err := dockerCompose(t, composeEnv(), "--env-file", ".env.example", "config")
	require.NoError(t, err)
	var checks [][]string
	var cf struct {
		Services map[string]struct {
			Healthcheck struct {
				Test []string `json:"test"`
			} `json:"healthcheck"`
		} `json:"services"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(out), &cf))
	for _, s := range cf.Services {
		if hc := s.Healthcheck.Test; len(hc) > 1 && ourCommand(hc[1:]) {
			checks = append(checks, hc[1:])
		}
	}
	for _, in := range dockerfile(t) {
		if in[0] == "HEALTHCHECK" {
			_, js, _ := strings.Cut(in[1], "CMD ")
			var hc []string
			require.NoError(t, json.Unmarshal([]byte(js), &hc))
			checks = append(checks, hc)
		}
	}
	require.Len(t, checks, 2, "the server's compose health check and the image's")
	for _, hc := range checks {
		args := append([]string{}, hc[1:]...)
		for i, a := range args {
			args[i] = strings.Replace(a, "http://127.0.0.1:8080", base, 1)
		}
		code, out := runBin(t, "healthcheck", args...)
		assert.Equal(t, 0, code, "%v: %s", hc, out)
	}
	code, _ := runBin(t, "healthcheck", base+"/no-such-route")
	assert.Equal(t, 1, code)
	code, _ = runBin(t, "healthcheck", "-timeout", "1s", "http://127.0.0.1:1/healthz")
	assert.Equal(t, 1, code)
}
