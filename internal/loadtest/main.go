package loadtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/publicdigit/publicdigit/internal/loadtest/report"
)

// Exit codes of Main.
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

// Main is cmd/pdload: it runs the matrix (or the screenshot check), writes
// the outputs, and prints the output folder as its last line on stdout.
// Progress goes to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "screenshot" {
		return screenshotMain(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "render" {
		return renderMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "cleanup" {
		return cleanupMain(ctx, args[1:], stdout, stderr)
	}
	o, err := ParseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "pdload:", err)
		return ExitUsage
	}
	if o.Out == "" {
		o.Out = filepath.Join("reports", "loadtest", time.Now().Format("20060102-150405"))
	}
	o.OnResults = func(r *report.Results) error { return report.Write(o.Out, r) }
	res, err := Run(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "pdload:", oneLine(err))
		return ExitFailed
	}
	if err := report.Write(o.Out, res); err != nil {
		fmt.Fprintln(stderr, "pdload:", oneLine(err))
		return ExitFailed
	}
	for _, c := range report.Conclusions(res) {
		fmt.Fprintln(stdout, "-", c)
	}
	abs, err := filepath.Abs(o.Out)
	if err != nil {
		abs = o.Out
	}
	fmt.Fprintln(stdout, abs)
	if res.Interrupted {
		return ExitInterrupted
	}
	return ExitOK
}

// screenshotMain: pdload screenshot [flags] <report.html> <out.png>.
func screenshotMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdload screenshot", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	chromium := fs.String("chromium", "chromium", "the Chromium executable")
	minInk := fs.Float64("min-ink", 0.01, "least share of non-white pixels")
	minColour := fs.Float64("min-colour", 0.002, "least share of coloured pixels (the charts)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		if err == nil {
			err = errors.New("want <report.html> <out.png>")
		}
		fmt.Fprintln(stderr, "pdload screenshot:", err)
		return ExitUsage
	}
	html, out := fs.Arg(0), fs.Arg(1)
	if err := report.Screenshot(ctx, *chromium, html, out); err != nil {
		fmt.Fprintln(stderr, "pdload screenshot:", oneLine(err))
		return ExitFailed
	}
	ink, colour, err := report.Ink(out)
	if err != nil {
		fmt.Fprintln(stderr, "pdload screenshot:", oneLine(err))
		return ExitFailed
	}
	fmt.Fprintf(stdout, "%s: %.1f%% of pixels not white, %.2f%% coloured\n", out, 100*ink, 100*colour)
	if ink < *minInk || colour < *minColour {
		fmt.Fprintf(stderr, "pdload screenshot: %s looks blank (want ≥ %.1f%% not white and ≥ %.2f%% coloured)\n", out, 100**minInk, 100**minColour)
		return ExitFailed
	}
	return ExitOK
}

// renderMain: pdload render <results.json> <out-dir> writes the report of
// an earlier run again (after a change to the report's code).
func renderMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "pdload render: want <results.json> <out-dir>")
		return ExitUsage
	}
	res, err := report.Load(args[0])
	if err == nil {
		err = report.Write(args[1], res)
	}
	if err != nil {
		fmt.Fprintln(stderr, "pdload render:", oneLine(err))
		return ExitFailed
	}
	fmt.Fprintln(stdout, args[1])
	return ExitOK
}

// cleanupMain: pdload cleanup drops what ended runs left behind (every run
// does so when it starts).
func cleanupMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "pdload cleanup: takes no arguments")
		return ExitUsage
	}
	dropped, err := DropLeftovers(ctx, Defaults())
	fmt.Fprintf(stdout, "dropped %d databases and roles\n", len(dropped))
	if err != nil {
		fmt.Fprintln(stderr, "pdload cleanup:", oneLine(err))
		return ExitFailed
	}
	return ExitOK
}
