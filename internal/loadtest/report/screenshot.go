package report

import (
	"context"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
)

// Screenshot opens the HTML file in headless Chromium, without network, and
// writes a PNG of it to out.
func Screenshot(ctx context.Context, chromium, html, out string) error {
	abs, err := filepath.Abs(html)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return err
	}
	outAbs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "pdload-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
		"--user-data-dir="+profile, "--hide-scrollbars", "--window-size=1280,2400",
		"--screenshot="+outAbs, "file://"+abs)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chromium: %w: %s", err, lastLine(string(b)))
	}
	if _, err := os.Stat(outAbs); err != nil {
		return errors.New("chromium wrote no screenshot")
	}
	return nil
}

// Ink returns the share of pixels of a PNG that are not (near) white, and
// the share that are neither white nor grey: coloured, as chart lines are.
func Ink(path string) (ink, colour float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return 0, 0, err
	}
	b := img.Bounds()
	var inked, coloured, total int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			total++
			if r < 240 || g < 240 || bl < 240 {
				inked++
			}
			if max(r, g, bl)-min(r, g, bl) > 60 {
				coloured++
			}
		}
	}
	if total == 0 {
		return 0, 0, errors.New("empty image")
	}
	return float64(inked) / float64(total), float64(coloured) / float64(total), nil
}

func lastLine(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}
