// Command pdbench runs the project's named benchmarks (see `make help`):
//
//	pdbench <name> [flags]
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/publicdigit/publicdigit/internal/bench"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "Usage: pdbench <benchmark> [flags]\n\nBenchmarks:")
		for _, n := range bench.Names() {
			fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, bench.Summary(n))
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := bench.Run(ctx, os.Args[1], os.Args[2:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pdbench:", err)
		os.Exit(1)
	}
}
