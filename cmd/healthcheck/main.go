// Command healthcheck asks a URL and exits 0 when it answers 2xx, 1
// otherwise: the container health check of the publicdigit image, which has
// no shell, curl or wget. Usage: healthcheck [-timeout 3s] URL
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 3*time.Second, "give up after this long")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: healthcheck [-timeout 3s] URL\n\nExits 0 when URL answers 2xx, 1 otherwise, 2 on bad usage.\n")
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, flag.Arg(0), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(2)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintln(os.Stderr, "healthcheck:", flag.Arg(0), "answered", resp.Status)
		os.Exit(1)
	}
}
