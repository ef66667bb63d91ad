package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Instance is one local PostgreSQL and its PgBouncer, as deploy/local runs
// them (PD_INSTANCE), which a run restarts on purpose. The "chaos" instance
// (ports 15434 and 16434) serves nothing else.
type Instance struct {
	// Root is the repository's root (deploy/local is under it).
	Root string
	// Name is the PD_INSTANCE.
	Name string
	// PGPort and BouncerPort are where its servers listen.
	PGPort, BouncerPort string
}

// ChaosInstance is the instance that make chaos and make soak break.
func ChaosInstance(root string) Instance {
	return Instance{Root: root, Name: "chaos", PGPort: "15434", BouncerPort: "16434"}
}

// script runs one of deploy/local's scripts for the instance.
func (in Instance) script(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(in.Root, "deploy", "local", name), args...)
	cmd.Env = append(os.Environ(), "PD_INSTANCE="+in.Name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	return nil
}

// Up starts whatever of the instance is not running (db-up.sh: idempotent).
func (in Instance) Up(ctx context.Context) error { return in.script(ctx, "db-up.sh") }

// Down stops the instance (db-down.sh).
func (in Instance) Down(ctx context.Context) error { return in.script(ctx, "db-down.sh") }

// Running reports whether both servers accept connections.
func (in Instance) Running() bool {
	return portOpen(in.PGPort) && portOpen(in.BouncerPort)
}

// RestartPostgres stops PostgreSQL with a fast shutdown (every session
// ended, open transactions rolled back), keeps it down for down, and starts
// it again.
func (in Instance) RestartPostgres(ctx context.Context, down time.Duration) error {
	return in.script(ctx, "db-restart.sh", "postgres", seconds(down))
}

// RestartPgBouncer stops PgBouncer at once (SIGTERM: every client
// connection dropped), keeps it down for down, and starts it again.
func (in Instance) RestartPgBouncer(ctx context.Context, down time.Duration) error {
	return in.script(ctx, "db-restart.sh", "pgbouncer", seconds(down))
}

// Restore brings the instance back whatever a fault left behind, even when
// ctx is done (an interrupted run restores before it exits).
func (in Instance) Restore(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	return in.Up(ctx)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f", d.Seconds()) }

func portOpen(port string) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
