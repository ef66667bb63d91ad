// Command pdchaos breaks the platform on purpose under load and checks what
// its clients saw (see internal/chaos):
//
//	pdchaos chaos [flags]   make chaos: every fault in turn, ~1.5 minutes
//	pdchaos soak [flags]    make soak: steady load, a fault a minute, ~10 minutes
//	pdchaos serve           the API server a run starts (configured by PD_…)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/publicdigit/publicdigit/internal/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := chaos.Main(ctx, os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, chaos.ErrFound) {
			fmt.Fprintln(os.Stderr, "pdchaos:", err)
		}
		os.Exit(1)
	}
}
