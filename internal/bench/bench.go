// Package bench holds the project's named benchmarks (make bench-*), run by
// cmd/pdbench. Each benchmark measures a case against a baseline in the same
// process and prints ratios as "name value" lines that the README quotes.
package bench

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
)

// Func runs one benchmark with its own arguments, writing results to out.
type Func func(ctx context.Context, args []string, out io.Writer) error

type entry struct {
	summary string
	run     Func
}

var (
	mu       sync.Mutex
	registry = map[string]entry{}
)

// Register adds a named benchmark; files of this package call it from init.
func Register(name, summary string, run Func) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("bench: duplicate " + name)
	}
	registry[name] = entry{summary: summary, run: run}
}

// Run runs the named benchmark.
func Run(ctx context.Context, name string, args []string, out io.Writer) error {
	mu.Lock()
	e, ok := registry[name]
	mu.Unlock()
	if !ok {
		return fmt.Errorf("unknown benchmark %q (have: %v)", name, Names())
	}
	return e.run(ctx, args, out)
}

// Names lists the registered benchmarks.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Summary describes a benchmark.
func Summary(name string) string {
	mu.Lock()
	defer mu.Unlock()
	return registry[name].summary
}
