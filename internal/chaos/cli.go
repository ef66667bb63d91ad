package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrFound is returned by Main when a run found something wrong (its
// report says what).
var ErrFound = errors.New("the run found faults")

// Main runs `pdchaos chaos|soak [flags]` (make chaos, make soak) and writes
// the report to out; `pdchaos serve` is the server that a run starts.
func Main(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: pdchaos chaos|soak [flags] (or serve)")
	}
	kind := args[0]
	if kind == "serve" {
		return Serve()
	}
	o := Options{Out: out, Terminate: true}
	switch kind {
	case "chaos":
		o.Duration = 90 * time.Second
	case "soak":
		// Steady load with a fault about every minute; the server is never
		// killed, so its memory and goroutines can be compared.
		o.Duration = 10 * time.Minute
		o.Faults = []Fault{RestartPgBouncer, StallNetwork, RestartPostgres}
		o.FaultGap = 50 * time.Second
		o.Pace = 40 * time.Millisecond
		o.SampleServer = true
	default:
		return fmt.Errorf("unknown run %q (chaos, soak)", kind)
	}
	fs := flag.NewFlagSet("pdchaos "+kind, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&o.Duration, "duration", o.Duration, "how long faults are injected")
	fs.IntVar(&o.Tenants, "tenants", 12, "tenants")
	fs.IntVar(&o.Writers, "writers", 6, "writing clients")
	fs.IntVar(&o.Readers, "readers", 6, "reading clients")
	fs.DurationVar(&o.Pace, "pace", o.Pace, "each client's pause between requests")
	fs.DurationVar(&o.FaultGap, "fault-gap", o.FaultGap, "pause between two faults")
	faults := fs.String("faults", "", "comma-separated cycle of faults (default: "+faultNames(o.Faults)+")")
	fs.StringVar(&o.Database, "database", "publicdigit", "database on the chaos instance")
	fs.StringVar(&o.LogDir, "log-dir", "", "folder for the server's log (default: a new temporary one)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *faults != "" {
		o.Faults = nil
		for _, f := range strings.Split(*faults, ",") {
			o.Faults = append(o.Faults, Fault(strings.TrimSpace(f)))
		}
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.Root = root
	o.ServerCommand = func() *exec.Cmd { return exec.Command(self, "serve") }
	rep, err := Run(ctx, o)
	if err != nil {
		return err
	}
	rep.Write(out, kind)
	if !rep.OK() {
		return ErrFound
	}
	return nil
}

func faultNames(fs []Fault) string {
	if fs == nil {
		fs = AllFaults
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = string(f)
	}
	return strings.Join(names, ",")
}
