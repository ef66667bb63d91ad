package loadtest

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// bar is the progress bar; a nil *bar shows nothing.
type bar struct{ pb *progressbar.ProgressBar }

// newBar counts steps: per tenant count, a provisioning per mode, every
// cell of every round, and a count per mode.
func newBar(w io.Writer, o Options) *bar {
	if w == nil {
		return nil
	}
	per := 2*len(o.Modes) + o.Rounds*len(o.Modes)*len(o.Paths)
	return &bar{pb: progressbar.NewOptions(per*len(o.Tenants),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(250*time.Millisecond),
		progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(w, "\n") }),
	)}
}

func (b *bar) add(n int) {
	if b != nil {
		_ = b.pb.Add(n)
	}
}

func (b *bar) describe(s string) {
	if b != nil {
		b.pb.Describe(s)
	}
}

func (b *bar) finish() {
	if b != nil {
		_ = b.pb.Finish()
	}
}
