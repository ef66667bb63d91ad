// Package logging builds zerolog loggers from the config: JSON by default,
// human-readable when the output is a terminal (format "auto"). There is no
// global logger: components receive one and add their "component" field.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/config"
)

// New returns a logger writing to w at the configured level and format.
func New(w io.Writer, c config.Log) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		return zerolog.Nop(), fmt.Errorf("log.level: unknown level %q", c.Level)
	}
	console := false
	switch c.Format {
	case "console":
		console = true
	case "json":
	case "auto", "":
		console = isTerminal(w)
	default:
		return zerolog.Nop(), fmt.Errorf("log.format: unknown format %q", c.Format)
	}
	out := w
	if console {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), nil
}

// Component returns a child logger tagged with the component name.
func Component(l zerolog.Logger, name string) zerolog.Logger {
	return l.With().Str("component", name).Logger()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
