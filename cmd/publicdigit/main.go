// Command publicdigit serves the publicdigit HTTP API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/server"
)

func main() {
	fs := pflag.NewFlagSet("publicdigit", pflag.ContinueOnError)
	config.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: publicdigit [flags]\n\nServes the publicdigit HTTP API.\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "publicdigit:", err)
		os.Exit(2)
	}
	cfg, err := config.Load(fs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "publicdigit:", err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stdout, cfg.Log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "publicdigit:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, cfg, log, server.Options{}); err != nil {
		log.Error().Err(err).Msg("server failed")
		os.Exit(1)
	}
}
