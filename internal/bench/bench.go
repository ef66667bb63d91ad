// Package bench holds the project's named benchmarks (make bench-*), run by
// cmd/pdbench. Each benchmark measures a case against a baseline in the same
// process and prints ratios as "name value" lines that the docs quote.
package bench

import (
	"context"
	"fmt"
	"io"
)

// Func runs one benchmark with its own arguments, writing results to out.
type Func func(ctx context.Context, args []string, out io.Writer) error

// benchmark is one named benchmark.
type benchmark struct {
	name, summary string
	run           Func
}

// benchmarks lists them all, by name.
var benchmarks = []benchmark{
	{name: "api", summary: "tenant API overhead at c=32: GET card, POST issue card, POST ballot; whole stack vs bare Fiber handler", run: runAPI},
	{name: "export", summary: "a tenant of 100k rows exported to a file and imported as another slug, vs raw binary COPY", run: runExport},
	{name: "fleet", summary: "1,000 tenant schemas: fleet no-op check, additive rollout, naive inspect-every-tenant loop", run: runFleet},
	{name: "move", summary: "online moves of a tenant (100k cards; -cards 100000,1000000 adds 1M): write pause and copy speed, logical vs lock mode", run: runMove},
	{name: "provision", summary: "tenant provisioning through the API: cold (schema apply) vs warm pool, p50/p95", run: runProvision},
	{name: "scale", summary: "N tenants (default 10,000) on one server: provisioning, fleet, API, backend memory, roles, landlord, each vs 100", run: runScale},
	{name: "scope", summary: "tenant binding overhead: plain vs scoped vs naive, c=1 and 8, direct and PgBouncer", run: runScope},
}

func find(name string) (benchmark, bool) {
	for _, b := range benchmarks {
		if b.name == name {
			return b, true
		}
	}
	return benchmark{}, false
}

// Run runs the named benchmark.
func Run(ctx context.Context, name string, args []string, out io.Writer) error {
	b, ok := find(name)
	if !ok {
		return fmt.Errorf("unknown benchmark %q (have: %v)", name, Names())
	}
	return b.run(ctx, args, out)
}

// Names lists the benchmarks.
func Names() []string {
	names := make([]string, len(benchmarks))
	for i, b := range benchmarks {
		names[i] = b.name
	}
	return names
}

// Summary describes a benchmark.
func Summary(name string) string {
	b, _ := find(name)
	return b.summary
}
