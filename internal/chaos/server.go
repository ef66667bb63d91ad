package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/logging"
	"github.com/publicdigit/publicdigit/internal/server"
)

// Serve runs the API server as the child process of a run: its
// configuration comes from the environment (PD_…) that the run sets, its
// log (JSON) goes to standard output, which the run keeps in a file. It
// returns when the process is told to stop (SIGINT, SIGTERM).
func Serve() error {
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stdout, cfg.Log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg, log, server.Options{})
}

// serverProcess is the API server under test, run as a child process so
// that it can be killed (SIGKILL) and started again.
type serverProcess struct {
	command func() *exec.Cmd // the command, without output; its Env adds to this process's
	env     []string         // PD_… on top of this process's environment
	base    string           // http://host:port
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// start starts the server and waits until /healthz answers.
func (s *serverProcess) start(ctx context.Context) error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := s.command()
	cmd.Env = append(append(os.Environ(), cmd.Env...), s.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a kill reaches nothing else, and an
	// interrupted run (Ctrl-C to the make's group) does not kill it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.starts++
	s.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("server exited at start (log: %s)", s.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if status(ctx, s.base+"/healthz") == http.StatusOK {
			return nil
		}
	}
	return fmt.Errorf("server did not answer /healthz within 60s (log: %s)", s.logPath)
}

// kill ends the server with SIGKILL: no shutdown, no cleanup.
func (s *serverProcess) kill() {
	s.signal(syscall.SIGKILL, 0)
}

// stop ends the server gracefully (SIGTERM), with SIGKILL after a while.
func (s *serverProcess) stop() {
	s.signal(syscall.SIGTERM, 20*time.Second)
}

func (s *serverProcess) signal(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	if sig != syscall.SIGKILL {
		select {
		case <-exited:
			return
		case <-time.After(grace):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	<-exited
}

func status(ctx context.Context, url string) int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// serverFailures reads the server's log and counts the answers it logged as
// failed ("request failed"), by status and code, with one cause for each.
func serverFailures(path string) (map[string]int, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	counts, causes := map[string]int{}, map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"request failed"`) {
			continue
		}
		var ev struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
			Error  string `json:"error"`
		}
		if json.Unmarshal(line, &ev) != nil {
			continue
		}
		k := fmt.Sprintf("%d %s", ev.Status, ev.Code)
		counts[k]++
		if _, ok := causes[k]; !ok || ev.Status >= 500 && ev.Status != 503 {
			causes[k] = ev.Error
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		return counts, causes, err
	}
	return counts, causes, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
