// Command loadclient plays API clients for the noisy-neighbour test
// (internal/httpapi/limits_test.go), in a process of its own and without
// the race detector, as clients run elsewhere. It GETs each target of
// PD_LOAD_TARGETS ("url token" per line) with -clients clients each, driven
// by lines on standard input: "go" (quiet: measure for -duration and
// answer; flood: start and answer at once), "stop" (flood: stop and
// answer). Each answer is one line "load: {json}" with the answers by
// status and, for quiet, each request's latency in microseconds. A flood
// runs at the lowest CPU priority: its clients' own work is not the
// server's. It exits when standard input closes.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type report struct {
	Statuses  map[string]int `json:"statuses"`
	Latencies []int64        `json:"latencies_us,omitempty"`
}

type target struct{ url, token string }

func main() {
	mode := flag.String("mode", "quiet", "quiet or flood")
	clients := flag.Int("clients", 1, "clients per target")
	d := flag.Duration("duration", time.Second, "quiet: how long one measurement lasts")
	flag.Parse()
	if *mode == "flood" {
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, 19)
	}
	var targets []target
	for _, line := range strings.Split(os.Getenv("PD_LOAD_TARGETS"), "\n") {
		url, token, _ := strings.Cut(line, " ")
		targets = append(targets, target{url, token})
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func(tg target) (string, time.Duration) {
		req, _ := http.NewRequest("GET", tg.url, nil)
		req.Header.Set("Authorization", "Bearer "+tg.token)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return "error", 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return strconv.Itoa(resp.StatusCode), time.Since(start)
	}
	run := func(stop <-chan struct{}) report {
		var mu sync.Mutex
		rep := report{Statuses: map[string]int{}}
		var wg sync.WaitGroup
		deadline := time.Now().Add(*d)
		for _, tg := range targets {
			for range *clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if *mode == "quiet" && !time.Now().Before(deadline) {
							return
						}
						select {
						case <-stop:
							return
						default:
						}
						status, took := get(tg)
						mu.Lock()
						rep.Statuses[status]++
						if *mode == "quiet" {
							rep.Latencies = append(rep.Latencies, took.Microseconds())
						}
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		return rep
	}
	answer := func(rep report) {
		b, _ := json.Marshal(rep)
		fmt.Println("load: " + string(b))
	}
	var stop chan struct{}
	var flood chan report
	commands := bufio.NewScanner(os.Stdin)
	for commands.Scan() {
		switch c := commands.Text(); {
		case c == "go" && *mode == "quiet":
			answer(run(nil))
		case c == "go" && *mode == "flood":
			stop, flood = make(chan struct{}), make(chan report, 1)
			go func() { flood <- run(stop) }()
			answer(report{})
		case c == "stop" && flood != nil:
			close(stop)
			answer(<-flood)
			flood = nil
		}
	}
	if flood != nil {
		close(stop)
		<-flood
	}
}
