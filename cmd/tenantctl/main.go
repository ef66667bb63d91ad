// Command tenantctl is the publicdigit DBA and operator CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/publicdigit/publicdigit/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
