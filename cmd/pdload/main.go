// Command pdload is the isolation-mode load test: five ways to isolate
// tenants, direct and through PgBouncer, at several tenant counts, side by
// side, with a report and charts (make loadtest, make loadtest-quick).
//
//	pdload [flags]                              run; the last line printed is the output folder
//	pdload screenshot <report.html> <out.png>   headless Chromium screenshot, checked not blank
//	pdload render <results.json> <out-dir>      writes the report of an earlier run again
//	pdload cleanup                              drops what interrupted runs left behind
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/publicdigit/publicdigit/internal/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	code := loadtest.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
